"""What the codec refuses: bad length words, malformed bodies, unknown types.

Each refusal is a ProtocolViolation (MalformedMessage when only the body is bad),
never another exception; and whatever body does decode re-encodes to itself.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy import codec
from proxy.codec import (
    FRONTEND_LIMITS,
    MAX_STARTUP_PACKET,
    Frame,
    FrameReader,
    MalformedMessage,
    ProtocolViolation,
    UnsupportedProtocolVersion,
)

from .test_codec import BACKEND, FRONTEND, STARTUP


def _frame(type_: int, body: bytes) -> Frame:
    return Frame(type_, body, bytes([type_]) + (len(body) + 4).to_bytes(4) + body)


def _startup_frame(body: bytes) -> Frame:
    return Frame(0, body, (len(body) + 4).to_bytes(4) + body)


# -- length words ------------------------------------------------------------------


@pytest.mark.parametrize(
    "length", [b"\0\0\0\0", b"\0\0\0\x03", b"\xff\xff\xff\xff", b"\x80\0\0\0"]
)
def test_typed_length_word_below_4_or_negative_raises(length: bytes) -> None:
    reader = FrameReader()
    reader.feed(b"Q" + length + b"select 1\0")

    with pytest.raises(ProtocolViolation):
        reader.next()


def test_typed_length_word_above_max_message_raises_before_the_body_arrives() -> None:
    reader = FrameReader(max_message=100)
    reader.feed(b"d\0\0\0\x64" + bytes(96))
    assert reader.next() is not None

    reader.feed(b"d\0\0\0\x65")
    with pytest.raises(ProtocolViolation):
        reader.next()


def test_default_limit_is_postgresql_large_message_limit() -> None:
    reader = FrameReader()
    reader.feed(b"d\x40\0\0\0")

    with pytest.raises(ProtocolViolation):
        reader.next()


@pytest.mark.parametrize("length", [0, 3, 4, 7, -1])
def test_startup_length_word_below_8_raises(length: int) -> None:
    reader = FrameReader(startup=True)
    reader.feed(length.to_bytes(4, signed=True) + bytes(8))

    with pytest.raises(ProtocolViolation):
        reader.next()


def test_startup_body_of_max_startup_packet_bytes_is_accepted_one_more_is_not() -> None:
    body = (3 << 16).to_bytes(4) + b"options\0" + b"x" * (MAX_STARTUP_PACKET - 14)
    body += b"\0\0"
    assert len(body) == MAX_STARTUP_PACKET
    reader = FrameReader(startup=True)
    reader.feed((len(body) + 4).to_bytes(4) + body)
    frame = reader.next()
    assert frame is not None and len(frame.raw) == MAX_STARTUP_PACKET + 4

    oversized = FrameReader(startup=True)
    oversized.feed((MAX_STARTUP_PACKET + 5).to_bytes(4))
    with pytest.raises(ProtocolViolation):
        oversized.next()


def test_tls_client_hello_in_place_of_a_startup_packet_raises() -> None:
    reader = FrameReader(startup=True)
    reader.feed(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")

    with pytest.raises(ProtocolViolation):
        reader.next()


def test_reader_keeps_raising_after_a_bad_length_word() -> None:
    reader = FrameReader()
    reader.feed(b"S\0\0\0\0")
    with pytest.raises(ProtocolViolation):
        reader.next()

    reader.feed(b"S\0\0\0\x04")
    with pytest.raises(ProtocolViolation):
        reader.next()
    with pytest.raises(ProtocolViolation):
        list(reader)


# -- message types -------------------------------------------------------------------


@pytest.mark.parametrize("type_", [0, ord("Z"), ord("R"), ord("T"), ord("p") + 1, 255])
def test_unknown_frontend_type_raises(type_: int) -> None:
    with pytest.raises(ProtocolViolation) as raised:
        codec.decode_frontend(_frame(type_, b""))

    assert not isinstance(raised.value, MalformedMessage)


def test_unknown_backend_type_decodes_to_unknown_with_its_body() -> None:
    message = codec.decode_backend(_frame(ord("~"), b"\x01\x02"))

    assert message == codec.Unknown(ord("~"), b"\x01\x02")


def test_frontend_limits_reject_an_unknown_type_before_its_body_arrives() -> None:
    reader = FrameReader(limits=FRONTEND_LIMITS)
    reader.feed(b"Z\0\0\0\x05")

    with pytest.raises(ProtocolViolation):
        reader.next()


def test_frontend_limits_reject_a_sync_longer_than_postgresql_allows() -> None:
    reader = FrameReader(limits=FRONTEND_LIMITS)
    reader.feed(b"S\0\0\x27\x11")  # 10001 > PQ_SMALL_MESSAGE_LIMIT

    with pytest.raises(ProtocolViolation):
        reader.next()


def test_frontend_limits_let_a_large_query_through() -> None:
    sql = b"select '" + b"x" * 20_000 + b"'\0"
    reader = FrameReader(limits=FRONTEND_LIMITS)
    reader.feed(b"Q" + (len(sql) + 4).to_bytes(4) + sql)

    frame = reader.next()

    assert frame is not None and codec.query_text(frame.body) == sql[:-1]


def test_decode_startup_refuses_a_typed_frame() -> None:
    with pytest.raises(ValueError):
        codec.decode_startup(_frame(ord("Q"), b"x\0"))


# -- malformed bodies ----------------------------------------------------------------

MALFORMED_FRONTEND = [
    ("query without terminator", ord("Q"), b"select 1"),
    ("query with trailing bytes", ord("Q"), b"select 1\0x"),
    ("parse type count overruns", ord("P"), b"\0select 1\0\0\x02\0\0\0\x17"),
    ("bind value overruns", ord("B"), b"\0\0\0\0\0\x01\0\0\0\x09abc\0\0"),
    ("bind length below -1", ord("B"), b"\0\0\0\0\0\x01\xff\xff\xff\xfe\0\0"),
    ("bind missing result formats", ord("B"), b"\0\0\0\0\0\0"),
    ("describe without name", ord("D"), b"S"),
    ("describe empty", ord("D"), b""),
    ("execute short max_rows", ord("E"), b"\0\0\0"),
    ("sync with a body", ord("S"), b"\0"),
    ("terminate with a body", ord("X"), b"x"),
    ("copy fail without terminator", ord("f"), b"oops"),
    ("function call truncated", ord("F"), b"\0\0\x06\x3e\0\x01\0"),
]


@pytest.mark.parametrize(
    ("type_", "body"),
    [case[1:] for case in MALFORMED_FRONTEND],
    ids=[case[0] for case in MALFORMED_FRONTEND],
)
def test_malformed_frontend_body_raises_malformed_message(
    type_: int, body: bytes
) -> None:
    with pytest.raises(MalformedMessage):
        codec.decode_frontend(_frame(type_, body))


MALFORMED_BACKEND = [
    ("authentication without code", ord("R"), b"\0\0"),
    ("parameter status missing value", ord("S"), b"TimeZone\0UTC"),
    ("cancel key of 3 bytes", ord("K"), b"\0\0\x04\xd2\x01\x02\x03"),
    ("cancel key of 257 bytes", ord("K"), b"\0\0\x04\xd2" + bytes(257)),
    ("transaction status X", ord("Z"), b"X"),
    ("ready for query with two bytes", ord("Z"), b"II"),
    ("row description field count overruns", ord("T"), b"\0\x01id\0\0\0"),
    ("data row count overruns", ord("D"), b"\0\x02\0\0\0\x01a"),
    ("data row trailing bytes", ord("D"), b"\0\x00\0"),
    ("error response without final NUL", ord("E"), b"SERROR\0"),
    ("error field without terminator", ord("E"), b"SERROR"),
    ("notice trailing bytes", ord("N"), b"Mhi\0\0x"),
    ("parameter description overruns", ord("t"), b"\0\x02\0\0\0\x17"),
    ("copy response truncated", ord("G"), b"\0\0\x02\0\0"),
    ("notification missing payload", ord("A"), b"\0\0\x10\xe1jobs\0"),
    ("function result overruns", ord("V"), b"\0\0\0\x05abc"),
    ("negotiate option count overruns", ord("v"), b"\0\x03\0\0\0\0\0\x02a\0"),
    ("negotiate negative option count", ord("v"), b"\0\x03\0\0\xff\xff\xff\xff"),
    ("empty query response with a body", ord("I"), b"\0"),
]


@pytest.mark.parametrize(
    ("type_", "body"),
    [case[1:] for case in MALFORMED_BACKEND],
    ids=[case[0] for case in MALFORMED_BACKEND],
)
def test_malformed_backend_body_raises_malformed_message(
    type_: int, body: bytes
) -> None:
    with pytest.raises(MalformedMessage):
        codec.decode_backend(_frame(type_, body))


MALFORMED_STARTUP = [
    ("missing final terminator", b"\0\x03\0\0user\0alice\0"),
    ("name without value", b"\0\x03\0\0user\0\0"),
    ("bytes after terminator", b"\0\x03\0\0user\0alice\0\0x"),
    ("no terminator at all", b"\0\x03\0\0"),
    ("ssl request with extra bytes", b"\x04\xd2\x16\x2f\0"),
    ("gssenc request with extra bytes", b"\x04\xd2\x16\x30\0"),
    ("cancel request without key", b"\x04\xd2\x16\x2e\0\0\x04\xd2"),
    ("cancel key of 3 bytes", b"\x04\xd2\x16\x2e\0\0\x04\xd2\x01\x02\x03"),
    ("cancel key of 257 bytes", b"\x04\xd2\x16\x2e\0\0\x04\xd2" + bytes(257)),
    ("body shorter than a version", b"\0\x03"),
]


@pytest.mark.parametrize(
    "body",
    [case[1] for case in MALFORMED_STARTUP],
    ids=[case[0] for case in MALFORMED_STARTUP],
)
def test_malformed_startup_packet_raises_malformed_message(body: bytes) -> None:
    with pytest.raises(MalformedMessage):
        codec.decode_startup(_startup_frame(body))


@pytest.mark.parametrize("protocol", [2 << 16, 4 << 16, 1234 << 16 | 5681])
def test_startup_for_another_major_version_raises_unsupported_protocol(
    protocol: int,
) -> None:
    with pytest.raises(UnsupportedProtocolVersion) as raised:
        codec.decode_startup(_startup_frame(protocol.to_bytes(4) + b"\0"))

    assert raised.value.protocol == protocol


@pytest.mark.parametrize(
    ("_", "data"), FRONTEND, ids=[m for m, _ in enumerate(FRONTEND)]
)
def test_every_truncation_of_a_frontend_body_raises_or_round_trips(
    _: object, data: bytes
) -> None:
    body = data[5:]
    for cut in range(len(body)):
        frame = _frame(data[0], body[:cut])
        try:
            message = codec.decode_frontend(frame)
        except MalformedMessage:
            continue
        assert message.encode() == frame.raw


@pytest.mark.parametrize(("_", "data"), BACKEND, ids=[m for m, _ in enumerate(BACKEND)])
def test_every_truncation_of_a_backend_body_raises_or_round_trips(
    _: object, data: bytes
) -> None:
    body = data[5:]
    for cut in range(len(body)):
        frame = _frame(data[0], body[:cut])
        try:
            message = codec.decode_backend(frame)
        except MalformedMessage:
            continue
        assert message.encode() == frame.raw


@pytest.mark.parametrize(("_", "data"), STARTUP, ids=[m for m, _ in enumerate(STARTUP)])
def test_every_truncation_of_a_startup_body_raises_or_round_trips(
    _: object, data: bytes
) -> None:
    body = data[4:]
    for cut in range(len(body)):
        frame = _startup_frame(body[:cut])
        try:
            message = codec.decode_startup(frame)
        except ProtocolViolation:
            continue
        assert message.encode() == frame.raw


# -- fuzzing: no other exception, and what decodes re-encodes ------------------------

TYPES = sorted({data[0] for _, data in FRONTEND + BACKEND} | {ord("~")})


@given(st.sampled_from(TYPES), st.binary(max_size=64))
def test_any_frontend_body_raises_a_violation_or_round_trips(
    type_: int, body: bytes
) -> None:
    frame = _frame(type_, body)
    try:
        message = codec.decode_frontend(frame)
    except ProtocolViolation:
        return
    assert message.encode() == frame.raw


@given(st.sampled_from(TYPES), st.binary(max_size=64))
def test_any_backend_body_raises_a_violation_or_round_trips(
    type_: int, body: bytes
) -> None:
    frame = _frame(type_, body)
    try:
        message = codec.decode_backend(frame)
    except ProtocolViolation:
        return
    assert message.encode() == frame.raw


@given(st.binary(max_size=64))
def test_any_startup_body_raises_a_violation_or_round_trips(body: bytes) -> None:
    frame = _startup_frame((3 << 16).to_bytes(4) + body)
    try:
        message = codec.decode_startup(frame)
    except ProtocolViolation:
        return
    names = body.split(b"\0")[:-2:2]
    if len(set(names)) < len(names):
        return  # a repeated name keeps only its last value, as in PostgreSQL
    assert message.encode() == frame.raw


@given(st.binary(max_size=200))
def test_any_byte_stream_yields_frames_or_a_violation(stream: bytes) -> None:
    reader = FrameReader()
    reader.feed(stream)
    try:
        frames = list(reader)
    except ProtocolViolation:
        return
    consumed = b"".join(f.raw for f in frames)
    assert stream.startswith(consumed)
    assert len(consumed) + reader.buffered == len(stream)
