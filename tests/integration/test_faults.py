"""Staying up under faults: the upstream restarting or dying mid-session, clients
that never finish startup or sit idle, too many clients. Each test runs against a
cluster of its own module, so restarting it disturbs no other test."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import replace

import asyncpg
import psycopg
import pytest

from proxy import codec
from proxy.cluster import Cluster
from proxy.config import Config, ListenConfig, UpstreamConfig

from .background import background_proxy, own_cluster
from .conftest import RunningProxy
from .test_passthrough import RawClient, bounded


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with own_cluster() as cluster:
        yield cluster


def _config(cluster: Cluster, **listen: object) -> Config:
    dsn = f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
    return Config(
        listen=replace(ListenConfig(host="127.0.0.1", port=0), **listen),
        upstream=UpstreamConfig(port=cluster.port, admin_dsn=dsn, connect_timeout=5),
    )


@pytest.fixture
def running(cluster: Cluster) -> Iterator[RunningProxy]:
    with background_proxy(_config(cluster), cluster, install=True) as proxy:
        yield proxy


def _error(frame: codec.Frame | None) -> tuple[str, str, str]:
    assert frame is not None and frame.type == ord("E"), frame
    error = codec.decode_backend(frame)
    return error.severity, error.sqlstate, error.message


async def _session_works(proxy: RunningProxy, within: float = 60.0) -> None:
    """A new session runs a statement, retried while the upstream comes back.

    The statement is retried with the connection: after a backend is killed, a
    session can connect before the postmaster notices and then be ended by its
    crash recovery.
    """
    deadline = time.monotonic() + within
    while True:
        try:
            conn = await asyncpg.connect(
                host=proxy.host, port=proxy.port, user="postgres", ssl=False
            )
            try:
                assert await conn.fetchval("select 1") == 1
            finally:
                await conn.close(timeout=5)
            return
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


@bounded(90)
async def test_upstream_restart_ends_the_session_cleanly_and_new_ones_work(
    running: RunningProxy, cluster: Cluster
) -> None:
    client = await RawClient.connect(running.host, running.port)
    await asyncio.to_thread(cluster.stop, "fast")
    try:
        # PostgreSQL's own FATAL reaches the client, then the connection closes.
        assert _error(await client.next())[:2] == ("FATAL", "57P01")
        assert await client.next() is None

        refused = await RawClient.open(running.host, running.port)
        startup = {"user": "postgres", "database": "postgres"}
        await refused.send(codec.StartupMessage(codec.PROTOCOL_3_0, startup))
        severity, sqlstate, message = _error(await refused.next())
        assert (severity, sqlstate) == ("FATAL", "57P03")
        assert "cannot reach the upstream" in message
        assert await refused.next() is None
    finally:
        await asyncio.to_thread(cluster.start)
    await _session_works(running)


@bounded(90)
async def test_upstream_backend_killed_mid_session_gives_08006_and_a_close(
    running: RunningProxy,
) -> None:
    client = await RawClient.connect(running.host, running.port)
    await client.send(codec.Query("select pg_backend_pid()"))
    rows = [f for f in await client.until(b"Z") if f.type == ord("D")]
    pid = int(codec.data_row_values(rows[0].body)[0])
    os.kill(pid, signal.SIGKILL)  # no message from the upstream: the link is gone
    assert _error(await client.next()) == (
        "FATAL",
        "08006",
        "the upstream database closed the connection",
    )
    assert await client.next() is None
    await _session_works(running)  # after PostgreSQL's crash recovery


@bounded()
async def test_a_client_that_never_finishes_startup_is_closed(
    cluster: Cluster,
) -> None:
    with background_proxy(_config(cluster, startup_timeout=0.5), cluster) as proxy:
        silent = await RawClient.open(proxy.host, proxy.port)
        assert _error(await silent.next()) == (
            "FATAL",
            "57014",
            "canceling authentication due to timeout",
        )
        assert await silent.next() is None
        await _session_works(proxy)  # sessions that do finish are not cut short


@bounded()
async def test_an_idle_client_is_closed_but_a_long_statement_is_not(
    cluster: Cluster,
) -> None:
    with background_proxy(_config(cluster, idle_timeout=0.5), cluster) as proxy:
        client = await RawClient.connect(proxy.host, proxy.port)
        await client.send(codec.Query("select pg_sleep(1.2)"))
        assert [f.type for f in await client.until(b"Z")][-1] == ord("Z")
        severity, sqlstate, message = _error(await client.next())
        assert (severity, sqlstate) == ("FATAL", "57P05")
        assert message == "terminating connection due to idle-session timeout"
        assert await client.next() is None


@bounded()
async def test_idle_clients_stay_by_default(running: RunningProxy) -> None:
    conn = await asyncpg.connect(
        host=running.host, port=running.port, user="postgres", ssl=False
    )
    try:
        await asyncio.sleep(1.0)
        assert await conn.fetchval("select 1") == 1
    finally:
        await conn.close()


@bounded()
async def test_one_client_beyond_max_clients_gets_53300(cluster: Cluster) -> None:
    with background_proxy(_config(cluster, max_clients=2), cluster) as proxy:
        kept = [
            await asyncpg.connect(
                host=proxy.host, port=proxy.port, user="postgres", ssl=False
            )
            for _ in range(2)
        ]
        with pytest.raises(asyncpg.TooManyConnectionsError, match="too many clients"):
            await asyncpg.connect(
                host=proxy.host, port=proxy.port, user="postgres", ssl=False
            )
        # libpq asks for TLS first (sslmode=prefer): the refusal still reads right.
        with pytest.raises(psycopg.OperationalError, match="too many clients"):
            await psycopg.AsyncConnection.connect(proxy.dsn(), sslmode="prefer")
        await kept.pop().close()
        await _session_works(proxy)
        for conn in kept:
            await conn.close()


async def _until_running(cluster: Cluster, sql: str) -> None:
    """Until the upstream runs `sql` (so the proxy knows it is not at rest)."""
    probe = f"select count(*) from pg_stat_activity where query = '{sql}'"
    while (await asyncio.to_thread(cluster.psql, probe)).strip() != "1":
        await asyncio.sleep(0.05)


ADMIN_SHUTDOWN = (
    "FATAL",
    "57P01",
    "terminating connection due to administrator command",
)


@bounded()
async def test_shutdown_closes_sessions_as_they_come_to_rest(cluster: Cluster) -> None:
    """Idle sessions go at once; a running statement and an open transaction may
    finish first; each then gets PostgreSQL's 57P01 and a close."""
    with background_proxy(_config(cluster), cluster) as proxy:
        busy = await RawClient.connect(proxy.host, proxy.port)
        in_transaction = await RawClient.connect(proxy.host, proxy.port)
        idle = await RawClient.connect(proxy.host, proxy.port)
        await in_transaction.send(codec.Query("begin; create table t_shutdown (a int)"))
        await in_transaction.until(b"Z")
        await busy.send(codec.Query("select pg_sleep(0.8)"))
        await _until_running(cluster, "select pg_sleep(0.8)")
        closing = asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(proxy.server.close(grace=10), proxy.loop)
        )

        assert _error(await idle.next()) == ADMIN_SHUTDOWN
        assert await idle.next() is None
        finished = await busy.until(b"Z")
        assert [f.type for f in finished if f.type == ord("E")] == []
        assert _error(await busy.next()) == ADMIN_SHUTDOWN
        await in_transaction.send(codec.Query("commit"))
        committed = await in_transaction.until(b"Z")
        assert codec.decode_backend(committed[0]).tag == "COMMIT"
        # The next statement, sent at once, is not run: the session ended at rest.
        await in_transaction.send(codec.Query("create table t_after_shutdown ()"))
        assert _error(await in_transaction.next()) == ADMIN_SHUTDOWN

        await closing
        with pytest.raises(OSError):
            await asyncio.open_connection(proxy.host, proxy.port)
    assert cluster.psql("select to_regclass('t_shutdown') is not null").strip() == "t"
    assert cluster.psql("select to_regclass('t_after_shutdown')").strip() == ""


@bounded()
async def test_shutdown_closes_a_session_still_busy_when_the_grace_runs_out(
    cluster: Cluster,
) -> None:
    """A statement that outlasts the shutdown grace is not waited for: its session
    gets 57P01 and a close when the grace runs out, and the proxy stops."""
    with background_proxy(_config(cluster), cluster) as proxy:
        busy = await RawClient.connect(proxy.host, proxy.port)
        await busy.send(codec.Query("select pg_sleep(30)"))
        await _until_running(cluster, "select pg_sleep(30)")
        started = asyncio.get_running_loop().time()
        closing = asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(proxy.server.close(grace=1), proxy.loop)
        )
        frames = []
        while (frame := await busy.next()) is not None:
            frames.append(frame)
        assert ADMIN_SHUTDOWN in [_error(f) for f in frames if f.type == ord("E")]
        await closing
        assert asyncio.get_running_loop().time() - started < 10
