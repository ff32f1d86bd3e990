"""Supabase Vault 0.3 through the proxy: Vault's API and stored format.

The stored value is decrypted here, in the test, with Vault's format (aead-det under
derived key id 0 in context 'pgsodium' from the root key, AD = the id's text, the
row's nonce), and the secret never reaches the database.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import psycopg
import pytest

from keystore.derive import kdf_derive
from keystore.primitives.aead import det_decrypt

from .conftest import ROOT_KEY, RunningProxy, make_database, server_log


@pytest.fixture(scope="module")
def db(proxy: RunningProxy) -> str:
    return make_database(proxy, "vault")


def vault_decrypt(conn: psycopg.Connection[Any], secret_id: Any) -> str:
    """Vault 0.3's decryption of a stored row, computed here from the root key."""
    row = conn.execute(
        "select secret, nonce from vault.secrets where id = %s", [secret_id]
    ).fetchone()
    assert row is not None
    key = kdf_derive(ROOT_KEY.secret, 0, 32, b"pgsodium")
    plain = det_decrypt(
        base64.b64decode(row[0]), str(secret_id).encode(), key, bytes(row[1])
    )
    assert plain is not None
    return plain.decode()


def test_create_read_update(proxy: RunningProxy, conn: psycopg.Connection[Any]) -> None:
    tag = uuid.uuid4().hex  # unique per run: Vault's names are unique
    marker = f"vault-plain-{tag}"
    row = conn.execute(
        "select vault.create_secret(%s, %s, 'a description')",
        [marker, f"name-{tag}"],
    ).fetchone()
    assert row is not None
    secret_id = row[0]
    assert vault_decrypt(conn, secret_id) == marker
    stored = conn.execute(
        "select secret, length(nonce), description from vault.secrets where id = %s",
        [secret_id],
    ).fetchone()
    assert stored is not None and stored[1:] == (16, "a description")
    assert marker not in stored[0]
    assert conn.execute(
        "select name, decrypted_secret from vault.decrypted_secrets where id = %s",
        [secret_id],
    ).fetchone() == (f"name-{tag}", marker)

    conn.execute(
        "select vault.update_secret(%s, %s, new_description => 'changed')",
        [secret_id, marker + "-2"],
    )
    assert conn.execute(
        "select decrypted_secret, description from vault.decrypted_secrets d "
        "where d.id = %s",
        [secret_id],
    ).fetchone() == (marker + "-2", "changed")
    assert vault_decrypt(conn, secret_id) == marker + "-2"
    renamed = f"renamed-{tag}"
    conn.execute("select vault.update_secret(%s, new_name => %s)", [secret_id, renamed])
    assert conn.execute(
        "select name, decrypted_secret from vault.decrypted_secrets where id = %s",
        [secret_id],
    ).fetchone() == (renamed, marker + "-2")
    log = (proxy.upstream.datadir / "server.log").read_text(errors="replace")
    assert marker not in log


@pytest.mark.parametrize(
    ("literal", "stored"),
    [("B'0101'::text", "0101"), ("X'1F'::text", "00011111"), ("B'10'::varchar", "10")],
)
def test_a_bit_string_literal_cast_to_text_is_stored_as_its_digits(
    conn: psycopg.Connection[Any], literal: str, stored: str
) -> None:
    """bit's text is its binary digits (it was an internal error, XX000)."""
    row = conn.execute(f"select vault.create_secret({literal})").fetchone()
    assert row is not None
    assert vault_decrypt(conn, row[0]) == stored
    assert conn.execute(
        "select decrypted_secret from vault.decrypted_secrets where id = %s", [row[0]]
    ).fetchone() == (stored,)


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param(
            "select vault.create_secret(B'0101')",
            marks=pytest.mark.xfail(
                reason="the proxy writes Vault's arguments as explicit casts, so a "
                "value of a type with no implicit cast to text (bit, integer) is "
                "stored as its text where the server finds no function (42883)",
                strict=True,
            ),
        ),
        "select vault.create_secret(B'0121'::text)",
        "select vault.create_secret(X'1G'::text)",
    ],
)
def test_a_bit_string_literal_the_server_rejects_is_rejected_alike(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any], sql: str
) -> None:
    def error(connection: psycopg.Connection[Any]) -> tuple[Any, ...]:
        with pytest.raises(psycopg.Error) as caught:
            connection.execute(sql)
        return caught.value.sqlstate, caught.value.diag.message_primary

    before = conn.execute("select count(*) from vault.secrets").fetchone()
    assert error(conn) == error(direct)
    assert conn.execute("select count(*) from vault.secrets").fetchone() == before


