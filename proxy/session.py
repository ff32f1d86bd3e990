"""One client session: startup, authentication relay, then the two message pumps.

Everything that involves nothing of pgsodium is forwarded as its original bytes, in
runs, one write per read. Statements that do are handed to the Interceptor, which
may ask the upstream for key material before it sends its rewritten statement.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
import struct
import time
from typing import TYPE_CHECKING, Any

from keystore.errors import PgsodiumError
from rewriter.errors import RewriteError
from rewriter.tce_copy import CopyRows

from . import codec, metrics, tls
from .codec import Frame, FrameReader, ProtocolViolation
from .errors import SQLSTATE, ProxyError, redacted_message, redacted_traceback
from .intercept import Interceptor
from .lookup import Bound, LookupFailed, Skipped, sanitize
from .router import (
    Collect,
    CollectToReady,
    Emit,
    PassThrough,
    Reply,
    Router,
    SyncReply,
)

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024
INTERNAL_NAME = "_pgsodium_proxy"
# Requests whose replies end with one of these message types.
_TERMINALS: dict[int, bytes] = {
    ord("P"): b"1E",  # Parse -> ParseComplete
    ord("B"): b"2E",  # Bind -> BindComplete
    ord(
        "D"
    ): b"TnE",  # Describe -> RowDescription | NoData (after ParameterDescription)
    ord("E"): b"CIsE",  # Execute -> CommandComplete | EmptyQuery | PortalSuspended
    ord("C"): b"3E",  # Close -> CloseComplete
}
_SYNC_LIKE = frozenset(b"QSF")  # Query, Sync, FunctionCall end with ReadyForQuery
_NO_REPLY = frozenset(b"Hdcf")  # Flush, CopyData/Done/Fail
_COPY_TYPES = frozenset(b"dcf")  # CopyData, CopyDone, CopyFail
# What a client may send once the session is ready (protocol §55.7); anything else
# gets PostgreSQL's own FATAL 08P01 "invalid frontend message type N".
_FRONTEND_TYPES = frozenset(b"QPBEDCHSFdcfX")
VIOLATION_GRACE_SECONDS = 1.0


class ClientGone(Exception):
    """The client closed its connection."""


class Session:
    def __init__(
        self,
        server: Server,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server = server
        self.client_reader = reader
        self.client_writer = writer
        self.upstream_reader: asyncio.StreamReader | None = None
        self.upstream_writer: asyncio.StreamWriter | None = None
        self.id = secrets.token_hex(4)
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.user = "?"
        self.database = "?"
        # A walsender connection (startup parameter "replication"): it takes no
        # extended-protocol statements, so the proxy sends it none of its own.
        self.replication = False
        self.parameters: dict[str, str] = {}
        self.transaction_status = "I"
        self.router = Router(self._write_client)
        self.interceptor = Interceptor(self)
        self.cancel_key: tuple[int, bytes] | None = None
        # An error the client was told about that the upstream has not seen yet.
        self.pending_abort: ProxyError | None = None
        self.upstream_cancel: tuple[int, bytes] | None = None
        self.client_violation: ProtocolViolation | None = None
        self.readies = 0  # ReadyForQuery messages received after startup
        # The upstream's FATAL error reached the client: no error of our own after it.
        self.upstream_fatal = False
        # COPY … FROM STDIN into a labelled table (Interceptor._copy_in): armed
        # when the upstream's CopyInResponse arrives; the client's CopyData then
        # goes through it until CopyDone or CopyFail.
        self.copy_pending: CopyRows | None = None
        self.copy_in: CopyRows | None = None
        # Set when the session must be refused once its startup packet is read.
        self.refusal: ProxyError | None = None
        self.client_tls = False
        # When the session last became idle: client bytes or ReadyForQuery.
        self.idle_since = time.monotonic()
        # The upstream offered SCRAM channel binding, which the client was not shown.
        self.channel_binding_hidden = False
        self.ready = False  # startup and authentication are done
        # Upstream writes held back while one batch of client messages is handled
        # (None: write at once). One send per batch, not one per message.
        self._corked: list[bytes] | None = None
        self._task: asyncio.Task[None] | None = None  # the task running run()

    # -- logging ---------------------------------------------------------------

    def log(self, level: int, message: str, *args: object, **kwargs: Any) -> None:
        log.log(
            level,
            "session=%s peer=%s user=%s db=%s " + message,
            self.id,
            self.peer,
            self.user,
            self.database,
            *args,
            **kwargs,
        )

    # -- writing ---------------------------------------------------------------

    def _write_client(self, data: bytes) -> None:
        if not self.client_writer.is_closing():
            self.client_writer.write(data)

    def write_upstream(self, data: bytes) -> None:
        if self._corked is not None:
            self._corked.append(data)
            return
        assert self.upstream_writer is not None
        self.upstream_writer.write(data)

    def flush_upstream(self) -> None:
        """Send what a batch of client messages queued, in one write. Called before
        every wait for an upstream reply, and at the end of each batch."""
        if self._corked:
            assert self.upstream_writer is not None
            self.upstream_writer.write(b"".join(self._corked))
            self._corked.clear()

    # -- lifecycle -------------------------------------------------------------

    async def run(self) -> None:
        started = time.monotonic()
        self._task = asyncio.current_task()
        reason = "client closed"
        try:
            client_frames = await self._startup_within_timeout()
            if client_frames is None:
                return
            reason = await self._serve(client_frames)
        except asyncio.CancelledError:
            # Shutdown after the grace period: PostgreSQL's own words for it.
            reason = "shut down"
            self._write_client(
                metrics.error_response(
                    "FATAL",
                    SQLSTATE.ADMIN_SHUTDOWN,
                    "terminating connection due to administrator command",
                )
            )
            # Not re-raised: the session ends here as any other, and asyncio's
            # stream callback would log a cancelled task as an error.
        except ProtocolViolation as exc:
            reason = f"protocol violation: {exc}"
            self._write_client(
                metrics.error_response("FATAL", SQLSTATE.PROTOCOL_VIOLATION, str(exc))
            )
        except ProxyError as exc:
            reason = exc.message
            self._write_client(exc.to_error_response(fatal=True))
        except (ConnectionError, ClientGone, asyncio.IncompleteReadError, ssl.SSLError):
            reason = "connection lost"
        except Exception as exc:  # the one catch-all at the task boundary
            self.log(logging.ERROR, "internal error\n%s", redacted_traceback(exc))
            reason = "internal error"
            self._write_client(
                metrics.error_response(
                    "FATAL", SQLSTATE.INTERNAL_ERROR, "pgsodium-proxy internal error"
                )
            )
        finally:
            await self._close()
            if self.cancel_key is not None:
                self.server.forget_cancel_key(self.cancel_key)
            self.log(
                logging.INFO,
                "session closed after %.3f s: %s",
                time.monotonic() - started,
                reason,
            )

    @property
    def at_rest(self) -> bool:
        """Nothing to finish: not logged in yet, or idle outside a transaction."""
        if not self.ready:
            return True
        return self.router.idle and self.transaction_status == "I"

    async def _close(self) -> None:
        for writer in (self.client_writer, self.upstream_writer):
            if writer is None:
                continue
            try:
                writer.close()
                await asyncio.wait_for(writer.wait_closed(), 2)
            except (TimeoutError, ConnectionError, OSError):
                pass

    async def _read_client(self, reader: FrameReader) -> list[Frame]:
        """The complete frames that have arrived (at least one).

        A framing error is kept in `client_violation` and raised only after the
        frames before it are answered, as PostgreSQL answers them.
        """
        while True:
            frames: list[Frame] = []
            try:
                frames.extend(reader)
            except ProtocolViolation as exc:
                self.client_violation = exc
            if frames or self.client_violation is not None:
                return frames
            data = await self._read_client_bytes()
            if not data:
                raise ClientGone()
            reader.feed(data)

    async def _read_client_bytes(self) -> bytes:
        """Bytes from the client; an idle client is closed after idle_timeout."""
        timeout = self.server.config.listen.idle_timeout
        if timeout:
            data = await self._read_unless_idle(timeout)
        else:
            data = await self.client_reader.read(READ_SIZE)
        self.idle_since = time.monotonic()
        metrics.FROM_CLIENT.inc(len(data))
        return data

    async def _read_unless_idle(self, timeout: float) -> bytes:
        """Idle: nothing awaited from the upstream and nothing sent by the client
        for `timeout` seconds (a long statement is not idleness)."""
        read = asyncio.ensure_future(self.client_reader.read(READ_SIZE))
        try:
            while True:
                left = timeout
                if self.router.idle:
                    left = self.idle_since + timeout - time.monotonic()
                    if left <= 0:
                        raise ProxyError(
                            SQLSTATE.IDLE_SESSION_TIMEOUT,
                            "terminating connection due to idle-session timeout",
                        )
                done, _ = await asyncio.wait({read}, timeout=left)
                if done:
                    return read.result()
        finally:
            read.cancel()

    # -- startup ---------------------------------------------------------------

    async def _startup_within_timeout(self) -> FrameReader | None:
        timeout = self.server.config.listen.startup_timeout or None
        try:
            async with asyncio.timeout(timeout):
                return await self._startup()
        except TimeoutError:
            # PostgreSQL's authentication_timeout, with its SQLSTATE and text.
            raise ProxyError(
                SQLSTATE.QUERY_CANCELED, "canceling authentication due to timeout"
            ) from None

    async def _startup(self) -> FrameReader | None:
        """Negotiate, connect upstream, relay authentication. None if no session."""
        # PostgreSQL's per-type bounds on the length word (10 000 bytes for Sync,
        # Flush, Describe, …; 1 GB for Query, Bind, Parse, CopyData), checked
        # before the body is buffered: a client cannot make the proxy hold a
        # gigabyte for a message PostgreSQL would refuse at its header.
        reader = FrameReader(startup=True, limits=codec.FRONTEND_LIMITS)
        while True:
            (frame,) = await self._read_client_one(reader)
            try:
                message = codec.decode_startup(frame)
            except codec.UnsupportedProtocolVersion:
                await self._relay_refused_startup(frame)
                return None
            if isinstance(message, codec.SSLRequest):
                await self._negotiate_tls(reader)
                continue
            if isinstance(message, codec.GSSENCRequest):
                # GSS encryption is not offered: 'N' means "go on in plain text",
                # as PostgreSQL answers when it is off.
                self._write_client(b"N")
                continue
            if isinstance(message, codec.CancelRequest):
                await self.server.cancel(message.pid, message.secret)
                return None
            if isinstance(message, codec.StartupMessage):
                break
            raise ProtocolViolation("unexpected startup packet")
        self.user = message.params.get("user", "?")
        self.database = message.params.get("database", self.user)
        self.replication = message.params.get("replication", "false").lower() not in (
            "false",
            "off",
            "no",
            "0",
        )
        if self.refusal is not None:
            raise self.refusal
        await self._connect_upstream()
        self.write_upstream(frame.raw)
        reader.end_startup()
        await self._relay_authentication(reader)
        self.log(logging.INFO, "session ready")
        self.ready = True
        return reader

    async def _negotiate_tls(self, reader: FrameReader) -> None:
        """Answer an SSLRequest: 'S' and a TLS handshake, or 'N' when TLS is off."""
        context = self.server.tls_server
        if context is None or self.client_tls:
            self._write_client(b"N")
            return
        # SECURITY: bytes sent after SSLRequest but before the handshake would be
        # read as if they had come over TLS (CVE-2021-23214): refuse them.
        if reader.buffered or len(self.client_reader._buffer):  # noqa: SLF001
            raise ProtocolViolation("received unencrypted data after SSL request")
        self._write_client(b"S")
        await self.client_writer.drain()
        try:
            await self.client_writer.start_tls(context)
        except (ssl.SSLError, OSError) as exc:
            # The peer's fault (no shared protocol, it rejected our certificate):
            # a warning, no traceback, and nothing more to say to it.
            self.log(logging.WARNING, "TLS handshake with the client failed: %s", exc)
            raise ClientGone() from None
        self.client_tls = True

    async def _relay_refused_startup(self, frame: Frame) -> None:
        """A startup for a protocol other than 3.x: the upstream answers it.

        PostgreSQL's answer depends on the version asked for (a 2.0 client gets the
        2.0 error format), so the proxy relays the upstream's reply byte for byte
        rather than writing its own, then closes as the upstream does.
        """
        await self._connect_upstream()
        assert self.upstream_reader is not None
        self.write_upstream(frame.raw)
        while data := await self.upstream_reader.read(READ_SIZE):
            self._write_client(data)

    async def _read_client_one(self, reader: FrameReader) -> list[Frame]:
        while True:
            frame = reader.next()
            if frame is not None:
                return [frame]
            data = await self.client_reader.read(READ_SIZE)
            if not data:
                raise ClientGone()
            metrics.FROM_CLIENT.inc(len(data))
            reader.feed(data)

    async def _connect_upstream(self) -> None:
        upstream = self.server.config.upstream
        started = time.monotonic()
        try:
            self.upstream_reader, self.upstream_writer = await asyncio.wait_for(
                tls.open_upstream(upstream, self.server.tls_upstream),
                upstream.connect_timeout,
            )
            metrics.UPSTREAM_CONNECT.observe(time.monotonic() - started)
        except (TimeoutError, OSError) as exc:
            self.log(logging.ERROR, "cannot reach upstream: %s", exc)
            raise ProxyError(
                SQLSTATE.CANNOT_CONNECT_NOW,
                "pgsodium-proxy cannot reach the upstream database",
            ) from None

    async def _relay_authentication(self, client: FrameReader) -> None:
        """Relay messages both ways until the first ReadyForQuery.

        SECURITY: password and SASL messages are forwarded as opaque bytes and never
        decoded or logged.
        """
        assert self.upstream_reader is not None
        upstream = FrameReader()
        while True:
            data = await self.upstream_reader.read(READ_SIZE)
            metrics.FROM_UPSTREAM.inc(len(data))
            if not data:
                raise ProxyError(
                    SQLSTATE.CONNECTION_FAILURE, "upstream closed during startup"
                )
            upstream.feed(data)
            out: list[bytes] = []
            for frame in upstream:
                answer_needed = self._startup_message(frame, out)
                if frame.type == ord("E"):
                    self._write_client(b"".join(out))
                    if self.channel_binding_hidden and self.client_tls:
                        self.log(
                            logging.WARNING,
                            "upstream refused the login; with TLS on both legs a "
                            "SCRAM client must not ask for channel binding (libpq: "
                            "channel_binding=disable)",
                        )
                    raise ClientGone()  # upstream refused: its error is relayed
                if answer_needed:
                    self._write_client(b"".join(out))
                    out.clear()
                    (reply,) = await self._read_client_one(client)
                    self.write_upstream(reply.raw)
                if frame.type == ord("Z"):
                    self._write_client(b"".join(out))
                    return
            self._write_client(b"".join(out))

    def _startup_message(self, frame: Frame, out: list[bytes]) -> bool:
        """Handle one startup-phase backend message; True if the client must answer."""
        kind = frame.type
        if kind == ord("R"):
            (code,) = struct.unpack_from("!i", frame.body)
            offered = tls.strip_channel_binding(frame.raw)
            self.channel_binding_hidden |= offered is not frame.raw
            out.append(offered)
            # cleartext, md5, GSS, GSS continue, SASL, SASL continue need an answer.
            return code in (3, 5, 7, 8, 10, 11)
        if kind == ord("K"):
            message = codec.decode_backend(frame)
            self.upstream_cancel = (message.pid, message.secret)
            self.cancel_key = self.server.issue_cancel_key(self)
            out.append(codec.BackendKeyData(*self.cancel_key).encode())
            return False
        if kind == ord("S"):
            self._note_parameter(frame)
        if kind == ord("Z"):
            self.transaction_status = chr(frame.body[0])
        out.append(frame.raw)
        return False

    def _note_parameter(self, frame: Frame) -> None:
        message = codec.decode_backend(frame)
        self.parameters[message.name] = message.value

    # -- the two pumps ---------------------------------------------------------

    async def _serve(self, client: FrameReader) -> str:
        to_upstream = asyncio.create_task(self._pump_client(client))
        to_client = asyncio.create_task(self._pump_upstream())
        try:
            done, pending = await asyncio.wait(
                {to_upstream, to_client}, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:  # shutdown: the pumps end with the session
            to_upstream.cancel()
            to_client.cancel()
            await asyncio.gather(to_upstream, to_client, return_exceptions=True)
            raise
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if to_upstream in done and not self.router.idle:
            # The client left with a statement still running: closing the socket
            # alone lets PostgreSQL run it to the end (it only notices on its next
            # write), so cancel it first, as the client's own cancel would.
            await self.server.cancel_upstream(self)
        self.router.fail_all()
        for task in done:
            exc = task.exception()
            if exc is not None:
                raise exc
        return "client closed" if to_upstream in done else "upstream closed"

    async def _pump_client(self, reader: FrameReader) -> None:
        while True:
            frames = await self._read_client(reader)
            if self.pending_abort is not None:
                await self.interceptor.abort_upstream()
            run: list[bytes] = []
            self._corked = []
            try:
                for frame in frames:
                    if frame.type == ord("X"):
                        # Forwarded, so the upstream ends the session as a clean
                        # close (no "unexpected EOF" in its log, no open transaction).
                        run.append(frame.raw)
                        self._flush_run(run)
                        self.flush_upstream()
                        await self._drain_upstream()
                        return
                    if frame.type not in _FRONTEND_TYPES:
                        self.client_violation = ProtocolViolation(
                            f"invalid frontend message type {frame.type}"
                        )
                        break
                    if self.copy_in is not None:
                        if frame.type in _COPY_TYPES:
                            self._copy_frame(self.copy_in, frame, run)
                            continue
                        self.copy_in = None  # the COPY is over for the client
                    if self.interceptor.wants(frame):
                        self._flush_run(run)
                        await self.interceptor.handle(frame)
                        continue
                    self._track(frame)
                    run.append(frame.raw)
                self._flush_run(run)
                self.flush_upstream()
            finally:
                self._corked = None
            await self._drain_upstream()
            if self.client_violation is not None:
                await self._answer_before_violation()
                raise self.client_violation

    def _copy_frame(self, rows: CopyRows, frame: Frame, run: list[bytes]) -> None:
        """One message of a COPY into a labelled table: CopyData leaves with its
        encrypted columns encrypted; after a failure (ours or the upstream's) the
        rest of the client's data is dropped, never passed on in plaintext."""
        kind = frame.type
        if kind != ord("d"):
            self.copy_in = None
        if rows.failed:
            return
        if kind == ord("f"):
            run.append(frame.raw)
            return
        try:
            out = rows.feed(frame.body) if kind == ord("d") else rows.finish()
        except Exception as exc:
            # SECURITY: the reasons name a line or a column, never a value. The
            # upstream answers the CopyFail with 57014 "COPY from stdin failed".
            rows.failed = True
            if isinstance(exc, (RewriteError, PgsodiumError)):
                reason = f"{exc.sqlstate}: {exc.message}"
            else:
                self.log(logging.ERROR, "COPY failed\n%s", redacted_traceback(exc))
                reason = f"{SQLSTATE.INTERNAL_ERROR}: pgsodium-proxy internal error"
            self.log(logging.WARNING, "COPY refused: %s", reason)
            run.append(codec.CopyFail(f"pgsodium-proxy: {reason}").encode())
            return
        if out:
            run.append(codec.CopyData(out).encode())
        if kind == ord("c"):
            run.append(frame.raw)

    async def _drain_upstream(self) -> None:
        if self.upstream_writer is not None:
            await self.upstream_writer.drain()

    async def _answer_before_violation(self) -> None:
        """Let the replies to the messages before a violation reach the client first.

        Bounded: replies that the upstream buffers until a Sync never come.
        """
        deadline = time.monotonic() + VIOLATION_GRACE_SECONDS
        while not self.router.idle and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def _flush_run(self, run: list[bytes]) -> None:
        if run:
            self.write_upstream(b"".join(run))
            run.clear()

    def _track(self, frame: Frame) -> None:
        """Queue the Reply for a frame forwarded untouched."""
        kind = frame.type
        if kind in _SYNC_LIKE:
            self.router.push(SyncReply())
        elif kind in _TERMINALS:
            self.interceptor.forget(frame)
            self.router.push(PassThrough(_TERMINALS[kind]))
        elif kind not in _NO_REPLY:
            raise ProtocolViolation(f"unexpected message type {chr(kind)!r}")

    def push(self, reply: Reply) -> None:
        self.router.push(reply)

    def push_emit(self, data: bytes) -> None:
        self.router.push(Emit(data))

    # -- the proxy's own requests ------------------------------------------------

    async def internal(
        self, *queries: tuple[str, list[str | None]] | Bound, join: bool = False
    ) -> list[list[list[str | None]]]:
        """Run the proxy's own queries on the client's connection, in one round trip;
        the rows of each, as text.

        Uses a named statement and portal of the proxy's own: the client's unnamed
        statement and portals are untouched. Between two of the client's
        transactions (idle, nothing of the client's pending upstream) they end with
        a Sync of their own and run in a transaction of their own, so the client's
        next statement starts afresh: VACUUM, CREATE DATABASE and BEGIN ISOLATION
        LEVEL refuse to run in a transaction that already ran a query (25001).
        Otherwise, or with `join` (a lock or an error that must hold in the
        client's next statement), they end with Flush and run in the client's
        transaction; if one fails, the upstream skips the rest (until the client's
        next Sync).
        Raises Skipped if the upstream discarded them, LookupFailed on an error.
        """
        messages: list[codec.Message] = []
        for query in queries:
            if not isinstance(query, Bound):
                sql, params = query
                query = Bound(
                    sql, [None if p is None else p.encode("utf-8") for p in params]
                )
            messages += [
                codec.Close("S", INTERNAL_NAME),
                codec.Parse(INTERNAL_NAME, query.sql, query.types),
                codec.Bind(
                    INTERNAL_NAME,
                    INTERNAL_NAME,
                    query.formats,
                    tuple(query.params),
                    (),
                ),
                codec.Execute(INTERNAL_NAME, 0),
                codec.Close("P", INTERNAL_NAME),
                codec.Close("S", INTERNAL_NAME),
            ]
        alone = (
            not join
            and self.transaction_status == "I"
            and self.router.idle
            and not self.router.unsynced
        )
        reply: Collect
        if alone:
            reply = CollectToReady()
            end = codec.Sync().encode()
        else:
            reply = Collect(b"123C", count=6 * len(queries))
            end = codec.Flush().encode()
        self.write_upstream(b"".join(m.encode() for m in messages) + end)
        self.router.push(reply)
        self.flush_upstream()
        frames = await reply.done
        if reply.skipped:
            raise Skipped()
        results: list[list[list[str | None]]] = [[]]
        for frame in frames:
            if frame.type == ord("E"):
                if alone:
                    await self._fail_as_joined(frame)
                raise LookupFailed(sanitize(frame))
            if frame.type == ord("D"):
                # Bytes that are not UTF-8 (a client_encoding the proxy refuses,
                # set ahead in a pipeline) are kept as surrogate escapes, for the
                # caller's check to refuse, not decoded into a crash.
                results[-1].append(
                    [
                        None if v is None else v.decode("utf-8", "surrogateescape")
                        for v in codec.data_row_values(frame.body)
                    ]
                )
            elif frame.type == ord("C"):
                results.append([])
        return results[: len(queries)]

    async def _fail_as_joined(self, frame: Frame) -> None:
        """A query run in its own transaction failed: raise its error again in the
        client's, as if it had run there, so that the upstream skips the client's
        messages up to its next Sync, as the proxy's callers expect."""
        error = codec.decode_backend(frame)
        try:
            await self.internal(
                (
                    "SELECT pgsodium._proxy_raise($1, $2)",
                    [error.sqlstate, redacted_message(error.message)],
                ),
                join=True,
            )
        except (LookupFailed, Skipped):
            pass  # the error it is for (or the function is missing: an error too)

    async def internal_describe(self, name: str, kind: str = "S") -> list[Frame]:
        """The upstream's own Describe of a prepared statement (or a portal), kept
        from the client."""
        reply = Collect(b"TnE")
        self.write_upstream(
            codec.Describe(kind, name).encode() + codec.Flush().encode()
        )
        self.router.push(reply)
        self.flush_upstream()
        return await reply.done

    async def _pump_upstream(self) -> None:
        assert self.upstream_reader is not None
        reader = FrameReader()
        while True:
            data = await self.upstream_reader.read(READ_SIZE)
            metrics.FROM_UPSTREAM.inc(len(data))
            if not data:
                if not self.upstream_fatal:
                    self._write_client(
                        metrics.error_response(
                            "FATAL",
                            SQLSTATE.CONNECTION_FAILURE,
                            "the upstream database closed the connection",
                        )
                    )
                return
            reader.feed(data)
            frames = reader.drain()
            for frame in frames:
                if frame.type == ord("Z"):
                    self.copy_pending = None
                    if self.copy_in is not None:
                        self.copy_in.failed = True  # the COPY ended upstream
                    self.readies += 1
                    self.transaction_status = chr(frame.body[0])
                    self.idle_since = time.monotonic()
                    if self.transaction_status == "I":
                        self.interceptor.transaction_ended(self.readies)
                elif frame.type == ord("S"):
                    self._note_parameter(frame)
                elif frame.type == ord("G") and self.copy_pending is not None:
                    self.copy_in, self.copy_pending = self.copy_pending, None
                elif frame.type == ord("E"):
                    error = codec.decode_backend(frame)
                    metrics.UPSTREAM_ERRORS.labels(error.sqlstate).inc()
                    if error.severity in ("FATAL", "PANIC"):
                        self.upstream_fatal = True
            self.router.feed(frames)
            if self.server.draining and self.at_rest and self._task is not None:
                # Shutting down: end the session with its ReadyForQuery, before
                # the client's next statement can start (the poll could miss it).
                self._task.cancel()
            await self.client_writer.drain()
