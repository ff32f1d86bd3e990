"""Throwaway PostgreSQL clusters from the machine's own server binaries.

Used by `pgsodium-proxy demo` and by the test suite. PostgreSQL refuses to run as
root, so when we are root every server binary runs as the `postgres` system user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

SERVER_USER = "postgres"


class ClusterError(RuntimeError):
    """The throwaway cluster could not be created, started or stopped."""


def find_bindir() -> Path:
    """Directory holding initdb/pg_ctl: $PG_BINDIR, PATH, then Debian's layout."""
    explicit = os.environ.get("PG_BINDIR")
    if explicit:
        return Path(explicit)
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(os.path.realpath(on_path)).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    if not candidates:
        raise ClusterError(
            "no PostgreSQL server binaries found (install the postgresql package "
            "or set PG_BINDIR)"
        )
    return Path(candidates[-1]).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """One data directory, one postmaster on 127.0.0.1:`port`, superuser `postgres`."""

    def __init__(
        self,
        datadir: Path,
        port: int,
        *,
        hba_lines: list[str] | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.datadir = Path(datadir).resolve()
        self.port = port
        self.hba_lines = hba_lines or []
        self.settings = settings or {}
        self.bindir = find_bindir()
        self.socket_dir = self.datadir / "socket"

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def _as_server_user(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        return ["runuser", "-u", SERVER_USER, "--", *argv]

    def _chown(self, path: Path) -> None:
        if os.geteuid() != 0:
            return
        entry = pwd.getpwnam(SERVER_USER)
        for root, dirs, files in os.walk(path):
            os.chown(root, entry.pw_uid, entry.pw_gid)
            for name in dirs + files:
                os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(
            self._as_server_user(argv), capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise ClusterError(
                f"{Path(argv[0]).name} failed ({done.returncode}): "
                f"{done.stderr.strip() or done.stdout.strip()}"
            )

    def initdb(self) -> None:
        """Create the data directory unless it already holds a cluster."""
        if (self.datadir / "PG_VERSION").exists():
            return
        self.datadir.mkdir(parents=True, exist_ok=True)
        self._chown(self.datadir)
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        hba = self.datadir / "pg_hba.conf"
        # Specific lines first: pg_hba.conf is matched top to bottom.
        body = "\n".join(self.hba_lines + ["host all all 127.0.0.1/32 trust"])
        hba.write_text("local all all trust\n" + body + "\n", encoding="utf-8")
        self._chown(self.datadir)

    def start(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.socket_dir)
        options = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.socket_dir}",
            "-c fsync=off",
            "-c synchronous_commit=off",
            "-c full_page_writes=off",
        ] + [f"-c {name}={value}" for name, value in self.settings.items()]
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-l",
                str(self.datadir / "server.log"),
                "-o",
                " ".join(options),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise ClusterError(f"PostgreSQL did not accept connections on {self.port}")

    def stop(self, mode: str = "fast") -> None:
        if not (self.datadir / "postmaster.pid").exists():
            return
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-m",
                mode,
                "-w",
                "stop",
            ]
        )

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL with the machine's psql as superuser; returns unaligned output."""
        psql = shutil.which("psql") or str(self.bindir / "psql")
        done = subprocess.run(
            [
                psql,
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                dbname,
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise ClusterError(done.stderr.strip())
        return done.stdout
