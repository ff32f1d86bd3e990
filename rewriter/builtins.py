"""PostgreSQL scalar functions the proxy evaluates around pgsodium values.

convert_to/convert_from, encode/decode, length/octet_length, repeat, the trim family
and ||, ported from the server's C (encode.c, mbutils.c, varlena.c) with its exact
results and errors, so that wrapping a proxy-computed value changes nothing visible.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from . import types
from .errors import RewriteError

_BASE64_LINE = 76  # pg_base64_encode breaks its output every 76 characters

# pg_encname_tbl (encnames.c): cleaned alias -> the encoding's official name.
_ENCODING_NAMES = {
    "abc": "WIN1258", "alt": "WIN866", "big5": "BIG5", "euccn": "EUC_CN",
    "eucjis2004": "EUC_JIS_2004", "eucjp": "EUC_JP", "euckr": "EUC_KR",
    "euctw": "EUC_TW", "gb18030": "GB18030", "gbk": "GBK", "iso88591": "LATIN1",
    "iso885910": "LATIN6", "iso885913": "LATIN7", "iso885914": "LATIN8",
    "iso885915": "LATIN9", "iso885916": "LATIN10", "iso88592": "LATIN2",
    "iso88593": "LATIN3", "iso88594": "LATIN4", "iso88595": "ISO_8859_5",
    "iso88596": "ISO_8859_6", "iso88597": "ISO_8859_7", "iso88598": "ISO_8859_8",
    "iso88599": "LATIN5", "johab": "JOHAB", "koi8": "KOI8R", "koi8r": "KOI8R",
    "koi8u": "KOI8U", "latin1": "LATIN1", "latin10": "LATIN10", "latin2": "LATIN2",
    "latin3": "LATIN3", "latin4": "LATIN4", "latin5": "LATIN5", "latin6": "LATIN6",
    "latin7": "LATIN7", "latin8": "LATIN8", "latin9": "LATIN9", "mskanji": "SJIS",
    "muleinternal": "MULE_INTERNAL", "shiftjis": "SJIS",
    "shiftjis2004": "SHIFT_JIS_2004", "sjis": "SJIS", "sqlascii": "SQL_ASCII",
    "tcvn": "WIN1258", "tcvn5712": "WIN1258", "uhc": "UHC", "unicode": "UTF8",
    "utf8": "UTF8", "vscii": "WIN1258", "win": "WIN1251", "win1250": "WIN1250",
    "win1251": "WIN1251", "win1252": "WIN1252", "win1253": "WIN1253",
    "win1254": "WIN1254", "win1255": "WIN1255", "win1256": "WIN1256",
    "win1257": "WIN1257", "win1258": "WIN1258", "win866": "WIN866",
    "win874": "WIN874", "win932": "SJIS", "win936": "GBK", "win949": "UHC",
    "win950": "BIG5", "windows1250": "WIN1250", "windows1251": "WIN1251",
    "windows1252": "WIN1252", "windows1253": "WIN1253", "windows1254": "WIN1254",
    "windows1255": "WIN1255", "windows1256": "WIN1256", "windows1257": "WIN1257",
    "windows1258": "WIN1258", "windows866": "WIN866", "windows874": "WIN874",
    "windows932": "SJIS", "windows936": "GBK", "windows949": "UHC",
    "windows950": "BIG5",
}  # fmt: skip
# Conversions the proxy reproduces exactly (the server encoding is UTF8); the
# other encodings' tables are the server's own and are refused with 0A000.
_EVALUATED = ("UTF8", "SQL_ASCII", "LATIN1")


def _ascii_lower(text: str) -> str:
    return "".join(c.lower() if "A" <= c <= "Z" else c for c in text)


@functools.lru_cache(maxsize=256)
def encoding_of(name: str, direction: str) -> str:
    """pg_char_to_encoding: case and non-alphanumerics ignored; the official name.

    Cached: per-row values call it with the same constant for every row."""
    name = types.name_in(name)  # the argument is of type name
    clean = "".join(c for c in _ascii_lower(name) if c.isascii() and c.isalnum())
    found = _ENCODING_NAMES.get(clean)
    if found is None:
        raise RewriteError("22023", f'invalid {direction} encoding name "{name}"')
    if found not in _EVALUATED:
        raise RewriteError(
            "0A000", f"pgsodium-proxy cannot evaluate conversions to or from {found}"
        )
    return found


def convert_to(text: str, encoding: str) -> bytes:
    """pg_convert from UTF8 to `encoding`."""
    target = encoding_of(encoding, "destination")
    if target != "LATIN1":
        return text.encode("utf-8")
    out = bytearray()
    for char in text:
        if ord(char) > 0xFF:
            shown = " ".join(f"0x{b:02x}" for b in char.encode("utf-8"))
            raise RewriteError(
                "22P05",
                f'character with byte sequence {shown} in encoding "UTF8" has no '
                'equivalent in encoding "LATIN1"',
            )
        out.append(ord(char))
    return bytes(out)


def convert_from(data: bytes, encoding: str) -> str:
    """pg_convert from `encoding` to UTF8: verify the source, then convert."""
    source = encoding_of(encoding, "source")
    if source != "UTF8" and b"\x00" in data:
        raise types.invalid_encoding(source, data, data.index(b"\x00"))
    if source == "LATIN1":
        return data.decode("latin-1")
    # SQL_ASCII is not converted, but the result must be valid UTF8.
    return types.utf8_text(data)


def _base64_encode(data: bytes) -> str:
    """pg_base64_encode: a newline after every full 76-character line, even last."""
    whole = len(data) - len(data) % 3
    flat = base64.b64encode(data[:whole]).decode("ascii")
    lines = [flat[i : i + _BASE64_LINE] for i in range(0, len(flat), _BASE64_LINE)]
    text = "".join(line + "\n" if len(line) == _BASE64_LINE else line for line in lines)
    return text + base64.b64encode(data[whole:]).decode("ascii")


_BASE64_VALUES = {
    c: i
    for i, c in enumerate(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    )
}


_BASE64_CANONICAL = re.compile(
    r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
)


def _base64_error(message: str) -> RewriteError:
    return RewriteError("22023", message)


def _base64_decode(text: str) -> bytes:
    """pg_base64_decode, quirks included: after padding, groups still decode."""
    compact = re.sub(r"[ \t\n\r]", "", text)
    if _BASE64_CANONICAL.fullmatch(compact):
        # Whole groups, padding only at the end: any decoder agrees here.
        return base64.b64decode(compact)
    out = bytearray()
    buf = pos = end = 0
    for char in text:
        if char in " \t\n\r":
            continue
        if char == "=":
            if not end:
                if pos not in (2, 3):
                    raise _base64_error('unexpected "=" while decoding base64 sequence')
                end = pos - 1
            value = 0
        elif char in _BASE64_VALUES:
            value = _BASE64_VALUES[char]
        else:
            raise _base64_error(
                f'invalid symbol "{char}" found while decoding base64 sequence'
            )
        buf, pos = buf << 6 | value, pos + 1
        if pos == 4:
            out += buf.to_bytes(3, "big")[: 3 if end == 0 else end]
            buf = pos = 0
    if pos:
        raise _base64_error("invalid base64 end sequence")
    return bytes(out)


# esc_encode: only NUL and high-bit bytes (as \\ooo) and backslash are escaped.
_ESCAPE_ENCODE = [
    f"\\{b:03o}" if b == 0 or b & 0x80 else "\\\\" if b == 0x5C else chr(b)
    for b in range(256)
]


def _escape_encode(data: bytes) -> str:
    return "".join([_ESCAPE_ENCODE[b] for b in data])


def encode(data: bytes, form: str) -> str:
    kind = _ascii_lower(form)
    if kind == "hex":
        return data.hex()
    if kind == "base64":
        return _base64_encode(data)
    if kind == "escape":
        return _escape_encode(data)
    raise RewriteError("22023", f'unrecognized encoding: "{form}"')


def decode(text: str, form: str) -> bytes:
    kind = _ascii_lower(form)
    if kind == "hex":
        return types.hex_decode(text)
    if kind == "base64":
        return _base64_decode(text)
    if kind == "escape":
        return types.escape_decode(text)
    raise RewriteError("22023", f'unrecognized encoding: "{form}"')


@dataclass(frozen=True, slots=True)
class Builtin:
    name: str
    arg_types: tuple[str, ...]
    returns: str
    function: Callable[..., object] | None  # None: resolved, never evaluated
    strict: bool = True


def _trim(value: str | bytes, chars: str | bytes, left: bool, right: bool) -> object:
    start, end = 0, len(value)
    while left and start < end and value[start : start + 1] in _units(chars):
        start += 1
    while right and end > start and value[end - 1 : end] in _units(chars):
        end -= 1
    return value[start:end]


def _units(chars: str | bytes) -> set[str | bytes]:
    return {chars[i : i + 1] for i in range(len(chars))}


_MAX_ALLOC = 0x3FFFFFFF  # MaxAllocSize: a varlena's largest palloc
_VARHDRSZ = 4


def _repeat(text: str, count: int) -> str:
    """repeat(): the result's byte size is checked before it is built."""
    count = max(count, 0)
    if count * len(text.encode("utf-8")) + _VARHDRSZ > _MAX_ALLOC:
        raise RewriteError("54000", "requested length too large")
    return text * count


