"""Strings, cancel keys, reply builders and the hot-path DataRow/Query helpers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy import codec
from proxy.codec import (
    BackendKeyData,
    CancelRequest,
    ErrorResponse,
    Frame,
    FrameReader,
    MalformedMessage,
    NegotiateProtocolVersion,
    NoticeResponse,
    Query,
    ReadyForQuery,
    StartupMessage,
)


def _decode_one(data: bytes, *, backend: bool = False) -> object:
    reader = FrameReader()
    reader.feed(data)
    frame = reader.next()
    assert frame is not None
    return codec.decode_backend(frame) if backend else codec.decode_frontend(frame)


# -- strings ---------------------------------------------------------------------------


NON_UTF8 = [
    b"select '\xff\xfe'",  # not UTF-8 at all
    b"select '\xed\xa0\x80'",  # an encoded surrogate, which UTF-8 forbids
    b"select '\xc3'",  # a sequence cut short
    b"select '\xe9t\xe9'",  # LATIN1 text sent under client_encoding=LATIN1
]


@pytest.mark.parametrize("sql", NON_UTF8)
def test_non_utf8_query_round_trips_byte_for_byte(sql: bytes) -> None:
    data = b"Q" + (len(sql) + 5).to_bytes(4) + sql + b"\0"

    message = _decode_one(data)

    assert isinstance(message, Query)
    assert message.sql.encode("utf-8", "surrogateescape") == sql
    assert message.encode() == data


def test_non_utf8_error_fields_round_trip_byte_for_byte() -> None:
    data = b"E\0\0\0\x14SERREUR\0M\xe9chec\0\0"

    message = _decode_one(data, backend=True)

    assert isinstance(message, ErrorResponse)
    assert message.encode() == data


def test_non_utf8_startup_parameters_round_trip_byte_for_byte() -> None:
    body = b"\0\x03\0\0user\0\xe9lise\0application_name\0\xff\0\0"
    frame = Frame(0, body, (len(body) + 4).to_bytes(4) + body)

    message = codec.decode_startup(frame)

    assert isinstance(message, StartupMessage)
    assert message.encode() == frame.raw


def test_utf8_text_decodes_to_the_same_characters() -> None:
    sql = "select 'ünïcödé ✓'"

    message = _decode_one(Query(sql).encode())

    assert message == Query(sql)


def test_string_containing_nul_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        Query("select 1\0; drop table t").encode()


def test_startup_params_keep_order_and_a_repeated_name_keeps_last_value() -> None:
    body = b"\0\x03\0\0user\0a\0database\0d\0user\0b\0\0"

    message = codec.decode_startup(Frame(0, body, (len(body) + 4).to_bytes(4) + body))

    assert isinstance(message, StartupMessage)
    assert list(message.params.items()) == [("user", "b"), ("database", "d")]


def test_describe_with_an_unknown_kind_decodes_for_postgresql_to_refuse() -> None:
    message = _decode_one(b"D\0\0\0\x06X\0")

    assert message == codec.Describe("X", "")


# -- cancel keys and protocol versions -----------------------------------------------


@pytest.mark.parametrize("size", [4, 32, 256])
def test_cancel_key_of_4_to_256_bytes_is_accepted(size: int) -> None:
    secret = bytes(range(size % 256)) + bytes(size - size % 256)

    assert CancelRequest(7, secret).secret == secret
    assert BackendKeyData(7, secret).secret == secret


@pytest.mark.parametrize("size", [0, 3, 257])
def test_cancel_key_outside_4_to_256_bytes_is_refused(size: int) -> None:
    with pytest.raises(ValueError):
        CancelRequest(7, bytes(size))
    with pytest.raises(ValueError):
        BackendKeyData(7, bytes(size))


def test_cancel_key_and_auth_data_stay_out_of_reprs() -> None:
    secret = b"\xaa\xbb\xcc\xdd"
    shown = [
        repr(CancelRequest(7, secret)),
        repr(BackendKeyData(7, secret)),
        repr(codec.PasswordMessage(b"hunter2")),
        repr(codec.Authentication(5, b"salt")),
    ]

    for text in shown:
        assert "aa" not in text and "hunter2" not in text and "salt" not in text


def test_negotiate_protocol_version_splits_postgresql_version_word() -> None:
    # PostgreSQL sends FrontendProtocol (3 << 16 | newest minor) in this Int32.
    message = _decode_one(b"v\0\0\0\x0c\0\x03\0\x02\0\0\0\0", backend=True)

    assert message == NegotiateProtocolVersion(2, (), 3)


# -- reply builders ----------------------------------------------------------------


def test_error_response_carries_s_v_c_m_then_d_h_p_when_given() -> None:
    data = codec.error_response(
        "ERROR", "0A000", "nope", detail="why", hint="try", position=12
    )

    assert data == (b"E\0\0\0\x2eSERROR\0VERROR\0C0A000\0Mnope\0Dwhy\0Htry\0P12\0\0")


def test_error_response_leaves_out_fields_not_given() -> None:
    data = codec.error_response("FATAL", "08P01", "bad")

    assert data == b"E\0\0\0\x1fSFATAL\0VFATAL\0C08P01\0Mbad\0\0"


def test_notice_response_has_the_same_fields_under_type_n() -> None:
    data = codec.notice_response("WARNING", "01000", "careful", hint="h")

    assert data == b"N\0\0\0\x2aSWARNING\0VWARNING\0C01000\0Mcareful\0Hh\0\0"


def test_error_response_accessors_read_fields_by_code() -> None:
    error = ErrorResponse((("S", "ERREUR"), ("V", "ERROR"), ("C", "42P01"), ("M", "x")))

    assert error.get("C") == "42P01"
    assert error.get("D") is None
    assert (error.sqlstate, error.message, error.severity) == ("42P01", "x", "ERROR")
    assert NoticeResponse(()).sqlstate == ""


def test_error_field_code_must_be_one_nonzero_byte() -> None:
    with pytest.raises(ValueError):
        ErrorResponse((("SV", "x"),)).encode()
    with pytest.raises(ValueError):
        ErrorResponse((("\0", "x"),)).encode()


@pytest.mark.parametrize("status", ["I", "T", "E"])
def test_ready_for_query_builds_the_status_byte(status: str) -> None:
    assert codec.ready_for_query(status) == b"Z\0\0\0\x05" + status.encode()


def test_ready_for_query_refuses_an_unknown_status() -> None:
    with pytest.raises(ValueError):
        ReadyForQuery("X")


# -- hot paths ---------------------------------------------------------------------

VALUES = st.lists(st.none() | st.binary(max_size=20), max_size=12)


@given(VALUES)
def test_encode_data_row_equals_the_data_row_message(
    values: list[bytes | None],
) -> None:
    assert codec.encode_data_row(values) == codec.DataRow(tuple(values)).encode()


@given(VALUES)
def test_data_row_values_reads_back_what_was_encoded(
    values: list[bytes | None],
) -> None:
    body = codec.encode_data_row(values)[5:]

    assert codec.data_row_values(body) == values


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\0",
        b"\0\x01",
        b"\0\x01\0\0\0\x02a",
        b"\0\x01\xff\xff\xff\xfe",
        b"\0\x01\xff\xff\xff\xff\0",
        b"\0\0\0",
    ],
)
def test_data_row_values_refuses_a_malformed_body(body: bytes) -> None:
    with pytest.raises(MalformedMessage):
        codec.data_row_values(body)


def test_query_text_is_the_sql_without_its_terminator() -> None:
    assert codec.query_text(b"select '\xff'\0") == b"select '\xff'"


@pytest.mark.parametrize("body", [b"", b"select 1", b"select\0 1\0", b"\0\0"])
def test_query_text_refuses_a_missing_or_early_terminator(body: bytes) -> None:
    with pytest.raises(MalformedMessage):
        codec.query_text(body)


def test_an_error_text_holding_a_nul_ends_there_and_is_still_sent() -> None:
    data = codec.error_response("ERROR", "22000", "bad value a\0b", hint="h\0i")
    frame = codec.Frame(data[0], data[5:], data)
    error = codec.decode_backend(frame)
    assert (error.sqlstate, error.message) == ("22000", "bad value a")
    assert b"a\0b" not in data and b"h\0i" not in data and b"Hh\0" in data
