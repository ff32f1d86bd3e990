"""Rewrite result columns: fill in proxy-computed values, merge deferred inputs.

A Layout is built from the upstream RowDescription of a rewritten statement: columns
whose names carry this execution's marker are the proxy's; every other column is
copied byte for byte. Rows are transformed one DataRow at a time (constant memory).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from rewriter import types
from rewriter.plan import Plan, node_type

from . import codec, records
from .codec import Field
from .errors import SQLSTATE, ProxyError

TEXT, BINARY = 0, 1
BYTEA_OID = 17


@dataclass(frozen=True, slots=True)
class Copy:
    index: int


@dataclass(frozen=True, slots=True)
class Filled:
    """A value computed before execution, already encoded in the column's format."""

    data: bytes | None


@dataclass(frozen=True, slots=True)
class Deferred:
    """A value computed from upstream columns of the same row."""

    inputs: tuple[int, ...]
    formats: tuple[int, ...]
    compute: Callable[[list[Any]], Any]
    result_type: str
    format: int


@dataclass(frozen=True, slots=True)
class PerRow:
    """A select-list item computed from row inputs (and their key material)."""

    inputs: tuple[int, ...]
    keys: tuple[int | None, ...]  # the key material column of each input
    types: tuple[str, ...]
    formats: tuple[int, ...]
    compute: Callable[[list[Any], list[str | None]], Any]
    result_type: str
    format: int
    # Chosen once per result: each input's decoder, the result's encoder.
    decoders: tuple[Callable[[bytes], Any], ...] = ()
    encoder: Callable[[Any], bytes | None] | None = None
    # A scalar subquery's (RowOutput.body): the upstream column of the one
    # record that holds every input and key material, in column order, and its
    # format; the inputs' own columns only type them (late.scalar_columns).
    packed: int | None = None
    packed_format: int = TEXT


Column = Copy | Filled | Deferred | PerRow


class Layout:
    def __init__(self, fields: Sequence[Field], columns: Sequence[Column]) -> None:
        self.fields = tuple(fields)
        self.columns = tuple(columns)
        self.identity = all(isinstance(c, Copy) for c in columns) and len(
            columns
        ) == len(fields)
        self._cells: dict[str, list[Cell]] = {}  # by bytea_output

    def row_description(self) -> bytes:
        return codec.RowDescription(self.fields).encode()

    def transform(self, body: bytes, bytea_output: str) -> bytes:
        """One upstream DataRow body in, one complete client DataRow message out."""
        values = codec.data_row_values(body)
        cells = self._cells.get(bytea_output)
        if cells is None:
            cells = self._cells[bytea_output] = [
                _cell(column, bytea_output) for column in self.columns
            ]
        return codec.encode_data_row([cell(values) for cell in cells])


Cell = Callable[[list[bytes | None]], bytes | None]


def _cell(column: Column, bytea_output: str) -> Cell:
    """How one client column's value is made from the upstream row's values."""
    if isinstance(column, Copy):
        return itemgetter(column.index)
    if isinstance(column, Filled):
        data = column.data
        return lambda values: data
    if isinstance(column, PerRow):
        return _per_row_cell(column)
    return lambda values: _deferred(column, values, bytea_output)


def _deferred(
    column: Deferred, values: list[bytes | None], bytea_output: str
) -> bytes | None:
    inputs = []
    for index, fmt in zip(column.inputs, column.formats, strict=True):
        raw = values[index]
        inputs.append(
            None if raw is None else raw if fmt == BINARY else raw.decode("utf-8")
        )
    result = column.compute(inputs)
    return encode_value(column.result_type, result, column.format, bytea_output)


_UUIDS: dict[bytes, str] = {}  # the server's own uuid texts and binaries, parsed


