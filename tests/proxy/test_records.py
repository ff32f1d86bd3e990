"""Records in PostgreSQL's text and binary output, as a scalar subquery over rows
returns its inputs (proxy.records); the texts are record_out's own."""

from __future__ import annotations

import struct

import pytest

from proxy.records import MalformedRecord, record_fields, record_fields_binary

TEXTS = [
    ("(a,1)", ["a", "1"]),
    ('(a,"\\\\x00ff5c22",,"","a,b")', ["a", "\\x00ff5c22", None, "", "a,b"]),
    ('("say ""hi""",t)', ['say "hi"', "t"]),
    ('(" (x) ",)', [" (x) ", None]),
    ("(,)", [None, None]),
    ("()", [None]),
]


@pytest.mark.parametrize(("text", "fields"), TEXTS)
def test_record_text_gives_each_fields_own_output(
    text: str, fields: list[str | None]
) -> None:
    assert record_fields(text) == fields


@pytest.mark.parametrize("text", ["", "a,b", "(a", '("a)', "(a\\)", '("a"x"'])
def test_text_record_could_not_write_is_malformed(text: str) -> None:
    with pytest.raises(MalformedRecord):
        record_fields(text)


def _binary(fields: list[bytes | None]) -> bytes:
    out = struct.pack("!i", len(fields))
    for field in fields:
        out += struct.pack("!I", 17)
        out += (
            struct.pack("!i", -1)
            if field is None
            else struct.pack("!i", len(field)) + field
        )
    return out


def test_binary_record_gives_each_fields_send_output() -> None:
    fields = [b"\x00\x01", None, b"", b"\x01"]
    assert record_fields_binary(_binary(fields)) == fields


@pytest.mark.parametrize("cut", [1, 5, 13, 15])
def test_truncated_binary_record_is_malformed(cut: int) -> None:
    data = _binary([b"\x00\x01", None, b"xyz"])
    with pytest.raises(MalformedRecord):
        record_fields_binary(data[:-cut])
    with pytest.raises(MalformedRecord):
        record_fields_binary(data + b"\x00")
