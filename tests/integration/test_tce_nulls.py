"""TCE with NULL bind values, as ORMs and drivers send `None`.

pgsodium's trigger stores NULL for a NULL value and for a value whose key column
is NULL; a bind parameter behaves as the literal NULL does, in INSERT and UPDATE,
in both protocols. Equality with NULL is NULL: a search for it finds no row.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import psycopg
import pytest

from .conftest import RunningProxy, make_database

UNKNOWN_KEY = "00000000-0000-0000-0000-000000000001"
INSERT = (
    "insert into cust (id, name, secret, nonce, blob, kid) "
    "values (%s, %s, %s, %s, %s, %s::uuid)"
)


@pytest.fixture(scope="module")
def db(proxy: RunningProxy) -> str:
    return make_database(proxy, "tce_nulls")


def new_key(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("select id::text from pgsodium.create_key()").fetchone()
    assert row is not None
    return str(row[0])


@pytest.fixture
def cust(conn: psycopg.Connection[Any]) -> str:
    """The first-time user's table: two columns under each row's key, the id as
    their associated data, one with a nonce; and one under a fixed key."""
    key = new_key(conn)
    conn.execute("drop table if exists cust cascade")
    conn.execute(
        "create table cust (id int primary key, name text, secret text, "
        "nonce bytea, blob bytea, kid uuid, other text)"
    )
    for column, label in (
        ("secret", "ENCRYPT WITH KEY COLUMN kid ASSOCIATED (id) NONCE nonce"),
        ("blob", "ENCRYPT WITH KEY COLUMN kid ASSOCIATED (id)"),
        ("other", f"ENCRYPT WITH KEY ID {key}"),
    ):
        conn.execute(
            f"security label for pgsodium on column cust.{column} is '{label}'"
        )
    return key


def stored(direct: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return direct.execute(
        "select id, secret, blob, kid, other from cust order by id"
    ).fetchall()


def test_a_null_key_or_value_bound_stores_null(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any], cust: str
) -> None:
    key = new_key(conn)
    nonce = bytes(range(16))
    conn.execute(INSERT, [1, "a", "s1", nonce, b"b1", None])  # NULL key
    conn.execute(INSERT, [2, "b", None, None, None, None])  # all NULL
    conn.execute(INSERT, [3, "c", None, nonce, b"b3", key])  # NULL value
    conn.execute(INSERT, [4, "d", "s4", None, None, key])
    assert stored(direct)[:2] == [
        (1, None, None, None, None),
        (2, None, None, None, None),
    ]
    assert conn.execute(
        "select id, decrypted_secret, decrypted_blob from decrypted_cust order by id"
    ).fetchall() == [
        (1, None, None),
        (2, None, None),
        (3, None, b"b3"),
        (4, "s4", None),
    ]
    # pgsodium's bytes for row 4: AD is the id's text, no nonce.
    expected = conn.execute(
        "select encode(pgsodium.crypto_aead_det_encrypt(convert_to('s4', 'utf8'), "
        "convert_to('4', 'utf8'), %s::uuid, null::bytea), 'base64')",
        [key],
    ).fetchone()
    assert expected is not None
    assert stored(direct)[3] == (4, expected[0], None, uuid.UUID(key), None)


def test_an_unknown_key_bound_is_still_p0002(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any], cust: str
) -> None:
    with pytest.raises(psycopg.errors.NoDataFound, match="query returned no rows"):
        conn.execute(INSERT, [1, "a", "s1", None, b"b1", UNKNOWN_KEY])
    with pytest.raises(psycopg.errors.NoDataFound):
        conn.execute(INSERT, [1, "a", None, None, b"b1", UNKNOWN_KEY])
    assert stored(direct) == []


def test_update_set_with_a_null_key_bound_stores_null(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any], cust: str
) -> None:
    key = new_key(conn)
    conn.execute(INSERT, [1, "a", "s1", None, b"b1", key])
    conn.execute(
        "update cust set secret = %s, blob = %s, kid = %s, id = %s, nonce = %s "
        "where id = 1",
        ["s2", b"b2", None, 1, None],
    )
    assert stored(direct) == [(1, None, None, None, None)]
    conn.execute(
        "update cust set secret = %s, blob = %s, kid = %s, id = %s, nonce = %s "
        "where id = 1",
        ["s3", None, key, 1, None],
    )
    assert conn.execute(
        "select decrypted_secret, decrypted_blob from decrypted_cust"
    ).fetchall() == [("s3", None)]


def test_re_keying_to_a_null_key_bound_stores_null(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any], cust: str
) -> None:
    """An UPDATE of only the key column re-encrypts; to NULL it stores NULL, as
    the literal does, without reading the old value."""
    key = new_key(conn)
    conn.execute(INSERT, [1, "a", "s1", None, b"b1", key])
    conn.execute(INSERT, [2, "b", "s2", None, b"b2", key])
    cur = conn.execute("update cust set kid = %s where id = %s", [None, 1])
    assert cur.statusmessage == "UPDATE 1"
    conn.execute("update cust set kid = null where id = 2")
    assert stored(direct) == [(1, None, None, None, None), (2, None, None, None, None)]
    # Its values NULL, the row takes a key that does not exist, as an INSERT of
    # NULL with it does; a value that needs the key gets P0002.
    conn.execute("update cust set kid = %s where id = 1", [UNKNOWN_KEY])
    assert stored(direct)[0] == (1, None, None, uuid.UUID(UNKNOWN_KEY), None)
    conn.execute(INSERT, [3, "c", "s3", None, None, key])
    with pytest.raises(psycopg.errors.NoDataFound):
        conn.execute("update cust set kid = %s where id = 3", [UNKNOWN_KEY])


async def test_asyncpg_binds_none_for_the_key_and_the_value(
    proxy: RunningProxy, db: str, conn: psycopg.Connection[Any], cust: str
) -> None:
    key = new_key(conn)

    async def run() -> list[tuple[Any, ...]]:
        a = await asyncpg.connect(
            host=proxy.host, port=proxy.port, user="postgres", database=db
        )
        try:
            sql = (
                "insert into cust (id, name, secret, nonce, blob, kid) "
                "values ($1, $2, $3, $4, $5, $6::uuid)"
            )
            await a.execute(sql, 1, "a", "s1", None, b"b1", None)
            await a.execute(sql, 2, "b", None, None, None, None)
            await a.executemany(
                sql, [(3, "c", "s3", None, None, key), (4, "d", None, None, b"b4", key)]
            )
            with pytest.raises(asyncpg.NoDataFoundError):
                await a.execute(sql, 5, "e", "s5", None, None, UNKNOWN_KEY)
            await a.execute(
                "update cust set secret = $1, kid = $2, id = $3, nonce = $4 "
                "where id = $3",
                "s3b",
                None,
                3,
                None,
            )
            await a.execute("update cust set kid = $1 where id = $2", None, 4)
            rows = await a.fetch(
                "select id, decrypted_secret, decrypted_blob, kid from "
                "decrypted_cust order by id"
            )
            return [tuple(r) for r in rows]
        finally:
            await a.close()

    assert await asyncio.wait_for(run(), 30) == [
        (1, None, None, None),
        (2, None, None, None),
        (3, None, None, None),
        (4, None, None, None),
    ]


@pytest.mark.parametrize(
    "condition",
    [
        "decrypted_other = %s",
        "%s = decrypted_other",
        "decrypted_other = null",
        "decrypted_secret = %s",
        "decrypted_secret = null",
        "decrypted_blob = null or id = 2",
        "not (decrypted_other = null)",
    ],
)
def test_searching_for_null_finds_no_row(
    proxy: RunningProxy, conn: psycopg.Connection[Any], cust: str, condition: str
) -> None:
    """`decrypted_c = NULL` is NULL, as in SQL: no row, not pgsodium's error for
    encrypting NULL; the stored column is compared with NULL upstream."""
    key = new_key(conn)
    conn.execute(INSERT, [1, "a", "s1", None, b"b1", key])
    conn.execute(INSERT, [2, "b", None, None, None, key])
    conn.execute("update cust set other = 'o' where id in (1, 2)")
    params = [None] if "%s" in condition else []
    extended = not isinstance(conn.cursor(), psycopg.ClientCursor)
    if condition.startswith("decrypted_secret = %s") and extended:
        # A column with a key column is searched for a literal NULL only: a
        # parameter may hold a value, whose ciphertext depends on the row.
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute(f"select id from decrypted_cust where {condition}", params)
        return
    expected = [(2,)] if "id = 2" in condition else []
    assert (
        conn.execute(
            f"select id from decrypted_cust where {condition} order by id", params
        ).fetchall()
        == expected
    )


@pytest.mark.parametrize("value", ["%s", "null", "%s::text"])
def test_a_table_search_for_null_finds_no_row(
    conn: psycopg.Connection[Any], cust: str, value: str
) -> None:
    key = cust
    conn.execute("insert into cust (id, other) values (1, 'o'), (2, null)")
    params = [key, None] if value.startswith("%s") else [key]
    assert (
        conn.execute(
            "select id from cust where convert_from(pgsodium.crypto_aead_det_decrypt("
            "decode(other, 'base64'), '', %s::uuid), 'utf8') = " + value,
            params,
        ).fetchall()
        == []
    )


async def test_asyncpg_search_for_none_finds_no_row(
    proxy: RunningProxy, db: str, conn: psycopg.Connection[Any], cust: str
) -> None:
    """The prepared search describes its parameter as the value's type, and a
    None bound to it matches no row."""
    conn.execute("insert into cust (id, other) values (1, 'o'), (2, null)")

    async def run() -> list[Any]:
        a = await asyncpg.connect(
            host=proxy.host, port=proxy.port, user="postgres", database=db
        )
        try:
            statement = await a.prepare(
                "select id from decrypted_cust where decrypted_other = $1"
            )
            found = [[t.name for t in statement.get_parameters()]]
            found += [await statement.fetch("o"), await statement.fetch(None)]
            statement = await a.prepare(
                "select id from cust where convert_from("
                "pgsodium.crypto_aead_det_decrypt(decode(other, 'base64'), '', "
                "$1::uuid), 'utf8') = $2"
            )
            found += [await statement.fetch(uuid.UUID(cust), None)]
            return found
        finally:
            await a.close()

    types, one, none, table = await asyncio.wait_for(run(), 30)
    assert types == ["text"]
    assert [tuple(r) for r in one] == [(1,)]
    assert none == [] and table == []
