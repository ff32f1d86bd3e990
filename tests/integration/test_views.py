"""Views that users build over values the proxy computes (over pgsodium.decrypted_key,
over per-row calls, over TCE and Vault views, over each other), read through the
proxy: their definitions are evaluated as subqueries, with the view's privileges
kept; views the proxy may not read that way are left to the database.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
import pytest

from .conftest import RunningProxy, make_database, server_log

PLAIN = {1: "alice", 2: "bob", 3: "émilie 🔐"}
DECRYPT = "pgsodium.crypto_aead_det_decrypt(secret, convert_to(id::text, 'utf8'), kid)"
STUB = "must be called through pgsodium-proxy"


@pytest.fixture(scope="module")
def db(proxy: RunningProxy) -> str:
    name = make_database(proxy, "userviews")
    with psycopg.connect(proxy.dsn(dbname=name), autocommit=True) as conn:
        key = conn.execute("select id from pgsodium.create_key()").fetchone()[0]
        conn.execute("create table acc (id int primary key, secret bytea, kid uuid)")
        for i, text in PLAIN.items():
            conn.execute(
                "insert into acc values (%s, pgsodium.crypto_aead_det_encrypt("
                "convert_to(%s, 'utf8'), convert_to(%s, 'utf8'), %s), %s)",
                [i, text, str(i), key, key],
            )
        conn.execute(
            "select pgsodium.create_key('hmacsha256', raw_key => "
            "pgsodium.crypto_auth_hmacsha256_keygen())"
        )
        conn.execute("create table t_v (id int primary key, secret text)")
        conn.execute(
            "security label for pgsodium on column t_v.secret "
            f"is 'ENCRYPT WITH KEY ID {key} ASSOCIATED (id)'"
        )
        for i, text in PLAIN.items():
            conn.execute("insert into t_v values (%s, %s)", [i, text])
        conn.execute("select vault.create_secret('vault-v', 'view-one')")
        conn.execute(
            "create view my_keys as select id, decrypted_raw_key from "
            "pgsodium.decrypted_key"
        )
        conn.execute(
            f"create view per_row as select id, convert_from({DECRYPT}, 'utf8') p "
            "from acc"
        )
        conn.execute("create view over_tce as select id, decrypted_secret from "
                     "decrypted_t_v")  # fmt: skip
        conn.execute(
            "create view over_vault as select name, decrypted_secret from "
            "vault.decrypted_secrets"
        )
        conn.execute("create view over_view (i, q) as select * from per_row "
                     "where id > 1")  # fmt: skip
        conn.execute(
            "create view inv_keys with (security_invoker = true) as select id, "
            "length(decrypted_raw_key) n from pgsodium.decrypted_key"
        )
        conn.execute("drop role if exists view_reader")
        conn.execute("create role view_reader login")
        conn.execute("grant select on my_keys, per_row, inv_keys to view_reader")
    return name


def test_a_view_over_decrypted_key_reads_as_the_view_itself(
    conn: psycopg.Connection[Any],
) -> None:
    expected = conn.execute(
        "select id, decrypted_raw_key from pgsodium.decrypted_key order by id"
    ).fetchall()
    assert any(raw is not None for _, raw in expected)
    assert conn.execute("select * from my_keys order by id").fetchall() == expected
    assert conn.execute(
        "select k.id, length(k.decrypted_raw_key) from public.my_keys k order by 1"
    ).fetchall() == [(i, None if r is None else len(r)) for i, r in expected]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("select * from per_row order by id", list(PLAIN.items())),
        ("select id, p from (select * from per_row) s order by id",
         list(PLAIN.items())),
        ("select * from over_tce order by id", list(PLAIN.items())),
        ("select * from over_view order by i", list(PLAIN.items())[1:]),
        ("with v as (select q from over_view where i = 3) select * from v",
         [(PLAIN[3],)]),
        ("select decrypted_secret from over_vault where name = 'view-one'",
         [("vault-v",)]),
        ("select count(*) from per_row", [(3,)]),
    ],
)  # fmt: skip
def test_views_over_computed_values_read_decrypted(
    conn: psycopg.Connection[Any], sql: str, expected: list[tuple[Any, ...]]
) -> None:
    assert conn.execute(sql).fetchall() == expected


def test_the_database_sees_no_pgsodium_call(
    proxy: RunningProxy, conn: psycopg.Connection[Any]
) -> None:
    marker = f"view-{uuid.uuid4().hex}"
    conn.execute(f"select p from per_row where id = 2 /* {marker} */").fetchall()
    logged = [line for line in server_log(proxy).splitlines() if marker in line]
    assert logged and all("crypto_aead_det_decrypt" not in line for line in logged)
    assert all("_pgsp_view" in line for line in logged)


def test_other_statements_pass_through_untouched(
    proxy: RunningProxy, conn: psycopg.Connection[Any]
) -> None:
    marker = f"plain-{uuid.uuid4().hex}"
    sql = f"select id from acc where id = 1 /* {marker} */"
    assert conn.execute(sql).fetchall() == [(1,)]
    logged = [line for line in server_log(proxy).splitlines() if marker in line]
    assert logged and all(line.endswith(sql) for line in logged)


def test_a_view_created_in_the_session_is_read_at_once(
    conn: psycopg.Connection[Any],
) -> None:
    name = f"fresh_{uuid.uuid4().hex[:8]}"
    conn.execute(f"create view {name} as select id, p from per_row where id = 1")
    try:
        assert conn.execute(f"select * from {name}").fetchall() == [(1, "alice")]
        conn.execute(
            f"create or replace view {name} as select id, upper(p) p from per_row "
            "where id = 2"
        )
        # upper() is not the proxy's: that read is left to the view, which refuses.
        with pytest.raises(psycopg.errors.FeatureNotSupported, match=STUB):
            conn.execute(f"select * from {name}")
        conn.execute(
            f"create or replace view {name} as select id, p || '!' p from per_row "
            "where id = 2"
        )
        assert conn.execute(f"select * from {name}").fetchall() == [(2, "bob!")]
    finally:
        conn.execute(f"drop view {name}")


def test_a_view_created_in_a_transaction_is_read_in_it(
    conn: psycopg.Connection[Any],
) -> None:
    name = f"tx_{uuid.uuid4().hex[:8]}"
    conn.autocommit = False
    try:
        conn.execute(f"create view {name} as select p from per_row where id = 3")
        assert conn.execute(f"select * from {name}").fetchall() == [(PLAIN[3],)]
    finally:
        conn.rollback()
        conn.autocommit = True


def test_a_message_that_may_change_names_or_roles_leaves_views_to_the_database(
    conn: psycopg.Connection[Any],
) -> None:
    with pytest.raises(psycopg.errors.FeatureNotSupported, match=STUB):
        conn.execute("select p from per_row -- search_path")
    # With a value in it, not even to the database: a condition on a computed
    # column would take it upstream (a search term in its log).
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="literals or"):
        conn.execute("select p from per_row where id = 1 -- search_path")


def test_a_read_the_proxy_refuses_is_not_sent_with_its_values(
    proxy: RunningProxy, conn: psycopg.Connection[Any]
) -> None:
    """Expanded, `p` would be needed in WHERE: the proxy refuses that, and does
    not send the client's text either, whose 'bob' would reach the database (its
    log) before the view's stub refused. Reading only plain columns of the view
    still works, in the view's own terms."""
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="pgsodium-proxy"):
        conn.execute("select id from per_row where p = 'bob-the-search-term'")
    assert "bob-the-search-term" not in server_log(proxy)
    assert conn.execute("select id from per_row where id > 2").fetchall() == [(3,)]


