"""pgsodium calls: per-call cost in the keystore, statements/s through the proxy.

Part 1 times the keystore implementations the proxy runs for each call (no I/O).
Part 2 builds a throwaway cluster, starts `pgsodium-proxy serve` as its own process
and runs asyncpg clients against it: a folded crypto_aead_det_encrypt (key id and
key uuid forms) next to a plain `select $1` through the proxy and directly. It
measures; it never asserts. Run from the repository root:
`.venv/bin/python -m bench.calls`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from keystore.derive import Env
from keystore.implementations import IMPLEMENTATIONS
from keystore.rootkey import generate_key_file
from proxy.admin import install_schema
from proxy.cluster import Cluster, free_port

from .passthrough import (
    cpu_seconds,
    proxy_command,
    proxy_config,
    quietly,
    spawn,
    wait_for_port,
)

MESSAGE = b"alice@example.com"
ADDITIONAL = b"users.email"
KEY32 = bytes(range(32))
NONCE12, NONCE16, NONCE24 = bytes(12), bytes(16), bytes(24)
SIGN_SK = bytes(range(64))  # any 64 bytes: libsodium signs with seed ‖ public


@dataclass(frozen=True)
class Load:
    name: str
    target: str  # "proxy" or "direct"
    sql: str
    args: Callable[[dict[str, Any]], list[Any]]


LOADS = (
    Load("select $1", "direct", "select $1::bytea", lambda k: [MESSAGE]),
    Load("select $1", "proxy", "select $1::bytea", lambda k: [MESSAGE]),
    Load(
        "det_encrypt key id",
        "proxy",
        "select pgsodium.crypto_aead_det_encrypt($1, $2, $3::bigint)",
        lambda k: [MESSAGE, ADDITIONAL, k["key_id"]],
    ),
    Load(
        "det_encrypt key uuid",
        "proxy",
        "select pgsodium.crypto_aead_det_encrypt($1, $2, $3::uuid)",
        lambda k: [MESSAGE, ADDITIONAL, k["uuid"]],
    ),
)


# -- part 1: keystore implementations ------------------------------------------------


def keystore_calls(env: Env) -> list[tuple[str, Callable[[], Any]]]:
    impl = IMPLEMENTATIONS
    det = impl["pgsodium_crypto_aead_det_encrypt"](
        env, MESSAGE, ADDITIONAL, KEY32, None
    )
    det_id = impl["pgsodium_crypto_aead_det_encrypt_by_id"](
        env, MESSAGE, ADDITIONAL, 1, b"pgsodium", None
    )
    ietf = impl["pgsodium_crypto_aead_ietf_encrypt"](
        env, MESSAGE, ADDITIONAL, NONCE12, KEY32
    )
    box = impl["pgsodium_crypto_secretbox"](env, MESSAGE, NONCE24, KEY32)
    return [
        (
            "crypto_aead_det_encrypt (raw key)",
            lambda: impl["pgsodium_crypto_aead_det_encrypt"](
                env, MESSAGE, ADDITIONAL, KEY32, None
            ),
        ),
        (
            "crypto_aead_det_decrypt (raw key)",
            lambda: impl["pgsodium_crypto_aead_det_decrypt"](
                env, det, ADDITIONAL, KEY32, None
            ),
        ),
        (
            "crypto_aead_det_encrypt (key id)",
            lambda: impl["pgsodium_crypto_aead_det_encrypt_by_id"](
                env, MESSAGE, ADDITIONAL, 1, b"pgsodium", None
            ),
        ),
        (
            "crypto_aead_det_decrypt (key id)",
            lambda: impl["pgsodium_crypto_aead_det_decrypt_by_id"](
                env, det_id, ADDITIONAL, 1, b"pgsodium", None
            ),
        ),
        (
            "crypto_aead_ietf_encrypt (raw key)",
            lambda: impl["pgsodium_crypto_aead_ietf_encrypt"](
                env, MESSAGE, ADDITIONAL, NONCE12, KEY32
            ),
        ),
        (
            "crypto_aead_ietf_decrypt (raw key)",
            lambda: impl["pgsodium_crypto_aead_ietf_decrypt"](
                env, ietf, ADDITIONAL, NONCE12, KEY32
            ),
        ),
        (
            "crypto_auth_hmacsha256 (raw key)",
            lambda: impl["pgsodium_crypto_auth_hmacsha256"](env, MESSAGE, KEY32),
        ),
        (
            "crypto_auth_hmacsha256 (key id)",
            lambda: impl["pgsodium_crypto_auth_hmacsha256_by_id"](
                env, MESSAGE, 1, b"pgsodium"
            ),
        ),
        (
            "crypto_secretbox (raw key)",
            lambda: impl["pgsodium_crypto_secretbox"](env, MESSAGE, NONCE24, KEY32),
        ),
        (
            "crypto_secretbox_open (raw key)",
            lambda: impl["pgsodium_crypto_secretbox_open"](env, box, NONCE24, KEY32),
        ),
        (
            "crypto_sign_detached",
            lambda: impl["pgsodium_crypto_sign_detached"](env, MESSAGE, SIGN_SK),
        ),
        (
            "crypto_generichash (no key)",
            lambda: impl["pgsodium_crypto_generichash"](env, MESSAGE, None),
        ),
        (
            "derive_key (cached in the Env)",
            lambda: impl["pgsodium_derive"](env, 1, 32, b"pgsodium"),
        ),
        (
            "derive_key (fresh Env each call)",
            lambda: impl["pgsodium_derive"](Env(KEY32), 1, 32, b"pgsodium"),
        ),
    ]


def time_call(call: Callable[[], Any]) -> float:
    """Median µs per call over 5 runs of at least 50 ms each."""
    number = 1
    while timeit.timeit(call, number=number) < 0.05:
        number *= 2
    runs = timeit.repeat(call, number=number, repeat=5)
    return sorted(runs)[2] / number * 1e6


def part_one() -> None:
    env = Env(KEY32)
    print("Keystore implementations (µs per call, median of 5):", flush=True)
    for name, call in keystore_calls(env):
        print(f"  {name:40s} {time_call(call):8.1f}", flush=True)


# -- part 2: statements/s through the proxy ------------------------------------------


async def client_loop(
    url: str, sql: str, args: list[Any], deadline: float, counter: list[int]
) -> None:
    conn = await asyncpg.connect(url)
    try:
        statement = await conn.prepare(sql)
        while time.monotonic() < deadline:
            await statement.fetchval(*args)
            counter[0] += 1
    finally:
        await conn.close()


async def run_load(
    url: str, load: Load, keys: dict[str, Any], clients: int, seconds: float
) -> int:
    counter = [0]
    deadline = time.monotonic() + seconds
    await asyncio.gather(
        *(
            client_loop(url, load.sql, load.args(keys), deadline, counter)
            for _ in range(clients)
        )
    )
    return counter[0]


async def make_key(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow("select id, key_id from pgsodium.create_key()")
        value = await conn.fetchval(
            "select pgsodium.crypto_aead_det_encrypt($1, $2, $3::uuid) = "
            "pgsodium.crypto_aead_det_encrypt($1, $2, $4::bigint)",
            MESSAGE,
            ADDITIONAL,
            row["id"],
            row["key_id"],
        )
        assert value is True, "the two key forms disagree"
        return {"uuid": row["id"], "key_id": row["key_id"]}
    finally:
        await conn.close()


def part_two(options: argparse.Namespace) -> None:
    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="pgsodium-bench-calls-"))
        os.chmod(workdir, 0o755)
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        cluster = Cluster(workdir / "pgdata", free_port())
        print(f"\nPostgreSQL: initdb and start on port {cluster.port}", flush=True)
        cluster.initdb()
        stack.callback(quietly, cluster.stop, "fast")
        cluster.start()
        key_path = workdir / "root.key"
        root_key = generate_key_file(key_path)
        admin = f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
        asyncio.run(install_schema(admin, root_key))
        port = free_port()
        config = proxy_config(workdir, port, cluster.port, key_path)
        log = workdir / "proxy.log"
        process = spawn(
            stack, [*proxy_command(), "serve", "--config", str(config)], log, "proxy"
        )
        wait_for_port(port, process, log)
        urls = {
            "direct": admin,
            "proxy": f"postgresql://postgres@127.0.0.1:{port}/postgres",
        }
        keys = asyncio.run(make_key(urls["proxy"]))
        print(
            f"proxy: pid {process.pid} on port {port}; {options.seconds:g} s per run, "
            "asyncpg prepared statements (Bind/Execute/Sync)\n",
            flush=True,
        )
        for load in LOADS:  # warm-up: plan caches, connections, key lookups
            asyncio.run(run_load(urls[load.target], load, keys, 1, 0.5))

        print(
            f"{'statement':22s} {'target':7s} {'clients':>7s} {'stmts/s':>9s} "
            f"{'µs/stmt':>8s} {'proxy CPU µs/stmt':>18s}"
        )
        for clients in options.clients:
            for load in LOADS:
                before = cpu_seconds(process.pid)
                started = time.monotonic()
                count = asyncio.run(
                    run_load(urls[load.target], load, keys, clients, options.seconds)
                )
                elapsed = time.monotonic() - started
                cpu = cpu_seconds(process.pid) - before
                rate = count / elapsed
                proxy_cpu = (
                    f"{cpu / count * 1e6:18.1f}" if load.target == "proxy" else " " * 18
                )
                print(
                    f"{load.name:22s} {load.target:7s} {clients:7d} {rate:9.0f} "
                    f"{1e6 / rate * clients:8.1f} {proxy_cpu}",
                    flush=True,
                )
        warnings = [
            line
            for line in log.read_text(errors="replace").splitlines()
            if " WARNING " in line or " ERROR " in line
        ]
        print(f"\nproxy log: {len(warnings)} WARNING/ERROR lines", flush=True)
        for line in warnings[:5]:
            print("  " + line)
        load_avg = os.getloadavg()[0]
        print(f"1-minute load average after the runs: {load_avg:.2f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--clients",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 8],
        help="comma-separated client counts (default 1,8)",
    )
    parser.add_argument("--no-proxy", action="store_true", help="part 1 only")
    options = parser.parse_args(argv)
    part_one()
    if not options.no_proxy:
        part_two(options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
