"""Transparent Column Encryption through the proxy (pgsodium's tce.sql, re-expressed).

Labels are recorded upstream, writes are encrypted by the proxy in pgsodium's stored
format, reads of the decrypting views are decrypted by the proxy, and a write that
would put plaintext into a labelled column is refused with nothing stored.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from .conftest import RunningProxy, make_database

PROTOCOLS = [psycopg.ClientCursor, psycopg.Cursor]


def pg_base64(data: bytes) -> str:
    """PostgreSQL's encode(data, 'base64'): a newline after every 76 characters."""
    text = base64.b64encode(data).decode()
    return "\n".join(text[i : i + 76] for i in range(0, len(text), 76))


@pytest.fixture(scope="module")
def db(proxy: RunningProxy) -> str:
    return make_database(proxy, "tce")


@pytest.fixture(params=PROTOCOLS, ids=["simple", "extended"])
def conn(
    request: pytest.FixtureRequest, proxy: RunningProxy, db: str
) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(
        proxy.dsn(dbname=db), autocommit=True, cursor_factory=request.param
    ) as connection:
        yield connection


@pytest.fixture
def direct(proxy: RunningProxy, db: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(proxy.direct_dsn(dbname=db), autocommit=True) as connection:
        yield connection


def new_key(conn: psycopg.Connection[Any], key_type: str = "aead-det") -> str:
    row = conn.execute(
        "select id::text from pgsodium.create_key(%s::pgsodium.key_type)", [key_type]
    ).fetchone()
    assert row is not None
    return str(row[0])


def fresh_table(conn: psycopg.Connection[Any], name: str, columns: str) -> None:
    conn.execute(f"drop table if exists {name} cascade")
    conn.execute(f"create table {name} ({columns})")


def test_key_id_label_insert_select_update(conn: psycopg.Connection[Any]) -> None:
    key = new_key(conn)
    fresh_table(conn, "t_keyid", "id int primary key, secret text, raw bytea")
    conn.execute(
        f"security label for pgsodium on column t_keyid.secret "
        f"is 'ENCRYPT WITH KEY ID {key}'"
    )
    conn.execute(
        f"security label for pgsodium on column t_keyid.raw "
        f"is 'ENCRYPT WITH KEY ID {key}'"
    )
    conn.execute(
        "insert into t_keyid (id, secret, raw) values (1, %s, %s), (2, null, null)",
        ["s3cret", b"\x00\x01binary"],
    )
    stored = conn.execute("select secret, raw from t_keyid where id = 1").fetchone()
    assert stored is not None
    expected = conn.execute(
        "select pgsodium.crypto_aead_det_encrypt(convert_to(%s, 'utf8'), "
        "convert_to('', 'utf8'), %s::uuid)",
        ["s3cret", key],
    ).fetchone()
    assert expected is not None
    assert stored[0] == pg_base64(bytes(expected[0]))
    assert len(bytes(stored[1])) == len(b"\x00\x01binary") + 32
    rows = conn.execute(
        "select id, decrypted_secret, decrypted_raw from decrypted_t_keyid order by id"
    ).fetchall()
    assert rows == [(1, "s3cret", b"\x00\x01binary"), (2, None, None)]
    conn.execute("update t_keyid set secret = %s where id = 2", ["later"])
    assert conn.execute(
        "select decrypted_secret from decrypted_t_keyid where id = 2"
    ).fetchone() == ("later",)
    star = conn.execute("select * from decrypted_t_keyid where id = 2").fetchone()
    assert star is not None and star[2] == "later"
