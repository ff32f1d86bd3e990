"""Per-row benchmark: decrypt one aead-det column of many rows through the proxy.

Builds a throwaway cluster and a table of `--rows` rows whose `secret` column was
encrypted with pgsodium's aead-det under a derived key (computed here with the
proxy's own keystore, then loaded with COPY directly upstream), starts
`pgsodium-proxy serve` as its own process and times, with asyncpg and with psycopg:

- `decrypt (key uuid column)`: convert_from(crypto_aead_det_decrypt(secret, ad,
  key_uuid_column), 'utf8') through the proxy;
- `decrypt (key id)`: the same with a constant key id;
- `no decrypt (proxy)`: the same rows, `secret` as stored, through the proxy;
- `no decrypt (direct)`: that query straight to PostgreSQL.

It prints rows/s and the proxy's peak RSS before and after each run (flat memory
means rows are streamed, not collected). Measures; never asserts.
Run from the repository root: `.venv/bin/python -m bench.rows [--rows N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import asyncpg
import psycopg

from bench.passthrough import (
    BenchError,
    Target,
    cpu_seconds,
    memory_kib,
    quietly,
    start_proxy,
)
from keystore.derive import kdf_derive
from keystore.primitives.aead import det_encrypt
from keystore.rootkey import load_from_file
from proxy.cluster import Cluster, free_port

CONTEXT = b"pgsodium"
KEY_BYTES = 32
ROW_QUERY = "SELECT id, {value} FROM bench_rows"
QUERIES = {
    "decrypt (key uuid column)": (
        "convert_from(pgsodium.crypto_aead_det_decrypt(secret, "
        "convert_to(id::text, 'utf8'), key_uuid), 'utf8') AS plain"
    ),
    "decrypt (key id)": (
        "convert_from(pgsodium.crypto_aead_det_decrypt(secret, "
        "convert_to(id::text, 'utf8'), {key_id}::bigint), 'utf8') AS plain"
    ),
    "no decrypt (proxy)": "secret",
}


def _options(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rows", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each query")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    return parser.parse_args(argv)


def _load_rows(cluster_port: int, root_key: bytes, rows: int) -> tuple[int, str]:
    """A derived aead-det key, and `rows` rows encrypted under it, loaded by COPY."""
    dsn = f"host=127.0.0.1 port={cluster_port} user=postgres dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        key_id, key_uuid = conn.execute(
            "SELECT key_id, id::text FROM pgsodium.create_key(name => 'bench rows')"
        ).fetchone()
        conn.execute(
            "CREATE TABLE bench_rows (id integer PRIMARY KEY, secret bytea, "
            "key_uuid uuid)"
        )
        key = kdf_derive(root_key, key_id, KEY_BYTES, CONTEXT)
        started = time.monotonic()
        with conn.cursor().copy("COPY bench_rows FROM STDIN") as copy:
            for row in range(1, rows + 1):
                plain = f"customer {row} {secrets.token_hex(8)}".encode()
                secret = det_encrypt(plain, str(row).encode(), key, None)
                copy.write_row((row, secret, key_uuid))
        conn.execute("VACUUM ANALYZE bench_rows")
    print(f"loaded {rows:,} rows in {time.monotonic() - started:.1f} s", flush=True)
    return key_id, key_uuid


async def _asyncpg(port: int, sql: str) -> int:
    conn = await asyncpg.connect(host="127.0.0.1", port=port, user="postgres")
    try:
        return len(await conn.fetch(sql))
    finally:
        await conn.close()


async def _psycopg(port: int, sql: str) -> int:
    dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        count = 0
        async with conn.cursor(name=None) as cursor:
            await cursor.execute(sql)
            while batch := await cursor.fetchmany(10_000):
                count += len(batch)
        return count


CLIENTS: dict[str, Callable[[int, str], Awaitable[int]]] = {
    "asyncpg": _asyncpg,
    "psycopg": _psycopg,
}


def _run(
    name: str, client: str, port: int, sql: str, proxy: Target, repeat: int
) -> dict[str, Any]:
    best = None
    rows = 0
    peak_before = memory_kib(proxy.pid or 0)
    proxy_cpu = cpu_seconds(proxy.pid or 0)
    for _ in range(repeat):
        started = time.perf_counter()
        rows = asyncio.run(CLIENTS[client](port, sql))
        elapsed = time.perf_counter() - started
        best = elapsed if best is None else min(best, elapsed)
    assert best is not None
    return {
        "query": name,
        "client": client,
        "rows": rows,
        "seconds": best,
        "rows_per_s": rows / best,
        "proxy_cpu_s": cpu_seconds(proxy.pid or 0) - proxy_cpu,
        "runs": repeat,
        "peak_before_kib": peak_before,
        "peak_after_kib": memory_kib(proxy.pid or 0),
    }


def _report(results: list[dict[str, Any]]) -> None:
    header = (
        f"{'query':<27} {'client':<8} {'rows':>9} {'best s':>7} {'rows/s':>10} "
        f"{'proxy CPU µs/row':>16} {'peak RSS before/after (MiB)':>28}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for r in results:
        memory = f"{r['peak_before_kib'] / 1024:.1f} / {r['peak_after_kib'] / 1024:.1f}"
        cpu = f"{r['proxy_cpu_s'] / (r['rows'] * r['runs']) * 1e6:.1f}"
        if r["query"].endswith("(direct)"):
            memory = cpu = "-"
        print(
            f"{r['query']:<27} {r['client']:<8} {r['rows']:>9,} {r['seconds']:>7.2f} "
            f"{r['rows_per_s']:>10,.0f} {cpu:>16} {memory:>28}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    options = _options(argv)
    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="pgsodium-bench-rows-"))
        os.chmod(workdir, 0o755)
        if not options.keep:
            stack.callback(quietly, _remove, workdir)
        cluster = Cluster(workdir / "pgdata", free_port())
        cluster.initdb()
        stack.callback(quietly, cluster.stop, "fast")
        cluster.start()
        try:
            proxy = start_proxy(stack, workdir, cluster.port)
        except BenchError as exc:
            print(f"bench.rows: {exc}", file=sys.stderr)
            return 1
        root_key = load_from_file(workdir / "root.key")
        key_id, _ = _load_rows(cluster.port, root_key.secret, options.rows)

        results = []
        for client in CLIENTS:
            for name, value in QUERIES.items():
                sql = ROW_QUERY.format(value=value.format(key_id=key_id))
                results.append(
                    _run(name, client, proxy.port, sql, proxy, options.repeat)
                )
            sql = ROW_QUERY.format(value="secret")
            results.append(
                _run("no decrypt (direct)", client, cluster.port, sql, proxy, 1)
            )
            _report(results[-4:])
        print(f"\nproxy CPU over all runs: {cpu_seconds(proxy.pid or 0):.1f} s")
    return 0


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
