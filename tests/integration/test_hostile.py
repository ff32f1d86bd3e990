"""Hostile clients against the real proxy: mutated frames end only their own
session (08P01 and a close where the protocol is broken), never the process and
never another session; statements that only mention pgsodium pass unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random

import psycopg
import pytest

from proxy import codec
from proxy.codec import (
    Bind,
    Close,
    CopyData,
    CopyDone,
    CopyFail,
    Describe,
    Execute,
    Flush,
    FunctionCall,
    Parse,
    Query,
    Sync,
)

from .conftest import RunningProxy
from .test_passthrough import RawClient, bounded

KEYED = "select pgsodium.crypto_aead_det_encrypt('x'::bytea, ''::bytea, $1)"
VALID = [
    Query("select 1"),
    Query("select pgsodium.crypto_aead_det_encrypt('x'::bytea, ''::bytea, 1)"),
    Parse("s", KEYED, (20,)),
    Bind("p", "s", (0,), (b"1",), (1,)),
    Describe("P", "p"),
    Execute("p", 1),
    Close("S", "s"),
    Parse("", "select $1::text, $2::bytea"),
    Bind("", "", (0, 1), (b"a", b"\x00\xff"), ()),
    Execute(""),
    Flush(),
    Sync(),
    FunctionCall(1, (0,), (b"1",), 0),
    CopyData(b"1\tx\n"),
    CopyDone(),
    CopyFail("no"),
]
# Raise both for a longer hunt: FUZZ_SESSIONS=400 FUZZ_SEED=7 pytest -k mutated
SESSIONS = int(os.environ.get("FUZZ_SESSIONS", "40"))
SEED = int(os.environ.get("FUZZ_SEED", "20261204"))


def _mutate(rng: random.Random) -> bytes:
    """A few valid messages, then a few bytes flipped, cut or inserted."""
    data = bytearray(b"".join(m.encode() for m in rng.choices(VALID, k=4)))
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(data))
        match rng.randrange(3):
            case 0:
                data[at] ^= rng.randrange(1, 256)
            case 1:
                del data[at : at + rng.randint(1, 6)]
            case _:
                data[at:at] = rng.randbytes(rng.randint(1, 6))
    return bytes(data)


async def _hostile(proxy: RunningProxy, data: bytes) -> list[codec.Frame | None]:
    """Send `data` in a fresh session; what came back before silence, with None
    at the end if the proxy closed the connection."""
    client = await RawClient.connect(proxy.host, proxy.port)
    got: list[codec.Frame | None] = []
    try:
        await client.send_bytes(data)
        while True:
            frame = await asyncio.wait_for(client.next(), 1.0)
            got.append(frame)
            if frame is None:
                break
    except (TimeoutError, ConnectionError):
        pass  # waiting for the rest of a frame that never comes: the client's turn
    finally:
        client.writer.transport.abort()
    return got


def _severity(frame: codec.Frame) -> str:
    return codec.decode_backend(frame).severity


async def _scenario(proxy: RunningProxy) -> bytes:
    async with await psycopg.AsyncConnection.connect(proxy.dsn()) as conn:
        cursor = await conn.execute(
            "select pgsodium.crypto_aead_det_encrypt('x'::bytea, ''::bytea, 1)"
        )
        row = await cursor.fetchone()
        assert row is not None
        return bytes(row[0])


@bounded(60)
async def test_mutated_frames_end_only_their_own_session(
    proxy: RunningProxy, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(SEED)  # fixed: a failure can be replayed
    before = await _scenario(proxy)
    bystander = await psycopg.AsyncConnection.connect(proxy.dsn(), autocommit=True)
    caplog.set_level(logging.WARNING, logger="proxy")
    try:
        answers = []
        for start in range(0, SESSIONS, 10):
            batch = [_mutate(rng) for _ in range(10)]
            answers += await asyncio.gather(*(_hostile(proxy, d) for d in batch))
            # The bystander's session is served between the storms.
            cursor = await bystander.execute("select %s::text", [f"batch {start}"])
            assert await cursor.fetchone() == (f"batch {start}",)
    finally:
        await bystander.close()

    errors = [codec.decode_backend(f) for a in answers for f in a if f and f.type == 69]
    assert errors, "some mutation must have been refused"
    assert all(e.sqlstate != "XX000" for e in errors), [e.message for e in errors]
    for answer in answers:
        fatal = [f for f in answer if f and f.type == 69 and _severity(f) == "FATAL"]
        if fatal:
            # FATAL means the connection closes right after it.
            assert answer[-2:] == [fatal[0], None], answer
            assert codec.decode_backend(fatal[0]).sqlstate == "08P01"
    assert "internal error" not in caplog.text
    assert await _scenario(proxy) == before


# Statements that carry pgsodium's words but call nothing of it.
MENTIONS = [
    "select 'pgsodium.crypto_aead_det_encrypt(1)' as crypto_box",
    "select 1 /* pgsodium.create_key() */, 2 -- derive_key(1)\n",
    'select 3 as "pgsodium", $q$ crypto_box() $q$ as "decrypted_key"',
    "select relname from pg_class where relname like 'crypto_%' or relname = 'x'",
    "do $$ begin raise notice 'pgsodium.create_key() %', 1; end $$",
]


@pytest.mark.parametrize("sql", MENTIONS)
@bounded()
async def test_statement_that_only_mentions_pgsodium_passes_unchanged(
    proxy: RunningProxy, sql: str
) -> None:
    answers = []
    for port in (proxy.upstream.port, proxy.port):
        client = await RawClient.connect("127.0.0.1", port)
        try:
            await client.send(Query(sql))
            simple = [f.raw for f in await client.until(b"Z")]
            await client.send(
                Parse("", sql), Bind("", "", (), (), ()), Execute(""), Sync()
            )
            extended = [f.raw for f in await client.until(b"Z")]
            answers.append((simple, extended))
        finally:
            await client.close()
    assert answers[1] == answers[0]


NOT_UTF8 = b"select pgsodium.crypto_aead_det_encrypt('\xe9t\xe9'::bytea, ''::bytea, 1)"


def _query(sql: bytes) -> bytes:
    return codec.frame_bytes(ord("Q"), sql + b"\0")


def _parse(sql: bytes) -> bytes:
    return codec.frame_bytes(ord("P"), b"\0" + sql + b"\0\0\0")


@pytest.mark.parametrize("build", [_query, _parse], ids=["query", "parse"])
@bounded()
async def test_pgsodium_statement_that_is_not_utf8_gets_postgres_own_22021(
    proxy: RunningProxy, build
) -> None:
    answers = []
    for port in (proxy.upstream.port, proxy.port):
        client = await RawClient.connect("127.0.0.1", port)
        try:
            sync = [Sync()] if build is _parse else []
            await client.send(build(NOT_UTF8), *sync, Query("select 'after'"))
            frames = await client.until(b"Z", count=2)
            answers.append([f.raw for f in frames])
        finally:
            await client.close()
    direct, through = answers
    assert through == direct
    error = codec.decode_backend(codec.Frame(69, direct[0][5:], direct[0]))
    assert error.sqlstate == "22021"


@bounded()
async def test_pgsodium_statement_under_another_client_encoding_is_refused(
    proxy: RunningProxy,
) -> None:
    """Under LATIN1 the same bytes are valid text the proxy cannot read as UTF-8:
    refused with 0A000, and the session goes on."""
    client = await RawClient.connect(proxy.host, proxy.port, client_encoding="LATIN1")
    try:
        await client.send_bytes(_query(NOT_UTF8))
        frames = await client.until(b"Z")
        (error,) = [codec.decode_backend(f) for f in frames if f.type == 69]
        assert (error.severity, error.sqlstate) == ("ERROR", "0A000")
        await client.send(Query("select 'still here'"))
        rows = [f for f in await client.until(b"Z") if f.type == ord("D")]
        assert codec.data_row_values(rows[0].body) == [b"still here"]
    finally:
        await client.close()


def test_select_into_stores_computed_values_or_is_refused(proxy: RunningProxy) -> None:
    """A SELECT … INTO's rows go to a table, never through the proxy: a constant
    call is computed before the statement goes upstream, a call over rows is
    refused, and no table of inputs is left behind."""
    encrypt = "pgsodium.crypto_aead_det_encrypt('x'::bytea, ''::bytea, 1)"
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("drop table if exists into_folded, into_rows")
        want = conn.execute(f"select {encrypt}").fetchone()
        conn.execute(f"select {encrypt} as c into into_folded")
        assert conn.execute("select c from into_folded").fetchone() == want
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute(
                "select pgsodium.crypto_aead_det_decrypt(c, ''::bytea, 1) as p"
                " into into_rows from into_folded"
            )
        exists = conn.execute("select to_regclass('into_rows')").fetchone()
        assert exists == (None,)
        conn.execute("drop table into_folded")
