"""How a statement or a session ends: cancel requests, disconnects on either side,
Terminate, and a client that breaks the protocol. One session's end never touches
another's, and the proxy keeps serving.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
import time

import asyncpg
import psycopg
import pytest

from proxy import codec
from proxy.codec import Query

from .conftest import RunningProxy
from .test_passthrough import RawClient, bounded

SLEEP = "SELECT pg_sleep(30)"


async def _select_one_works(proxy: RunningProxy) -> None:
    async with await psycopg.AsyncConnection.connect(proxy.dsn()) as conn:
        cursor = await conn.execute("SELECT 1")
        assert await cursor.fetchone() == (1,)


async def _direct_value(proxy: RunningProxy, sql: str, *args: object) -> object:
    conn = await asyncpg.connect(
        host="127.0.0.1", port=proxy.upstream.port, user="postgres"
    )
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def _running(proxy: RunningProxy, pid: int) -> bool:
    """Whether upstream backend `pid` is running a statement right now."""
    state = await _direct_value(
        proxy, "SELECT state FROM pg_stat_activity WHERE pid = $1", pid
    )
    return state == "active"


async def _until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def _cancel_request(proxy: RunningProxy, port: int, pid: int, secret: bytes):
    """Send a CancelRequest; returns what came back before the close (nothing)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(codec.CancelRequest(pid, secret).encode())
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


class Sleeper:
    """A raw session running pg_sleep(30), with its cancel key and upstream pid."""

    def __init__(self, client: RawClient) -> None:
        self.client = client
        (key,) = [f for f in client.startup if f.type == ord("K")]
        message = codec.decode_backend(key)
        self.pid, self.secret = message.pid, message.secret

    @classmethod
    async def start(cls, proxy: RunningProxy) -> Sleeper:
        client = await RawClient.connect(proxy.host, proxy.port)
        await client.send(Query("SELECT pg_backend_pid()"))
        frames = await client.until(b"Z")
        sleeper = cls(client)
        (row,) = [f for f in frames if f.type == ord("D")]
        sleeper.upstream_pid = int(codec.data_row_values(row.body)[0] or b"0")
        await client.send(Query(SLEEP))
        await _until(lambda: _running(proxy, sleeper.upstream_pid))
        return sleeper

    async def cancelled(self) -> str:
        """The SQLSTATE the running statement ended with."""
        frames = await self.client.until(b"Z")
        errors = [codec.decode_backend(f) for f in frames if f.type == ord("E")]
        return errors[0].sqlstate if errors else ""


# -- cancel ------------------------------------------------------------------------


@bounded()
async def test_psycopg_cancel_stops_pg_sleep_with_57014(proxy: RunningProxy) -> None:
    async with await psycopg.AsyncConnection.connect(proxy.dsn()) as conn:
        # Only the non-blocking cancel: psycopg's blocking conn.cancel() holds the
        # GIL in libpq's PQcancel, and the proxy under test runs in this process.
        for cancel in (conn.cancel_safe, conn.cancel_safe):
            started = time.monotonic()
            query = asyncio.create_task(conn.execute(SLEEP))
            await asyncio.sleep(0.3)
            await cancel()
            with pytest.raises(psycopg.errors.QueryCanceled) as caught:
                await query
            assert caught.value.sqlstate == "57014"
            assert time.monotonic() - started < 5
            await conn.rollback()
            cursor = await conn.execute("SELECT 'still usable'")
            assert await cursor.fetchone() == ("still usable",)


@bounded()
async def test_asyncpg_timeout_cancels_and_the_session_stays_usable(
    proxy: RunningProxy,
) -> None:
    conn = await asyncpg.connect(host=proxy.host, port=proxy.port, user="postgres")
    try:
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await conn.fetchval(SLEEP, timeout=0.5)
        assert await conn.fetchval("SELECT 'still usable'") == "still usable"
        assert time.monotonic() - started < 5
        pid = conn.get_server_pid()
        assert not await _running(proxy, pid)
    finally:
        await conn.close()


@bounded()
async def test_cancel_with_made_up_key_cancels_nothing(proxy: RunningProxy) -> None:
    sleeper = await Sleeper.start(proxy)
    try:
        made_up = (secrets.randbelow(2**31 - 1) + 1, secrets.token_bytes(4))
        for pid, secret in (made_up, (sleeper.pid, secrets.token_bytes(4))):
            assert await _cancel_request(proxy, proxy.port, pid, secret) == b""
        await asyncio.sleep(0.5)
        assert await _running(proxy, sleeper.upstream_pid)

        assert (
            await _cancel_request(proxy, proxy.port, sleeper.pid, sleeper.secret) == b""
        )
        assert await asyncio.wait_for(sleeper.cancelled(), 5) == "57014"
    finally:
        await sleeper.client.close()


