"""The fields of a record in PostgreSQL's output formats (record_out, record_send).

A scalar subquery over rows returns all its inputs as one record
(rewriter.late.scalar_columns); the proxy reads back each field's own output, in
the record's format. Text: record_in's rules (an empty unquoted field is NULL,
double quotes group, a doubled quote inside them is one quote, a backslash takes
the next character). Binary: a field count, then per field type oid, length
(-1: NULL) and bytes.
"""

from __future__ import annotations

import struct

_I32 = struct.Struct("!i")


class MalformedRecord(ValueError):
    """Text that record_out could not have written."""


def record_fields(text: str) -> list[str | None]:
    if len(text) < 2 or text[0] != "(" or text[-1] != ")":
        raise MalformedRecord("a record's text is in parentheses")
    fields: list[str | None] = []
    pos, end = 1, len(text) - 1
    while True:
        field, pos = _field(text, pos, end)
        fields.append(field)
        if pos == end:
            return fields
        if text[pos] != ",":
            raise MalformedRecord("a record's fields are separated by commas")
        pos += 1


def _field(text: str, pos: int, end: int) -> tuple[str | None, int]:
    """One field from `pos`, and where it stops (a comma or the end)."""
    out: list[str] = []
    quoted = seen = False
    while pos < end:
        char = text[pos]
        if char == '"':
            seen = True
            if quoted and pos + 1 < end and text[pos + 1] == '"':
                out.append('"')
                pos += 2
                continue
            quoted = not quoted
        elif char == "\\":
            if pos + 1 >= end:
                raise MalformedRecord("a backslash ends a record")
            out.append(text[pos + 1])
            pos += 1
        elif char == "," and not quoted:
            break
        else:
            out.append(char)
        pos += 1
    if quoted:
        raise MalformedRecord("an unterminated quote in a record")
    if not out and not seen:
        return None, pos
    return "".join(out), pos


def record_fields_binary(data: bytes) -> list[bytes | None]:
    if len(data) < 4:
        raise MalformedRecord("a binary record starts with its field count")
    (count,) = _I32.unpack_from(data)
    fields: list[bytes | None] = []
    pos = 4
    for _ in range(count):
        if pos + 8 > len(data):
            raise MalformedRecord("a binary record ends inside a field header")
        (length,) = _I32.unpack_from(data, pos + 4)  # after the field's type oid
        pos += 8
        if length < 0:
            fields.append(None)
            continue
        if pos + length > len(data):
            raise MalformedRecord("a binary record ends inside a field")
        fields.append(data[pos : pos + length])
        pos += length
    if pos != len(data):
        raise MalformedRecord("bytes after a binary record's last field")
    return fields
