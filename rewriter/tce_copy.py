"""COPY … FROM STDIN into a table with encrypted columns: the rows as they stream.

The statement goes upstream as the client wrote it; its CopyData does not. Each
row of COPY's text format is split into its fields, every encrypted column's value
is replaced by its ciphertext in pgsodium's stored format (text: PostgreSQL base64
with its line breaks; bytea: the bytes), with the row's associated data and nonce,
and the row is written back; every other field keeps its exact bytes. Only the
last, incomplete line of the data seen so far is held, so memory stays flat.

In CSV format a record may span lines (a quoted value holding newlines), so
records are found with PostgreSQL's quote and escape rules, and an encrypted
value is written back quoted (pgsodium's base64 holds newlines).

Pure and sans-I/O: the caller gives the encryption (a function of message,
associated data and nonce, under the label's key) and feeds the client's bytes.
What cannot be encrypted exactly is refused before the first row (binary format,
a key, associated or nonce column missing from the column list) or, for one bad
row, fails the whole COPY: plaintext is never passed on.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pglast import ast

from . import builtins, types
from .errors import RewriteError
from .tce import Relation, associated_type, refuse

# (message, associated data, nonce, key uuid) -> ciphertext.
Encrypt = Callable[[bytes, bytes | None, bytes | None, str], bytes]
# Whether bytes are already this column's ciphertext: they decrypt under its key,
# associated data and nonce (a 256-bit tag; no plaintext passes by chance).
Decrypts = Callable[[bytes, bytes | None, bytes | None, str], bool]
_BASE64 = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n"
)
_SHORTEST = 33  # bytes of the ciphertext of a one-byte value

# COPY's text-format escapes (CopyReadAttributesText).
_ESCAPES = {
    ord("b"): 8,
    ord("f"): 12,
    ord("n"): 10,
    ord("r"): 13,
    ord("t"): 9,
    ord("v"): 11,
}


@dataclass(frozen=True)
class Field:
    """An encrypted column of the COPY, by its position in each row."""

    name: str
    index: int
    type: str  # "text" or "bytea"
    # Each associated column: its position, type and (varchar(n)) length.
    associated: tuple[tuple[int, str, int | None], ...]
    nonce: int | None
    key_id: str | None = None  # ENCRYPT WITH KEY ID: the key's uuid
    key_column: int | None = None  # ENCRYPT WITH KEY COLUMN: its position


@dataclass(frozen=True)
class CopyPlan:
    table: str
    key_ids: tuple[str, ...]  # the uuids of the KEY ID labels' keys
    columns: tuple[str, ...]
    fields: tuple[Field, ...]
    delimiter: bytes
    null: bytes
    header: bool
    csv: bool = False
    quote: bytes = b'"'  # CSV only
    escape: bytes = b'"'  # CSV only

    @property
    def key_columns(self) -> bool:
        """Whether rows name their own keys (every aead-det key may be needed)."""
        return any(f.key_column is not None for f in self.fields)


def plan_copy(stmt: ast.CopyStmt, relation: Relation) -> CopyPlan:
    """What a COPY FROM STDIN into `relation` needs, or 0A000 for what it cannot."""
    if stmt.filename is not None or stmt.is_program:
        raise refuse(
            "COPY FROM a server file or program into a table with encrypted columns "
            "(use FROM STDIN, or psql's \\copy)"
        )
    if stmt.whereClause is not None:
        # SECURITY: PostgreSQL filters COPY's rows before any trigger: its WHERE
        # would compare the ciphertext the proxy writes (and carry its own
        # plaintext terms to the database).
        raise refuse("COPY FROM STDIN … WHERE into a table with encrypted columns")
    options = {o.defname.lower(): _option_value(o.arg) for o in stmt.options or ()}
    fmt = options.pop("format", "text").lower()
    if fmt not in ("text", "csv"):
        raise refuse(f"COPY FROM STDIN in {fmt} format (use the text or csv format)")
    csv = fmt == "csv"
    delimiter = options.pop("delimiter", "," if csv else "\t")
    null = options.pop("null", "" if csv else "\\N")
    header = options.pop("header", "false") not in ("false", "off", "0", "no")
    quote = escape = '"'
    if csv:
        quote = options.pop("quote", quote)
        escape = options.pop("escape", quote)
        for name, value in (
            ("delimiter", delimiter),
            ("quote", quote),
            ("escape", escape),
        ):
            if len(value.encode("utf-8")) != 1 or value in "\r\n":
                # PostgreSQL refuses these too; the proxy's reading needs one byte.
                raise refuse(f"COPY FROM STDIN in csv format with {name} {value!r}")
    encoding = options.pop("encoding", "UTF8")
    options.pop("freeze", None)
    if encoding.replace("-", "").replace("_", "").upper() != "UTF8":
        raise refuse(f"COPY FROM STDIN with ENCODING {encoding!r}")
    if options:
        raise refuse(f"COPY FROM STDIN with option {sorted(options)[0].upper()}")
    if stmt.attlist:
        columns = tuple(a.sval for a in stmt.attlist)
    else:
        columns = tuple(c.name for c in relation.columns if not c.generated)
    position = {name: i for i, name in enumerate(columns)}
    fields = []
    keys: dict[str, None] = {}  # in label order
    for column in relation.columns:
        if not column.encrypted or column.name not in position:
            continue
        if column.key_id is not None:
            keys[column.key_id] = None
        elif column.key_column is None:
            raise refuse(f"COPY into {column.name}, whose label names no key")
        needed = list(column.associated) + ([column.nonce] if column.nonce else [])
        if column.key_column is not None:
            needed.append(column.key_column)
        for dep in needed:
            if dep not in position:
                raise refuse(f"COPY {column.name} without {dep} in the column list")
        associated = []
        for dep in column.associated:
            found = relation.column(dep)
            ad_type = associated_type(found.type) if found is not None else None
            if ad_type is None:
                raise refuse(f"compute the associated data {dep} of {column.name}")
            associated.append((position[dep], *ad_type))
        fields.append(
            Field(
                column.name,
                position[column.name],
                column.type,
                tuple(associated),
                position[column.nonce] if column.nonce else None,
                column.key_id,
                position[column.key_column] if column.key_column else None,
            )
        )
    return CopyPlan(
        relation.table,
        tuple(keys),
        columns,
        tuple(fields),
        delimiter.encode("utf-8"),
        null.encode("utf-8"),
        header,
        csv,
        quote.encode("utf-8"),
        escape.encode("utf-8"),
    )


def _option_value(arg: Any) -> str:
    if arg is None:
        return "true"  # `HEADER` alone
    if isinstance(arg, ast.Boolean):
        return "true" if arg.boolval else "false"
    if isinstance(arg, ast.Integer):
        return str(arg.ival)
    if isinstance(arg, ast.String):
        return arg.sval.lower() if arg.sval.lower() in ("true", "false") else arg.sval
    raise refuse("COPY FROM STDIN with a list-valued option")


class CopyRows:
    """The client's CopyData bytes in, the bytes to send upstream out."""

    def __init__(
        self, plan: CopyPlan, encrypt: Encrypt, decrypts: Decrypts | None = None
    ) -> None:
        self.plan = plan
        self.encrypt = encrypt
        # A value that is already the column's ciphertext (a dump being restored
        # through the proxy) is kept as it is: pgsodium's trigger would encrypt it
        # a second time.
        self.decrypts = decrypts
        self.pending = b""  # the last line, not complete yet
        self.line = 0  # lines (CSV: records) seen, for error messages
        self.done = False  # the end-of-data marker `\.` was seen
        self.failed = False  # set by the caller: the rest of the data is dropped
        self._records = _CsvRecords(plan.quote, plan.escape) if plan.csv else None

    def feed(self, data: bytes) -> bytes:
        data = self.pending + data
        if self._records is not None:
            end = self._records.complete(data)
        else:
            end = data.rfind(b"\n") + 1
        self.pending = data[end:]
        return self._lines(data[:end])

    def finish(self) -> bytes:
        """At CopyDone: the last line, which may lack its newline."""
        rest, self.pending = self.pending, b""
        return self._lines(rest) if rest else b""

    def _lines(self, data: bytes) -> bytes:
        out = []
        lines = (
            data.splitlines(keepends=True)
            if self._records is None
            else self._records.split(data)
        )
        for line in lines:
            self.line += 1
            if self.done or (self.line == 1 and self.plan.header):
                out.append(line)
                continue
            body = line.rstrip(b"\r\n")
            if body == b"\\.":
                self.done = True
                out.append(line)
                continue
            out.append(self._row(body) + line[len(body) :])
        return b"".join(out)

    def _row(self, body: bytes) -> bytes:
        plan = self.plan
        if not plan.fields:
            return body
        if plan.csv:
            try:
                raw, values = _split_csv(body, plan)
            except ValueError:
                raise self._error("an unterminated CSV quoted field") from None
        else:
            raw = _split(body, plan.delimiter)
            values = [self._value(raw, i) for i in range(len(raw))]
        if len(raw) != len(plan.columns):
            # PostgreSQL's own complaint would follow; nothing is passed on.
            raise self._error("a row whose fields do not match the column list")
        for field in plan.fields:
            value = values[field.index]
            if value is None:
                continue  # NULL stays NULL
            try:
                # SECURITY: an input error would quote the value; it is plaintext.
                if field.type == "text":
                    types.utf8_text(value)
                    message = value
                else:
                    message = types.bytea_in(value.decode("utf-8"))
                associated = self._associated(values, field)
                nonce = self._nonce(values, field)
                key = self._key(values, field)
            except (RewriteError, UnicodeDecodeError):
                raise self._error(
                    f"a value of {field.name} or of its associated data, nonce or "
                    "key is not valid input for its type"
                ) from None
            if key is None:
                # pgsodium's trigger encrypts under a NULL key: NULL, as INSERT
                # stores it (the plaintext is dropped).
                raw[field.index] = plan.null
                continue
            if not message:
                # pgsodium's trigger's words; the line, as a COPY's CONTEXT gives it.
                empty = "string" if field.type == "text" else "bytes"
                raise RewriteError(
                    "P0001",
                    f"Cannot encrypt empty {empty}. (COPY line {self.line}, "
                    f"column {field.name})",
                )
            if self._stored(field, message, associated, nonce, key):
                continue
            try:
                ciphertext = self.encrypt(message, associated, nonce, key)
            except Exception as exc:
                sqlstate = getattr(exc, "sqlstate", None)
                if sqlstate is None:
                    raise
                # pgsodium's own error (P0002 for an unknown key), and where.
                raise RewriteError(
                    sqlstate,
                    f"{getattr(exc, 'message', exc)} (COPY line {self.line}, "
                    f"column {field.name})",
                ) from None
            raw[field.index] = self._text(field, ciphertext)
        return plan.delimiter.join(raw)

    def _stored(
        self,
        field: Field,
        value: bytes,
        associated: bytes | None,
        nonce: bytes | None,
        key: str,
    ) -> bool:
        """Whether `value` is already what pgsodium stores for this column."""
        if self.decrypts is None:
            return False
        if field.type == "text":
            if not set(value) <= _BASE64:
                return False
            try:
                value = base64.b64decode(value.replace(b"\n", b""), validate=True)
            except ValueError:
                return False
        return len(value) >= _SHORTEST and self.decrypts(value, associated, nonce, key)

    def _value(self, raw: list[bytes], index: int) -> bytes | None:
        if raw[index] == self.plan.null:
            return None
        return _unescape(raw[index])

    def _associated(self, values: list[bytes | None], field: Field) -> bytes | None:
        if not field.associated:
            return b""  # pgsodium's trigger: convert_to('', 'utf8')
        parts = []
        for index, type_name, length in field.associated:
            value = values[index]
            if value is None:
                return None  # NULL || … is NULL
            text = types.utf8_text(value)
            if length is not None:
                # varchar(n)'s input cuts an over-long value's excess spaces (and
                # fails the COPY on anything else there).
                text = text[:length]
            parts.append(types.cast(types.text_in(type_name, text), type_name, "text"))
        return "".join(str(p) for p in parts).encode("utf-8")

    def _key(self, values: list[bytes | None], field: Field) -> str | None:
        if field.key_column is None:
            assert field.key_id is not None
            return field.key_id
        value = values[field.key_column]
        return None if value is None else types.uuid_in(value.decode("utf-8"))

    def _nonce(self, values: list[bytes | None], field: Field) -> bytes | None:
        if field.nonce is None:
            return None
        value = values[field.nonce]
        return None if value is None else types.bytea_in(value.decode("utf-8"))

    def _text(self, field: Field, ciphertext: bytes) -> bytes:
        if field.type == "text":
            # PostgreSQL's encode(…, 'base64'), as INSERT stores it: a line break
            # after every full line, the last one too.
            text = builtins.encode(ciphertext, "base64").encode("ascii")
        else:
            text = b"\\x" + ciphertext.hex().encode("ascii")
        if self.plan.csv:
            return _quote_csv(text, self.plan.quote, self.plan.escape)
        return _escape(text, self.plan.delimiter)

    def _error(self, what: str) -> RewriteError:
        return RewriteError(
            "22P04", f"pgsodium-proxy cannot encrypt COPY line {self.line}: {what}"
        )