@bounded()
async def test_cancel_key_of_one_session_cannot_cancel_another(
    proxy: RunningProxy,
) -> None:
    idle = await RawClient.connect(proxy.host, proxy.port)
    sleeper = await Sleeper.start(proxy)
    try:
        (key,) = [f for f in idle.startup if f.type == ord("K")]
        other = codec.decode_backend(key)
        # The idle session's own key, and its secret with the sleeper's pid.
        for pid in (other.pid, sleeper.pid):
            await _cancel_request(proxy, proxy.port, pid, other.secret)
        await asyncio.sleep(0.5)
        assert await _running(proxy, sleeper.upstream_pid)

        await idle.send(Query("SELECT 'idle session untouched'"))
        assert [f.type for f in await idle.until(b"Z")] == list(b"TDCZ")
    finally:
        await _cancel_request(proxy, proxy.port, sleeper.pid, sleeper.secret)
        await sleeper.client.close()
        await idle.close()


@bounded()
async def test_proxy_cancel_key_does_not_work_directly_upstream(
    proxy: RunningProxy,
) -> None:
    """The upstream's own secret never reaches the client."""
    sleeper = await Sleeper.start(proxy)
    try:
        port = proxy.upstream.port
        await _cancel_request(proxy, port, sleeper.upstream_pid, sleeper.secret)
        await asyncio.sleep(0.5)
        assert await _running(proxy, sleeper.upstream_pid)
    finally:
        await _cancel_request(proxy, proxy.port, sleeper.pid, sleeper.secret)
        await sleeper.client.close()


@bounded()
async def test_cancel_key_is_forgotten_when_its_session_ends(
    proxy: RunningProxy,
) -> None:
    sleeper = await Sleeper.start(proxy)
    await _cancel_request(proxy, proxy.port, sleeper.pid, sleeper.secret)
    assert await sleeper.cancelled() == "57014"
    await sleeper.client.close()
    await _until(lambda: _gone(proxy, sleeper.upstream_pid))
    assert (sleeper.pid, sleeper.secret) not in proxy.server._cancel_keys


# -- disconnects -------------------------------------------------------------------


async def _gone(proxy: RunningProxy, pid: int) -> bool:
    count = await _direct_value(
        proxy, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
    )
    return count == 0


@bounded()
async def test_client_disconnect_mid_query_leaves_other_sessions_served(
    proxy: RunningProxy,
) -> None:
    other = await RawClient.connect(proxy.host, proxy.port)
    sleeper = await Sleeper.start(proxy)
    sleeper.client.writer.transport.abort()  # no Terminate, mid-statement
    try:
        await other.send(Query("SELECT 'other'"))
        assert [f.type for f in await other.until(b"Z")] == list(b"TDCZ")
        await _select_one_works(proxy)
        # The abandoned statement does not run on for its 30 seconds.
        await _until(lambda: _gone(proxy, sleeper.upstream_pid))
    finally:
        await other.close()


@bounded()
async def test_terminated_upstream_gives_client_its_error_then_close(
    proxy: RunningProxy,
) -> None:
    client = await RawClient.connect(proxy.host, proxy.port)
    await client.send(Query("SELECT pg_backend_pid()"))
    (row,) = [f for f in await client.until(b"Z") if f.type == ord("D")]
    pid = int(codec.data_row_values(row.body)[0] or b"0")

    assert await _direct_value(proxy, "SELECT pg_terminate_backend($1)", pid)
    frames = await client.rest()
    await client.close()

    assert [f.type for f in frames] == [ord("E")]  # PostgreSQL's, and no other
    error = codec.decode_backend(frames[0])
    assert (error.severity, error.sqlstate) == ("FATAL", "57P01")
    await _select_one_works(proxy)


@bounded()
async def test_terminated_upstream_fails_psycopg_and_new_sessions_work(
    proxy: RunningProxy,
) -> None:
    conn = await psycopg.AsyncConnection.connect(proxy.dsn(), autocommit=True)
    try:
        cursor = await conn.execute("SELECT pg_backend_pid()")
        (pid,) = await cursor.fetchone() or (0,)
        await _direct_value(proxy, "SELECT pg_terminate_backend($1)", pid)
        with pytest.raises(psycopg.OperationalError):
            await conn.execute("SELECT 1")
        assert conn.closed
    finally:
        await conn.close()
    await _select_one_works(proxy)