def test_another_owners_view_is_read_by_the_database_with_its_privileges(
    proxy: RunningProxy, db: str
) -> None:
    """my_keys runs with its owner's privileges: the proxy cannot evaluate its
    definition as the reader would, so the database reads it as it stands: plain
    columns work, the decrypted one refuses as the stub does."""
    with psycopg.connect(
        proxy.dsn(user="view_reader", dbname=db), autocommit=True
    ) as conn:
        assert len(conn.execute("select id from my_keys").fetchall()) >= 2
        # PostgreSQL checks EXECUTE of the view's functions as the reader.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select decrypted_raw_key from my_keys").fetchall()
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as admin:
        admin.execute("grant pgsodium_keyiduser to view_reader")
    try:
        with psycopg.connect(
            proxy.dsn(user="view_reader", dbname=db), autocommit=True
        ) as conn:
            with pytest.raises(psycopg.errors.FeatureNotSupported, match=STUB) as err:
                conn.execute("select decrypted_raw_key from my_keys").fetchall()
            # The hint tells the reader what would let the proxy read the view.
            assert "security_invoker" in (err.value.diag.message_hint or "")
    finally:
        with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as admin:
            admin.execute("revoke pgsodium_keyiduser from view_reader")


def test_a_security_invoker_view_needs_the_readers_own_privileges(
    proxy: RunningProxy, db: str
) -> None:
    with psycopg.connect(
        proxy.dsn(user="view_reader", dbname=db), autocommit=True
    ) as conn:
        # Its relations are read as the reader (and the proxy checks EXECUTE
        # of the decrypting function first, as at the top level).
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select * from inv_keys")
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as admin:
        admin.execute("grant pgsodium_keyholder, pgsodium_keyiduser to view_reader")
        expected = admin.execute(
            "select id, length(decrypted_raw_key) from pgsodium.decrypted_key "
            "order by id"
        ).fetchall()
    try:
        with psycopg.connect(
            proxy.dsn(user="view_reader", dbname=db), autocommit=True
        ) as conn:
            assert conn.execute("select * from inv_keys order by id").fetchall() == (
                expected
            )
        with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as admin:
            admin.execute("revoke select on inv_keys from view_reader")
        with psycopg.connect(
            proxy.dsn(user="view_reader", dbname=db), autocommit=True
        ) as conn:
            # The reader may read decrypted_key itself, not the view: refused as
            # PostgreSQL refuses it.
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
                conn.execute("select * from inv_keys")
            assert caught.value.diag.message_primary == (
                "permission denied for view inv_keys"
            )
    finally:
        with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as admin:
            admin.execute(
                "revoke pgsodium_keyholder, pgsodium_keyiduser from view_reader"
            )
            admin.execute("grant select on inv_keys to view_reader")