def _split(body: bytes, delimiter: bytes) -> list[bytes]:
    """The raw fields of one line: a delimiter after a backslash is data."""
    fields = []
    start = i = 0
    while i < len(body):
        if body[i : i + 1] == b"\\":
            i += 2
            continue
        if body.startswith(delimiter, i):
            fields.append(body[start:i])
            i += len(delimiter)
            start = i
            continue
        i += 1
    fields.append(body[start:])
    return fields


def _unescape(raw: bytes) -> bytes:
    """A field's bytes after COPY's backslash escapes."""
    if b"\\" not in raw:
        return raw
    out = bytearray()
    i = 0
    while i < len(raw):
        byte = raw[i]
        if byte != 0x5C or i + 1 == len(raw):
            out.append(byte)
            i += 1
            continue
        following = raw[i + 1]
        i += 2
        if 0x30 <= following <= 0x37:  # \ooo, up to three octal digits
            value, count = following - 0x30, 1
            while count < 3 and i < len(raw) and 0x30 <= raw[i] <= 0x37:
                value, count, i = value * 8 + raw[i] - 0x30, count + 1, i + 1
            out.append(value & 0xFF)
        elif following == ord("x") and i < len(raw) and _is_hex(raw[i]):
            digits = (
                raw[i : i + 2]
                if i + 1 < len(raw) and _is_hex(raw[i + 1])
                else raw[i : i + 1]
            )
            out.append(int(digits, 16))
            i += len(digits)
        else:
            out.append(_ESCAPES.get(following, following))
    return bytes(out)


