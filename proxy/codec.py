"""Sans-I/O codec for PostgreSQL frontend/backend protocol 3.0 (and 3.2's cancel key).

Bytes in, frames and messages out: no sockets, no asyncio, no logging. Every frame
keeps the exact bytes it came from, so what the proxy does not change it forwards
byte-identical. Message classes live in proxy.messages and are re-exported here.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, NoReturn, Self

from .messages import (
    MAX_CANCEL_KEY,
    MIN_CANCEL_KEY,
    Authentication,
    BackendKeyData,
    Bind,
    BindComplete,
    Close,
    CloseComplete,
    CommandComplete,
    CopyBothResponse,
    CopyData,
    CopyDone,
    CopyFail,
    CopyInResponse,
    CopyOutResponse,
    DataRow,
    Describe,
    EmptyQueryResponse,
    ErrorResponse,
    Execute,
    Field,
    Flush,
    FunctionCall,
    FunctionCallResponse,
    MalformedMessage,
    Message,
    NegotiateProtocolVersion,
    NoData,
    NoticeResponse,
    NotificationResponse,
    ParameterDescription,
    ParameterStatus,
    Parse,
    ParseComplete,
    PasswordMessage,
    PortalSuspended,
    ProtocolViolation,
    Query,
    ReadyForQuery,
    RowDescription,
    Sync,
    Terminate,
    Unknown,
    check_cancel_key,
    cstring,
    frame_bytes,
)

__all__ = [
    # framing and startup phase
    "Frame", "FrameReader", "MAX_MESSAGE", "MAX_STARTUP_PACKET", "SMALL_MESSAGE",
    "MAX_AUTH_TOKEN", "FRONTEND_LIMITS", "PROTOCOL_3_0", "PROTOCOL_3_2",
    "CANCEL_REQUEST_CODE", "SSL_REQUEST_CODE", "GSSENC_REQUEST_CODE",
    "MIN_CANCEL_KEY", "MAX_CANCEL_KEY", "StartupPacket", "StartupMessage",
    "SSLRequest", "GSSENCRequest", "CancelRequest", "decode_startup",
    # errors
    "ProtocolViolation", "MalformedMessage", "UnsupportedProtocolVersion",
    # typed messages
    "Message", "FRONTEND_MESSAGES", "BACKEND_MESSAGES", "decode_frontend",
    "decode_backend", "Query", "Parse", "Bind", "Describe", "Execute", "Close",
    "Sync", "Flush", "Terminate", "CopyData", "CopyDone", "CopyFail", "FunctionCall",
    "PasswordMessage", "Authentication", "ParameterStatus", "BackendKeyData",
    "ReadyForQuery", "Field", "RowDescription", "DataRow", "CommandComplete",
    "EmptyQueryResponse", "ErrorResponse", "NoticeResponse", "ParameterDescription",
    "NoData", "ParseComplete", "BindComplete", "CloseComplete", "PortalSuspended",
    "CopyInResponse", "CopyOutResponse", "CopyBothResponse", "NotificationResponse",
    "FunctionCallResponse", "NegotiateProtocolVersion", "Unknown",
    # builders and hot paths
    "error_response", "notice_response", "ready_for_query", "data_row_values",
    "encode_data_row", "query_text", "frame_bytes", "cstring", "check_cancel_key",
]  # fmt: skip

MAX_STARTUP_PACKET = 10_000  # MAX_STARTUP_PACKET_LENGTH: bound on the body
MAX_MESSAGE = 0x3FFFFFFF  # PQ_LARGE_MESSAGE_LIMIT: bound on the length word
SMALL_MESSAGE = 10_000  # PQ_SMALL_MESSAGE_LIMIT
MAX_AUTH_TOKEN = 65_535  # PG_MAX_AUTH_TOKEN_LENGTH, for 'p' during authentication

PROTOCOL_3_0 = 3 << 16
PROTOCOL_3_2 = 3 << 16 | 2
CANCEL_REQUEST_CODE = 1234 << 16 | 5678
SSL_REQUEST_CODE = 1234 << 16 | 5679
GSSENC_REQUEST_CODE = 1234 << 16 | 5680

# The length-word bound PostgreSQL's SocketBackend applies per frontend message
# type, checked before the body is buffered; a type missing here is not a frontend
# message at all. Pass as FrameReader(limits=...) on the client side.
FRONTEND_LIMITS: Mapping[int, int] = {
    **dict.fromkeys(b"QFBPd", MAX_MESSAGE),
    **dict.fromkeys(b"XCDEHScf", SMALL_MESSAGE),
    ord("p"): MAX_AUTH_TOKEN,
}

_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_U16 = struct.Struct("!H")
_HEADER = struct.Struct("!Bi")
_COPY_ONCE = 4096  # from this size, copy a frame out through a memoryview


class UnsupportedProtocolVersion(ProtocolViolation):
    """A startup message asks for a major protocol version other than 3.

    PostgreSQL answers FATAL 0A000 "unsupported frontend protocol" here, not 08P01.
    """

    def __init__(self, protocol: int) -> None:
        major, minor = protocol >> 16, protocol & 0xFFFF
        super().__init__(f"unsupported frontend protocol {major}.{minor}")
        self.protocol = protocol


class Frame(NamedTuple):
    type: int  # message type byte; 0 for untyped startup-phase packets
    body: bytes  # payload after the length word
    raw: bytes  # the complete original bytes: type byte, length word, body


# -- framing ------------------------------------------------------------------------


class FrameReader:
    """Splits a byte stream into frames, however the bytes were chunked.

    Bytes are appended to one buffer and read from an offset; consumed bytes are
    dropped on the next feed, so each byte is copied a bounded number of times. After
    a bad length word the stream cannot be resynchronised: every later call raises.
    """

    __slots__ = ("_buf", "_pos", "_startup", "_max", "_limits", "_failed")

    def __init__(
        self,
        *,
        startup: bool = False,
        max_message: int = MAX_MESSAGE,
        limits: Mapping[int, int] | None = None,
    ) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._startup = startup
        self._max = max_message
        self._limits = limits
        self._failed: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes held but not yet returned as frames."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes received from the peer; call next() or iterate to get frames."""
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def end_startup(self) -> None:
        """From now on, expect typed messages (after the StartupMessage)."""
        self._startup = False

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.next()) is not None:
            yield frame

    def drain(self) -> list[Frame]:
        """Every complete frame buffered now, as next() would return them one by one.

        The hot path of result rows: headers are read in place, then the complete
        frames are copied out of the buffer once and each frame's bytes sliced from
        that copy (next() copies each frame twice). A frame still arriving is not
        copied, however long it grows.
        """
        if self._failed is not None or self._startup:
            return list(self)
        buf, pos = self._buf, self._pos
        size = len(buf)
        bounds: list[tuple[int, int]] = []
        unpack, limit, checked = _HEADER.unpack_from, self._max, self._limits is None
        while size - pos >= 5:
            type_, length = unpack(buf, pos)
            if length < 4 or length > limit or not checked:
                self._check_length(type_, length)
            end = pos + 1 + length
            if end > size:
                break
            bounds.append((type_, end))
            pos = end
        if not bounds:
            return []
        start = self._pos
        with memoryview(buf) as view:
            data = bytes(view[start:pos])
        self._pos = pos
        frames = []
        at = 0
        for type_, end in bounds:
            end -= start
            frames.append(Frame(type_, data[at + 5 : end], data[at:end]))
            at = end
        return frames

    def next(self) -> Frame | None:
        """One complete frame, or None until more bytes are fed."""
        if self._failed is not None:
            raise ProtocolViolation(self._failed)
        if self._startup:
            return self._next_startup()

        buf, pos = self._buf, self._pos
        if len(buf) - pos < 5:
            return None
        type_, length = _HEADER.unpack_from(buf, pos)
        if length < 4 or length > self._max or self._limits is not None:
            self._check_length(type_, length)
        end = pos + 1 + length
        if end > len(buf):
            return None

        raw = self._take(end)
        return Frame(type_, raw[5:], raw)

    def _check_length(self, type_: int, length: int) -> None:
        limit = self._max
        if self._limits is not None:
            if type_ not in self._limits:
                self._fail(f"invalid frontend message type {type_}")
            limit = min(limit, self._limits[type_])
        if length < 4 or length > limit:
            self._fail(f"invalid message length {length} for type {type_}")

    def _next_startup(self) -> Frame | None:
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 4:
            return None
        (length,) = _I32.unpack_from(buf, pos)
        # Same bounds as PostgreSQL's ProcessStartupPacket: the body holds at least
        # the protocol version or request code and at most MAX_STARTUP_PACKET bytes.
        if length < 8 or length - 4 > MAX_STARTUP_PACKET:
            self._fail(f"invalid length of startup packet {length}")
        end = pos + length
        if end > len(buf):
            return None

        raw = self._take(end)
        return Frame(0, raw[4:], raw)

    def _take(self, end: int) -> bytes:
        start, self._pos = self._pos, end
        if end - start < _COPY_ONCE:
            return bytes(self._buf[start:end])  # two small copies beat a view
        with memoryview(self._buf) as view:
            return bytes(view[start:end])

    def _fail(self, reason: str) -> NoReturn:
        self._failed = reason
        raise ProtocolViolation(reason)


