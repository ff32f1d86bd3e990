"""A proxy of a test's own (its own config, often its own cluster), on an event loop
thread, so sync and async clients both talk to it as to a separate process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from proxy.admin import install_schema
from proxy.cluster import Cluster, free_port
from proxy.config import Config
from proxy.server import Server

from .conftest import ROOT_KEY, RunningProxy


@contextlib.contextmanager
def background_proxy(
    config: Config, cluster: Cluster, *, install: bool = False
) -> Iterator[RunningProxy]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> Server:
        if install:
            await install_schema(config.upstream.admin_dsn, ROOT_KEY)
        server = Server(config, ROOT_KEY)
        await server.start()
        return server

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    try:
        yield RunningProxy("127.0.0.1", server.port, cluster, loop, server)
    finally:
        asyncio.run_coroutine_threadsafe(server.close(grace=2), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@contextlib.contextmanager
def own_cluster(
    *,
    hba_lines: list[str] | None = None,
    settings: dict[str, str] | None = None,
    prepare: object = None,
) -> Iterator[Cluster]:
    """A throwaway cluster for tests that restart, kill or reconfigure it;
    `prepare(cluster)` runs after initdb, before the first start."""
    base = Path(tempfile.mkdtemp(prefix="pgsodium-proxy-own-"))
    os.chmod(base, 0o755)  # the postgres user must reach the data directory
    cluster = Cluster(
        base / "data", free_port(), hba_lines=hba_lines, settings=settings
    )
    cluster.initdb()
    if callable(prepare):
        prepare(cluster)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)
