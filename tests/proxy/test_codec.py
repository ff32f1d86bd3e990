"""The codec against exact bytes: one table of (message, bytes), used both ways.

Every entry's bytes are written out by hand from the protocol documentation
("Message Formats"), never produced by the codec under test.
"""

from __future__ import annotations

from typing import Protocol

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy import codec
from proxy.codec import (
    Authentication,
    BackendKeyData,
    Bind,
    BindComplete,
    CancelRequest,
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
    Frame,
    FrameReader,
    FunctionCall,
    FunctionCallResponse,
    GSSENCRequest,
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
    Query,
    ReadyForQuery,
    RowDescription,
    SSLRequest,
    StartupMessage,
    Sync,
    Terminate,
    Unknown,
)


class Encodes(Protocol):
    def encode(self) -> bytes: ...


FRONTEND: list[tuple[Encodes, bytes]] = [
    (Query("select 1"), b"Q\0\0\0\x0dselect 1\0"),
    (Query(""), b"Q\0\0\0\x05\0"),
    (
        Parse("s1", "select $1", (23,)),
        b"P\0\0\0\x17s1\0select $1\0\0\x01\0\0\0\x17",
    ),
    (Parse("", "select 1"), b"P\0\0\0\x10\0select 1\0\0\0"),
    (
        Bind("p1", "s1", (1,), (b"\0\x01", None), (0, 1)),
        b"B\0\0\0\x20p1\0s1\0\0\x01\0\x01\0\x02\0\0\0\x02\0\x01\xff\xff\xff\xff"
        b"\0\x02\0\0\0\x01",
    ),
    (Bind("", "", (), (), ()), b"B\0\0\0\x0c\0\0\0\0\0\0\0\0"),
    (Describe("S", "s1"), b"D\0\0\0\x08Ss1\0"),
    (Describe("P", ""), b"D\0\0\0\x06P\0"),
    (Execute("", 0), b"E\0\0\0\x09\0\0\0\0\0"),
    (Execute("p1", 100), b"E\0\0\0\x0bp1\0\0\0\0\x64"),
    (Close("S", "s1"), b"C\0\0\0\x08Ss1\0"),
    (Close("P", "p1"), b"C\0\0\0\x08Pp1\0"),
    (Sync(), b"S\0\0\0\x04"),
    (Flush(), b"H\0\0\0\x04"),
    (Terminate(), b"X\0\0\0\x04"),
    (CopyData(b"1\tx\n"), b"d\0\0\0\x081\tx\n"),
    (CopyDone(), b"c\0\0\0\x04"),
    (CopyFail("aborted"), b"f\0\0\0\x0caborted\0"),
    (
        FunctionCall(1598, (1,), (b"\0\0\0\x2a", None), 1),
        b"F\0\0\0\x1c\0\0\x06\x3e\0\x01\0\x01\0\x02\0\0\0\x04\0\0\0\x2a"
        b"\xff\xff\xff\xff\0\x01",
    ),
    (PasswordMessage(b"md5abc\0"), b"p\0\0\0\x0bmd5abc\0"),
    (
        PasswordMessage(b"SCRAM-SHA-256\0\0\0\0\x03n,,"),
        b"p\0\0\0\x19SCRAM-SHA-256\0\0\0\0\x03n,,",
    ),
]

