"""TCE: an UPDATE that changes an encrypted column's key, associated data or nonce
without setting the column re-encrypts each affected row's value.

Each value ends up as its old plaintext encrypted under the row's new key,
associated data and nonce, byte for byte what an INSERT of it would store; a
failure anywhere changes nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import psycopg
import pytest

from rewriter import tce_reencrypt

from .conftest import RunningProxy, make_database


@pytest.fixture(scope="module")
def db(proxy: RunningProxy) -> str:
    return make_database(proxy, "reencrypt")


def new_key(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("select id::text from pgsodium.create_key()").fetchone()
    assert row is not None
    return str(row[0])


def labelled(
    conn: psycopg.Connection[Any], name: str, columns: str, labels: dict[str, str]
) -> None:
    conn.execute(f"drop table if exists {name} cascade")
    conn.execute(f"create table {name} ({columns})")
    for column, label in labels.items():
        conn.execute(
            f"security label for pgsodium on column {name}.{column} is '{label}'"
        )


def stored(direct: psycopg.Connection[Any], table: str) -> dict[Any, tuple[Any, ...]]:
    """Each row's stored values by id, read past the proxy."""
    rows = direct.execute(f"select * from {table} order by id").fetchall()
    return {row[0]: tuple(row) for row in rows}


def test_a_changed_associated_column_re_encrypts_text_and_bytea(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any]
) -> None:
    key = new_key(conn)
    labels = {
        "secret": f"ENCRYPT WITH KEY ID {key} ASSOCIATED (id)",
        "blob": f"ENCRYPT WITH KEY ID {key} ASSOCIATED (id, note)",
    }
    columns = "id int primary key, secret text, blob bytea, note text"
    labelled(conn, "r_ad", columns, labels)
    labelled(conn, "r_ad_twin", columns, labels)
    conn.execute(
        "insert into r_ad values (1, 'one', 'b1', 'n1'), (2, 'two', 'b2', 'n2'), "
        "(3, null, null, 'n3')"
    )
    before = stored(direct, "r_ad")

    cur = conn.execute("update r_ad set id = %s where id = %s", [10, 1])
    assert cur.statusmessage == "UPDATE 1"
    after = stored(direct, "r_ad")
    assert after[2] == before[2] and after[3] == before[3]  # not matched: untouched
    assert after[10][1:] != before[1][1:]
    # Only blob's associated data holds note: secret keeps its bytes.
    conn.execute("update r_ad set note = 'changed' where id = 2")
    changed = stored(direct, "r_ad")[2]
    assert changed[1] == before[2][1] and changed[2] != before[2][2]
    conn.execute("update r_ad set id = 30 where id = 3")  # NULL stays NULL

    assert conn.execute(
        "select id, decrypted_secret, decrypted_blob, note from decrypted_r_ad "
        "order by id"
    ).fetchall() == [
        (2, "two", b"b2", "changed"),
        (10, "one", b"b1", "n1"),
        (30, None, None, "n3"),
    ]
    conn.execute(
        "insert into r_ad_twin values (10, 'one', 'b1', 'n1'), "
        "(2, 'two', 'b2', 'changed'), (30, null, null, 'n3')"
    )
    assert stored(direct, "r_ad") == stored(direct, "r_ad_twin")


def test_a_changed_key_column_re_encrypts_under_the_new_key(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any]
) -> None:
    old, new = new_key(conn), new_key(conn)
    labels = {
        "secret": "ENCRYPT WITH KEY COLUMN k ASSOCIATED (id)",
        "raw": "ENCRYPT WITH KEY COLUMN k NONCE n",
    }
    columns = "id int primary key, secret text, raw bytea, k uuid, n bytea"
    labelled(conn, "r_key", columns, labels)
    labelled(conn, "r_key_twin", columns, labels)
    nonce = bytes(range(16))
    conn.execute(
        "insert into r_key values (1, %s, %s, %s, %s), (2, %s, %s, %s, null)",
        ["first", b"\x00raw1", old, nonce, "second", b"raw2", old],
    )
    before = stored(direct, "r_key")

    cur = conn.execute("update r_key set k = %s where k = %s and id < 2", [new, old])
    assert cur.statusmessage == "UPDATE 1"
    assert stored(direct, "r_key")[2] == before[2]
    assert conn.execute(
        "select id, decrypted_secret, decrypted_raw, k::text from decrypted_r_key "
        "order by id"
    ).fetchall() == [(1, "first", b"\x00raw1", new), (2, "second", b"raw2", old)]
    conn.execute(
        "insert into r_key_twin values (1, %s, %s, %s, %s), (2, %s, %s, %s, null)",
        ["first", b"\x00raw1", new, nonce, "second", b"raw2", old],
    )
    assert stored(direct, "r_key") == stored(direct, "r_key_twin")