@bounded()
async def test_upstream_killed_mid_query_reports_and_closes(
    proxy: RunningProxy,
) -> None:
    sleeper = await Sleeper.start(proxy)
    await _direct_value(proxy, "SELECT pg_terminate_backend($1)", sleeper.upstream_pid)
    frames = await sleeper.client.rest()
    await sleeper.client.close()
    errors = [codec.decode_backend(f) for f in frames if f.type == ord("E")]
    assert [(e.severity, e.sqlstate) for e in errors] == [("FATAL", "57P01")]
    await _select_one_works(proxy)


@bounded()
async def test_terminate_closes_client_and_upstream_cleanly(
    proxy: RunningProxy,
) -> None:
    client = await RawClient.connect(proxy.host, proxy.port)
    await client.send(Query("BEGIN; SELECT pg_backend_pid()"))
    (row,) = [f for f in await client.until(b"Z") if f.type == ord("D")]
    pid = int(codec.data_row_values(row.body)[0] or b"0")

    await client.send(codec.Terminate())
    assert await asyncio.wait_for(client.rest(), 5) == []
    await client.close()
    await _until(lambda: _gone(proxy, pid))
    # A backend that lost its client mid-transaction says so; one told to
    # Terminate says nothing.
    log = (proxy.upstream.datadir / "server.log").read_text(errors="replace")
    assert f"[{pid}] LOG:  unexpected EOF" not in log


# -- protocol violations -----------------------------------------------------------


async def _violation(port: int, data: bytes) -> list[codec.Frame]:
    client = await RawClient.connect("127.0.0.1", port)
    await client.send_bytes(data)
    frames = await asyncio.wait_for(client.rest(), 5)
    await client.close()
    return frames


def _fatal(frame: codec.Frame) -> tuple[str, str, str]:
    error = codec.decode_backend(frame)
    return error.severity, error.sqlstate, error.message


@pytest.mark.parametrize("type_byte", [b"x", b"\0", b"p", b"K"])
@bounded()
async def test_unknown_frontend_message_type_gets_fatal_08P01_and_close(
    type_byte: bytes, proxy: RunningProxy
) -> None:
    garbage = type_byte + struct.pack("!i", 4)
    direct = await _violation(proxy.upstream.port, garbage)
    through = await _violation(proxy.port, garbage)
    assert [f.type for f in through] == [f.type for f in direct] == [ord("E")]
    assert _fatal(through[0]) == _fatal(direct[0])
    assert _fatal(through[0])[:2] == ("FATAL", "08P01")
    await _select_one_works(proxy)


@bounded()
async def test_messages_before_garbage_are_answered_first(proxy: RunningProxy) -> None:
    data = Query("SELECT 1").encode() + b"x\0\0\0\4"
    direct = await _violation(proxy.upstream.port, data)
    through = await _violation(proxy.port, data)
    assert [f.raw for f in through[:-1]] == [f.raw for f in direct[:-1]]
    assert [f.type for f in direct] == list(b"TDCZE")
    assert _fatal(through[-1]) == _fatal(direct[-1])


@pytest.mark.parametrize(
    "garbage",
    [b"Q\0\0\0\1", b"S\x7f\xff\xff\xff", b"H\0\0\x40\0" + bytes(16384)],
    ids=["length_below_4", "huge_sync", "oversized_flush"],
)
@bounded()
async def test_bad_length_word_closes_the_session(
    garbage: bytes, proxy: RunningProxy
) -> None:
    through = await _violation(proxy.port, garbage)
    assert all(f.type == ord("E") for f in through)
    await _select_one_works(proxy)


@bounded()
async def test_garbage_instead_of_startup_closes_only_that_connection(
    proxy: RunningProxy,
) -> None:
    reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await _select_one_works(proxy)


@bounded()
async def test_many_sessions_at_once_are_served(proxy: RunningProxy) -> None:
    async def one(i: int) -> str:
        conn = await asyncpg.connect(host=proxy.host, port=proxy.port, user="postgres")
        try:
            return str(await conn.fetchval("SELECT $1::text", f"s{i}"))
        finally:
            await conn.close()

    assert await asyncio.gather(*(one(i) for i in range(20))) == [
        f"s{i}" for i in range(20)
    ]
