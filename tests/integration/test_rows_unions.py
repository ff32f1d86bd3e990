"""UNION ALL over values computed per row, through the real proxy: pgsodium calls,
decrypting views and vault.decrypted_secrets in the branches, as the outermost
query, a subquery in FROM and a WITH query.

Each case is compared with the same query over plaintext copies of the tables
(`accp`, `acc2p`, `t_p`: the plaintext where the ciphertext was), in both
protocols; each refusal is 0A000 and its text never reaches the database.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import uuid
from typing import Any

import psycopg
import pytest

from .conftest import RunningProxy, make_database, server_log

PLAIN = {1: "alice", 2: "bob", 3: "émilie 🔐"}
PLAIN2 = {2: "zoe", 5: "yann", 6: "xavière"}
DECRYPT = "pgsodium.crypto_aead_det_decrypt(secret, convert_to(id::text, 'utf8'), kid)"
DECRYPT2 = "pgsodium.crypto_aead_det_decrypt(secret, convert_to('two', 'utf8'), kid)"


@pytest.fixture(scope="module")
def db(proxy: RunningProxy) -> str:
    name = make_database(proxy, "unions")
    with psycopg.connect(proxy.dsn(dbname=name), autocommit=True) as conn:
        key = conn.execute("select id from pgsodium.create_key()").fetchone()[0]
        key2 = conn.execute("select id from pgsodium.create_key()").fetchone()[0]
        for table in ("acc", "acc2"):
            conn.execute(f"create table {table} (id int, secret bytea, kid uuid)")
            conn.execute(f"create table {table}p (id int, secret bytea, kid uuid)")
        for i, text in PLAIN.items():
            conn.execute(
                "insert into acc values (%s, pgsodium.crypto_aead_det_encrypt("
                "convert_to(%s, 'utf8'), convert_to(%s, 'utf8'), %s), %s)",
                [i, text, str(i), key, key],
            )
            conn.execute(
                "insert into accp values (%s, %s, %s)", [i, text.encode(), key]
            )
        for i, text in PLAIN2.items():
            conn.execute(
                "insert into acc2 values (%s, pgsodium.crypto_aead_det_encrypt("
                "convert_to(%s, 'utf8'), convert_to('two', 'utf8'), %s), %s)",
                [i, text, key2, key2],
            )
            conn.execute(
                "insert into acc2p values (%s, %s, %s)", [i, text.encode(), key2]
            )
        conn.execute("create table other (id int, tag text)")
        conn.execute("insert into other values (1, 'one'), (2, 'two'), (7, 'seven')")
        conn.execute("create table t_n (id int primary key, secret text)")
        conn.execute(
            "security label for pgsodium on column t_n.secret "
            f"is 'ENCRYPT WITH KEY ID {key} ASSOCIATED (id)'"
        )
        conn.execute("create table t_p (id int primary key, decrypted_secret text)")
        for i, text in PLAIN.items():
            conn.execute("insert into t_n values (%s, %s)", [i, text])
            conn.execute("insert into t_p values (%s, %s)", [i, text])
        conn.execute("select vault.create_secret('vault-one', 'union-one')")
    return name


def _over_plaintext(sql: str) -> str:
    """The same query over the plaintext copies: each decryption becomes the
    column that holds its plaintext."""
    sql = sql.replace(DECRYPT, "secret").replace(DECRYPT2, "secret")
    sql = re.sub(r"\bacc(2?)\b", r"acc\1p", sql)
    return sql.replace("decrypted_t_n", "t_p")


SHAPES = [
    f"select id, convert_from({DECRYPT}, 'utf8') as p from acc union all select "
    f"id, convert_from({DECRYPT2}, 'utf8') from acc2 order by id",
    f"select id, {DECRYPT} as p from acc where id > 1 union all select id, "
    f"{DECRYPT2} from acc2 where id > 2 order by id desc limit 3",
    f"select id, convert_from({DECRYPT}, 'utf8') as p from acc union all select "
    "id, tag from other order by id",
    f"select convert_from({DECRYPT}, 'utf8') as p, id from acc union all select "
    "'none', 0 order by id",
    f"select id, tag, length({DECRYPT}) as n from acc a join other o using (id) "
    f"union all select id, null, length({DECRYPT2}) from acc2 order by id",
    f"select * from (select id, convert_from({DECRYPT}, 'utf8') as p from acc "
    f"union all select id, convert_from({DECRYPT2}, 'utf8') from acc2) u where "
    "u.id > 1 order by id",
    f"select u.id, length(u.p) as n, u.p || '!' as bang from (select id, {DECRYPT}"
    f" as p from acc union all select id, {DECRYPT2} from acc2) u order by 1",
    f"with u as (select id, {DECRYPT} as p from acc union all select id, "
    f"{DECRYPT2} from acc2) select id, convert_from(p, 'utf8') from u order by 1",
    f"select x, convert_from(y, 'utf8') as t from (select id, {DECRYPT} from acc "
    f"union all select id, {DECRYPT2} from acc2) u(x, y) order by x",
    "select id, decrypted_secret from decrypted_t_n union all select id, tag from "
    "other order by id",
    "select id, decrypted_secret from decrypted_t_n where id = 1 union all select "
    f"id, convert_from({DECRYPT2}, 'utf8') from acc2 order by id",
    "select * from (select id, decrypted_secret s from decrypted_t_n union all "
    "select id, decrypted_secret from decrypted_t_n where id < 3) u order by id",
    f"select o.tag, u.p from other o join (select id, convert_from({DECRYPT}, "
    f"'utf8') as p from acc union all select id, convert_from({DECRYPT2}, 'utf8') "
    "from acc2) u on u.id = o.id order by 1",
    f"select u.id, u.p from (select id, {DECRYPT} as p from acc union all select "
    f"id, {DECRYPT2} from acc2) u union all select id, {DECRYPT} from acc where "
    "id = 3 order by 1",
]


@pytest.mark.parametrize("sql", SHAPES)
def test_union_all_equals_the_query_over_the_plaintext(
    conn: psycopg.Connection[Any], sql: str
) -> None:
    """Rows that ORDER BY leaves tied may come in any order: compared sorted,
    but for a LIMIT, whose order is fixed."""
    rows = conn.execute(sql).fetchall()
    expected = conn.execute(_over_plaintext(sql)).fetchall()
    if "limit" not in sql:
        rows, expected = sorted(rows, key=repr), sorted(expected, key=repr)
    assert rows == expected and rows


@pytest.mark.parametrize("sql", SHAPES[:3] + SHAPES[5:8])
def test_union_all_in_binary_results(proxy: RunningProxy, db: str, sql: str) -> None:
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        rows = conn.execute(sql, binary=True).fetchall()
        expected = conn.execute(_over_plaintext(sql), binary=True).fetchall()
        assert sorted(rows, key=repr) == sorted(expected, key=repr)


def test_union_all_reports_the_types_postgresql_would(
    conn: psycopg.Connection[Any],
) -> None:
    for sql in [SHAPES[0], SHAPES[1], SHAPES[4], SHAPES[6]]:
        cursor = conn.execute(sql)
        expected = conn.execute(_over_plaintext(sql))
        assert [(d.name, d.type_code) for d in cursor.description] == [
            (d.name, d.type_code) for d in expected.description
        ], sql


STARS = [
    # `*` over a decrypting view (or any subquery whose columns are all named) is
    # written out, so the other branch's NULL columns can stand beside its own.
    "select * from decrypted_t_n where id < 3 union all select * from "
    "decrypted_t_n where id = 3",
    "select v.* from decrypted_t_n v union all select id, secret, upper(secret) "
    "from t_n where false",
    f"select * from (select * from (select id, {DECRYPT} p from acc) a union all "
    f"select * from (select id, {DECRYPT} p from acc) b) u",
]


@pytest.mark.parametrize("sql", STARS)
def test_union_all_of_a_star_over_a_decrypting_view(
    conn: psycopg.Connection[Any], sql: str
) -> None:
    rows = sorted(conn.execute(sql).fetchall())
    if "acc" in sql:
        assert rows == sorted(2 * [(i, p.encode()) for i, p in PLAIN.items()])
        return
    stored = dict(conn.execute("select id, secret from t_n").fetchall())
    assert rows == [(i, stored[i], p) for i, p in PLAIN.items()]
    names = [d.name for d in conn.execute(sql).description]
    assert names == ["id", "secret", "decrypted_secret"]


def test_vault_and_a_decrypting_view_in_one_union(
    conn: psycopg.Connection[Any],
) -> None:
    rows = conn.execute(
        "select 'vault' as src, decrypted_secret from vault.decrypted_secrets "
        "where name = %s union all select 'tce', decrypted_secret from "
        "decrypted_t_n where id = %s",
        ["union-one", 2],
    ).fetchall()
    assert rows == [("vault", "vault-one"), ("tce", "bob")]


def test_union_all_branch_of_a_bind_parameter_or_a_folded_call(
    conn: psycopg.Connection[Any],
) -> None:
    folded = conn.execute(
        "select pgsodium.crypto_aead_det_encrypt(convert_to('nine', 'utf8'), "
        "''::bytea, 7::bigint)"
    ).fetchone()[0]
    rows = conn.execute(
        f"select id, {DECRYPT} as p from acc where id = 1 union all select %s, "
        "pgsodium.crypto_aead_det_decrypt(%s::bytea, ''::bytea, 7::bigint) "
        "order by id",
        [9, folded],
    ).fetchall()
    assert rows == [(1, b"alice"), (9, b"nine")]
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="key uuid"):
        conn.execute(
            f"select {DECRYPT} as p from acc union all select "
            "pgsodium.crypto_aead_det_decrypt(%s::bytea, ''::bytea, %s::uuid)",
            [folded, str(uuid.uuid4())],
        )
    rows = conn.execute(
        f"select id, {DECRYPT} as p from acc where id = 2 union all select 0, "
        "%s::bytea order by id",
        [b"bound"],
    ).fetchall()
    assert rows == [(0, b"bound"), (2, b"bob")]


def test_union_all_through_a_server_side_cursor(proxy: RunningProxy, db: str) -> None:
    sql = SHAPES[0]
    with psycopg.connect(proxy.dsn(dbname=db)) as conn:
        with conn.cursor(name="union_cursor") as cursor:
            cursor.itersize = 2
            cursor.execute(sql)
            rows = list(cursor)
        expected = conn.execute(_over_plaintext(sql)).fetchall()
    assert sorted(rows, key=repr) == sorted(expected, key=repr) and len(rows) == 6


@pytest.mark.asyncio
async def test_asyncpg_describes_a_union_all_before_any_row(
    proxy: RunningProxy, db: str
) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(
            host=proxy.host, port=proxy.port, user="postgres", database=db
        )
        try:
            stmt = await conn.prepare(
                f"select id, convert_from({DECRYPT}, 'utf8') as p from acc where "
                f"id = $1 union all select id, convert_from({DECRYPT2}, 'utf8') "
                "from acc2 where id = $1"
            )
            assert [(a.name, a.type.name) for a in stmt.get_attributes()] == [
                ("id", "int4"),
                ("p", "text"),
            ]
            assert [tuple(r) for r in await stmt.fetch(2)] == [
                (2, "bob"),
                (2, "zoe"),
            ]
        finally:
            await conn.close()

    await asyncio.wait_for(run(), 30)


UNTYPED = [
    (f"select id, {DECRYPT} p from acc where id = 1 union all select 9, {{}}",
     "select id, secret p from accp where id = 1 union all select 9, {}"),
    (f"select 9, {{}} union all select id, convert_from({DECRYPT}, 'utf8') from acc "
     "where id = 2",
     "select 9, {} union all select id, convert_from(secret, 'utf8') from accp "
     "where id = 2"),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "plain"), UNTYPED)
def test_untyped_parameter_in_a_branch_takes_the_other_branchs_type(
    conn: psycopg.Connection[Any], sql: str, plain: str
) -> None:
    """An untyped parameter (psycopg sends a str so) is read as PostgreSQL reads
    it: bytea input beside a bytea column."""
    value = "\\x6869"
    got = conn.execute(sql.format("%s"), [value]).fetchall()
    assert got == conn.execute(plain.format("%s"), [value]).fetchall()


@pytest.mark.asyncio
async def test_asyncpg_describes_an_untyped_parameter_in_a_branch_as_postgresql(
    proxy: RunningProxy, db: str
) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(
            host=proxy.host, port=proxy.port, user="postgres", database=db
        )
        try:
            for (sql, plain), value in zip(UNTYPED, [b"\x00\xff", "hi"], strict=True):
                stmt = await conn.prepare(sql.format("$1"))
                over_plain = await conn.prepare(plain.format("$1"))
                assert [t.name for t in stmt.get_parameters()] == [
                    t.name for t in over_plain.get_parameters()
                ]
                assert [tuple(r) for r in await stmt.fetch(value)] == [
                    tuple(r) for r in await over_plain.fetch(value)
                ]
        finally:
            await conn.close()

    await asyncio.wait_for(run(), 30)


REFUSED = [
    (f"select {DECRYPT} from acc union select {DECRYPT2} from acc2", "UNION"),
    (f"select id, {DECRYPT} from acc intersect select id, {DECRYPT2} from acc2",
     "INTERSECT"),
    (f"select id, {DECRYPT} from acc except select id, {DECRYPT2} from acc2",
     "EXCEPT"),
    (f"select * from (select {DECRYPT} p from acc union select {DECRYPT2} from "
     "acc2) u", "UNION"),
    (f"with u as (select {DECRYPT} p from acc except all select {DECRYPT2} from "
     "acc2) select * from u", "EXCEPT"),
    (f"select {DECRYPT} from acc union all select {DECRYPT2} from acc2 union all "
     "select secret from acc", "more than two"),
    (f"select {DECRYPT} p from acc union all select {DECRYPT2} from acc2 order by p",
     "ORDER BY"),
    (f"select {DECRYPT} p, id from acc union all select {DECRYPT2}, id from acc2 "
     "order by 1", "ORDER BY"),
    (f"select {DECRYPT} p, id from acc union all select {DECRYPT2}, id from acc2 "
     "order by 2", "ORDER BY"),
    (f"select * from (select {DECRYPT} p from acc union all select {DECRYPT2} from "
     "acc2) u where p is null", "WHERE"),
    (f"select id, {DECRYPT} p, kid from acc union all select * from acc2",
     "* in a branch"),
    # SECURITY: (composite).* expands too; the second branch's columns, read by
    # position, would put the client's own text where the key reference stands.
    (f"select id, {DECRYPT} p, (a).* from acc a union all select (b).*, 0 "
     "from acc2 b", "* in a branch"),
    (f"select id, {DECRYPT} p from acc union all select (b).* from acc2 b",
     "* in a branch"),
    (f"select * from (select {DECRYPT} p, id from acc union all "
     "select (b).* from (select secret, id from acc2) b) u", "* in a branch"),
    ("select decrypted_secret from decrypted_t_n union select tag from other",
     "UNION"),
    (f"select {DECRYPT} p into newtable from acc union all select {DECRYPT2} from "
     "acc2", "INTO"),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "named"), REFUSED)
def test_set_operation_the_database_would_evaluate_is_refused_and_never_sent(
    proxy: RunningProxy, conn: psycopg.Connection[Any], sql: str, named: str
) -> None:
    marker = f"refused-{uuid.uuid4().hex}"
    with pytest.raises(psycopg.errors.FeatureNotSupported) as caught:
        conn.execute(f"{sql} /* {marker} */")
    message = caught.value.diag.message_primary or ""
    assert message.startswith("pgsodium-proxy cannot evaluate")
    assert named in message
    assert marker not in server_log(proxy)
    assert conn.execute("select 1").fetchone() == (1,)


def test_branches_of_different_types_are_refused(
    conn: psycopg.Connection[Any],
) -> None:
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="UNION ALL with"):
        conn.execute(
            f"select convert_from({DECRYPT}, 'utf8') from acc union all select "
            f"{DECRYPT2} from acc2"
        )
    assert conn.execute("select 1").fetchone() == (1,)


# -- generated shapes, compared with the same query over the plaintext ----------------


def _branch(rng: random.Random, value: str, value2: str) -> str:
    return rng.choice(
        [
            f"select id, {value} p from acc" + rng.choice(["", " where id <> 2"]),
            f"select id, {value2} from acc2" + rng.choice(["", " where id > 2"]),
            f"select id, coalesce({value}, '\\x3f'::bytea) from acc",
            f"select id, {value2} || '\\x21'::bytea from acc2",
            "select id, convert_to(tag, 'utf8') from other",
            "select 0, '\\x3f'::bytea",
            f"select x.id, x.p from (select id, {value} p from acc) x",
        ]
    )


def _union_shape(rng: random.Random, value: str, value2: str) -> str:
    union = f"{_branch(rng, value, value2)} union all {_branch(rng, value, value2)}"
    return rng.choice(
        [
            union,
            f"select * from ({union}) u",
            f"select u.id, length(u.p) n from ({union}) u where u.id > 1",
            f"select o.tag, u.p from other o left join ({union}) u on u.id = o.id",
            f"with u as ({union}) select id, convert_from(p, 'utf8') from u",
            f"select u.p, u.id from ({union}) u order by u.id",
        ]
    )


def test_generated_unions_equal_the_same_query_over_the_plaintext(
    proxy: RunningProxy, db: str
) -> None:
    """Each shape through the proxy gives the rows the same query over the
    plaintext copies gives (or the same error), in both protocols."""
    rng = random.Random(int(os.environ.get("UNION_SHAPES_SEED", "2718")))
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        compared = 0
        for number in range(int(os.environ.get("UNION_SHAPES", "60"))):
            sql = _union_shape(random.Random(rng.random()), DECRYPT, DECRYPT2)
            cursor = psycopg.ClientCursor if number % 2 else psycopg.Cursor
            try:
                got = cursor(conn).execute(sql).fetchall()
            except psycopg.errors.FeatureNotSupported:
                continue  # e.g. branches of two types; never a wrong value
            except psycopg.Error as exc:
                got = [exc.sqlstate]
            try:
                expected = conn.execute(_over_plaintext(sql)).fetchall()
            except psycopg.Error as exc:
                expected = [exc.sqlstate]
            # Rows ORDER BY leaves tied come in any order: compared sorted.
            got, expected = sorted(got, key=repr), sorted(expected, key=repr)
            assert got == expected, sql
            compared += 1
        assert compared >= 40


SCALAR_IN_A_BRANCH = [
    "select (select decrypted_secret from vault.decrypted_secrets where name = "
    "'union-one') union all select 'x'",
    "select 'x' union all select (select decrypted_secret from decrypted_t_n where "
    "id = 1)",
    f"select (select convert_from({DECRYPT}, 'utf8') from acc where id = 1) union "
    "all select 'x'",
]


@pytest.mark.parametrize("sql", SCALAR_IN_A_BRANCH)
def test_scalar_subquery_in_a_branch_is_refused_by_name(
    proxy: RunningProxy, conn: psycopg.Connection[Any], sql: str
) -> None:
    marker = f"refused-{uuid.uuid4().hex}"
    with pytest.raises(psycopg.errors.FeatureNotSupported) as caught:
        conn.execute(f"{sql} /* {marker} */")
    message = caught.value.diag.message_primary or ""
    assert "scalar subquery in a branch of UNION ALL" in message, message
    assert marker not in server_log(proxy)
    assert conn.execute("select 1").fetchone() == (1,)