@pytest.mark.asyncio
async def test_asyncpg_prepares_a_view_over_computed_values(
    proxy: RunningProxy, db: str
) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(
            host=proxy.host, port=proxy.port, user="postgres", database=db
        )
        try:
            stmt = await conn.prepare("select * from over_view where i = $1")
            assert [(a.name, a.type.name) for a in stmt.get_attributes()] == [
                ("i", "int4"),
                ("q", "text"),
            ]
            assert list(await stmt.fetchrow(2)) == [2, "bob"]
        finally:
            await conn.close()

    await asyncio.wait_for(run(), 30)


def test_a_server_side_cursor_reads_a_view_over_computed_values(
    proxy: RunningProxy, db: str
) -> None:
    with psycopg.connect(proxy.dsn(dbname=db)) as conn:
        with conn.cursor(name="view_cursor") as cur:
            cur.itersize = 2
            cur.execute("select * from per_row order by id")
            assert cur.fetchall() == list(PLAIN.items())


def test_a_search_term_over_a_view_of_decrypted_values_never_reaches_the_database(
    proxy: RunningProxy, db: str, conn: psycopg.Connection[Any]
) -> None:
    """Through the reader's own view (expanded) and another owner's (left to the
    database): a comparison with its decrypted column is refused, never sent."""
    term = "search-term-never-sent"
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="pgsodium-proxy"):
        conn.execute(f"select id from over_tce where decrypted_secret = '{term}1'")
    with psycopg.connect(
        proxy.dsn(user="view_reader", dbname=db), autocommit=True
    ) as reader:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="literals or"):
            reader.execute(
                "select id from my_keys where decrypted_raw_key = %s",
                [f"{term}2".encode()],
            )
    assert term not in server_log(proxy)
    assert term.encode().hex() not in server_log(proxy)


@pytest.mark.parametrize(
    "sql",
    [
        "select decrypted_secret from decrypted_t_v tablesample system (100)",
        "select id, d.decrypted_secret from public.decrypted_t_v as d "
        "tablesample bernoulli (50) repeatable (7)",
        "select decrypted_secret from vault.decrypted_secrets tablesample system (100)",
        "select id from pgsodium.decrypted_key tablesample system (100)",
        "select * from my_keys tablesample system (100)",
        "select * from over_tce tablesample system (100)",
        "select 1, p from acc, per_row tablesample system (100)",
    ],
)
def test_tablesample_over_a_view_of_computed_values_is_postgresqls_0a000(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any], sql: str
) -> None:
    """A decrypting view is a view with pgsodium too: the server's own error, at
    the view's name (the proxy's subquery in its place was a syntax error)."""

    def error(connection: psycopg.Connection[Any]) -> tuple[Any, ...]:
        with pytest.raises(psycopg.errors.FeatureNotSupported) as caught:
            connection.execute(sql)
        return caught.value.diag.message_primary, caught.value.diag.statement_position

    assert error(conn) == error(direct)
    assert conn.execute("select 1").fetchone() == (1,)


def test_tablesample_over_a_table_passes_with_the_call_over_its_rows(
    conn: psycopg.Connection[Any],
) -> None:
    sql = f"select id, convert_from({DECRYPT}, 'utf8') from acc{{}} order by id"
    expected = conn.execute(sql.format("")).fetchall()
    assert len(expected) == 3
    for sample in (
        " tablesample system (100)",
        " as a tablesample bernoulli (100) repeatable (1)",
    ):
        assert conn.execute(sql.format(sample)).fetchall() == expected


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        (
            "select decrypted_secret from decrypted_t_v union select 'x'",
            "cannot evaluate UNION over values computed per row",
        ),
        (
            "select decrypted_secret from vault.decrypted_secrets union select 'x'",
            "cannot evaluate UNION over values computed per row",
        ),
        (
            "select decrypted_raw_key from pgsodium.decrypted_key union select null",
            "cannot evaluate UNION over values computed per row",
        ),
        (
            "select decrypted_raw_key from pgsodium.decrypted_key intersect "
            "select null",
            "cannot evaluate INTERSECT over values computed per row",
        ),
        ("select upper(decrypted_secret) from decrypted_t_v", "in function upper()"),
        (
            "select lower(v.decrypted_secret) from vault.decrypted_secrets v",
            '"v.decrypted_secret" in function lower()',
        ),
        (
            "select md5(decrypted_raw_key::text) from pgsodium.decrypted_key",
            "decrypted_raw_key in function md5()",
        ),
    ],
)
def test_a_refusal_names_the_construct_the_value_stands_in(
    conn: psycopg.Connection[Any], sql: str, named: str
) -> None:
    """Not the CASE of a decrypting view's own definition, nor "this expression"."""
    with pytest.raises(psycopg.errors.FeatureNotSupported) as caught:
        conn.execute(sql)
    assert named in caught.value.diag.message_primary
    assert conn.execute("select 1").fetchone() == (1,)
