"""Server-side key management through the proxy, as the user's own notebook runs it.

Real PostgreSQL, real proxy, real drivers (psql, psycopg in text and binary, asyncpg).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid

import asyncpg
import psycopg
import pytest

from .conftest import RunningProxy, make_database, server_log

VALID_KEY_COLUMNS = [
    "id",
    "name",
    "status",
    "key_type",
    "key_id",
    "key_context",
    "created",
    "expires",
    "associated_data",
]
EXTERNAL_KEY = bytes.fromhex(
    "1da5f2a061a803209b884afed258630c47c57bc357d7914b587087150222d6f6"
)


@pytest.fixture(scope="module")
def db(proxy: RunningProxy) -> str:
    return make_database(proxy, "keys")


@pytest.fixture
def conn(proxy: RunningProxy, db: str):
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as connection:
        yield connection


def test_create_key_returns_the_valid_key_row(conn: psycopg.Connection) -> None:
    cur = conn.execute("select * from pgsodium.create_key()")
    row = cur.fetchone()
    assert [d.name for d in cur.description] == VALID_KEY_COLUMNS
    assert row[2:4] == ("valid", "aead-det")
    assert row[5] == b"pgsodium"
    assert row[8] == ""


@pytest.mark.parametrize("binary", [False, True])
def test_external_hmac_key_flow_from_the_notebook(
    conn: psycopg.Connection, binary: bool
) -> None:
    external = conn.execute(
        "select pgsodium.crypto_auth_hmacsha256_keygen()"
    ).fetchone()[0]
    assert len(external) == 32
    row = conn.execute(
        "select * from pgsodium.create_key('hmacsha256', raw_key := %s)",
        [external],
        binary=binary,
    ).fetchone()
    key_id = row[0]
    assert row[3] in ("hmacsha256", b"hmacsha256") and row[4] is None

    listed = conn.execute(
        "select id, key_type, parent_key, length(decrypted_raw_key) "
        "from pgsodium.decrypted_key where key_type = 'hmacsha256' and id = %s",
        [key_id],
    ).fetchall()
    assert len(listed) == 1
    assert listed[0][1] == "hmacsha256" and listed[0][3] == 32
    assert isinstance(listed[0][2], uuid.UUID)

    stored = conn.execute(
        "select decrypted_raw_key from pgsodium.decrypted_key where id = %s", [key_id]
    ).fetchone()[0]
    assert stored == external
    mac = conn.execute(
        "select pgsodium.crypto_auth_hmacsha256('payload'::bytea, %s)", [key_id]
    ).fetchone()[0]
    assert (
        mac
        == conn.execute(
            "select pgsodium.crypto_auth_hmacsha256('payload'::bytea, %s::bytea)",
            [external],
        ).fetchone()[0]
    )
    assert (
        conn.execute(
            "select pgsodium.crypto_auth_hmacsha256_verify(%s, 'payload'::bytea, %s)",
            [mac, key_id],
        ).fetchone()[0]
        is True
    )


def test_create_key_named_arguments_both_spellings(conn: psycopg.Connection) -> None:
    name = f"k-{uuid.uuid4()}"
    row = conn.execute(
        "select * from pgsodium.create_key(name => %s, key_type := 'aead-ietf', "
        "key_context => 'abcdefgh'::bytea, expires := now() + interval '1 day', "
        "associated_data => 'ad')",
        [name],
    ).fetchone()
    assert row[1] == name and row[3] == "aead-ietf" and row[5] == b"abcdefgh"
    assert row[7] is not None and row[8] == "ad"


def test_external_key_with_explicit_parent_and_nonce(conn: psycopg.Connection) -> None:
    parent = conn.execute("select id from pgsodium.create_key()").fetchone()[0]
    nonce = bytes(range(16))
    row = conn.execute(
        "select * from pgsodium.create_key('hmacsha256', 'ext', raw_key := %s, "
        "raw_key_nonce := %s, parent_key := %s, associated_data := 'assoc')",
        [EXTERNAL_KEY, nonce, parent],
    ).fetchone()
    stored = conn.execute(
        "select raw_key_nonce, parent_key, associated_data from pgsodium.key "
        "where id = %s",
        [row[0]],
    ).fetchone()
    assert stored == (nonce, parent, "assoc")
    decrypted = conn.execute(
        "select decrypted_raw_key from pgsodium.decrypted_key where id = %s", [row[0]]
    ).fetchone()[0]
    assert decrypted == EXTERNAL_KEY


def test_raw_key_never_reaches_the_upstream(
    proxy: RunningProxy, conn: psycopg.Connection
) -> None:
    # Random: a fixed run of bytes could stand in other tests' logged statements
    # (bytes(range(256)) holds every such run) and fail this test by accident.
    secret = os.urandom(32)
    plaintext = "the plaintext nobody upstream may see"
    conn.execute(
        "select * from pgsodium.create_key('hmacsha256', raw_key := %s)", [secret]
    )
    conn.execute(
        f"select * from pgsodium.create_key('auth', raw_key := '\\x{secret.hex()}')"
    )
    conn.execute(
        "select pgsodium.crypto_aead_det_encrypt(convert_to(%s, 'utf8'), '', 1)",
        [plaintext],
    )
    conn.execute(
        f"select pgsodium.crypto_aead_det_encrypt(convert_to('{plaintext}', 'utf8'), "
        "''::bytea, 1)"
    )
    derived = conn.execute("select pgsodium.derive_key(7)").fetchone()[0]
    log = server_log(proxy)
    assert secret.hex() not in log
    assert plaintext not in log
    assert derived.hex() not in log


def test_key_created_in_a_transaction_is_usable_in_it_and_gone_after_rollback(
    proxy: RunningProxy, db: str
) -> None:
    with psycopg.connect(proxy.dsn(dbname=db)) as conn:
        key = conn.execute(
            "select id from pgsodium.create_key('aead-det', 'txn key')"
        ).fetchone()[0]
        ciphertext = conn.execute(
            "select pgsodium.crypto_aead_det_encrypt('x'::bytea, ''::bytea, %s)", [key]
        ).fetchone()[0]
        assert len(ciphertext) == 33
        raw = conn.execute(
            "select id from pgsodium.create_key('hmacsha256', 'txn raw', raw_key := "
            "%s)",
            [EXTERNAL_KEY],
        ).fetchone()[0]
        assert (
            conn.execute(
                "select decrypted_raw_key from pgsodium.decrypted_key where id = %s",
                [raw],
            ).fetchone()[0]
            == EXTERNAL_KEY
        )
        conn.rollback()
        left = conn.execute(
            "select count(*) from pgsodium.key where name like 'txn %%'"
        ).fetchone()[0]
        assert left == 0


def test_error_in_a_block_aborts_it_and_the_session_recovers(
    conn: psycopg.Connection,
) -> None:
    conn.autocommit = False
    with pytest.raises(psycopg.errors.DataException) as caught:
        conn.execute("select pgsodium.crypto_aead_det_decrypt('\\x00'::bytea, '', 1)")
    assert str(caught.value.diag.message_primary) == (
        "pgsodium_crypto_aead_det_decrypt_by_id: invalid message"
    )
    with pytest.raises(psycopg.errors.InFailedSqlTransaction):
        conn.execute("select 1")
    conn.rollback()
    assert conn.execute("select 41 + 1").fetchone()[0] == 42


def test_unknown_uuid_is_p0002_and_wrong_type_too(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.NoDataFound):
        conn.execute(
            "select pgsodium.crypto_aead_det_encrypt('x'::bytea, ''::bytea, %s)",
            [uuid.uuid4()],
        )
    hmac_key = conn.execute(
        "select id from pgsodium.create_key('hmacsha256')"
    ).fetchone()[0]
    with pytest.raises(psycopg.errors.NoDataFound):
        conn.execute(
            "select pgsodium.crypto_aead_det_encrypt('x'::bytea, ''::bytea, %s)",
            [hmac_key],
        )


def test_role_without_keyiduser_gets_42501_and_nothing_is_computed(
    proxy: RunningProxy, db: str, conn: psycopg.Connection
) -> None:
    conn.execute("drop role if exists plain_user")
    conn.execute("create role plain_user login")
    key = conn.execute("select id from pgsodium.create_key()").fetchone()[0]
    with psycopg.connect(
        proxy.dsn(user="plain_user", dbname=db), autocommit=True
    ) as other:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
            other.execute(
                "select pgsodium.crypto_aead_det_encrypt('x'::bytea, ''::bytea, %s)",
                [key],
            )
        assert caught.value.diag.message_primary == (
            "permission denied for function crypto_aead_det_encrypt"
        )
        assert "pgsodium_keyiduser" in (caught.value.diag.message_hint or "")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            other.execute("select pgsodium.derive_key(1)")
    conn.execute("grant pgsodium_keyiduser to plain_user")
    with psycopg.connect(
        proxy.dsn(user="plain_user", dbname=db), autocommit=True
    ) as other:
        assert (
            len(
                other.execute(
                    "select pgsodium.crypto_aead_det_encrypt('x'::bytea, ''::bytea, "
                    "%s)",
                    [key],
                ).fetchone()[0]
            )
            == 33
        )
    conn.execute("set role plain_user")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("select pgsodium.derive_key(1)")
    conn.execute("reset role")


def test_psql_runs_the_notebook_statements(proxy: RunningProxy, db: str) -> None:
    script = (
        "select * from pgsodium.create_key('hmacsha256', raw_key := "
        f"'\\x{EXTERNAL_KEY.hex()}'::bytea);\n"
        "select key_type, length(decrypted_raw_key) from pgsodium.decrypted_key "
        "where key_type = 'hmacsha256' and parent_key is not null limit 1;\n"
    )
    done = subprocess.run(
        ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", proxy.url(dbname=db)],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "hmacsha256|32"


async def test_asyncpg_prepared_statements_and_binary_values(
    proxy: RunningProxy, db: str
) -> None:
    async def scenario() -> None:
        conn = await asyncpg.connect(proxy.url(dbname=db))
        try:
            key = await conn.fetchval("select id from pgsodium.create_key()")
            statement = await conn.prepare(
                "select pgsodium.crypto_aead_det_encrypt($1::bytea, $2::bytea, "
                "$3::uuid)"
            )
            first = await statement.fetchval(b"alice", b"", key)
            second = await statement.fetchval(b"alice", b"", key)
            assert first == second and len(first) == 37
            plain = await conn.fetchval(
                "select pgsodium.crypto_aead_det_decrypt($1::bytea, ''::bytea, "
                "$2::uuid)",
                first,
                key,
            )
            assert plain == b"alice"
            rows = await conn.fetch(
                "select id, decrypted_raw_key from pgsodium.decrypted_key"
            )
            assert all(r["decrypted_raw_key"] is None for r in rows if r["id"] == key)
        finally:
            await conn.close()

    await asyncio.wait_for(scenario(), 30)


def test_unqualified_names_follow_the_search_path(conn: psycopg.Connection) -> None:
    conn.execute("set search_path = public")
    with pytest.raises(psycopg.errors.UndefinedFunction):
        conn.execute("select derive_key(1)")
    conn.execute("set search_path = public, pgsodium")
    assert len(conn.execute("select derive_key(1)").fetchone()[0]) == 32
    assert (
        len(
            conn.execute(
                "select crypto_aead_det_encrypt('x'::bytea, ''::bytea, 1)"
            ).fetchone()[0]
        )
        == 33
    )
    conn.execute("reset search_path")
    with pytest.raises(psycopg.errors.UndefinedFunction):
        conn.execute("select derive_key(1)")


def test_create_key_with_a_null_raw_key_bind_value_makes_a_derived_key(
    conn: psycopg.Connection,
) -> None:
    row = conn.execute(
        "select * from pgsodium.create_key('aead-det', raw_key := %s, "
        "key_context := 'zzzzzzzz'::bytea)",
        [None],
    ).fetchone()
    assert row[4] is not None and row[5] == b"zzzzzzzz"
    assert conn.execute(
        "select raw_key, parent_key from pgsodium.key where id = %s", [row[0]]
    ).fetchone() == (None, None)