def _input(type_name: str, raw: bytes, fmt: int) -> Any:
    if type_name == "uuid":
        # Key uuids repeat row after row; the server's output is canonical.
        parsed = _UUIDS.get(raw)
        if parsed is None:
            if len(_UUIDS) > 65536:
                _UUIDS.clear()
            parsed = _UUIDS[raw] = (
                types.binary_in("uuid", raw)
                if fmt == BINARY
                else types.uuid_in(raw.decode("ascii"))
            )
        return parsed
    if type_name == "bytea":
        return raw if fmt == BINARY else types.bytea_in(raw.decode("ascii"))
    if fmt == BINARY:
        return types.binary_in(type_name, raw)
    return types.text_in(type_name, raw.decode("utf-8"))


def _per_row_cell(column: PerRow) -> Cell:
    """The value of a select-list item over rows, from its inputs' raw values."""
    if column.packed is not None:
        return _unpacked(column, column.packed)
    return _plain_cell(column)


def _unpacked(column: PerRow, packed: int) -> Cell:
    """A scalar subquery's cell: the inputs from the fields of its one record
    (NULL when the subquery found no row: then every input is NULL)."""
    slots: list[int] = []
    for index, key in zip(column.inputs, column.keys, strict=True):
        slots += [index] if key is None else [index, key]
    cell = _plain_cell(column)
    binary = column.packed_format == BINARY

    def unpacked(values: list[bytes | None]) -> bytes | None:
        raw = values[packed]
        values = list(values)
        fields: list[bytes | None]
        if raw is None:
            fields = [None] * len(slots)
        elif binary:
            fields = records.record_fields_binary(raw)
        else:
            fields = [
                None if f is None else f.encode("utf-8")
                for f in records.record_fields(raw.decode("utf-8"))
            ]
        if len(fields) != len(slots):
            raise ProxyError(SQLSTATE.INTERNAL_ERROR, "row inputs out of order")
        for index, field in zip(slots, fields, strict=True):
            values[index] = field
        return cell(values)

    return unpacked


def _plain_cell(column: PerRow) -> Cell:
    pairs = tuple(zip(column.inputs, column.decoders, strict=True))
    keys = column.keys
    compute, encoder = column.compute, column.encoder
    assert encoder is not None
    if all(k is None for k in keys):
        no_materials: list[str | None] = [None] * len(keys)

        def cell(values: list[bytes | None]) -> bytes | None:
            inputs = [
                None if (raw := values[index]) is None else decode(raw)
                for index, decode in pairs
            ]
            return encoder(compute(inputs, no_materials))

        return cell

    def keyed(values: list[bytes | None]) -> bytes | None:
        inputs = [
            None if (raw := values[index]) is None else decode(raw)
            for index, decode in pairs
        ]
        materials = [
            None if k is None or (raw := values[k]) is None else raw.decode("utf-8")
            for k in keys
        ]
        return encoder(compute(inputs, materials))

    return keyed


def _decoder(type_name: str, fmt: int) -> Callable[[bytes], Any]:
    """How one input column's values are read, chosen once per result."""
    if type_name == "bytea" and fmt == BINARY:
        return _same
    if type_name == "bytea":
        return _bytea_text
    if type_name in ("text", "character varying") and fmt in (TEXT, BINARY):
        return _utf8  # text's send format is its text, too
    return lambda raw: _input(type_name, raw, fmt)


def _bytea_text(raw: bytes) -> bytes:
    """bytea's text output as the server writes it with bytea_output = hex (`\\x`
    and digit pairs, nothing else) in one call; any other form the long way."""
    if raw[:2] == b"\\x":
        try:
            return bytes.fromhex(raw[2:].decode("ascii"))
        except ValueError:
            pass
    return types.bytea_in(raw.decode("ascii"))