def test_calls_the_proxy_cannot_see_are_refused(conn: psycopg.Connection[Any]) -> None:
    before = conn.execute("select count(*) from vault.secrets").fetchone()
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="new_secret"):
        conn.execute("select vault.create_secret(upper('x'))")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="decrypted_secrets"):
        conn.execute("update vault.decrypted_secrets set name = 'x'")
    assert conn.execute("select count(*) from vault.secrets").fetchone() == before


@pytest.mark.parametrize(
    "sql",
    [
        "insert into vault.secrets (secret, name) values (%s, 'sneaky')",
        "insert into vault.secrets values (default, 'sneaky', null, %s)",
        "update vault.secrets set secret = %s where name = 'sneaky'",
    ],
)
def test_writes_of_vault_secrets_secret_are_refused(
    proxy: RunningProxy, conn: psycopg.Connection[Any], sql: str
) -> None:
    """Through the proxy, vault.secrets.secret is written by create_secret and
    update_secret only: a value written directly would be stored as it is (the
    guard cannot tell a long base64-looking plaintext from a ciphertext)."""
    plain = "ThisIsMyVeryLongSecretPasswordWithNoSpacesAtAll1"
    before = conn.execute("select count(*) from vault.secrets").fetchone()
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="create_secret"):
        conn.execute(sql, [plain])
    assert conn.execute("select count(*) from vault.secrets").fetchone() == before
    assert plain not in server_log(proxy)
    conn.execute("update vault.secrets set description = 'kept' where false")


@pytest.mark.parametrize(
    ("sql", "given"),
    [
        ("update vault.secrets set id = %s where id = %s", ("new", "id")),
        (
            "update vault.secrets set nonce = decode(%s, 'hex') where id = %s",
            ("nonce", "id"),
        ),
        (
            "update vault.secrets set (name, id) = (%s, %s) where id = %s",
            ("name", "new", "id"),
        ),
        (
            "update vault.secrets set name = %s where id = %s returning id",
            ("name", "id"),
        ),  # allowed
        ("insert into vault.secrets (id, name) values (%s, %s)", ("new", "name")),
        (
            "insert into vault.secrets (name, nonce) values (%s, decode(%s, 'hex'))",
            ("name", "nonce"),
        ),
        (
            "insert into vault.secrets (name) values (%s) "
            "on conflict (id) do update set nonce = decode(%s, 'hex')",
            ("name", "nonce"),
        ),
    ],
)
def test_writes_of_vault_secrets_id_or_nonce_are_refused(
    conn: psycopg.Connection[Any], sql: str, given: tuple[str, ...]
) -> None:
    """A secret decrypts only with its own id (the associated data) and nonce:
    vault.create_secret draws both, vault.update_secret a new nonce with a new
    secret. Written any other way through the proxy they are refused, and the
    secret still decrypts; other columns are written as usual."""
    secret_id = conn.execute("select vault.create_secret('kept')").fetchone()[0]
    before = conn.execute("select * from vault.secrets order by id").fetchall()
    named = {
        "id": secret_id,
        "new": uuid.uuid4(),
        "nonce": "00" * 16,
        "name": f"name-{uuid.uuid4()}",
    }
    values = [named.get(g, g) for g in given]
    if "name = %s" in sql:
        assert conn.execute(sql, values).fetchall() == [(secret_id,)]
    else:
        with pytest.raises(psycopg.errors.FeatureNotSupported) as caught:
            conn.execute(sql, values)
        assert "vault.secrets" in str(caught.value)
        assert conn.execute("select * from vault.secrets order by id").fetchall() == (
            before
        )
    assert vault_decrypt(conn, secret_id) == "kept"
    assert conn.execute(
        "select decrypted_secret from vault.decrypted_secrets where id = %s",
        [secret_id],
    ).fetchone() == ("kept",)


def test_copy_into_vault_secrets_passes_as_a_dump_restores_it(
    proxy: RunningProxy, conn: psycopg.Connection[Any]
) -> None:
    """A dump's COPY carries each row's id, nonce and ciphertext together: through
    the proxy it restores rows that still decrypt."""
    secret_id = conn.execute("select vault.create_secret('dumped')").fetchone()[0]
    row = conn.execute(
        "select id, name, description, secret, key_id, nonce from vault.secrets "
        "where id = %s",
        [secret_id],
    ).fetchone()
    conn.execute("delete from vault.secrets where id = %s", [secret_id])
    with conn.cursor().copy(
        "copy vault.secrets (id, name, description, secret, key_id, nonce) from stdin"
    ) as copy:
        copy.write_row(row)
    assert vault_decrypt(conn, secret_id) == "dumped"