def test_a_changed_nonce_re_encrypts_only_the_columns_it_belongs_to(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any]
) -> None:
    key = new_key(conn)
    labels = {
        "secret": f"ENCRYPT WITH KEY ID {key} NONCE n",
        "raw": f"ENCRYPT WITH KEY ID {key} NONCE n",
        "other": f"ENCRYPT WITH KEY ID {key}",
    }
    columns = "id int primary key, secret text, raw bytea, other text, n bytea"
    labelled(conn, "r_nonce", columns, labels)
    labelled(conn, "r_nonce_twin", columns, labels)
    conn.execute(
        "insert into r_nonce values (1, 'text', 'bytes', 'plain', %s)", [bytes(16)]
    )
    before = stored(direct, "r_nonce")[1]

    conn.execute("update r_nonce set n = %s where id = 1", [b"\x01" * 16])
    after = stored(direct, "r_nonce")[1]
    assert after[3] == before[3]  # other has no nonce: untouched
    assert after[1] != before[1] and after[2] != before[2]
    conn.execute(
        "insert into r_nonce_twin values (1, 'text', 'bytes', 'plain', %s)",
        [b"\x01" * 16],
    )
    assert stored(direct, "r_nonce_twin")[1] == after
    # No nonce at all (NULL) is a new nonce too.
    conn.execute("update r_nonce set n = null where id = 1")
    assert conn.execute(
        "select decrypted_secret, decrypted_raw, n from decrypted_r_nonce"
    ).fetchone() == ("text", b"bytes", None)


def test_long_values_keep_postgresql_base64_line_breaks(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any]
) -> None:
    key = new_key(conn)
    label = {"secret": f"ENCRYPT WITH KEY ID {key} ASSOCIATED (id)"}
    labelled(conn, "r_long", "id int primary key, secret text", label)
    labelled(conn, "r_long_twin", "id int primary key, secret text", label)
    values = ["x" * 25, "é" * 100, "y" * 500]  # 57 ciphertext bytes: one full line
    for number, value in enumerate(values):
        conn.execute("insert into r_long values (%s, %s)", [number, value])
        conn.execute("insert into r_long_twin values (%s, %s)", [number + 10, value])
    conn.execute("update r_long set id = %s where id = 0", [10])
    conn.execute("update r_long set id = 11 where id = 1")
    conn.execute("update r_long set id = 12 where id = 2")
    assert [r[1:] for r in stored(direct, "r_long").values()] == [
        r[1:] for r in stored(direct, "r_long_twin").values()
    ]
    assert "\n" in stored(direct, "r_long")[12][1]


def test_several_columns_sharing_an_associated_column(
    conn: psycopg.Connection[Any],
) -> None:
    key = new_key(conn)
    labelled(
        conn,
        "r_shared",
        "id int primary key, a text, b text, c bytea",
        {
            "a": f"ENCRYPT WITH KEY ID {key} ASSOCIATED (id)",
            "b": f"ENCRYPT WITH KEY ID {key} ASSOCIATED (id)",
            "c": f"ENCRYPT WITH KEY ID {key} ASSOCIATED (id)",
        },
    )
    conn.execute("insert into r_shared values (1, 'a1', 'b1', 'c1')")
    # b is written with the new id; a and c are re-encrypted for it.
    conn.execute("update r_shared set id = 2, b = %s where id = 1", ["b2"])
    assert conn.execute(
        "select id, decrypted_a, decrypted_b, decrypted_c from decrypted_r_shared"
    ).fetchall() == [(2, "a1", "b2", b"c1")]


MIXED = [
    ("update cust set secret = 'x', id = 1 where id = 1", []),
    ("update cust set id = 1, secret = 'x' where id = 1", []),
    ("update cust set secret = %s, id = %s where id = %s", ["x", 1, 1]),
    ("update cust set id = %s, secret = %s where id = %s", [1, "x", 1]),
    ("update cust set blob = %s, id = 1 where id = 1", [b"y"]),
    ("update cust set id = %s, blob = 'y' where id = 1", [1]),
]