def _is_hex(byte: int) -> bool:
    return chr(byte) in "0123456789abcdefABCDEF"


def _escape(text: bytes, delimiter: bytes) -> bytes:
    """COPY's text form of a value made of base64 or hex characters."""
    out = text.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")
    if delimiter not in (b"\\", b"\n"):
        out = out.replace(delimiter, b"\\" + delimiter)
    return out


class _CsvRecords:
    """Where CSV records end: at a newline outside quotes (CopyReadLineText's
    rules: an escape other than the quote counts only inside quotes, and only
    right before a quote or another escape). Remembers how far the held bytes
    were read, so a long quoted value fed in many pieces is read once."""

    def __init__(self, quote: bytes, escape: bytes) -> None:
        self.quote = quote[0]
        # An escape equal to the quote plays no part here: quotes just toggle.
        self.escape = escape[0] if escape != quote else -1
        special = re.escape(quote) + (re.escape(escape) if escape != quote else b"")
        self._special = re.compile(b"[" + special + b"\n]")
        self._special_cr = re.compile(b"[" + special + b"\n\r]")
        self._read = 0  # bytes of the held, incomplete record already read
        self._state = (False, False)  # inside quotes; the last byte an escape

    def complete(self, data: bytes) -> int:
        """How many bytes at the start of `data` are complete records (`data`
        starts with the bytes held back by the last call)."""
        ends, self._state = self._scan(data, self._read, self._state)
        end = ends[-1] if ends else 0
        self._read = len(data) - end  # all read; a record starts at `end`
        return end

    def split(self, data: bytes) -> list[bytes]:
        """The records of `data`, with their line ends; the last one may lack it.
        SECURITY: a carriage return outside quotes must be part of a `\r\n`.
        PostgreSQL also ends CSV lines at a lone one (when the first line ends so),
        where these records would not end: bytes the proxy did not see as a
        record (a "header") would reach the table as written."""
        ends, _ = self._scan(data, 0, (False, False), crlf_only=True)
        starts = [0, *ends]
        if starts[-1] < len(data):
            ends.append(len(data))
        return [data[a:b] for a, b in zip(starts, ends, strict=False)]

    def _scan(
        self,
        data: bytes,
        at: int,
        state: tuple[bool, bool],
        crlf_only: bool = False,
    ) -> tuple[list[int], tuple[bool, bool]]:
        in_quote, escaped = state
        ends: list[int] = []
        last = at - 1
        special = self._special_cr if crlf_only else self._special
        for found in special.finditer(data, at):
            position = found.start()
            if position != last + 1:
                escaped = False  # ordinary bytes came between
            last = position
            c = data[position]
            if c == 0x0D:
                if not in_quote and data[position + 1 : position + 2] != b"\n":
                    raise RewriteError(
                        "0A000",
                        "pgsodium-proxy cannot COPY CSV data into encrypted columns "
                        "with lines that end in a carriage return alone: end them "
                        "with \\n or \\r\\n",
                    )
                escaped = False
                continue
            if in_quote and c == self.escape:
                escaped = not escaped
            if c == self.quote and not escaped:
                in_quote = not in_quote
            if c != self.escape:
                escaped = False
            if c == 0x0A and not in_quote:
                ends.append(position + 1)
        if last != len(data) - 1:
            escaped = False
        return ends, (in_quote, escaped)