BACKEND: list[tuple[Encodes, bytes]] = [
    (Authentication(0), b"R\0\0\0\x08\0\0\0\0"),
    (Authentication(5, b"\x01\x02\x03\x04"), b"R\0\0\0\x0c\0\0\0\x05\x01\x02\x03\x04"),
    (
        Authentication(10, b"SCRAM-SHA-256\0\0"),
        b"R\0\0\0\x17\0\0\0\x0aSCRAM-SHA-256\0\0",
    ),
    (
        ParameterStatus("client_encoding", "UTF8"),
        b"S\0\0\0\x19client_encoding\0UTF8\0",
    ),
    (
        BackendKeyData(1234, b"\x01\x02\x03\x04"),
        b"K\0\0\0\x0c\0\0\x04\xd2\x01\x02\x03\x04",
    ),
    (
        BackendKeyData(1234, bytes(range(32))),
        b"K\0\0\0\x28\0\0\x04\xd2" + bytes(range(32)),
    ),
    (ReadyForQuery("I"), b"Z\0\0\0\x05I"),
    (ReadyForQuery("T"), b"Z\0\0\0\x05T"),
    (ReadyForQuery("E"), b"Z\0\0\0\x05E"),
    (
        RowDescription(
            (
                Field("id", 16384, 1, 23, 4, -1, 0),
                Field("?column?", 0, 0, 25, -1, -1, 0),
            )
        ),
        b"T\0\0\0\x36\0\x02"
        b"id\0\0\0\x40\0\0\x01\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0"
        b"?column?\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0",
    ),
    (RowDescription(()), b"T\0\0\0\x06\0\0"),
    (
        DataRow((b"1", None, b"")),
        b"D\0\0\0\x13\0\x03\0\0\0\x011\xff\xff\xff\xff\0\0\0\0",
    ),
    (DataRow(()), b"D\0\0\0\x06\0\0"),
    (CommandComplete("SELECT 1"), b"C\0\0\0\x0dSELECT 1\0"),
    (EmptyQueryResponse(), b"I\0\0\0\x04"),
    (
        ErrorResponse(
            (
                ("S", "ERROR"),
                ("V", "ERROR"),
                ("C", "42P01"),
                ("M", 'relation "t" does not exist'),
                ("P", "15"),
            )
        ),
        b'E\0\0\0\x3bSERROR\0VERROR\0C42P01\0Mrelation "t" does not exist\0P15\0\0',
    ),
    (
        NoticeResponse((("S", "NOTICE"), ("M", "hi"))),
        b"N\0\0\0\x11SNOTICE\0Mhi\0\0",
    ),
    (ParameterDescription((23, 25)), b"t\0\0\0\x0e\0\x02\0\0\0\x17\0\0\0\x19"),
    (NoData(), b"n\0\0\0\x04"),
    (ParseComplete(), b"1\0\0\0\x04"),
    (BindComplete(), b"2\0\0\0\x04"),
    (CloseComplete(), b"3\0\0\0\x04"),
    (PortalSuspended(), b"s\0\0\0\x04"),
    (CopyInResponse(0, (0, 0)), b"G\0\0\0\x0b\0\0\x02\0\0\0\0"),
    (CopyOutResponse(1, (1,)), b"H\0\0\0\x09\x01\0\x01\0\x01"),
    (CopyBothResponse(0, ()), b"W\0\0\0\x07\0\0\0"),
    (CopyData(b"ab"), b"d\0\0\0\x06ab"),
    (CopyDone(), b"c\0\0\0\x04"),
    (NotificationResponse(4321, "jobs", "42"), b"A\0\0\0\x10\0\0\x10\xe1jobs\x0042\0"),
    (FunctionCallResponse(b"\0\0\0\x2a"), b"V\0\0\0\x0c\0\0\0\x04\0\0\0\x2a"),
    (FunctionCallResponse(None), b"V\0\0\0\x08\xff\xff\xff\xff"),
    (
        NegotiateProtocolVersion(0, ("_pq_.foo",)),
        b"v\0\0\0\x15\0\x03\0\0\0\0\0\x01_pq_.foo\0",
    ),
    (Unknown(ord("?"), b"x"), b"?\0\0\0\x05x"),
]

STARTUP: list[tuple[Encodes, bytes]] = [
    (
        StartupMessage(196608, {"user": "alice", "database": "db"}),
        b"\0\0\0\x20\0\x03\0\0user\0alice\0database\0db\0\0",
    ),
    (StartupMessage(196610, {}), b"\0\0\0\x09\0\x03\0\x02\0"),
    (SSLRequest(), b"\0\0\0\x08\x04\xd2\x16\x2f"),
    (GSSENCRequest(), b"\0\0\0\x08\x04\xd2\x16\x30"),
    (
        CancelRequest(1234, b"\x01\x02\x03\x04"),
        b"\0\0\0\x10\x04\xd2\x16\x2e\0\0\x04\xd2\x01\x02\x03\x04",
    ),
    (
        CancelRequest(1234, bytes(32)),
        b"\0\0\0\x2c\x04\xd2\x16\x2e\0\0\x04\xd2" + bytes(32),
    ),
]

TYPED_STREAM = b"".join(data for _, data in FRONTEND + BACKEND)


def _ids(table: list[tuple[Encodes, bytes]]) -> list[str]:
    return [f"{i}-{type(message).__name__}" for i, (message, _) in enumerate(table)]


def _one_frame(data: bytes, *, startup: bool = False) -> Frame:
    reader = FrameReader(startup=startup)
    reader.feed(data)
    frame = reader.next()
    assert frame is not None
    assert reader.next() is None
    assert reader.buffered == 0
    return frame


def _frames_of(chunks: list[bytes], *, startup: bool = False) -> list[Frame]:
    reader = FrameReader(startup=startup)
    frames: list[Frame] = []
    for chunk in chunks:
        reader.feed(chunk)
        frames.extend(reader)
    assert reader.buffered == 0
    return frames


# -- the table, both directions ---------------------------------------------------


@pytest.mark.parametrize(("message", "data"), FRONTEND, ids=_ids(FRONTEND))
def test_frontend_message_encodes_to_its_exact_bytes(
    message: Encodes, data: bytes
) -> None:
    assert message.encode() == data