# -- startup phase: untyped packets, told apart by their first Int32 ----------------


def _startup_bytes(body: bytes) -> bytes:
    return _I32.pack(len(body) + 4) + body


def _no_more(body: bytes, name: str) -> None:
    if body:
        raise MalformedMessage(f"invalid length of {name} packet")


@dataclass(frozen=True, slots=True)
class StartupMessage:
    """Protocol version and parameters (user, database, options, GUCs, _pq_.*).

    A name given twice keeps its last value, as in PostgreSQL; re-encoding such a
    message is not byte-identical, so forward the frame's raw bytes instead."""

    protocol: int
    params: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        pairs = (cstring(k) + cstring(v) for k, v in self.params.items())
        return _startup_bytes(_U32.pack(self.protocol) + b"".join(pairs) + b"\0")

    @classmethod
    def decode_body(cls, protocol: int, body: bytes) -> Self:
        params: dict[str, str] = {}
        pos = 0
        while True:
            name_end = body.find(b"\0", pos)
            if name_end == pos:
                break
            value_end = body.find(b"\0", name_end + 1)
            if name_end < 0 or value_end < 0:
                raise MalformedMessage("invalid startup packet layout")
            name, value = body[pos:name_end], body[name_end + 1 : value_end]
            params[_text(name)] = _text(value)
            pos = value_end + 1
        if pos != len(body) - 1:
            raise MalformedMessage("invalid startup packet layout: expected terminator")
        return cls(protocol, params)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class SSLRequest:
    def encode(self) -> bytes:
        return _startup_bytes(_U32.pack(SSL_REQUEST_CODE))


