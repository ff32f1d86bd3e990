"""The proxy's own administrative connection: install the schema, check the root key.

Uses asyncpg with the configured admin DSN; client sessions never use it.
"""

from __future__ import annotations

import asyncpg

from keystore import schema
from keystore.rootkey import RootKey

from .config import UpstreamConfig


class AdminError(RuntimeError):
    """The admin connection failed or the database does not match this proxy."""


async def _connect(dsn: str, timeout: float = 10.0) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(dsn, timeout=timeout)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        # SECURITY: the DSN may hold a password; name only the failure.
        raise AdminError(f"cannot connect to the upstream database: {exc}") from None


async def install_schema(dsn: str, root_key: RootKey) -> str:
    """Install or upgrade pgsodium's schema in one transaction; idempotent."""
    connection = await _connect(dsn)
    notes: list[str] = []

    def listen(_: object, message: asyncpg.PostgresLogMessage) -> None:
        # The schema's own notices (what this role could not set up), not the
        # server's "already exists, skipping" of a second run.
        text = str(getattr(message, "message", ""))
        if text.startswith(_OWN_NOTICE):
            hint = getattr(message, "hint", None)
            notes.append(text[len(_OWN_NOTICE) :] + (f" ({hint})" if hint else ""))

    connection.add_log_listener(listen)
    try:
        async with connection.transaction():
            await connection.execute(schema.render(root_key.fingerprint()))
        database = await connection.fetchval("SELECT current_database()")
    except asyncpg.PostgresError as exc:
        raise AdminError(f"init failed: {exc.sqlstate} {exc}") from None
    finally:
        await connection.close()
    report = (
        f"pgsodium schema version {schema.SCHEMA_VERSION} installed in database "
        f"{database!r}; root key fingerprint {root_key.fingerprint()}"
    )
    return "\n".join([report, *(f"note: {note}" for note in notes)])


_OWN_NOTICE = "pgsodium-proxy: "


async def verify_fingerprint(upstream: UpstreamConfig, root_key: RootKey) -> None:
    """Refuse to start with a root key other than the one `init` recorded."""
    connection = await _connect(upstream.admin_dsn, upstream.connect_timeout)
    try:
        recorded = await connection.fetchval(
            "SELECT root_key_fingerprint FROM pgsodium._proxy_meta"
        )
    except asyncpg.UndefinedTableError:
        raise AdminError(
            "the upstream database has no pgsodium schema: run "
            "`pgsodium-proxy init --config FILE` first"
        ) from None
    finally:
        await connection.close()
    if recorded != root_key.fingerprint():
        raise AdminError(
            f"root key mismatch: this proxy's root key has fingerprint "
            f"{root_key.fingerprint()}, the database recorded {recorded}; "
            "refusing to start"
        )
