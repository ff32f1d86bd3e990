"""PostgreSQL protocol 3.0/3.2 messages as frozen values, one class per message.

The rule: a message decoded from a body encodes back to exactly that body. Strings
are UTF-8 with surrogateescape, integers keep the width and signedness PostgreSQL
reads them with; a body that does not parse raises MalformedMessage.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, TypeVar, dataclass_transform

_I8 = struct.Struct("!b")
_I16 = struct.Struct("!h")
_U16 = struct.Struct("!H")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_HEADER = struct.Struct("!Bi")
_NULL = _I32.pack(-1)
_M = TypeVar("_M")

# Protocol 3.2 (PostgreSQL 18) made the cancel key variable; the protocol
# documentation bounds it to 4..256 bytes, and 3.0 servers send exactly 4.
MIN_CANCEL_KEY = 4
MAX_CANCEL_KEY = 256


class ProtocolViolation(Exception):
    """The peer broke the protocol: answer 08P01 and close the connection."""


class MalformedMessage(ProtocolViolation):
    """A correctly framed message whose body does not parse.

    PostgreSQL answers this with a non-fatal ERROR 08P01 ("invalid message format")
    because the framing is still intact; a caller may choose to do the same.
    """


# -- the protocol's primitive types ------------------------------------------------


class _Body:
    """A cursor over one message body; every read checks the body's bounds."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def unpack(self, fmt: struct.Struct) -> tuple[Any, ...]:
        end = self.pos + fmt.size
        if end > len(self.data):
            raise MalformedMessage("insufficient data left in message")
        values = fmt.unpack_from(self.data, self.pos)
        self.pos = end
        return values

    def integer(self, fmt: struct.Struct) -> int:
        value: int = self.unpack(fmt)[0]
        return value

    def array(self, code: str) -> tuple[int, ...]:
        """A UInt16 count, then that many integers of struct type `code`."""
        count = self.integer(_U16)
        return self.unpack(struct.Struct(f"!{count}{code}"))

    def take(self, count: int) -> bytes:
        end = self.pos + count
        if count < 0 or end > len(self.data):
            raise MalformedMessage("insufficient data left in message")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def char(self) -> str:
        return chr(self.take(1)[0])

    def cstring(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise MalformedMessage("invalid string in message")
        text = self.data[self.pos : end].decode("utf-8", "surrogateescape")
        self.pos = end + 1
        return text

    def value(self) -> bytes | None:
        """An Int32 length (-1 for NULL), then that many bytes."""
        length = self.integer(_I32)
        return None if length == -1 else self.take(length)

    def values(self) -> tuple[bytes | None, ...]:
        return tuple(self.value() for _ in range(self.integer(_U16)))

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk

    def end(self) -> None:
        if self.pos != len(self.data):
            raise MalformedMessage("invalid message format")


def cstring(text: str) -> bytes:
    """A protocol String: the UTF-8 bytes and a NUL terminator."""
    data = text.encode("utf-8", "surrogateescape")
    if b"\0" in data:
        raise ValueError("a protocol string cannot contain NUL")
    return data + b"\0"


def _char(code: str) -> bytes:
    data = code.encode("latin-1")
    if len(data) != 1:
        raise ValueError(f"expected a one-byte code, got {code!r}")
    return data


def _value(value: bytes | None) -> bytes:
    return _NULL if value is None else _I32.pack(len(value)) + value


def _values(values: Sequence[bytes | None]) -> bytes:
    return _U16.pack(len(values)) + b"".join(map(_value, values))


def _array(code: str) -> Callable[[Sequence[int]], bytes]:
    def write(values: Sequence[int]) -> bytes:
        return struct.pack(f"!H{len(values)}{code}", len(values), *values)

    return write


def frame_bytes(type_: int, body: bytes) -> bytes:
    """A complete typed message: type byte, length word (counting itself), body."""
    return _HEADER.pack(type_, len(body) + 4) + body


# A layout names the wire type of each dataclass field, in field order.
_READ: dict[str, Callable[[_Body], Any]] = {
    "char": _Body.char,
    "str": _Body.cstring,
    "int8": lambda body: body.integer(_I8),
    "int16": lambda body: body.integer(_I16),
    "int32": lambda body: body.integer(_I32),
    "oid": lambda body: body.integer(_U32),
    "int16[]": lambda body: body.array("h"),
    "oid[]": lambda body: body.array("I"),
    "value": _Body.value,
    "value[]": _Body.values,
    "rest": _Body.rest,
}
_WRITE: dict[str, Callable[[Any], bytes]] = {
    "char": _char,
    "str": cstring,
    "int8": _I8.pack,
    "int16": _I16.pack,
    "int32": _I32.pack,
    "oid": _U32.pack,
    "int16[]": _array("h"),
    "oid[]": _array("I"),
    "value": _value,
    "value[]": _values,
    "rest": bytes,
}


class Message:
    """A typed message. Subclasses are dataclasses whose LAYOUT gives each field's
    wire type; those with an irregular body override encode_body/decode_body.
    Constructing an invalid message raises ValueError; decoding one raises
    MalformedMessage."""

    __slots__ = ()
    __match_args__: ClassVar[tuple[str, ...]]
    TYPE: ClassVar[int]
    LAYOUT: ClassVar[tuple[str, ...]] = ()

    def encode(self) -> bytes:
        return frame_bytes(self.TYPE, self.encode_body())

    def encode_body(self) -> bytes:
        fields = zip(self.LAYOUT, self.__match_args__, strict=True)
        return b"".join(_WRITE[kind](getattr(self, name)) for kind, name in fields)

    @classmethod
    def decode_body(cls, body: bytes) -> Self:
        reader = _Body(body)
        values = [_READ[kind](reader) for kind in cls.LAYOUT]
        reader.end()
        return _construct(cls, values)


_C = TypeVar("_C", bound=Message)


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def message(type_code: str, *layout: str) -> Callable[[type[_C]], type[_C]]:
    """Make a Message subclass a frozen, slotted dataclass with this type byte and
    this layout: the wire type of each field, in field order (see _READ)."""
    unknown = set(layout) - _READ.keys()
    if unknown:
        raise TypeError(f"unknown layout types {sorted(unknown)}")

    def build(cls: type[_C]) -> type[_C]:
        cls.TYPE = ord(type_code)
        cls.LAYOUT = layout
        made = dataclass(frozen=True, slots=True)(cls)
        if layout and len(layout) != len(made.__match_args__):
            raise TypeError(f"{cls.__name__}: layout and fields differ in number")
        return made

    return build


def _construct(cls: Callable[..., _M], values: Sequence[object]) -> _M:
    try:
        return cls(*values)
    except ValueError as exc:
        raise MalformedMessage(str(exc)) from None


def check_cancel_key(secret: bytes) -> None:
    """Refuse a cancel key outside the 4..256 bytes the protocol allows."""
    if not MIN_CANCEL_KEY <= len(secret) <= MAX_CANCEL_KEY:
        raise ValueError(f"cancel key of {len(secret)} bytes, expected 4 to 256")


# -- sent by both sides ------------------------------------------------------------


@message("d", "rest")
class CopyData(Message):
    data: bytes


@message("c")
class CopyDone(Message):
    """The end of a COPY data stream, from either side."""


# -- frontend ----------------------------------------------------------------------


@message("Q", "str")
class Query(Message):
    sql: str


@message("P", "str", "str", "oid[]")
class Parse(Message):
    name: str
    query: str
    param_types: tuple[int, ...] = ()


@message("B", "str", "str", "int16[]", "value[]", "int16[]")
class Bind(Message):
    portal: str
    statement: str
    param_formats: tuple[int, ...]
    params: tuple[bytes | None, ...]
    result_formats: tuple[int, ...]


# Describe and Close name a prepared statement ('S') or a portal ('P'). The kind is
# not checked here: PostgreSQL answers a bad one with an ERROR, not by closing.
@message("D", "char", "str")
class Describe(Message):
    kind: str
    name: str


@message("C", "char", "str")
class Close(Message):
    kind: str
    name: str


@message("E", "str", "int32")
class Execute(Message):
    portal: str
    max_rows: int = 0  # zero means no limit


@message("S")
class Sync(Message):
    """The end of an extended-query batch: the sync point after an error."""


@message("H")
class Flush(Message):
    """Asks the backend to send what it has buffered."""


@message("X")
class Terminate(Message):
    """The client is closing the connection."""


@message("f", "str")
class CopyFail(Message):
    message: str


@message("F", "oid", "int16[]", "value[]", "int16")
class FunctionCall(Message):
    oid: int
    arg_formats: tuple[int, ...]
    args: tuple[bytes | None, ...]
    result_format: int


# PasswordMessage, SASLInitialResponse, SASLResponse and GSSResponse all use type
# 'p'; which one it is depends on the authentication request it answers, so the
# body stays raw bytes.
@message("p", "rest")
class PasswordMessage(Message):
    data: bytes = field(repr=False)  # SECURITY: a password or SASL proof


# -- backend -----------------------------------------------------------------------


@message("R", "int32", "rest")
class Authentication(Message):
    """Every authentication request ('R'): `code` 0 is AuthenticationOk, 3 cleartext,
    5 MD5 (data = salt), 10 SASL, 11 SASLContinue, 12 SASLFinal, and so on."""

    code: int
    data: bytes = field(default=b"", repr=False)  # SECURITY: salt or SASL exchange


@message("S", "str", "str")
class ParameterStatus(Message):
    name: str
    value: str


@message("K", "int32", "rest")
class BackendKeyData(Message):
    pid: int
    secret: bytes = field(repr=False)  # SECURITY: the cancel key

    def __post_init__(self) -> None:
        check_cancel_key(self.secret)


@message("Z", "char")
class ReadyForQuery(Message):
    status: str  # transaction status: I idle, T in a transaction, E failed

    def __post_init__(self) -> None:
        if self.status not in ("I", "T", "E"):
            raise ValueError(f"invalid transaction status {self.status!r}")


@dataclass(frozen=True, slots=True)
class Field:
    """One column of a RowDescription, named as PostgreSQL's documentation does."""

    name: str
    table_oid: int = 0
    column: int = 0
    type_oid: int = 0
    type_size: int = -1
    type_modifier: int = -1
    format: int = 0


_FIELD = struct.Struct("!IhIhih")


@message("T")
class RowDescription(Message):
    fields: tuple[Field, ...]

    def encode_body(self) -> bytes:
        parts = [_U16.pack(len(self.fields))]
        for f in self.fields:
            numbers = (f.table_oid, f.column, f.type_oid, f.type_size, f.type_modifier)
            parts += (cstring(f.name), _FIELD.pack(*numbers, f.format))
        return b"".join(parts)

    @classmethod
    def decode_body(cls, body: bytes) -> Self:
        reader = _Body(body)
        count = reader.integer(_U16)
        fields = tuple(
            Field(reader.cstring(), *reader.unpack(_FIELD)) for _ in range(count)
        )
        reader.end()
        return cls(fields)


@message("D", "value[]")
class DataRow(Message):
    values: tuple[bytes | None, ...]


@message("C", "str")
class CommandComplete(Message):
    tag: str


@message("I")
class EmptyQueryResponse(Message):
    """The answer to an empty query string, in place of CommandComplete."""


class _Fields(Message):
    """ErrorResponse and NoticeResponse: (field code, value) pairs, then a NUL."""

    __slots__ = ()
    fields: tuple[tuple[str, str], ...]

    def get(self, code: str) -> str | None:
        """The value of the first field with this code, or None."""
        for key, value in self.fields:
            if key == code:
                return value
        return None

    @property
    def sqlstate(self) -> str:
        return self.get("C") or ""

    @property
    def message(self) -> str:
        return self.get("M") or ""

    @property
    def severity(self) -> str:
        """The non-localized severity (V, PostgreSQL 9.6+), else the localized S."""
        return self.get("V") or self.get("S") or ""

    def encode_body(self) -> bytes:
        parts = [_char(code) + cstring(value) for code, value in self.fields]
        if any(part[0] == 0 for part in parts):
            raise ValueError("field code 0 is the terminator")
        return b"".join(parts) + b"\0"

    @classmethod
    def decode_body(cls, body: bytes) -> Self:
        reader = _Body(body)
        fields = []
        while (code := reader.char()) != "\0":
            fields.append((code, reader.cstring()))
        reader.end()
        return _construct(cls, [tuple(fields)])


@message("E")
class ErrorResponse(_Fields):
    fields: tuple[tuple[str, str], ...]


@message("N")
class NoticeResponse(_Fields):
    fields: tuple[tuple[str, str], ...]


@message("t", "oid[]")
class ParameterDescription(Message):
    type_oids: tuple[int, ...]


@message("n")
class NoData(Message):
    """Describe found a statement or portal that returns no rows."""


@message("1")
class ParseComplete(Message):
    """Parse succeeded."""


@message("2")
class BindComplete(Message):
    """Bind succeeded."""


@message("3")
class CloseComplete(Message):
    """Close succeeded."""


@message("s")
class PortalSuspended(Message):
    """Execute stopped at its row limit; the portal can be resumed."""


@message("G", "int8", "int16[]")
class CopyInResponse(Message):
    format: int  # 0 text, 1 binary
    column_formats: tuple[int, ...]


@message("H", "int8", "int16[]")
class CopyOutResponse(Message):
    format: int
    column_formats: tuple[int, ...]


@message("W", "int8", "int16[]")
class CopyBothResponse(Message):
    format: int
    column_formats: tuple[int, ...]


@message("A", "int32", "str", "str")
class NotificationResponse(Message):
    pid: int
    channel: str
    payload: str


@message("V", "value")
class FunctionCallResponse(Message):
    value: bytes | None


@message("v")
class NegotiateProtocolVersion(Message):
    """The server's newest minor version for the requested major version, and the
    `_pq_.` options it did not recognise. PostgreSQL sends the whole version word
    (major << 16 | minor), which is why `major` is kept too."""

    minor: int
    options: tuple[str, ...] = ()
    major: int = 3

    def encode_body(self) -> bytes:
        head = struct.pack("!HHi", self.major, self.minor, len(self.options))
        return head + b"".join(map(cstring, self.options))

    @classmethod
    def decode_body(cls, body: bytes) -> Self:
        reader = _Body(body)
        major, minor, count = reader.unpack(struct.Struct("!HHi"))
        if count < 0:
            raise MalformedMessage("negative option count")
        options = tuple(reader.cstring() for _ in range(count))
        reader.end()
        return cls(minor, options, major)


@dataclass(frozen=True, slots=True)
class Unknown(Message):
    """A backend message type this codec has no class for, kept as it came."""

    type: int
    body: bytes

    def encode(self) -> bytes:
        return frame_bytes(self.type, self.body)

    def encode_body(self) -> bytes:
        return self.body
