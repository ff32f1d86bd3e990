"""`pgsodium-proxy check`: is this configuration ready to serve? Prints what it found.

Each line is `ok`, `FAIL` or `note`; the exit status is 0 only when no line failed.
Nothing secret is printed: the root key appears only as its fingerprint, the admin
DSN not at all (it may hold a password).
"""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import asyncpg
from cryptography import x509

from keystore import schema
from keystore.errors import KeystoreError

from . import tls
from .admin import AdminError, _connect
from .config import Config, ConfigError

# A certificate that expires sooner than this is worth a note.
CERTIFICATE_WARNING = datetime.timedelta(days=14)


class _Report:
    def __init__(self) -> None:
        self.failures = 0

    @property
    def failed(self) -> bool:
        return self.failures > 0

    def line(self, status: str, what: str) -> None:
        print(f"{status:<4} {what}", flush=True)
        if status == "FAIL":
            self.failures += 1


async def run_check(config: Config, path: Path) -> int:
    report = _Report()
    report.line("ok", f"configuration {path} is valid")
    _check_tls(config, report)
    fingerprint = _check_root_key(config, report)
    await _check_session_path(config, report)
    await _check_admin(config, fingerprint, report)
    if report.failed:
        print(f"not ready to serve: {report.failures} check(s) failed")
        return 1
    print("ready to serve")
    return 0


def _check_tls(config: Config, report: _Report) -> None:
    try:
        if tls.server_context(config.listen) is None:
            report.line("note", "client TLS is off: SSLRequest is answered 'N'")
            return
    except ConfigError as exc:
        report.line("FAIL", str(exc))
        return
    path = Path(config.listen.ssl_cert_file or "")
    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    expires = certificate.not_valid_after_utc
    left = expires - datetime.datetime.now(datetime.UTC)
    what = (
        f"client TLS certificate {path}: {certificate.subject.rfc4514_string()}, "
        f"expires {expires:%Y-%m-%d %H:%M} UTC"
    )
    if left.total_seconds() <= 0:
        report.line("FAIL", what + " (expired)")
    elif left < CERTIFICATE_WARNING:
        report.line("note", what + f" (in {left.days} days)")
    else:
        report.line("ok", what)


def _check_root_key(config: Config, report: _Report) -> str | None:
    try:
        fingerprint = config.root_key.load().fingerprint()
    except (ConfigError, KeystoreError) as exc:
        report.line("FAIL", f"root key: {exc}")
        return None
    report.line("ok", f"root key loaded, fingerprint {fingerprint}")
    return fingerprint


async def _check_session_path(config: Config, report: _Report) -> None:
    """The connection client sessions take: address, TLS as sslmode says."""
    upstream = config.upstream
    where = f"{upstream.host}:{upstream.port}"
    try:
        context = tls.upstream_context(upstream)
        reader, writer = await asyncio.wait_for(
            tls.open_upstream(upstream, context), upstream.connect_timeout
        )
    except ConfigError as exc:
        report.line("FAIL", str(exc))
        return
    except (TimeoutError, OSError) as exc:
        report.line("FAIL", f"upstream {where} for sessions: {exc or 'timed out'}")
        return
    encrypted = writer.get_extra_info("ssl_object") is not None
    writer.close()
    report.line(
        "ok",
        f"upstream {where} reached for sessions, sslmode "
        f"{upstream.effective_sslmode}, {'TLS' if encrypted else 'plain text'}",
    )


async def _check_admin(
    config: Config, fingerprint: str | None, report: _Report
) -> None:
    try:
        connection = await _connect(
            config.upstream.admin_dsn, config.upstream.connect_timeout
        )
    except AdminError as exc:
        report.line("FAIL", f"admin DSN: {exc}")
        return
    try:
        version = await connection.fetchval("SHOW server_version")
        database, user = await connection.fetchrow(
            "SELECT current_database(), current_user"
        )
        report.line(
            "ok",
            f"admin DSN reached PostgreSQL {version}, database {database!r} "
            f"as {user!r}",
        )
        try:
            meta = await connection.fetchrow(
                "SELECT schema_version, root_key_fingerprint FROM pgsodium._proxy_meta"
            )
        except asyncpg.UndefinedTableError:
            meta = None
        triggers = await connection.fetchval(
            "SELECT count(*) FROM pg_catalog.pg_event_trigger "
            "WHERE evtname LIKE 'pgsodium\\_proxy\\_%'"
        )
        owner = await connection.fetchval(
            "SELECT pg_catalog.pg_get_userbyid(proowner) FROM pg_catalog.pg_proc "
            "WHERE oid = pg_catalog.to_regprocedure('pgsodium.create_key("
            "pgsodium.key_type, text, bytea, bytea, uuid, bytea, "
            "timestamp with time zone, text)')"
        )
    finally:
        await connection.close()
    if meta is None:
        report.line("FAIL", "no pgsodium schema: run `pgsodium-proxy init` first")
        return
    version_note = "" if meta[0] == schema.SCHEMA_VERSION else " (init upgrades it)"
    report.line(
        "ok" if not version_note else "note",
        f"pgsodium schema version {meta[0]}{version_note}",
    )
    if not triggers:
        report.line(
            "note",
            "no event triggers (init ran as a role that is not a superuser): ALTER "
            "TABLE does not regenerate decrypting views; a superuser's init adds them",
        )
    if owner is not None and owner != "pgsodium_keymaker":
        report.line(
            "note",
            f"pgsodium.create_key() is owned by {owner!r}, not pgsodium_keymaker "
            "as in pgsodium; a superuser's init gives it to pgsodium_keymaker",
        )
    if fingerprint is None:
        report.line("FAIL", f"recorded root key fingerprint {meta[1]} not compared")
    elif meta[1] == fingerprint:
        report.line("ok", f"root key matches the recorded fingerprint {meta[1]}")
    else:
        report.line(
            "FAIL",
            f"root key mismatch: this key has fingerprint {fingerprint}, the "
            f"database recorded {meta[1]}",
        )
