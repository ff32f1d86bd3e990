"""A real proxy in front of the session's PostgreSQL, with a fixed root key."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from keystore.rootkey import RootKey
from proxy.admin import install_schema
from proxy.cluster import Cluster
from proxy.config import Config, ListenConfig, UpstreamConfig
from proxy.server import Server

# The root key of the known-answer vectors: 00 01 02 ... 1f.
ROOT_KEY = RootKey(bytes(range(32)))


@dataclass
class RunningProxy:
    host: str
    port: int
    upstream: Cluster
    loop: asyncio.AbstractEventLoop
    server: Server

    def dsn(self, user: str = "postgres", dbname: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={user} dbname={dbname}"

    def url(self, user: str = "postgres", dbname: str = "postgres") -> str:
        return f"postgresql://{user}@{self.host}:{self.port}/{dbname}"

    def direct_dsn(self, user: str = "postgres", dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.upstream.port} user={user} dbname={dbname}"

    def upstream_url(self, user: str = "postgres", dbname: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.upstream.port}/{dbname}"


@pytest.fixture(scope="session")
def proxy(pg_cluster: Cluster) -> Iterator[RunningProxy]:
    """The proxy runs on its own event loop thread, so sync and async clients both
    talk to it exactly as they would to a separate process."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Server] = {}

    async def start() -> None:
        dsn = f"postgresql://postgres@127.0.0.1:{pg_cluster.port}/postgres"
        await install_schema(dsn, ROOT_KEY)
        config = Config(
            listen=ListenConfig(host="127.0.0.1", port=0),
            upstream=UpstreamConfig(port=pg_cluster.port, admin_dsn=dsn),
        )
        server = Server(config, ROOT_KEY)
        await server.start()
        holder["server"] = server
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    ready.wait(60)
    server = holder["server"]
    try:
        yield RunningProxy("127.0.0.1", server.port, pg_cluster, loop, server)
    finally:
        asyncio.run_coroutine_threadsafe(server.close(grace=2), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def make_database(proxy: RunningProxy, name: str) -> str:
    """A new database with the pgsodium schema installed under ROOT_KEY."""
    proxy.upstream.psql(f"DROP DATABASE IF EXISTS {name}")
    proxy.upstream.psql(f"CREATE DATABASE {name}")
    dsn = f"postgresql://postgres@127.0.0.1:{proxy.upstream.port}/{name}"
    asyncio.run_coroutine_threadsafe(install_schema(dsn, ROOT_KEY), proxy.loop).result(
        60
    )
    return name


def server_log(proxy: RunningProxy) -> str:
    return (proxy.upstream.datadir / "server.log").read_text(errors="replace")


# The cursor classes that make psycopg send the simple (client-side binding) and
# the extended protocol.
PROTOCOLS = [psycopg.ClientCursor, psycopg.Cursor]


@pytest.fixture(params=PROTOCOLS, ids=["simple", "extended"])
def conn(
    request: pytest.FixtureRequest, proxy: RunningProxy, db: str
) -> Iterator[psycopg.Connection[Any]]:
    """Through the proxy to the module's `db`, in each protocol."""
    with psycopg.connect(
        proxy.dsn(dbname=db), autocommit=True, cursor_factory=request.param
    ) as connection:
        yield connection


@pytest.fixture
def direct(proxy: RunningProxy, db: str) -> Iterator[psycopg.Connection[Any]]:
    """Straight to the module's `db`, past the proxy."""
    with psycopg.connect(proxy.direct_dsn(dbname=db), autocommit=True) as connection:
        yield connection
