"""`pgsodium-proxy demo`: a working proxy on a throwaway PostgreSQL, one command.

Starts PostgreSQL from the machine's server binaries in a temporary data directory
(loopback only, superuser postgres), uses or writes a root key file (0600), installs
the schema, listens on 127.0.0.1, and removes the data directory on exit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from pathlib import Path

from keystore.rootkey import generate_key_file, load_from_file

from .admin import install_schema
from .cluster import Cluster, free_port
from .config import Config, ListenConfig, RootKeyConfig, UpstreamConfig
from .server import Server

log = logging.getLogger(__name__)


def _root_key_file(requested: Path | None, workdir: Path) -> tuple[Path, bool]:
    path = requested or workdir / "root.key"
    # os.path's exists: False, not an OSError, for a parent that cannot be searched;
    # creating the file then says what is wrong.
    if os.path.exists(path):
        return path, False
    generate_key_file(path)
    return path, True


async def run_demo(port: int, root_key_file: Path | None) -> int:
    from .cli import _run_until_signalled

    workdir = Path(tempfile.mkdtemp(prefix="pgsodium-proxy-demo-"))
    os.chmod(workdir, 0o755)  # the postgres system user must reach its data dir
    try:
        key_path, created = _root_key_file(root_key_file, workdir)
        root_key = load_from_file(key_path)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)  # nothing was started yet
        raise
    cluster = Cluster(workdir / "pgdata", free_port())
    try:
        print(
            f"Root key: {'generated a new key in' if created else 'using'} {key_path} "
            f"(fingerprint {root_key.fingerprint()})"
            + ("; this demo key is random and not for real data" if created else ""),
            flush=True,
        )
        print(
            f"Starting PostgreSQL in {cluster.datadir} on 127.0.0.1:{cluster.port} "
            "(directly, past the proxy: for pg_dump and the like) ...",
            flush=True,
        )
        await asyncio.to_thread(cluster.initdb)
        await asyncio.to_thread(cluster.start)
        dsn = f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
        print(await install_schema(dsn, root_key), flush=True)
        config = Config(
            listen=ListenConfig(host="127.0.0.1", port=port),
            upstream=UpstreamConfig(port=cluster.port, admin_dsn=dsn),
            root_key=RootKeyConfig(file=str(key_path)),
        )
        server = Server(config, root_key)
        await server.start()
        print(
            "\npgsodium-proxy is ready. Connect with:\n\n"
            f"    psql 'host=127.0.0.1 port={server.port} user=postgres "
            "dbname=postgres'\n\n"
            "Try:  select * from pgsodium.create_key();\n"
            "Press Ctrl-C to stop (the demo database is deleted).\n",
            flush=True,
        )
        await _run_until_signalled(server)
        return 0
    finally:
        await asyncio.to_thread(cluster.stop, "fast")
        shutil.rmtree(workdir, ignore_errors=True)
        print(
            f"Stopped; removed {workdir}"
            + ("" if root_key_file else " with its demo root key"),
            flush=True,
        )
