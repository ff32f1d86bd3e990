"""The `pgsodium-proxy` command: serve, init, check, demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from keystore.errors import KeystoreError

from . import config as configuration
from .admin import AdminError, install_schema, verify_fingerprint

log = logging.getLogger("proxy")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # log.level = debug is the proxy's own detail, not asyncio's ("Using selector").
    logging.getLogger("asyncio").setLevel(logging.INFO)


async def _run_until_signalled(server: object, path: Path | None = None) -> None:
    from .reload import reload
    from .server import Server

    assert isinstance(server, Server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if path is not None:
        loop.add_signal_handler(signal.SIGHUP, reload, server, path)
    await stop.wait()
    log.info("shutting down: no new sessions")
    await server.close()


def _raise_file_limit(max_clients: int) -> None:
    """Each session holds two sockets: raise the soft open-files limit to fit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * max_clients + 64
    if soft != resource.RLIM_INFINITY and soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        if limit < wanted:
            log.warning(
                "open-files limit %d is below the %d that max_clients = %d needs",
                limit,
                wanted,
                max_clients,
            )


async def _serve(config: configuration.Config, path: Path) -> None:
    from .server import Server

    root_key = config.root_key.load()
    await verify_fingerprint(config.upstream, root_key)
    _raise_file_limit(config.listen.max_clients)
    server = Server(config, root_key)
    await server.start()
    await _run_until_signalled(server, path)


async def _init(config: configuration.Config) -> None:
    root_key = config.root_key.load()
    report = await install_schema(config.upstream.admin_dsn, root_key)
    print(report)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgsodium-proxy",
        description="PostgreSQL proxy that provides pgsodium's key management and "
        "crypto API to a vanilla PostgreSQL.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the proxy")
    serve.add_argument("--config", type=Path, required=True)
    init = commands.add_parser(
        "init", help="install or upgrade the pgsodium schema upstream (idempotent)"
    )
    init.add_argument("--config", type=Path, required=True)
    check = commands.add_parser(
        "check",
        help="validate the configuration, reach the upstream, verify the root key",
    )
    check.add_argument("--config", type=Path, required=True)
    demo = commands.add_parser(
        "demo", help="throwaway PostgreSQL + generated root key + proxy on localhost"
    )
    demo.add_argument("--port", type=int, default=6432)
    demo.add_argument(
        "--root-key-file",
        type=Path,
        help="use the root key in this file, or write a new one there if missing",
    )
    demo.add_argument("--log-level", default="info")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import run_demo

            _setup_logging(args.log_level)
            return asyncio.run(run_demo(args.port, args.root_key_file))
        config = configuration.load(args.config)
        _setup_logging(config.log.level)
        if args.command == "serve":
            asyncio.run(_serve(config, args.config))
        elif args.command == "check":
            from .check import run_check

            return asyncio.run(run_check(config, args.config))
        else:
            asyncio.run(_init(config))
        return 0
    except (configuration.ConfigError, KeystoreError, AdminError) as exc:
        print(f"pgsodium-proxy: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def with_listen(config: configuration.Config, port: int) -> configuration.Config:
    return replace(config, listen=replace(config.listen, port=port))


if __name__ == "__main__":
    raise SystemExit(main())
