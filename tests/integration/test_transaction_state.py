"""The proxy's own queries leave the client's transactions as PostgreSQL has them.

The proxy reads its label list, keys, privileges and view definitions on the
client's own upstream connection. Some statements run only outside any
transaction (VACUUM, CREATE DATABASE, CREATE INDEX CONCURRENTLY, ALTER SYSTEM), and
some only before a transaction's first query (BEGIN ISOLATION LEVEL, SET
TRANSACTION). If the proxy's queries ran first in the same transaction, PostgreSQL
would refuse these with 25001. The tests make every statement refresh the label
list, which is the worst case; a real session does it every 2 s.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from typing import Any

import asyncpg
import psycopg
import pytest

import proxy.tce

from .conftest import PROTOCOLS, RunningProxy, make_database

# Outside any transaction only; each list is one session's statements, in order.
OUTSIDE_A_TRANSACTION = [
    ["vacuum"],
    ["vacuum tx_accounts"],
    ["vacuum (analyze) tx_accounts"],
    ["create database tx_other", "drop database tx_other"],
    [
        "create index concurrently tx_accounts_name on tx_accounts (name)",
        "reindex table concurrently tx_accounts",
        "drop index concurrently tx_accounts_name",
    ],
    ["alter system set work_mem = '8MB'", "alter system reset work_mem"],
]
BEFORE = [
    pytest.param([], id="first"),
    pytest.param(["select 1"], id="after-select"),
    pytest.param(
        ["select pgsodium.crypto_aead_det_keygen() is not null"], id="after-pgsodium"
    ),
    pytest.param(["select name from tx_accounts"], id="after-labelled-table"),
]


@pytest.fixture(scope="module")
def db(proxy: RunningProxy) -> str:
    name = make_database(proxy, "txstate")
    with psycopg.connect(proxy.dsn(dbname=name), autocommit=True) as conn:
        row = conn.execute("select id from pgsodium.create_key()").fetchone()
        assert row is not None
        conn.execute("create table tx_accounts (id int, name text, secret text)")
        conn.execute(
            "security label for pgsodium on column tx_accounts.secret is "
            f"'ENCRYPT WITH KEY ID {row[0]}'"
        )
        conn.execute("insert into tx_accounts values (1, 'alice', 'a-secret')")
    return name


@pytest.fixture(autouse=True)
def every_statement_refreshes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(proxy.tce, "NAMES_TTL_SECONDS", -1.0)
    yield


@pytest.mark.parametrize("before", BEFORE)
@pytest.mark.parametrize("statements", OUTSIDE_A_TRANSACTION, ids=lambda s: s[0])
@pytest.mark.parametrize("cursor", PROTOCOLS, ids=["simple", "extended"])
def test_statements_that_run_outside_a_transaction_run(
    proxy: RunningProxy,
    db: str,
    cursor: type[psycopg.Cursor[Any]],
    before: list[str],
    statements: list[str],
) -> None:
    with psycopg.connect(
        proxy.dsn(dbname=db), autocommit=True, cursor_factory=cursor
    ) as conn:
        for sql in before + statements:
            conn.execute(sql)
        assert conn.execute("select 1").fetchone() == (1,)  # the session goes on


@pytest.mark.parametrize("before", BEFORE)
def test_psql_and_vacuumdb_vacuum_through_the_proxy(
    proxy: RunningProxy, db: str, before: list[str]
) -> None:
    bindir = proxy.upstream.bindir
    where = ["-h", proxy.host, "-p", str(proxy.port), "-U", "postgres", "-d", db]
    commands = [f"-c{sql}" for sql in before + ["vacuum tx_accounts", "vacuum"]]
    done = subprocess.run(
        [str(bindir / "psql"), "-X", "-v", "ON_ERROR_STOP=1", *where, *commands],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [str(bindir / "vacuumdb"), *where], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("before", BEFORE)
@pytest.mark.parametrize("cursor", PROTOCOLS, ids=["simple", "extended"])
def test_a_transactions_isolation_is_set_before_its_first_query(
    proxy: RunningProxy,
    db: str,
    cursor: type[psycopg.Cursor[Any]],
    before: list[str],
) -> None:
    with psycopg.connect(
        proxy.dsn(dbname=db), autocommit=True, cursor_factory=cursor
    ) as conn:
        for sql in before:
            conn.execute(sql)
        conn.execute("begin isolation level serializable")
        assert conn.execute("show transaction_isolation").fetchone() == (
            "serializable",
        )
        conn.execute("commit")
        conn.execute("begin")
        conn.execute("set transaction isolation level repeatable read")
        conn.execute("set transaction read only")
        assert conn.execute("show transaction_isolation").fetchone() == (
            "repeatable read",
        )
        assert conn.execute(
            "select id, decrypted_secret from decrypted_tx_accounts"
        ).fetchall() == [(1, "a-secret")]
        conn.execute("commit")


@pytest.mark.parametrize("cursor", PROTOCOLS, ids=["simple", "extended"])
def test_a_drivers_own_isolation_level_holds_in_every_transaction(
    proxy: RunningProxy, db: str, cursor: type[psycopg.Cursor[Any]]
) -> None:
    """psycopg begins each transaction with BEGIN ISOLATION LEVEL …, as the
    statement before the transaction's first."""
    with psycopg.connect(proxy.dsn(dbname=db), cursor_factory=cursor) as conn:
        conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
        for _ in range(3):
            assert conn.execute(
                "select decrypted_secret from decrypted_tx_accounts"
            ).fetchall() == [("a-secret",)]
            assert conn.execute("show transaction_isolation").fetchone() == (
                "serializable",
            )
            conn.commit()


def test_asyncpg_transactions_and_vacuum(proxy: RunningProxy, db: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(proxy.url(dbname=db))
        try:
            await conn.execute("vacuum tx_accounts")
            async with conn.transaction(isolation="serializable", readonly=True):
                assert await conn.fetchval("show transaction_isolation") == (
                    "serializable"
                )
                assert await conn.fetchval(
                    "select decrypted_secret from decrypted_tx_accounts"
                ) == ("a-secret")
            await conn.execute("vacuum")
        finally:
            await conn.close()

    asyncio.run(run())