def _encoder(
    type_name: str, fmt: int, bytea_output: str
) -> Callable[[Any], bytes | None]:
    """How the computed value is written, chosen once per result."""
    if type_name in ("text", "character varying"):
        return lambda value: None if value is None else str(value).encode("utf-8")
    if type_name == "bytea" and fmt == BINARY:
        return _same
    if type_name == "bytea" and bytea_output == "hex":
        return lambda value: None if value is None else b"\\x" + value.hex().encode()
    return lambda value: encode_value(type_name, value, fmt, bytea_output)


def _same(value: Any) -> Any:
    return value


def _utf8(raw: bytes) -> str:
    return types.utf8_text(raw)


def encode_value(
    type_name: str, value: Any, fmt: int, bytea_output: str
) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, types.Unparsed):
        raise types.refuse_unparsed(type_name)
    if fmt == BINARY:
        if isinstance(value, tuple):
            return _record_send(value)
        return types.binary_out(type_name, value)
    if isinstance(value, tuple):
        return _record_out(value, bytea_output).encode("utf-8")
    return types.text_out(type_name, value, bytea_output).encode("utf-8")


def _record_send(values: tuple[Any, ...]) -> bytes:
    """record_send for pgsodium's composites (every field is bytea)."""
    parts = [struct.pack("!i", len(values))]
    for value in values:
        if value is None:
            parts.append(struct.pack("!Ii", BYTEA_OID, -1))
        else:
            parts.append(struct.pack("!Ii", BYTEA_OID, len(value)) + value)
    return b"".join(parts)


def _record_out(values: tuple[Any, ...], bytea_output: str) -> str:
    """record_out: fields quoted when they contain specials, quotes doubled."""
    parts = []
    for value in values:
        if value is None:
            parts.append("")
            continue
        text = (
            types.bytea_out(value, bytea_output)
            if isinstance(value, bytes)
            else types.text_out("boolean" if isinstance(value, bool) else "text", value)
        )
        if (
            text == ""
            or any(c in text for c in '"\\(),')
            or any(c.isspace() for c in text)
        ):
            text = '"' + text.replace("\\", "\\\\").replace('"', '""') + '"'
        parts.append(text)
    return "(" + ",".join(parts) + ")"


def build_layout(
    plan: Plan,
    marker: str,
    fields: Sequence[Field],
    outputs: Sequence[Any],
    deferred: Sequence[Callable[[list[Any]], Any]],
    bytea_output: str,
    rows: Sequence[Callable[[list[str]], tuple[str, Any]]] = (),
) -> Layout:
    """Map an upstream RowDescription to what the client sees.

    `outputs[i]` is the value of plan.outputs[i]; `deferred[j]` computes deferred
    column j from its inputs.
    """
    client_fields: list[Field] = []
    columns: list[Column] = []
    seen: set[str] = set()
    index = 0
    while index < len(fields):
        field = fields[index]
        name = field.name
        if not name.startswith(marker):
            client_fields.append(field)
            columns.append(Copy(index))
            index += 1
            continue
        if name in seen:
            raise ProxyError(SQLSTATE.INTERNAL_ERROR, "duplicate proxy column")
        seen.add(name)
        kind, number = name[len(marker)], name[len(marker) + 1 :]
        if kind == "o":
            out = plan.outputs[int(number)]
            client_fields.append(_renamed(field, out.name))
            value = encode_value(
                node_type(out.node), outputs[int(number)], field.format, bytea_output
            )
            columns.append(Filled(value))
            index += 1
            continue
        if kind == "r":
            column, field, index = _row_group(
                plan, marker, fields, index, rows, bytea_output
            )
            client_fields.append(field)
            columns.append(column)
            continue
        group = int(number[:-1])
        parts = fields[index : index + 4]
        expected = [f"{marker}d{group}{p}" for p in "abcd"]
        if [f.name for f in parts] != expected:
            raise ProxyError(SQLSTATE.INTERNAL_ERROR, "deferred columns out of order")
        seen.update(expected)
        spec = plan.deferred[group]
        result_type = spec.wrappers[-1].returns if spec.wrappers else "bytea"
        client_fields.append(_typed(field, spec.name, result_type))
        columns.append(
            Deferred(
                tuple(range(index, index + 4)),
                tuple(f.format for f in parts),
                deferred[group],
                result_type,
                field.format,
            )
        )
        index += 4
    return Layout(client_fields, columns)