@pytest.mark.parametrize(("sql", "params"), MIXED)
def test_setting_one_column_and_the_associated_data_of_another(
    conn: psycopg.Connection[Any],
    direct: psycopg.Connection[Any],
    sql: str,
    params: list[Any],
) -> None:
    """`id` is the associated data of secret and blob: an UPDATE that sets one of
    them and id encrypts the one set from its new value and re-encrypts the
    other from its old plaintext, in either order: the bytes INSERT stores."""
    key = new_key(conn)
    labels = {
        "secret": f"ENCRYPT WITH KEY ID {key} ASSOCIATED (id)",
        "blob": f"ENCRYPT WITH KEY ID {key} ASSOCIATED (id)",
    }
    columns = "id int primary key, secret text, blob bytea"
    labelled(conn, "cust", columns, labels)
    labelled(conn, "cust_twin", columns, labels)
    conn.execute("insert into cust values (1, 'one', 'b1'), (2, 'two', 'b2')")
    before = stored(direct, "cust")

    cur = conn.execute(sql, params)
    assert cur.statusmessage == "UPDATE 1"
    assert stored(direct, "cust")[2] == before[2]
    secret, blob = ("one", b"y") if "blob =" in sql else ("x", b"b1")
    assert conn.execute(
        "select id, decrypted_secret, decrypted_blob from decrypted_cust order by id"
    ).fetchall() == [(1, secret, blob), (2, "two", b"b2")]
    conn.execute(
        "insert into cust_twin values (1, %s, %s), (2, 'two', 'b2')", [secret, blob]
    )
    assert stored(direct, "cust") == stored(direct, "cust_twin")

    # A new id for one row, through the same mixed shape.
    conn.execute("update cust set id = %s, secret = %s where id = 2", [20, "twenty"])
    conn.execute("insert into cust_twin values (20, 'twenty', 'b2')")
    conn.execute("delete from cust_twin where id = 2")
    assert stored(direct, "cust") == stored(direct, "cust_twin")


def test_setting_one_column_and_the_key_of_another(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any]
) -> None:
    """Rotating the key column while setting one of the two columns it keys: the
    other is re-encrypted under the new key."""
    old, new = new_key(conn), new_key(conn)
    labels = {
        "secret": "ENCRYPT WITH KEY COLUMN k ASSOCIATED (id)",
        "blob": "ENCRYPT WITH KEY COLUMN k",
    }
    columns = "id int primary key, secret text, blob bytea, k uuid"
    labelled(conn, "r_mixkey", columns, labels)
    labelled(conn, "r_mixkey_twin", columns, labels)
    conn.execute("insert into r_mixkey values (1, 'one', 'b1', %s)", [old])
    conn.execute(
        "update r_mixkey set k = %s, id = 1, secret = %s where id = 1", [new, "uno"]
    )
    conn.execute("insert into r_mixkey_twin values (1, 'uno', 'b1', %s)", [new])
    assert stored(direct, "r_mixkey") == stored(direct, "r_mixkey_twin")
    assert conn.execute(
        "select decrypted_secret, decrypted_blob from decrypted_r_mixkey"
    ).fetchall() == [("uno", b"b1")]


def test_setting_a_column_without_its_associated_data_says_what_to_do(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any]
) -> None:
    key = new_key(conn)
    labels = {
        "secret": f"ENCRYPT WITH KEY ID {key} ASSOCIATED (id)",
        "blob": f"ENCRYPT WITH KEY ID {key} ASSOCIATED (id)",
    }
    labelled(conn, "r_hint", "id int primary key, secret text, blob bytea", labels)
    conn.execute("insert into r_hint values (1, 'one', 'b1')")
    before = stored(direct, "r_hint")
    with pytest.raises(psycopg.errors.FeatureNotSupported) as caught:
        conn.execute("update r_hint set secret = %s where id = 1", ["x"])
    assert "encrypt secret without id in the same row" in str(caught.value)
    assert caught.value.diag.message_hint == (
        "The proxy encrypts secret with the id it sees in the statement: set id in "
        "the same SET list, to the row's current value if it does not change (other "
        "encrypted columns that depend on id are re-encrypted)."
    )
    assert stored(direct, "r_hint") == before
    # Doing as the hint says.
    conn.execute("update r_hint set secret = %s, id = 1 where id = 1", ["x"])
    assert conn.execute(
        "select decrypted_secret, decrypted_blob from decrypted_r_hint"
    ).fetchall() == [("x", b"b1")]