@pytest.mark.parametrize(("message", "data"), FRONTEND, ids=_ids(FRONTEND))
def test_frontend_bytes_decode_to_the_message(message: Encodes, data: bytes) -> None:
    frame = _one_frame(data)

    assert frame == Frame(data[0], data[5:], data)
    assert codec.decode_frontend(frame) == message


@pytest.mark.parametrize(("message", "data"), BACKEND, ids=_ids(BACKEND))
def test_backend_message_encodes_to_its_exact_bytes(
    message: Encodes, data: bytes
) -> None:
    assert message.encode() == data


@pytest.mark.parametrize(("message", "data"), BACKEND, ids=_ids(BACKEND))
def test_backend_bytes_decode_to_the_message(message: Encodes, data: bytes) -> None:
    frame = _one_frame(data)

    assert frame == Frame(data[0], data[5:], data)
    assert codec.decode_backend(frame) == message


@pytest.mark.parametrize(("message", "data"), STARTUP, ids=_ids(STARTUP))
def test_startup_packet_encodes_to_its_exact_bytes(
    message: Encodes, data: bytes
) -> None:
    assert message.encode() == data


@pytest.mark.parametrize(("message", "data"), STARTUP, ids=_ids(STARTUP))
def test_startup_bytes_decode_to_the_packet(message: Encodes, data: bytes) -> None:
    frame = _one_frame(data, startup=True)

    assert frame == Frame(0, data[4:], data)
    assert codec.decode_startup(frame) == message


# -- framing: however the bytes are chunked ---------------------------------------


@pytest.mark.parametrize(
    ("_", "data"), FRONTEND + BACKEND, ids=_ids(FRONTEND + BACKEND)
)
def test_typed_message_fed_one_byte_at_a_time_gives_the_same_frame(
    _: object, data: bytes
) -> None:
    frames = _frames_of([data[i : i + 1] for i in range(len(data))])

    assert frames == [Frame(data[0], data[5:], data)]


@pytest.mark.parametrize(("_", "data"), STARTUP, ids=_ids(STARTUP))
def test_startup_packet_fed_one_byte_at_a_time_gives_the_same_frame(
    _: object, data: bytes
) -> None:
    frames = _frames_of([data[i : i + 1] for i in range(len(data))], startup=True)

    assert frames == [Frame(0, data[4:], data)]


def test_all_messages_in_one_feed_come_out_in_order_with_their_raw_bytes() -> None:
    frames = _frames_of([TYPED_STREAM])

    assert [f.raw for f in frames] == [data for _, data in FRONTEND + BACKEND]
    assert b"".join(f.raw for f in frames) == TYPED_STREAM


@given(st.lists(st.integers(0, len(TYPED_STREAM)), max_size=40))
def test_any_split_of_the_stream_gives_the_same_frames(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(TYPED_STREAM)]
    chunks = [TYPED_STREAM[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]

    frames = _frames_of(chunks)

    assert [f.raw for f in frames] == [data for _, data in FRONTEND + BACKEND]


@given(st.data())
def test_startup_then_typed_messages_split_anywhere_frame_correctly(
    data: st.DataObject,
) -> None:
    startup = STARTUP[0][1]
    stream = startup + TYPED_STREAM
    cut = data.draw(st.integers(0, len(stream)))
    reader = FrameReader(startup=True)

    reader.feed(stream[:cut])
    first = reader.next()
    if first is None:
        reader.feed(stream[cut:])
        first = reader.next()
    else:
        reader.feed(stream[cut:])
    reader.end_startup()
    rest = list(reader)

    assert first == Frame(0, startup[4:], startup)
    assert b"".join(f.raw for f in rest) == TYPED_STREAM
    assert reader.buffered == 0


def test_a_large_message_in_small_chunks_arrives_whole() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB of CopyData
    data = CopyData(payload).encode() + Sync().encode()
    chunks = [data[i : i + 1000] for i in range(0, len(data), 1000)]

    frames = _frames_of(chunks)

    assert [f.raw for f in frames] == [data[:-5], data[-5:]]
    assert frames[0].body == payload


def test_buffered_counts_bytes_not_yet_returned() -> None:
    reader = FrameReader()
    reader.feed(Sync().encode() + Query("x").encode()[:3])

    assert reader.buffered == 8
    assert reader.next() == Frame(ord("S"), b"", b"S\0\0\0\x04")
    assert reader.buffered == 3
    assert reader.next() is None
    assert reader.buffered == 3


def test_feed_accepts_bytearray_and_memoryview() -> None:
    reader = FrameReader()
    reader.feed(bytearray(b"S\0\0"))
    reader.feed(memoryview(b"\0\x04"))

    assert list(reader) == [Frame(ord("S"), b"", b"S\0\0\0\x04")]
