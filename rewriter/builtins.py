"""PostgreSQL scalar functions the proxy evaluates around pgsodium values.

convert_to/convert_from, encode/decode, length/octet_length, with the server's exact
results and errors (encode(..., 'base64') breaks lines every 76 characters; invalid
UTF-8 is 22021), so that wrapping a proxy-computed value changes nothing visible.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass

from . import types
from .errors import RewriteError

_BASE64_LINE = 76  # pg_base64_encode breaks its output every 76 characters


def _encoding(name: str, direction: str) -> str:
    # pg_char_to_encoding: case-insensitive, non-alphanumerics ignored.
    clean = re.sub(r"[^0-9a-z]", "", name.lower())
    if clean in ("utf8", "unicode"):
        return "utf-8"
    if clean in ("latin1", "iso88591"):
        return "latin-1"
    if clean == "sqlascii":
        return "sql_ascii"
    raise RewriteError("22023", f'invalid {direction} encoding name "{name}"')


def convert_to(text: str, encoding: str) -> bytes:
    codec = _encoding(encoding, "destination")
    if codec == "sql_ascii":
        return text.encode("utf-8")
    try:
        return text.encode(codec)
    except UnicodeEncodeError as exc:
        char = text[exc.start]
        raise RewriteError(
            "22P05",
            f'character with byte sequence 0x{char.encode("utf-8").hex()} in '
            f'encoding "UTF8" has no equivalent in encoding "LATIN1"',
        ) from None


def convert_from(data: bytes, encoding: str) -> str:
    codec = _encoding(encoding, "source")
    if codec == "latin-1":
        return data.decode("latin-1")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 4]
        shown = " ".join(f"0x{b:02x}" for b in bad[: max(1, exc.end - exc.start)])
        raise RewriteError(
            "22021", f'invalid byte sequence for encoding "UTF8": {shown}'
        ) from None
    if "\x00" in text:
        raise RewriteError(
            "22021", 'invalid byte sequence for encoding "UTF8": 0x00'
        )
    return text


def encode(data: bytes, form: str) -> str:
    kind = form.lower()
    if kind == "hex":
        return data.hex()
    if kind == "base64":
        flat = base64.b64encode(data).decode("ascii")
        return "\n".join(
            flat[i : i + _BASE64_LINE] for i in range(0, len(flat), _BASE64_LINE)
        )
    if kind == "escape":
        return types.bytea_out(data, "escape").replace("\\\\", "\\\\")
    raise RewriteError("22023", f'unrecognized encoding: "{form}"')


def decode(text: str, form: str) -> bytes:
    kind = form.lower()
    if kind == "hex":
        return types.bytea_in("\\x" + text)
    if kind == "base64":
        compact = re.sub(r"[ \t\n\r]", "", text)
        bad = re.search(r"[^A-Za-z0-9+/=]", compact)
        if bad:
            raise RewriteError(
                "22023",
                f'invalid symbol "{bad.group()}" found while decoding base64 sequence',
            )
        try:
            return base64.b64decode(compact, validate=True)
        except binascii.Error:
            raise RewriteError("22023", "invalid base64 end sequence") from None
    if kind == "escape":
        return types.bytea_in(text) if "\\" in text else text.encode("utf-8")
    raise RewriteError("22023", f'unrecognized encoding: "{form}"')


@dataclass(frozen=True, slots=True)
class Builtin:
    name: str
    arg_types: tuple[str, ...]
    returns: str
    function: Callable[..., object]
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


def _repeat(text: str, count: int) -> str:
    return text * max(count, 0)


BUILTINS: tuple[Builtin, ...] = (
    Builtin("convert_to", ("text", "name"), "bytea", convert_to),
    Builtin("convert_from", ("bytea", "name"), "text", convert_from),
    Builtin("encode", ("bytea", "text"), "text", encode),
    Builtin("decode", ("text", "text"), "bytea", decode),
    Builtin("length", ("bytea",), "integer", len),
    Builtin("length", ("text",), "integer", len),
    Builtin("octet_length", ("bytea",), "integer", len),
    Builtin(
        "octet_length", ("text",), "integer", lambda s: len(s.encode("utf-8"))
    ),
    Builtin("repeat", ("text", "integer"), "text", _repeat),
    Builtin("rtrim", ("bytea", "bytea"), "bytea", lambda v, c: _trim(v, c, False, True)),
    Builtin("ltrim", ("bytea", "bytea"), "bytea", lambda v, c: _trim(v, c, True, False)),
    Builtin("btrim", ("bytea", "bytea"), "bytea", lambda v, c: _trim(v, c, True, True)),
    Builtin("rtrim", ("text", "text"), "text", lambda v, c: _trim(v, c, False, True)),
    Builtin("ltrim", ("text", "text"), "text", lambda v, c: _trim(v, c, True, False)),
    Builtin("btrim", ("text", "text"), "text", lambda v, c: _trim(v, c, True, True)),
    Builtin("rtrim", ("text",), "text", lambda v: _trim(v, " ", False, True)),
    Builtin("ltrim", ("text",), "text", lambda v: _trim(v, " ", True, False)),
    Builtin("btrim", ("text",), "text", lambda v: _trim(v, " ", True, True)),
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
            if all(a in ("unknown", p) for a, p in zip(arg_types, b.arg_types, strict=True))
        ]
        # length('x'): an unknown literal prefers the string category (text).
        matches = exact or (known if len(known) == 1 else []) or [
            b for b in matches if "text" in b.arg_types[:1]
        ]
    return matches[0] if len(matches) == 1 else None


def is_builtin_name(name: str) -> bool:
    return any(b.name == name for b in BUILTINS)
