"""A portal's rows are transformed as the statement bound to it last, never as an
earlier one's.

Drivers reuse the unnamed portal for every statement. A statement that the proxy
evaluates per row (its Execution kept by portal name) may be followed on that
portal by one that passes through. That second statement's rows must come back as
PostgreSQL sends them, whatever the proxy did before the Bind (here the label list
is stale for every statement, so every Bind of a prepared statement is looked at).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import psycopg
import pytest

import proxy.tce

from .conftest import RunningProxy, make_database

PER_ROW = (
    "select id, pgsodium.crypto_aead_det_decrypt(secret, ''::bytea, 1::bigint) as p "
    "from pt_accounts where id = %s"
)
PLAIN = "select id, secret from pt_accounts where id = %s"
READER = "pt_reader"


@pytest.fixture(scope="module")
def db(proxy: RunningProxy) -> str:
    name = make_database(proxy, "portals")
    with psycopg.connect(proxy.dsn(dbname=name), autocommit=True) as conn:
        conn.execute("create table pt_accounts (id int, secret bytea)")
        conn.execute(
            "insert into pt_accounts select 1, pgsodium.crypto_aead_det_encrypt("
            "convert_to('alice-plain', 'utf8'), ''::bytea, 1::bigint)"
        )
        conn.execute(f"drop role if exists {READER}")
        conn.execute(f"create role {READER}")
        conn.execute(f"grant select on pt_accounts to {READER}")
    return name


@pytest.fixture(autouse=True)
def every_statement_is_stale(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(proxy.tce, "NAMES_TTL_SECONDS", -1.0)
    yield


def stored(proxy: RunningProxy, db: str) -> bytes:
    with psycopg.connect(proxy.direct_dsn(dbname=db)) as direct:
        row = direct.execute("select secret from pt_accounts where id = 1").fetchone()
        assert row is not None
        return bytes(row[0])


def test_a_plain_statement_after_a_per_row_one_gets_its_own_rows(
    proxy: RunningProxy, db: str
) -> None:
    ciphertext = stored(proxy, db)
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        for _ in range(3):
            assert conn.execute(PER_ROW, [1], prepare=True).fetchall() == [
                (1, b"alice-plain")
            ]
            assert conn.execute(PLAIN, [1], prepare=True).fetchall() == [
                (1, ciphertext)
            ]
            # Another shape on the same portal: the per-row one's columns would
            # not even fit it.
            assert conn.execute(
                "select %s::int as a, true as b", [7], prepare=True
            ).fetchall() == [(7, True)]


def test_a_role_without_decrypt_gets_ciphertext_after_a_per_row_statement(
    proxy: RunningProxy, db: str
) -> None:
    """SECURITY: a pooled session that switches roles must not have a per-row
    statement's decryption applied to the next role's plain read."""
    ciphertext = stored(proxy, db)
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        assert conn.execute(PER_ROW, [1], prepare=True).fetchall() == [
            (1, b"alice-plain")
        ]
        conn.execute(f"set role {READER}")
        assert conn.execute(PLAIN, [1], prepare=True).fetchall() == [(1, ciphertext)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(PER_ROW, [1], prepare=True)
        conn.execute("reset role")


def test_asyncpg_statement_cache_alternates_per_row_and_plain(
    proxy: RunningProxy, db: str
) -> None:
    ciphertext = stored(proxy, db)

    async def run() -> list[Any]:
        conn = await asyncpg.connect(proxy.url(dbname=db))
        try:
            got = []
            for _ in range(3):
                got.append(await conn.fetchrow(PER_ROW.replace("%s", "$1"), 1))
                got.append(await conn.fetchrow(PLAIN.replace("%s", "$1"), 1))
            return [tuple(row) for row in got]
        finally:
            await conn.close()

    assert asyncio.run(run()) == [(1, b"alice-plain"), (1, ciphertext)] * 3