@dataclass(frozen=True, slots=True)
class GSSENCRequest:
    def encode(self) -> bytes:
        return _startup_bytes(_U32.pack(GSSENC_REQUEST_CODE))


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """Sent on a new connection in place of a StartupMessage; nothing is answered."""

    pid: int
    secret: bytes = field(repr=False)  # SECURITY: the cancel key

    def __post_init__(self) -> None:
        check_cancel_key(self.secret)

    def encode(self) -> bytes:
        head = struct.pack("!Ii", CANCEL_REQUEST_CODE, self.pid)
        return _startup_bytes(head + self.secret)

    @classmethod
    def decode_body(cls, body: bytes) -> Self:
        if not MIN_CANCEL_KEY <= len(body) - 4 <= MAX_CANCEL_KEY:
            raise MalformedMessage("invalid length of cancel request packet")
        (pid,) = _I32.unpack_from(body)
        return cls(pid, body[4:])


StartupPacket = StartupMessage | SSLRequest | GSSENCRequest | CancelRequest


def decode_startup(frame: Frame) -> StartupPacket:
    """The startup-phase packet in an untyped frame (FrameReader(startup=True))."""
    if frame.type != 0:
        raise ValueError("decode_startup takes an untyped startup-phase frame")
    if len(frame.body) < 4:
        raise MalformedMessage("invalid length of startup packet")

    (code,) = _U32.unpack_from(frame.body)
    rest = frame.body[4:]
    if code == SSL_REQUEST_CODE:
        _no_more(rest, "SSL request")
        return SSLRequest()
    if code == GSSENC_REQUEST_CODE:
        _no_more(rest, "GSSENC request")
        return GSSENCRequest()
    if code == CANCEL_REQUEST_CODE:
        return CancelRequest.decode_body(rest)
    if code >> 16 != 3:
        raise UnsupportedProtocolVersion(code)
    return StartupMessage.decode_body(code, rest)


# -- typed messages ---------------------------------------------------------------


def _table(*classes: type[Message]) -> dict[int, type[Message]]:
    table = {cls.TYPE: cls for cls in classes}
    if len(table) != len(classes):
        raise TypeError("two messages of one direction share a type byte")
    return table