async def test_asyncpg_prepared_mixed_update(
    proxy: RunningProxy, db: str, conn: psycopg.Connection[Any]
) -> None:
    key = new_key(conn)
    labels = {
        "secret": f"ENCRYPT WITH KEY ID {key} ASSOCIATED (id)",
        "blob": f"ENCRYPT WITH KEY ID {key} ASSOCIATED (id)",
    }
    labelled(conn, "r_apgmix", "id int primary key, secret text, blob bytea", labels)
    conn.execute("insert into r_apgmix values (1, 'one', 'b1'), (2, 'two', 'b2')")

    async def run() -> list[tuple[Any, ...]]:
        a = await asyncpg.connect(
            host=proxy.host, port=proxy.port, user="postgres", database=db
        )
        try:
            statement = await a.prepare(
                "update r_apgmix set secret = $1, id = $2 where id = $3"
            )
            await statement.fetch("uno", 1, 1)
            await statement.fetch("dos", 20, 2)  # prepared, reused
            await a.execute(
                "update r_apgmix set id = $1, blob = $2 where id = $1", 1, b"y"
            )
            rows = await a.fetch(
                "select id, decrypted_secret, decrypted_blob from decrypted_r_apgmix "
                "order by id"
            )
            return [tuple(r) for r in rows]
        finally:
            await a.close()

    assert await asyncio.wait_for(run(), 30) == [(1, "uno", b"y"), (20, "dos", b"b2")]


def test_returning_and_the_command_tag_are_the_clients(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any]
) -> None:
    key = new_key(conn)
    labelled(
        conn,
        "r_ret",
        "id int primary key, secret text, note text",
        {"secret": f"ENCRYPT WITH KEY ID {key} ASSOCIATED (id)"},
    )
    conn.execute("insert into r_ret values (1, 'one', 'x'), (2, 'two', 'y')")
    cur = conn.execute("update r_ret set id = 5 where id = 99 returning *")
    assert cur.statusmessage == "UPDATE 0" and cur.fetchall() == []
    cur = conn.execute("update r_ret as r set id = 5 where r.id = 1 returning *, id")
    assert [c.name for c in cur.description or ()] == [
        "id",
        "secret",
        "note",
        "id",
    ]
    (row,) = cur.fetchall()
    assert row[:3] == stored(direct, "r_ret")[5] and row[3] == 5
    cur = conn.execute("update r_ret set id = %s where id > %s", [7, 2])
    assert cur.statusmessage == "UPDATE 1"
    # A RETURNING value the proxy computes per row, with the re-encryption.
    cur = conn.execute(
        "update r_ret set id = 8 where id = 7 returning id, convert_from("
        "pgsodium.crypto_aead_det_decrypt(decode(secret, 'base64'), "
        "convert_to(id::text, 'utf8'), %s::uuid), 'utf8')",
        [key],
    )
    assert cur.fetchall() == [(8, "one")]
    assert conn.execute(
        "select id, decrypted_secret from decrypted_r_ret order by id"
    ).fetchall() == [(2, "two"), (8, "one")]


@pytest.fixture
def rotating(conn: psycopg.Connection[Any]) -> str:
    """Table r_rot: secret (text) and raw (bytea), associated data ctx."""
    key = new_key(conn)
    labelled(
        conn,
        "r_rot",
        "id int primary key, secret text, raw bytea, ctx text",
        {
            "secret": f"ENCRYPT WITH KEY ID {key} ASSOCIATED (ctx)",
            "raw": f"ENCRYPT WITH KEY ID {key} ASSOCIATED (ctx)",
        },
    )
    conn.execute(
        "insert into r_rot values (1, 'one', 'r1', 'a'), (2, 'two', 'r2', 'a'), "
        "(3, 'three', 'r3', 'a')"
    )
    return key


def test_a_failed_update_changes_nothing_and_keeps_no_lock(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any], rotating: str
) -> None:
    """The UPDATE itself fails (a check constraint) after the rows were read,
    locked and re-encrypted: rolled back whole, its locks gone with it."""
    direct.execute("alter table r_rot add check (ctx <> 'z')")
    before = stored(direct, "r_rot")
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("update r_rot set ctx = 'z' where id < 3")
    assert stored(direct, "r_rot") == before
    assert_unlocked(direct, "r_rot")
    conn.execute("update r_rot set ctx = 'y' where id = 1")
    assert_unlocked(direct, "r_rot")