def test_plaintext_past_the_proxy_is_rejected(
    proxy: RunningProxy, db: str, conn: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(proxy.direct_dsn(dbname=db), autocommit=True) as direct:
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            direct.execute("select vault.create_secret('direct')")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="through the"):
            direct.execute("insert into vault.secrets (secret) values ('direct')")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            direct.execute("select decrypted_secret from vault.decrypted_secrets")


def test_empty_secret_is_refused(conn: psycopg.Connection[Any]) -> None:
    before = conn.execute("select count(*) from vault.secrets").fetchone()
    with pytest.raises(psycopg.errors.RaiseException, match="empty string"):
        conn.execute("select vault.create_secret(%s)", [""])
    assert conn.execute("select count(*) from vault.secrets").fetchone() == before


@pytest.mark.parametrize("secret", ["null", "%s", "null::text", "%s::text"])
def test_a_null_secret_is_refused_by_vault_secrets_not_null(
    conn: psycopg.Connection[Any], secret: str
) -> None:
    """Vault 0.3's create_secret inserts the secret as given: NULL fails on
    vault.secrets.secret NOT NULL (23502), and nothing is stored."""
    before = conn.execute("select count(*) from vault.secrets").fetchone()
    params = [None] if "%s" in secret else []
    with pytest.raises(psycopg.errors.NotNullViolation) as caught:
        conn.execute(f"select vault.create_secret({secret}, 'null-secret')", params)
    assert caught.value.diag.message_primary == (
        'null value in column "secret" of relation "secrets" violates not-null '
        "constraint"
    )
    assert conn.execute("select count(*) from vault.secrets").fetchone() == before
    assert conn.execute("select 1").fetchone() == (1,)


@pytest.mark.parametrize("secret", ["null", "%s", "null::text", "%s::text"])
def test_update_secret_with_a_null_secret_keeps_the_old_one(
    conn: psycopg.Connection[Any], secret: str
) -> None:
    """Vault 0.3's update_secret keeps the secret (and its nonce) when
    new_secret is NULL, and still applies the other changes."""
    row = conn.execute("select vault.create_secret('kept secret')").fetchone()
    assert row is not None
    secret_id = row[0]
    before = conn.execute(
        "select secret, nonce from vault.secrets where id = %s", [secret_id]
    ).fetchone()
    params = [secret_id, None] if "%s" in secret else [secret_id]
    conn.execute(
        f"select vault.update_secret(%s, {secret}, new_description => 'changed')",
        params,
    )
    assert (
        conn.execute(
            "select secret, nonce from vault.secrets where id = %s", [secret_id]
        ).fetchone()
        == before
    )
    assert conn.execute(
        "select decrypted_secret, description from vault.decrypted_secrets "
        "where id = %s",
        [secret_id],
    ).fetchone() == ("kept secret", "changed")


def test_a_prepared_vault_call_draws_a_new_id_and_nonce_each_time(
    conn: psycopg.Connection[Any],
) -> None:
    """Drivers prepare statements on their own (psycopg after 5 executions,
    asyncpg always): each execution of a prepared create_secret makes a new
    secret, as Vault's own call does, and update_secret a new nonce."""
    if isinstance(conn.cursor(), psycopg.ClientCursor):
        return
    sql = "select vault.create_secret(%s)"
    ids = [
        conn.execute(sql, [f"prepared {i}"], prepare=True).fetchone()[0]
        for i in range(3)
    ]
    assert len(set(ids)) == 3
    rows = conn.execute(
        "select id, decrypted_secret from vault.decrypted_secrets where id = any(%s)",
        [ids],
    ).fetchall()
    assert sorted(r[1] for r in rows) == ["prepared 0", "prepared 1", "prepared 2"]
    update = "select vault.update_secret(%s, %s)"
    nonces = set()
    for text in ("new a", "new b"):
        conn.execute(update, [ids[0], text], prepare=True)
        nonces.add(
            conn.execute("select nonce from vault.secrets where id = %s", [ids[0]])
            .fetchone()[0]
            .hex()
        )
    assert len(nonces) == 2
    assert conn.execute(
        "select decrypted_secret from vault.decrypted_secrets where id = %s", [ids[0]]
    ).fetchone() == ("new b",)