def _split_csv(body: bytes, plan: CopyPlan) -> tuple[list[bytes], list[bytes | None]]:
    """The raw bytes and the values of one CSV record's fields
    (CopyReadAttributesCSV): a quoted value is never NULL; inside quotes, the
    escape before a quote or an escape makes it data. ValueError: a quoted value
    that does not end."""
    delimiter, quote, escape = plan.delimiter[0], plan.quote[0], plan.escape[0]
    raw: list[bytes] = []
    values: list[bytes | None] = []
    start = i = 0
    while True:
        value = bytearray()
        quoted = False
        while i < len(body) and body[i] != delimiter:
            c = body[i]
            i += 1
            if c != quote:
                value.append(c)
                continue
            quoted = True
            while True:
                if i >= len(body):
                    raise ValueError("unterminated CSV quoted field")
                c = body[i]
                i += 1
                if c == escape and i < len(body) and body[i] in (escape, quote):
                    value.append(body[i])
                    i += 1
                elif c == quote:
                    break
                else:
                    value.append(c)
        field = body[start:i]
        raw.append(field)
        values.append(None if not quoted and field == plan.null else bytes(value))
        if i >= len(body):
            return raw, values
        i += 1  # the delimiter
        start = i


def _quote_csv(text: bytes, quote: bytes, escape: bytes) -> bytes:
    """A quoted CSV value, its quotes and escapes escaped (CopyAttributeOutCSV)."""
    out = bytearray(quote)
    for c in text:
        if c == quote[0] or c == escape[0]:
            out += escape
        out.append(c)
    return bytes(out + quote)
