"""Idle sessions benchmark: how much proxy memory does one idle client session cost?

Builds a throwaway cluster (max_connections above the session count), starts
`pgsodium-proxy serve` as its own process, opens N client sessions through it that
each log in and run one statement, keeps them all open and idle, and prints the
proxy's RSS growth per session (from /proc/<pid>/status) and how many sessions
were served. It measures; it never asserts. Run from the repository root:
`.venv/bin/python -m bench.sessions`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from keystore.rootkey import generate_key_file, load_from_file
from proxy import codec
from proxy.admin import install_schema
from proxy.cluster import Cluster, free_port

SETTLE_SECONDS = 2.0  # let the allocator and the event loop come to rest
STARTUP_SECONDS = 30.0


@dataclass
class Figures:
    sessions: int
    served: int
    failed: int
    upstream_connections: int
    rss_baseline_kib: int
    rss_idle_kib: int
    rss_peak_kib: int
    kib_per_session: float
    open_seconds: float


class IdleSession:
    """A minimal client: trust login, one statement, then idle until closed."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.writer: asyncio.StreamWriter | None = None
        self.tls = tls

    async def open(self, port: int, user: str) -> bool:
        reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        if self.tls is not None:
            self.writer.write(codec.SSLRequest().encode())
            if await reader.readexactly(1) != b"S":
                return False
            await self.writer.start_tls(self.tls, server_hostname="localhost")
        params = {"user": user, "database": "postgres"}
        self.writer.write(codec.StartupMessage(codec.PROTOCOL_3_0, params).encode())
        frames = codec.FrameReader()
        if not await self._until_ready(reader, frames):
            return False
        self.writer.write(codec.Query("select 1").encode())
        rows: list[codec.Frame] = []
        if not await self._until_ready(reader, frames, rows):
            return False
        return [codec.data_row_values(r.body) for r in rows] == [[b"1"]]

    @staticmethod
    async def _until_ready(
        reader: asyncio.StreamReader,
        frames: codec.FrameReader,
        rows: list[codec.Frame] | None = None,
    ) -> bool:
        while True:
            for frame in frames:
                if frame.type == ord("E"):
                    return False
                if frame.type == ord("D") and rows is not None:
                    rows.append(frame)
                if frame.type == ord("Z"):
                    return True
            data = await reader.read(65536)
            if not data:
                return False
            frames.feed(data)

    def close(self) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write(codec.Terminate().encode())
            self.writer.close()


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def _raise_open_files(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("pgsodium-proxy serve exited during start")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("pgsodium-proxy serve did not start listening")


async def _open_all(
    port: int, count: int, concurrency: int, tls: ssl.SSLContext | None
) -> tuple[list[IdleSession], int]:
    gate = asyncio.Semaphore(concurrency)
    sessions = [IdleSession(tls) for _ in range(count)]

    async def one(session: IdleSession) -> bool:
        async with gate:
            try:
                return await asyncio.wait_for(session.open(port, "postgres"), 60)
            except (OSError, TimeoutError):
                return False

    results = await asyncio.gather(*(one(s) for s in sessions))
    return sessions, sum(results)


async def _measure(
    proxy_pid: int,
    port: int,
    cluster: Cluster,
    count: int,
    concurrency: int,
    tls: ssl.SSLContext | None,
) -> Figures:
    # Baseline: after one session came and went, so import-time and first-use
    # allocations are not counted against the idle sessions.
    warm = IdleSession(tls)
    await warm.open(port, "postgres")
    warm.close()
    await asyncio.sleep(SETTLE_SECONDS)
    baseline = _status_kib(proxy_pid, "VmRSS")

    started = time.monotonic()
    sessions, served = await _open_all(port, count, concurrency, tls)
    open_seconds = time.monotonic() - started
    await asyncio.sleep(SETTLE_SECONDS)
    idle = _status_kib(proxy_pid, "VmRSS")
    peak = _status_kib(proxy_pid, "VmHWM")
    upstream = int(
        (
            await asyncio.to_thread(
                cluster.psql,
                "select count(*) from pg_stat_activity "
                "where backend_type = 'client backend' and pid <> pg_backend_pid()",
            )
        ).strip()
    )
    for session in sessions:
        session.close()
    await asyncio.sleep(0.5)
    return Figures(
        sessions=count,
        served=served,
        failed=count - served,
        upstream_connections=upstream,
        rss_baseline_kib=baseline,
        rss_idle_kib=idle,
        rss_peak_kib=peak,
        kib_per_session=(idle - baseline) / max(served, 1),
        open_seconds=open_seconds,
    )


def _tls_files(base: Path) -> tuple[str, ssl.SSLContext]:
    """A throwaway CA and server certificate; the [listen] lines that use them."""
    from tests.integration.certs import make_certs

    certs = make_certs(base / "tls", "bench")
    lines = (
        f"ssl = true\nssl_cert_file = '{certs.cert}'\nssl_key_file = '{certs.key}'\n"
    )
    return lines, ssl.create_default_context(cafile=str(certs.ca))


def run(count: int, concurrency: int, keep: bool, use_tls: bool) -> Figures:
    _raise_open_files(count + 256)
    base = Path(tempfile.mkdtemp(prefix="pgsodium-proxy-bench-sessions-"))
    os.chmod(base, 0o755)  # the postgres user must reach the data directory
    cluster = Cluster(
        base / "data",
        free_port(),
        settings={"max_connections": str(count + 100), "shared_buffers": "128MB"},
    )
    process: subprocess.Popen[bytes] | None = None
    try:
        cluster.initdb()
        cluster.start()
        key = base / "root.key"
        generate_key_file(key)
        dsn = f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
        asyncio.run(install_schema(dsn, load_from_file(key)))
        port = free_port()
        listen_tls, tls = _tls_files(base) if use_tls else ("", None)
        config = base / "proxy.toml"
        config.write_text(
            f"[listen]\nport = {port}\nmax_clients = {count + 10}\n{listen_tls}"
            f"[upstream]\nport = {cluster.port}\nadmin_dsn = '{dsn}'\n"
            f"[root_key]\nfile = '{key}'\n[log]\nlevel = 'warning'\n"
        )
        binary = Path(sys.executable).parent / "pgsodium-proxy"
        log = open(base / "proxy.log", "wb")  # noqa: SIM115 - the child owns it
        process = subprocess.Popen(
            [str(binary), "serve", "--config", str(config)], stderr=log
        )
        _wait_listening(port, process)
        return asyncio.run(
            _measure(process.pid, port, cluster, count, concurrency, tls)
        )
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        cluster.stop("immediate")
        if keep:
            print(f"kept {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument(
        "--concurrency", type=int, default=50, help="logins in flight at once"
    )
    parser.add_argument(
        "--tls", action="store_true", help="clients use TLS (sslmode verify-full)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()

    figures = run(args.sessions, args.concurrency, args.keep, args.tls)
    print(f"sessions asked             {figures.sessions}")
    print(f"sessions served            {figures.served} (failed {figures.failed})")
    print(f"upstream client backends   {figures.upstream_connections}")
    print(f"proxy RSS before           {figures.rss_baseline_kib} KiB")
    print(f"proxy RSS with all idle    {figures.rss_idle_kib} KiB")
    print(f"proxy peak RSS (VmHWM)     {figures.rss_peak_kib} KiB")
    print(f"proxy memory per session   {figures.kib_per_session:.1f} KiB")
    print(f"time to open all sessions  {figures.open_seconds:.2f} s")
    if args.json:
        args.json.write_text(json.dumps(asdict(figures), indent=2) + "\n")
    return 0 if figures.failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
