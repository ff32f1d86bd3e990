"""The listening service: accepts clients, owns the cancel keys, shuts down cleanly."""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
from typing import TYPE_CHECKING

from . import metrics, tls
from .config import Config, ConfigError
from .errors import SQLSTATE, ProxyError

if TYPE_CHECKING:
    from keystore.rootkey import RootKey

    from .session import Session

log = logging.getLogger(__name__)

CANCEL_REQUEST_CODE = 80877102
# How often shutdown looks for sessions that have come to rest.
REST_POLL_SECONDS = 0.05


class Server:
    def __init__(self, config: Config, root_key: RootKey) -> None:
        self.config = config
        self.root_key = root_key
        self._server: asyncio.base_events.Server | None = None
        self._sessions: dict[asyncio.Task[None], Session] = {}
        self.draining = False  # shutting down: sessions end as soon as at rest
        # Proxy-issued cancel key -> session. A client can only cancel the session
        # it was given the key for: upstream pids and secrets never reach clients.
        self._cancel_keys: dict[tuple[int, bytes], Session] = {}
        # Built here so a bad certificate stops the start; replaced by reload().
        self.tls_server = tls.server_context(config.listen)
        self.tls_upstream = tls.upstream_context(config.upstream)
        self.metrics = metrics.Endpoint(config.metrics)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        listen = self.config.listen
        try:
            self._server = await asyncio.start_server(
                self._accept, listen.host, listen.port, limit=2**20
            )
        except OSError as exc:
            raise ConfigError(
                f"[listen] cannot listen on {listen.host}:{listen.port}: "
                f"{exc.strerror or exc}"
            ) from None
        log.info(
            "listening on %s:%d%s",
            listen.host,
            self.port,
            " (TLS offered)" if self.tls_server else "",
        )
        self.metrics.start()

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        from .session import Session

        tls.keepalive(writer)
        session = Session(self, reader, writer)
        if len(self._sessions) >= self.config.listen.max_clients:
            # As PostgreSQL: the refusal comes after the startup packet (and TLS,
            # when asked for), so every client reads it as a normal FATAL error; a
            # CancelRequest on such a connection is still delivered.
            metrics.SESSIONS_REFUSED.labels("max_clients").inc()
            session.refusal = ProxyError(
                SQLSTATE.TOO_MANY_CONNECTIONS, "sorry, too many clients already"
            )
            await session.run()
            return
        task = asyncio.current_task()
        assert task is not None
        self._sessions[task] = session
        metrics.SESSIONS.inc()
        metrics.SESSIONS_OPEN.inc()
        try:
            await session.run()
        finally:
            self._sessions.pop(task, None)
            metrics.SESSIONS_OPEN.dec()

    # -- cancel keys -----------------------------------------------------------

    def issue_cancel_key(self, session: Session) -> tuple[int, bytes]:
        """A cancel key for the client: the upstream's pid, a secret of our own.

        SECURITY: the pid stays the upstream's, so pg_backend_pid() and the pid of
        notifications agree with BackendKeyData; the secret is fresh, so a client
        that learns another backend's pid still cannot cancel that session, and the
        upstream's real secret never leaves the proxy.
        """
        assert session.upstream_cancel is not None
        pid, upstream_secret = session.upstream_cancel
        while True:
            key = (pid, secrets.token_bytes(len(upstream_secret)))
            if key not in self._cancel_keys:
                self._cancel_keys[key] = session
                return key

    def forget_cancel_key(self, key: tuple[int, bytes]) -> None:
        self._cancel_keys.pop(key, None)

    async def cancel(self, pid: int, secret: bytes) -> None:
        """Deliver a CancelRequest to the upstream backend of the matching session."""
        session = self._cancel_keys.get((pid, secret))
        if session is None or session.upstream_cancel is None:
            log.warning("cancel request with an unknown cancel key ignored")
            return
        await self.cancel_upstream(session)

    async def cancel_upstream(self, session: Session) -> None:
        """Ask the upstream to cancel what `session`'s connection is running."""
        if session.upstream_cancel is None:
            return
        upstream_pid, upstream_secret = session.upstream_cancel
        upstream = self.config.upstream
        body = struct.pack("!ii", CANCEL_REQUEST_CODE, upstream_pid) + upstream_secret
        try:
            # Plain text even when sessions use TLS, as libpq before 17 sends it:
            # PostgreSQL takes a CancelRequest before (and without) negotiation.
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(upstream.host, upstream.port),
                upstream.connect_timeout,
            )
            writer.write(struct.pack("!i", len(body) + 4) + body)
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        except (TimeoutError, OSError) as exc:
            log.error("could not deliver a cancel request upstream: %s", exc)

    # -- shutdown --------------------------------------------------------------

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    async def _close_sessions_at_rest(self, grace: float) -> None:
        """Close each session once it is at rest (nothing running, no transaction
        open), for up to `grace` seconds: a statement or transaction in progress
        may finish; an idle session has nothing to finish and goes at once."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._sessions and loop.time() < deadline:
            for task, session in list(self._sessions.items()):
                if session.at_rest:
                    task.cancel()
            await asyncio.wait(
                set(self._sessions),
                timeout=min(REST_POLL_SECONDS, max(deadline - loop.time(), 0)),
            )

    async def close(self, grace: float | None = None) -> None:
        """Stop accepting, give sessions `grace` seconds, then close them."""
        if grace is None:
            grace = self.config.listen.shutdown_timeout
        self.draining = True
        if self._server is not None:
            self._server.close()
        if self._sessions:
            log.info(
                "waiting up to %.1f s for %d session(s) to finish",
                grace,
                len(self._sessions),
            )
            await self._close_sessions_at_rest(grace)
            pending = set(self._sessions)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self.metrics.stop()
        log.info("shut down")