async def test_asyncpg_statement_cache_and_vault(proxy: RunningProxy, db: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(proxy.url(dbname=db))
    try:
        ids = [
            await conn.fetchval("select vault.create_secret($1, $2)", f"a{i}", None)
            for i in range(3)
        ]
        assert len(set(ids)) == 3
        got = await conn.fetch(
            "select decrypted_secret from vault.decrypted_secrets "
            "where id = any($1::uuid[])",
            ids,
        )
        assert sorted(r[0] for r in got) == ["a0", "a1", "a2"]
    finally:
        await conn.close()


# Functions with Vault's signatures, declared on the database without the proxy in
# between: what PostgreSQL names the columns of Vault's own calls.
_PLAIN_VAULT = """
CREATE SCHEMA IF NOT EXISTS plain_vault;
CREATE OR REPLACE FUNCTION plain_vault.create_secret(
  new_secret text, new_name text = NULL, new_description text = '',
  new_key_id uuid = NULL) RETURNS uuid LANGUAGE sql AS 'SELECT gen_random_uuid()';
CREATE OR REPLACE FUNCTION plain_vault.update_secret(
  secret_id uuid, new_secret text = NULL, new_name text = NULL,
  new_description text = NULL, new_key_id uuid = NULL)
  RETURNS void LANGUAGE plpgsql AS 'BEGIN END';
"""


@pytest.mark.parametrize(
    ("sql", "names"),
    [
        ("select {vault}.create_secret(%(secret)s, null, 'd')", ["create_secret"]),
        ("select {vault}.create_secret(%(secret)s) as x", ["x"]),
        (
            "select 1 as a, {vault}.create_secret(%(secret)s)::text",
            ["a", "create_secret"],
        ),
        ("select * from {vault}.create_secret(%(secret)s)", ["create_secret"]),
        ("select * from {vault}.create_secret(%(secret)s) s", ["s"]),
        (
            "select * from {vault}.create_secret(%(secret)s) with ordinality",
            ["create_secret", "ordinality"],
        ),
        ("select {vault}.update_secret(%(id)s, %(secret)s)", ["update_secret"]),
        ("select {vault}.update_secret(%(id)s) as x", ["x"]),
        ("select * from {vault}.update_secret(%(id)s, %(secret)s)", ["update_secret"]),
        ("select * from {vault}.update_secret(%(id)s) s", ["s"]),
    ],
)
def test_column_names_are_those_of_vaults_own_functions(
    proxy: RunningProxy,
    db: str,
    conn: psycopg.Connection[Any],
    sql: str,
    names: list[str],
) -> None:
    row = conn.execute("select vault.create_secret('to update')").fetchone()
    assert row is not None
    params = {"secret": f"named-{id(sql)}", "id": row[0]}
    with psycopg.connect(proxy.direct_dsn(dbname=db), autocommit=True) as direct:
        direct.execute(_PLAIN_VAULT)
        plain = direct.execute(sql.format(vault="plain_vault"), params)
        assert plain.description is not None
        expected = [(c.name, c.type_code) for c in plain.description]
    cur = conn.execute(sql.format(vault="vault"), params)
    assert cur.description is not None
    assert [(c.name, c.type_code) for c in cur.description] == expected
    assert [name for name, _ in expected] == names


def test_a_cursor_over_decrypted_secrets(proxy: RunningProxy, db: str) -> None:
    with psycopg.connect(proxy.dsn(dbname=db)) as conn:
        conn.execute("select vault.create_secret('for a cursor', 'cursor-secret')")
        with conn.cursor(name="vault_cursor") as cur:
            cur.execute(
                "select decrypted_secret from vault.decrypted_secrets "
                "where name = 'cursor-secret'"
            )
            assert cur.fetchall() == [("for a cursor",)]
        conn.rollback()


def test_vault_reached_through_search_path_is_refused_never_sent(
    proxy: RunningProxy, db: str
) -> None:
    """Unqualified, Vault's names would pass on as written, secret included:
    refused while vault is on the search_path; another schema's own
    create_secret is left alone."""
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        conn.execute("drop schema if exists app_own cascade")
        conn.execute("create schema app_own")
        conn.execute(
            "create function app_own.create_secret(t text) returns text "
            "language sql as $$ select upper(t) $$"
        )
        conn.execute("set search_path = app_own, public")
        assert conn.execute("select create_secret('fine')").fetchone() == ("FINE",)
        conn.execute("set search_path = vault, public")
        for sql in [
            "select create_secret('UnqualifiedVaultPlain')",
            "select decrypted_secret from decrypted_secrets",
        ]:
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="search_path"):
                conn.execute(sql)
    assert "UnqualifiedVaultPlain" not in server_log(proxy)