def _substring(value: str | bytes, start: int, count: int | None = None) -> object:
    """substring(v FROM start [FOR count]) / substr(): positions from 1, in
    characters for text and bytes for bytea; a start before 1 eats into count."""
    if count is not None and count < 0:
        raise RewriteError("22011", "negative substring length not allowed")
    first = max(start, 1)
    if count is None:
        return value[first - 1 :]
    last = start + count  # exclusive, may be before `first`
    return value[first - 1 : max(last - 1, first - 1)]


def null_test(arg_type: str, negated: bool) -> Builtin:
    """`x IS NULL` / `x IS NOT NULL` over a value of any type (never NULL itself)."""
    if negated:
        return Builtin("IS NOT NULL", (arg_type,), "boolean", _is_not_null, False)
    return Builtin("IS NULL", (arg_type,), "boolean", _is_null, False)


def _is_null(value: object) -> bool:
    return value is None


def _is_not_null(value: object) -> bool:
    return value is not None


def coalesce(arg_type: str, count: int) -> Builtin:
    """COALESCE over `count` values of one type: the first that is not NULL."""
    return Builtin(
        "coalesce",
        (arg_type,) * count,
        arg_type,
        lambda *values: next((v for v in values if v is not None), None),
        strict=False,
    )


BUILTINS: tuple[Builtin, ...] = (
    Builtin("convert_to", ("text", "name"), "bytea", convert_to),
    Builtin("convert_from", ("bytea", "name"), "text", convert_from),
    Builtin("encode", ("bytea", "text"), "text", encode),
    Builtin("decode", ("text", "text"), "bytea", decode),
    Builtin("length", ("bytea",), "integer", len),
    Builtin("length", ("text",), "integer", len),
    Builtin("octet_length", ("bytea",), "integer", len),
    Builtin("octet_length", ("text",), "integer", lambda s: len(s.encode("utf-8"))),
    Builtin("repeat", ("text", "integer"), "text", _repeat),
    Builtin(
        "rtrim", ("bytea", "bytea"), "bytea", lambda v, c: _trim(v, c, False, True)
    ),
    Builtin(
        "ltrim", ("bytea", "bytea"), "bytea", lambda v, c: _trim(v, c, True, False)
    ),
    Builtin("btrim", ("bytea", "bytea"), "bytea", lambda v, c: _trim(v, c, True, True)),
    Builtin("rtrim", ("text", "text"), "text", lambda v, c: _trim(v, c, False, True)),
    Builtin("ltrim", ("text", "text"), "text", lambda v, c: _trim(v, c, True, False)),
    Builtin("btrim", ("text", "text"), "text", lambda v, c: _trim(v, c, True, True)),
    Builtin("rtrim", ("text",), "text", lambda v: _trim(v, " ", False, True)),
    Builtin("ltrim", ("text",), "text", lambda v: _trim(v, " ", True, False)),
    Builtin("btrim", ("text",), "text", lambda v: _trim(v, " ", True, True)),
    *(
        Builtin(name, (kind, "integer", "integer")[:arity], kind, _substring)
        for name in ("substring", "substr")
        for kind in ("bytea", "text")
        for arity in (2, 3)
    ),
    # Overloads the proxy does not evaluate, there so that resolution sees every
    # candidate the server sees: a call that resolves to one is not evaluated.
    *(
        Builtin("substring", args, "text", None)
        for args in (("text", "text"), ("text", "text", "text"))
    ),
    *(
        Builtin("substring", ("bit", "integer", "integer")[:arity], "bit", None)
        for arity in (2, 3)
    ),
    # The || operator.
    Builtin("||", ("text", "text"), "text", lambda a, b: a + b),
    Builtin("||", ("bytea", "bytea"), "bytea", lambda a, b: a + b),
)


def find_builtin(name: str, arg_types: list[str]) -> Builtin | None:
    """The builtin overload PostgreSQL would pick for these argument types."""
    matches = [
        b
        for b in BUILTINS
        if b.name == name
        and len(b.arg_types) == len(arg_types)
        and all(
            types.can_coerce_implicitly(a, p)
            or (a == "unknown")
            or (p == "name" and a in ("text", "character varying"))
            for a, p in zip(arg_types, b.arg_types, strict=True)
        )
    ]
    if len(matches) > 1:
        exact = [b for b in matches if list(b.arg_types) == arg_types]
        known = [
            b
            for b in matches
            if all(
                a in ("unknown", p) for a, p in zip(arg_types, b.arg_types, strict=True)
            )
        ]
        # length('x'): an unknown literal prefers the string category (text).
        matches = (
            exact
            or (known if len(known) == 1 else [])
            or [b for b in matches if "text" in b.arg_types[:1]]
        )
    if len(matches) != 1 or matches[0].function is None:
        return None
    return matches[0]


def is_builtin_name(name: str) -> bool:
    return any(b.name == name for b in BUILTINS)