def assert_unlocked(direct: psycopg.Connection[Any], table: str) -> None:
    with direct.transaction():
        direct.execute("set local lock_timeout = '1s'")
        direct.execute(f"select * from {table} for update").fetchall()


def test_a_rolled_back_transaction_leaves_nothing(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any], rotating: str
) -> None:
    before = stored(direct, "r_rot")
    with conn.transaction(force_rollback=True):
        conn.execute("update r_rot set ctx = 'b'")
        assert conn.execute(
            "select decrypted_secret, ctx from decrypted_r_rot where id = 1"
        ).fetchone() == ("one", "b")
    assert stored(direct, "r_rot") == before


def corrupt_row_3(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any], key: str
) -> None:
    """Row 3's secret: a ciphertext under other associated data (it does not
    decrypt with its own), written past the proxy."""
    row = conn.execute(
        "select encode(pgsodium.crypto_aead_det_encrypt(convert_to('three', 'utf8'), "
        "convert_to('other', 'utf8'), %s::uuid), 'base64')",
        [key],
    ).fetchone()
    assert row is not None
    direct.execute("update r_rot set secret = %s where id = 3", [row[0]])


def test_a_value_that_does_not_decrypt_fails_the_whole_statement(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any], rotating: str
) -> None:
    corrupt_row_3(conn, direct, rotating)
    before = stored(direct, "r_rot")
    with pytest.raises(psycopg.Error) as read:
        conn.execute("select decrypted_secret from decrypted_r_rot where id = 3")
    with pytest.raises(psycopg.Error) as caught:
        conn.execute("update r_rot set ctx = %s", ["b"])
    # pgsodium's own error, as reading the row through the view gives it.
    assert caught.value.sqlstate == read.value.sqlstate == "22000"
    assert caught.value.diag.message_primary == read.value.diag.message_primary
    assert "secret of the row at ctid" in (caught.value.diag.message_detail or "")
    assert stored(direct, "r_rot") == before
    assert conn.execute("select 1").fetchone() == (1,)

    conn.execute("begin")
    conn.execute("update r_rot set ctx = 'c' where id = 1")
    with pytest.raises(psycopg.Error):
        conn.execute("update r_rot set ctx = 'c'")
    with pytest.raises(psycopg.errors.InFailedSqlTransaction):
        conn.execute("select 1")
    conn.execute("rollback")
    assert stored(direct, "r_rot") == before
    # The row itself can still be re-encrypted once its value is rewritten.
    conn.execute("update r_rot set secret = 'three', ctx = 'a' where id = 3")
    conn.execute("update r_rot set ctx = 'b'")
    assert conn.execute(
        "select id, decrypted_secret, decrypted_raw from decrypted_r_rot order by id"
    ).fetchall() == [(1, "one", b"r1"), (2, "two", b"r2"), (3, "three", b"r3")]


def test_null_key_column(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any]
) -> None:
    """A NULL key stores NULL, as an INSERT with it does (pgsodium's trigger drops
    the plaintext), given as a literal or as a bind parameter."""
    key = new_key(conn)
    labelled(
        conn,
        "r_null",
        "id int primary key, secret text, k uuid",
        {"secret": "ENCRYPT WITH KEY COLUMN k"},
    )
    conn.execute(
        "insert into r_null values (1, 'one', %s), (2, 'two', %s), (4, 'four', %s)",
        [key, key, key],
    )
    before = stored(direct, "r_null")
    psycopg.Cursor(conn).execute("update r_null set k = %s where id = 4", [None])
    assert stored(direct, "r_null")[4] == (4, None, None)
    conn.execute("delete from r_null where id = 4")
    del before[4]
    with pytest.raises(psycopg.Error) as caught:  # no such key
        conn.execute(
            "update r_null set k = '00000000-0000-0000-0000-000000000001' where id = 2"
        )
    assert caught.value.sqlstate == "P0002"
    assert stored(direct, "r_null") == before
    conn.execute("update r_null set k = null where id = 1")
    assert stored(direct, "r_null")[1] == (1, None, None)
    # A value without a key (its key column cleared past the proxy) reads as NULL
    # through the view: re-keying it stores NULL.
    direct.execute("insert into r_null select 3, secret, null from r_null where id = 2")
    assert conn.execute(
        "select decrypted_secret from decrypted_r_null where id = 3"
    ).fetchone() == (None,)
    conn.execute("update r_null set k = %s where id in (1, 3)", [key])
    assert conn.execute(
        "select id, secret, decrypted_secret from decrypted_r_null order by id"
    ).fetchall() == [(1, None, None), (2, before[2][1], "two"), (3, None, None)]