@pytest.mark.parametrize(
    ("sql", "count"),
    [
        ("select vault.create_secret(%s) from generate_series(1, 3)", 3),
        ("select vault.create_secret(%s) from (values (1), (2)) v(x)", 2),
        # PostgreSQL's ProjectSet runs the other items once more as the set ends.
        ("select vault.create_secret(%s), generate_series(1, 2)", 3),
        ("select vault.create_secret(%s), app_rows.rows()", 3),
        (
            "select case when g > 1 then vault.create_secret(%s) end "
            "from generate_series(1, 3) g",
            2,
        ),
        ("select count(vault.create_secret(%s)) from generate_series(1, 4)", 1),
        (
            "with made as (select vault.create_secret(%s) as id "
            "from generate_series(1, 2)) select id from made",
            2,
        ),
        (
            "select (select vault.create_secret(%s) where g > 0) "
            "from generate_series(1, 2) g",
            2,
        ),
    ],
)
def test_create_secret_over_several_rows_makes_a_secret_for_each(
    proxy: RunningProxy, conn: psycopg.Connection[Any], sql: str, count: int
) -> None:
    """Vault runs create_secret once per row: each row gets a secret of its own,
    with its own id and nonce, that reads back decrypted (it failed with 23505:
    one id for the whole statement)."""
    marker = f"PerRowVaultPlain{uuid.uuid4().hex[:8]}"
    before = {r[0] for r in conn.execute("select id from vault.secrets").fetchall()}
    conn.execute(sql, [marker]).fetchall()
    rows = [
        r
        for r in conn.execute("select id, nonce, secret from vault.secrets")
        if r[0] not in before
    ]
    added = 4 if "count(" in sql else count
    assert len(rows) == added
    assert len({r[1] for r in rows}) == len({r[2] for r in rows}) == added
    for secret_id, _, _ in rows:
        assert vault_decrypt(conn, secret_id) == marker
    read = conn.execute(
        "select id, decrypted_secret from vault.decrypted_secrets"
    ).fetchall()
    assert sorted(i for i, plain in read if plain == marker) == sorted(
        r[0] for r in rows
    )
    assert marker not in server_log(proxy)


def test_insert_select_of_create_secret_stores_every_row(
    proxy: RunningProxy, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("create table if not exists vault_refs (n int, secret_id uuid)")
    conn.execute("truncate vault_refs")
    conn.execute(
        "insert into vault_refs select g, vault.create_secret(%s, null, 'per row') "
        "from generate_series(1, 5) g",
        ["InsertSelectVaultPlain"],
    )
    assert conn.execute(
        "select r.n, d.decrypted_secret from vault_refs r "
        "join vault.decrypted_secrets d on d.id = r.secret_id order by r.n"
    ).fetchall() == [(n, "InsertSelectVaultPlain") for n in range(1, 6)]
    conn.execute(
        "update vault_refs set secret_id = vault.create_secret('UpdateVaultPlain')"
    )
    ids = [r[0] for r in conn.execute("select secret_id from vault_refs").fetchall()]
    assert len(set(ids)) == 5
    assert [vault_decrypt(conn, i) for i in ids] == ["UpdateVaultPlain"] * 5
    log = server_log(proxy)
    assert "InsertSelectVaultPlain" not in log and "UpdateVaultPlain" not in log


def test_create_secret_past_the_rows_drawn_is_refused_and_stores_nothing(
    proxy: RunningProxy, conn: psycopg.Connection[Any]
) -> None:
    """The ids are drawn before the statement runs; a run past the last one is
    refused with 0A000 and the statement stores nothing (never an id or a nonce
    twice)."""
    before = conn.execute("select count(*) from vault.secrets").fetchone()
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="more than 64 rows"):
        conn.execute(
            "select vault.create_secret(%s) from generate_series(1, 65)",
            ["TooManyVaultPlain"],
        )
    # A set-returning function found through search_path looks like any other:
    # the call carries one id, and its second run is refused.
    conn.execute("set search_path = app_rows, public")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="more than 1 rows"):
        conn.execute("select vault.create_secret(%s), rows()", ["TooManyVaultPlain"])
    conn.execute("reset search_path")
    assert conn.execute("select count(*) from vault.secrets").fetchone() == before
    assert "TooManyVaultPlain" not in server_log(proxy)