def upstream_formats(layout: Layout, client: Sequence[int], count: int) -> list[int]:
    """The result format of each of `count` upstream columns, from the client's
    format per client column (protocol §55.7 Bind: one code per column).

    An upstream column keeps the format of the client column it feeds; key
    material columns (PerRow.keys) and outputs computed in advance stay text.
    """
    if len(client) != len(layout.columns):
        raise ProxyError(
            SQLSTATE.PROTOCOL_VIOLATION,
            f"bind message has {len(client)} result formats but query has "
            f"{len(layout.columns)} columns",
        )
    upstream = [0] * count
    for column, code in zip(layout.columns, client, strict=True):
        if isinstance(column, Copy):
            upstream[column.index] = code
        elif isinstance(column, (Deferred, PerRow)):
            for index in column.inputs:
                upstream[index] = code
    return upstream


def _row_group(
    plan: Plan,
    marker: str,
    fields: Sequence[Field],
    index: int,
    rows: Sequence[Callable[[list[str]], tuple[str, Any]]],
    bytea_output: str,
) -> tuple[PerRow, Field, int]:
    """The upstream columns of one select-list item over rows, from `index` on."""
    group = int(fields[index].name[len(marker) + 1 :].split("_")[0])
    spec = plan.rows[group]
    prefix = f"{marker}r{group}_"
    inputs: list[int] = []
    keys: list[int | None] = []
    type_names: list[str] = []
    for number, item in enumerate(spec.inputs):
        if index >= len(fields) or fields[index].name != f"{prefix}{number}":
            raise ProxyError(SQLSTATE.INTERNAL_ERROR, "row inputs out of order")
        inputs.append(index)
        known = types.BY_OID.get(fields[index].type_oid)
        if known is None:
            raise ProxyError(
                SQLSTATE.FEATURE_NOT_SUPPORTED,
                f"pgsodium-proxy cannot evaluate over a value of type oid "
                f"{fields[index].type_oid}",
            )
        type_names.append(known.name)
        index += 1
        if item.key_ref:
            # SECURITY: key material only from the column the proxy named so.
            if index >= len(fields) or fields[index].name != f"{prefix}{number}k":
                raise ProxyError(SQLSTATE.INTERNAL_ERROR, "row inputs out of order")
            keys.append(index)
            index += 1
        else:
            keys.append(None)
    packed = None
    if spec.body is not None:
        # SECURITY: the values come from the record alone, never from the typing
        # columns (NULL), so every input is of the one row the subquery found.
        if index >= len(fields) or fields[index].name != f"{prefix}p":
            raise ProxyError(SQLSTATE.INTERNAL_ERROR, "row inputs out of order")
        packed = index
        index += 1
    result_type, compute = rows[group](type_names)
    first = fields[inputs[0]]
    formats = tuple(fields[i if packed is None else packed].format for i in inputs)
    column = PerRow(
        tuple(inputs),
        tuple(keys),
        tuple(type_names),
        formats,
        compute,
        result_type,
        first.format,
        tuple(_decoder(t, f) for t, f in zip(type_names, formats, strict=True)),
        _encoder(result_type, first.format, bytea_output),
        packed,
        TEXT if packed is None else fields[packed].format,
    )
    return column, _typed(first, spec.name, result_type), index


def _renamed(field: Field, name: str) -> Field:
    return Field(
        name, 0, 0, field.type_oid, field.type_size, field.type_modifier, field.format
    )


def _typed(field: Field, name: str, type_name: str) -> Field:
    pg = types.lookup(type_name)
    return Field(name, 0, 0, pg.oid, pg.size, -1, field.format)