def test_a_null_value_needs_no_key_to_be_re_keyed(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any]
) -> None:
    """NULL stays NULL whatever its key, as in pgsodium's trigger: an UPDATE that
    gives a NULL value's row a key that does not exist succeeds, as an INSERT of
    NULL with that key does; a value that needs the key still gets P0002."""
    key = new_key(conn)
    unknown = "00000000-0000-4000-8000-0000000000ff"
    labelled(
        conn,
        "r_nokey",
        "id int primary key, secret text, k uuid, ctx text",
        {"secret": "ENCRYPT WITH KEY COLUMN k ASSOCIATED (ctx)"},
    )
    conn.execute(
        "insert into r_nokey values (1, null, %s, 'a'), (2, 'two', %s, 'b'), "
        "(3, null, %s, 'c')",
        [unknown, key, key],
    )
    before = stored(direct, "r_nokey")
    conn.execute("update r_nokey set k = %s where id = 3", [unknown])
    conn.execute("update r_nokey set ctx = 'z' where id in (1, 3)")
    assert stored(direct, "r_nokey")[3] == (3, None, uuid.UUID(unknown), "z")
    with pytest.raises(psycopg.Error) as caught:
        conn.execute("update r_nokey set k = %s where id in (2, 3)", [unknown])
    assert caught.value.sqlstate == "P0002"
    assert stored(direct, "r_nokey")[2] == before[2]
    assert conn.execute(
        "select id, decrypted_secret, ctx from decrypted_r_nokey order by id"
    ).fetchall() == [(1, None, "z"), (2, "two", "b"), (3, None, "z")]


def test_the_role_needs_pgsodiums_grants_and_the_columns_privileges(
    proxy: RunningProxy,
    db: str,
    conn: psycopg.Connection[Any],
    direct: psycopg.Connection[Any],
    rotating: str,
) -> None:
    """EXECUTE on pgsodium's aead-det functions (pgsodium_keyiduser), and SELECT
    on the columns the pre-read reads, as the client's own role."""
    before = stored(direct, "r_rot")
    for role, grant in (
        ("r_no_keys", "grant select, update on r_rot to r_no_keys"),
        ("r_no_select", "grant update on r_rot to r_no_select"),
    ):
        conn.execute(f"drop role if exists {role}")
        conn.execute(f"create role {role} login")
        conn.execute(grant)
    conn.execute("grant pgsodium_keyiduser to r_no_select")
    try:
        for role, function in (
            ("r_no_keys", "function crypto_aead_det_"),
            ("r_no_select", "table r_rot"),
        ):
            dsn = proxy.dsn(user=role, dbname=db)
            with psycopg.connect(dsn, autocommit=True) as other:
                with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
                    other.execute("update r_rot set ctx = 'b'")
                assert f"permission denied for {function}" in str(caught.value)
                assert other.execute("select 1").fetchone() == (1,)
        assert stored(direct, "r_rot") == before
    finally:
        conn.execute("drop table r_rot cascade")
        conn.execute("drop role r_no_keys")
        conn.execute("drop role r_no_select")


def test_more_rows_than_the_proxy_holds_are_refused(
    conn: psycopg.Connection[Any],
    direct: psycopg.Connection[Any],
    rotating: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tce_reencrypt, "MAX_ROWS", 2)
    before = stored(direct, "r_rot")
    with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="at most 2 rows"):
        conn.execute("update r_rot set ctx = 'b'")
    assert stored(direct, "r_rot") == before
    conn.execute("update r_rot set ctx = 'b' where id < 3")
    assert conn.execute(
        "select count(*) from decrypted_r_rot where ctx = 'b'"
    ).fetchone() == (2,)