@pytest.fixture(scope="module", autouse=True)
def _app_rows(proxy: RunningProxy, db: str) -> None:
    """A set-returning function of the user's own, which the proxy cannot tell
    from a scalar one."""
    with psycopg.connect(proxy.direct_dsn(dbname=db), autocommit=True) as direct:
        direct.execute("create schema if not exists app_rows")
        direct.execute(
            "create or replace function app_rows.rows() returns setof int "
            "language sql as 'select generate_series(1, 2)'"
        )


def test_a_role_without_execute_on_vaults_function_gets_vaults_42501(
    proxy: RunningProxy, conn: psycopg.Connection[Any], db: str
) -> None:
    """Vault's functions run as their definer: a caller needs EXECUTE on them and
    nothing of pgsodium, and a 42501 names Vault's function, never the proxy's
    or pgsodium's."""
    roles = {"vault_keyid": " in role pgsodium_keyiduser", "vault_nobody": ""}
    try:
        for role, membership in roles.items():
            conn.execute(f"drop role if exists {role}")
            conn.execute(f"create role {role} login{membership}")
            conn.execute(f"grant usage on schema vault to {role}")
            with psycopg.connect(
                proxy.dsn(user=role, dbname=db),
                autocommit=True,
                cursor_factory=type(conn.cursor()),
            ) as c:
                for sql, params, name in [
                    ("select vault.create_secret('zz')", None, "create_secret"),
                    ("select vault.create_secret(%s)", ["zz"], "create_secret"),
                    (
                        "select vault.update_secret(%s::uuid, 'zz')",
                        [str(uuid.uuid4())],
                        "update_secret",
                    ),
                ]:
                    with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
                        c.execute(sql, params)
                    assert e.value.diag.message_primary == (
                        f"permission denied for function {name}"
                    ), (role, sql)
    finally:
        for role in roles:
            conn.execute(f"revoke all on schema vault from {role}")
            conn.execute(f"drop role if exists {role}")


def test_a_role_granted_vaults_functions_creates_and_updates_secrets(
    proxy: RunningProxy, conn: psycopg.Connection[Any], db: str, direct: Any
) -> None:
    """EXECUTE on vault.create_secret and update_secret is all a role needs, as
    with Vault: the proxy's entry points upstream check that grant for the role
    that called them (and that the session may act as it), so a direct call of
    one can do no more than SET ROLE to a granted role would."""
    role = "vault_granted"
    try:
        conn.execute(f"drop role if exists {role}")
        conn.execute(f"create role {role} login")
        conn.execute(f"grant usage on schema vault to {role}")
        conn.execute(
            f"grant execute on function vault.create_secret(text, text, text, uuid), "
            f"vault.update_secret(uuid, text, text, text, uuid) to {role}"
        )
        with psycopg.connect(
            proxy.dsn(user=role, dbname=db),
            autocommit=True,
            cursor_factory=type(conn.cursor()),
        ) as c:
            (secret_id,) = c.execute(
                "select vault.create_secret(%s, 'granted')", ["GrantedOne"]
            ).fetchone()
            c.execute("select vault.update_secret(%s, %s)", [secret_id, "GrantedTwo"])
        assert conn.execute(
            "select decrypted_secret from vault.decrypted_secrets where id = %s",
            [secret_id],
        ).fetchone() == ("GrantedTwo",)
        # Straight to the database, past the proxy: claiming another role, or
        # calling as a role without the grant, is refused.
        with psycopg.connect(
            proxy.direct_dsn(user=role, dbname=db), autocommit=True
        ) as d:
            for caller in ("'postgres'", "CURRENT_USER"):
                if caller == "CURRENT_USER":
                    conn.execute(
                        "revoke execute on function "
                        f"vault.create_secret(text, text, text, uuid) from {role}"
                    )
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    d.execute(
                        f"select vault._proxy_create_secret({caller}, "
                        "array[gen_random_uuid()], array['x'], "
                        "array['\\x00'::bytea], 'forged', '', NULL)"
                    )
        assert direct.execute(
            "select count(*) from vault.secrets where name = 'forged'"
        ).fetchone() == (0,)
    finally:
        conn.execute("delete from vault.secrets where name = 'granted'")
        conn.execute(f"revoke all on schema vault from {role}")
        conn.execute(
            "revoke all on function vault.create_secret(text, text, text, uuid), "
            f"vault.update_secret(uuid, text, text, text, uuid) from {role}"
        )
        conn.execute(f"drop role if exists {role}")