FRONTEND_MESSAGES = _table(
    Query, Parse, Bind, Describe, Execute, Close, Sync, Flush, Terminate,
    CopyData, CopyDone, CopyFail, FunctionCall, PasswordMessage,
)  # fmt: skip
BACKEND_MESSAGES = _table(
    Authentication, ParameterStatus, BackendKeyData, ReadyForQuery, RowDescription,
    DataRow, CommandComplete, EmptyQueryResponse, ErrorResponse, NoticeResponse,
    ParameterDescription, NoData, ParseComplete, BindComplete, CloseComplete,
    PortalSuspended, CopyInResponse, CopyOutResponse, CopyBothResponse, CopyData,
    CopyDone, NotificationResponse, FunctionCallResponse, NegotiateProtocolVersion,
)  # fmt: skip


def decode_frontend(frame: Frame) -> Message:
    """A message the client sent; an unknown type byte is a protocol violation."""
    cls = FRONTEND_MESSAGES.get(frame.type)
    if cls is None:
        raise ProtocolViolation(f"invalid frontend message type {frame.type}")
    return cls.decode_body(frame.body)


def decode_backend(frame: Frame) -> Message:
    """A message upstream sent; an unknown type byte decodes to Unknown."""
    cls = BACKEND_MESSAGES.get(frame.type)
    if cls is None:
        return Unknown(frame.type, frame.body)
    return cls.decode_body(frame.body)


# -- building replies -------------------------------------------------------------


def _fields(
    severity: str,
    sqlstate: str,
    message: str,
    detail: str | None,
    hint: str | None,
    position: int | None,
) -> tuple[tuple[str, str], ...]:
    # S is localized in PostgreSQL and V (9.6+) never is; the proxy does not
    # localize, so both carry the same word.
    fields = [("S", severity), ("V", severity), ("C", sqlstate), ("M", message)]
    optional = (("D", detail), ("H", hint), ("P", position))
    fields += [(code, str(value)) for code, value in optional if value is not None]
    # A field is a C string: a NUL in a text the proxy quotes ends it there, as
    # the server's own formatting would (the message is still sent).
    return tuple((code, value.split("\0", 1)[0]) for code, value in fields)


def error_response(
    severity: str,
    sqlstate: str,
    message: str,
    *,
    detail: str | None = None,
    hint: str | None = None,
    position: int | None = None,
) -> bytes:
    """An ErrorResponse with S, V, C, M, and D, H, P when given (P: 1-based
    character position in the statement text)."""
    fields = _fields(severity, sqlstate, message, detail, hint, position)
    return ErrorResponse(fields).encode()


def notice_response(
    severity: str,
    sqlstate: str,
    message: str,
    *,
    detail: str | None = None,
    hint: str | None = None,
    position: int | None = None,
) -> bytes:
    """A NoticeResponse, with the same fields as error_response."""
    fields = _fields(severity, sqlstate, message, detail, hint, position)
    return NoticeResponse(fields).encode()


def ready_for_query(status: str) -> bytes:
    """ReadyForQuery with transaction status "I", "T" or "E"."""
    return ReadyForQuery(status).encode()


# -- hot paths: no dataclass round trip ------------------------------------------

_DATA_ROW = ord("D")
_NULL = _I32.pack(-1)


def data_row_values(body: bytes) -> list[bytes | None]:
    """The column values of a DataRow body, None for NULL."""
    values: list[bytes | None] = []
    unpack = _I32.unpack_from
    end = len(body)
    try:
        (count,) = _U16.unpack_from(body)
        pos = 2
        for _ in range(count):
            (length,) = unpack(body, pos)
            pos += 4
            if length == -1:
                values.append(None)
                continue
            if length < 0 or pos + length > end:
                raise MalformedMessage("insufficient data left in message")
            values.append(body[pos : pos + length])
            pos += length
    except struct.error:
        raise MalformedMessage("insufficient data left in message") from None
    if pos != end:
        raise MalformedMessage("invalid message format")
    return values


def encode_data_row(values: Sequence[bytes | None]) -> bytes:
    """A complete DataRow message."""
    parts = [b"", _U16.pack(len(values))]
    length = 6  # the length word and the column count
    for value in values:
        if value is None:
            parts.append(_NULL)
            length += 4
        else:
            parts += (_I32.pack(len(value)), value)
            length += 4 + len(value)
    parts[0] = _HEADER.pack(_DATA_ROW, length)
    return b"".join(parts)


def query_text(body: bytes) -> bytes:
    """The SQL bytes of a Query body, without the NUL terminator."""
    if not body or body.find(b"\0") != len(body) - 1:
        raise MalformedMessage("invalid string in message")
    return body[:-1]