@pytest.mark.parametrize(
    ("sql", "construct"),
    [
        ("update r_rot set ctx = 'b' from (select 1) s where id = 1", "FROM"),
        ("with s as (select 1) update r_rot set ctx = 'b'", "WITH ... UPDATE"),
        (
            "with s as (update r_rot set ctx = 'b' returning 1) select * from s",
            "statement of its own",
        ),
        ("update decrypted_r_rot set ctx = 'b'", "decrypting view"),
        ("update r_rot set ctx = ctx || 'b'", "not a literal or a parameter"),
        ("update r_rot set ctx = 'b'; select 1", "among other statements"),
    ],
)
def test_updates_the_proxy_cannot_re_encrypt_are_refused(
    conn: psycopg.Connection[Any],
    direct: psycopg.Connection[Any],
    rotating: str,
    sql: str,
    construct: str,
) -> None:
    before = stored(direct, "r_rot")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match=construct):
        conn.execute(sql)
    assert stored(direct, "r_rot") == before
    assert conn.execute("select 1").fetchone() == (1,)


def test_where_current_of_is_refused(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any], rotating: str
) -> None:
    before = stored(direct, "r_rot")
    with conn.transaction():
        conn.execute("declare c cursor for select * from r_rot for update")
        conn.execute("fetch c")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="CURRENT OF"):
            conn.execute("update r_rot set ctx = 'b' where current of c")
        raise psycopg.Rollback()
    assert stored(direct, "r_rot") == before


def test_executemany_re_encrypts_each_parameter_set(
    proxy: RunningProxy, db: str, direct: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        key = new_key(conn)
        labelled(
            conn,
            "r_many",
            "id int primary key, secret text",
            {"secret": f"ENCRYPT WITH KEY ID {key} ASSOCIATED (id)"},
        )
        conn.execute("insert into r_many values (1, 'one'), (2, 'two'), (3, 'x')")
        with conn.cursor() as cur:
            cur.executemany(
                "update r_many set id = %s where id = %s", [(11, 1), (12, 2), (13, 11)]
            )
        assert conn.execute(
            "select id, decrypted_secret from decrypted_r_many order by id"
        ).fetchall() == [(3, "x"), (12, "two"), (13, "one")]


async def test_asyncpg_prepared_re_encryption(
    proxy: RunningProxy, db: str, conn: psycopg.Connection[Any]
) -> None:
    key = new_key(conn)
    labelled(
        conn,
        "r_apg",
        "id int primary key, secret text, raw bytea, ctx text",
        {
            "secret": f"ENCRYPT WITH KEY ID {key} ASSOCIATED (id, ctx)",
            "raw": f"ENCRYPT WITH KEY ID {key} ASSOCIATED (ctx)",
        },
    )
    conn.execute(
        "insert into r_apg values (1, 'one', '\\x00ff', 'a'), (2, 'two', 'r', 'a')"
    )

    async def run() -> None:
        a = await asyncpg.connect(
            host=proxy.host, port=proxy.port, user="postgres", database=db
        )
        try:
            statement = await a.prepare(
                "update r_apg set id = $1, ctx = $3 where id = $2 returning *"
            )
            # Described before any execution: the client's parameters and columns.
            assert [t.name for t in statement.get_parameters()] == [
                "int4",
                "int4",
                "text",
            ]
            assert [c.name for c in statement.get_attributes()] == [
                "id",
                "secret",
                "raw",
                "ctx",
            ]
            (row,) = await statement.fetch(10, 1, "b")
            assert row["id"] == 10 and row["ctx"] == "b"
            (row,) = await statement.fetch(11, 10, "c")  # prepared, reused
            assert await statement.fetch(99, 98, "z") == []
            await a.executemany(
                "update r_apg set ctx = $1 where id = $2", [("d", 11), ("e", 2)]
            )
            # The UPDATE itself fails (a duplicate id) after the re-encryption.
            with pytest.raises(asyncpg.UniqueViolationError):
                async with a.transaction():
                    await a.execute("update r_apg set ctx = $1", "rolled back")
                    await a.execute("update r_apg set id = $1 where id = $2", 2, 11)
            rows = await a.fetch(
                "select id, decrypted_secret, decrypted_raw, ctx from decrypted_r_apg "
                "order by id"
            )
        finally:
            await a.close()
        assert [tuple(r) for r in rows] == [
            (2, "two", b"r", "e"),
            (11, "one", b"\x00\xff", "d"),
        ]

    await asyncio.wait_for(run(), 30)
