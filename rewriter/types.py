"""The PostgreSQL types the proxy computes with: OIDs, categories, casts, I/O.

Each conversion follows the server's own input, output, receive and cast functions
(byteain, pg_strtoint32, oidin, string_to_uuid, boolin, numeric_in, int84, ...),
including their error SQLSTATEs and texts, because clients see these results
exactly as if the server had produced them. What the proxy cannot reproduce exactly
it refuses with 0A000.
"""

from __future__ import annotations

import re
import string
import struct
import uuid as _uuid
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from .errors import RewriteError


@dataclass(frozen=True, slots=True)
class PgType:
    name: str  # as format_type prints it
    oid: int
    category: str  # pg_type.typcategory
    preferred: bool = False
    size: int = -1  # pg_type.typlen as RowDescription reports it


_TYPES = [
    PgType("bytea", 17, "U"),
    # array_agg's result, the rows of pgsodium's crypto_sign_update_agg (late.py).
    PgType("bytea[]", 1001, "A"),
    PgType("bigint", 20, "N", size=8),
    PgType("smallint", 21, "N", size=2),
    PgType("integer", 23, "N", size=4),
    PgType("numeric", 1700, "N"),
    PgType("double precision", 701, "N", preferred=True, size=8),
    PgType("text", 25, "S", preferred=True),
    PgType("character varying", 1043, "S"),
    PgType("name", 19, "S", size=64),
    PgType("unknown", 705, "X", size=-2),
    PgType("uuid", 2950, "U", size=16),
    PgType("boolean", 16, "B", preferred=True, size=1),
    PgType("inet", 869, "I", preferred=True),
    PgType("timestamp with time zone", 1184, "D", preferred=True, size=8),
    PgType("oid", 26, "N", preferred=True, size=4),
    # B'0101' and X'1F' literals: their value is the string of binary digits.
    PgType("bit", 1560, "V"),
    PgType("pgsodium.key_type", 0, "E"),
    PgType("pgsodium.key_status", 0, "E"),
]
BY_NAME: dict[str, PgType] = {t.name: t for t in _TYPES}
BY_OID: dict[int, PgType] = {t.oid: t for t in _TYPES if t.oid}
ALIASES = {
    "int8": "bigint",
    "int4": "integer",
    "int": "integer",
    "int2": "smallint",
    "bool": "boolean",
    "varchar": "character varying",
    "float8": "double precision",
    "timestamptz": "timestamp with time zone",
    "decimal": "numeric",
}
UNKNOWN = BY_NAME["unknown"]

# pg_cast entries with castcontext 'i' among these types (unknown is handled apart).
_IMPLICIT = {
    ("smallint", "integer"),
    ("smallint", "bigint"),
    ("smallint", "numeric"),
    ("smallint", "double precision"),
    ("integer", "bigint"),
    ("integer", "numeric"),
    ("integer", "double precision"),
    ("bigint", "numeric"),
    ("bigint", "double precision"),
    ("numeric", "double precision"),
    ("character varying", "text"),
    ("character varying", "name"),
    ("name", "text"),
    ("text", "character varying"),
    ("text", "name"),
    ("integer", "oid"),
    ("smallint", "oid"),
    ("bigint", "oid"),
}
STRING_TYPES = ("text", "character varying", "name", "unknown")
_SPACE = " \t\n\v\f\r"  # isspace() in the C locale
NAMEDATALEN = 64


def lookup(name: str) -> PgType:
    key = ALIASES.get(name, name)
    found = BY_NAME.get(key)
    if found is None:
        raise RewriteError("0A000", f"pgsodium-proxy cannot evaluate type {name}")
    return found


def can_coerce_implicitly(source: str, target: str) -> bool:
    return source == target or source == "unknown" or (source, target) in _IMPLICIT


def _syntax(type_name: str, text: str) -> RewriteError:
    return RewriteError("22P02", f'invalid input syntax for type {type_name}: "{text}"')


def _out_of_range(type_name: str, text: str) -> RewriteError:
    return RewriteError("22003", f'value "{text}" is out of range for type {type_name}')


def _refuse(what: str) -> RewriteError:
    return RewriteError("0A000", f"pgsodium-proxy cannot evaluate {what}")


# -- text encoding (the server encoding is UTF8) -----------------------------------


def _mblen(first: int) -> int:
    """pg_utf_mblen: the length a UTF-8 lead byte announces (1 when invalid)."""
    if first < 0x80:
        return 1
    for mask, value, length in ((0xE0, 0xC0, 2), (0xF0, 0xE0, 3), (0xF8, 0xF0, 4)):
        if first & mask == value:
            return length
    return 1


def _utf8_char_ok(data: bytes, at: int) -> int:
    """pg_utf8_verifychar: the length of a legal character at `at`, or -1."""
    length = _mblen(data[at])
    if data[at] == 0 or at + length > len(data):
        return -1
    try:
        data[at : at + length].decode("utf-8")
    except UnicodeDecodeError:
        return -1
    return length


def invalid_encoding(encoding: str, data: bytes, at: int) -> RewriteError:
    """report_invalid_encoding: up to one announced character's bytes, in hex."""
    length = _mblen(data[at]) if encoding == "UTF8" else 1
    shown = " ".join(f"0x{b:02x}" for b in data[at : at + min(length, 8)])
    return RewriteError(
        "22021", f'invalid byte sequence for encoding "{encoding}": {shown}'
    )


def utf8_text(data: bytes) -> str:
    """pg_verify_mbstr for UTF8 (NUL included), then the text it holds."""
    if b"\x00" not in data:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    at = 0
    while at < len(data):
        length = _utf8_char_ok(data, at)
        if length < 0:
            raise invalid_encoding("UTF8", data, at)
        at += length
    raise AssertionError("unreachable: the data decoded above")


def name_in(text: str) -> str:
    """namein/text_name: clipped to NAMEDATALEN - 1 bytes on a character boundary."""
    raw = text.encode("utf-8")
    if len(raw) < NAMEDATALEN:
        return text
    return raw[: NAMEDATALEN - 1].decode("utf-8", "ignore")


# -- bytea ------------------------------------------------------------------------

_HEX_SPACE = " \t\n\r"  # hex_decode skips these, and only between digit pairs
_HEX_TEXT = re.compile(r"[0-9a-fA-F \t\n\r]*")
_ESCAPES = re.compile(r"\\(?:[0-3][0-7][0-7]|\\)?|[^\\]+")


def hex_decode(text: str) -> bytes:
    """encode.c hex_decode: digit pairs, whitespace between pairs, first error wins."""
    if _HEX_TEXT.fullmatch(text):
        try:
            # Same pairing and whitespace rule as the server; errors are left to
            # the exact walk below.
            return bytes.fromhex(text)
        except ValueError:
            pass
    out = bytearray()
    i, end = 0, len(text)
    while i < end:
        if text[i] in _HEX_SPACE:
            i += 1
            continue
        high = _hex_digit(text[i])
        if i + 1 >= end:
            raise RewriteError(
                "22023", "invalid hexadecimal data: odd number of digits"
            )
        out.append(high << 4 | _hex_digit(text[i + 1]))
        i += 2
    return bytes(out)


def _hex_digit(ch: str) -> int:
    if ch in "0123456789abcdefABCDEF":
        return int(ch, 16)
    raise RewriteError("22023", f'invalid hexadecimal digit: "{ch}"')


def escape_decode(text: str) -> bytes:
    """byteain's escape form (= esc_decode): `\\\\` and `\\ooo`, all else verbatim."""
    if "\\" not in text:
        return text.encode("utf-8")
    out = bytearray()
    for match in _ESCAPES.finditer(text):
        token = match.group()
        if token == "\\":
            raise RewriteError("22P02", "invalid input syntax for type bytea")
        if token == "\\\\":
            out.append(0x5C)
        elif token[0] == "\\":
            out.append(int(token[1:], 8))
        else:
            out += token.encode("utf-8")
    return bytes(out)


def bytea_in(text: str) -> bytes:
    """byteain: `\\x` (lower case x only) then hex, else the escape form."""
    if text.startswith("\\x"):
        return hex_decode(text[2:])
    return escape_decode(text)


# byteaout's escape form: backslash doubled, non-printable ASCII as \\ooo.
_ESCAPE_OUT = [
    "\\\\" if b == 0x5C else chr(b) if 0x20 <= b <= 0x7E else f"\\{b:03o}"
    for b in range(256)
]


def bytea_out(value: bytes, bytea_output: str = "hex") -> str:
    if bytea_output == "hex":
        return "\\x" + value.hex()
    return "".join([_ESCAPE_OUT[b] for b in value])


# -- integers, oid, uuid, boolean, numeric ---------------------------------------

_INT_BITS = {"smallint": 16, "integer": 32, "bigint": 64}


# -- bytea[] (array_out / array_send of bytea) -----------------------------------------
# Nested lists, one level per dimension; None is a NULL element.


def bit_literal(bsval: str) -> str:
    """A bit-string literal's value as bit_in reads the scanner's text: 'b' and
    binary digits, or 'x' and hexadecimal ones (four bits each)."""
    kind, digits = bsval[0], bsval[1:]
    if kind == "b":
        bad = next((c for c in digits if c not in "01"), None)
        if bad is not None:
            raise RewriteError("22P02", f'"{bad}" is not a valid binary digit')
        return digits
    bits = []
    for c in digits:
        if c not in string.hexdigits:
            raise RewriteError("22P02", f'"{c}" is not a valid hexadecimal digit')
        bits.append(format(int(c, 16), "04b"))
    return "".join(bits)


def bytea_array_in(text: str) -> list[Any]:
    """array_in's reading of array_out's text: `{"\\\\x01",NULL}`, `{{…},{…}}`."""
    if text.startswith("["):
        raise _refuse("arrays with explicit bounds")
    value, end = _array_level(text, 0)
    if text[end:].strip():
        raise RewriteError("22P02", f'malformed array literal: "{text}"')
    return value


def _array_level(text: str, i: int) -> tuple[list[Any], int]:
    if i >= len(text) or text[i] != "{":
        raise RewriteError("22P02", f'malformed array literal: "{text}"')
    i += 1
    items: list[Any] = []
    if i < len(text) and text[i] == "}":
        return items, i + 1
    while i < len(text):
        if text[i] == "{":
            item, i = _array_level(text, i)
            items.append(item)
        elif text[i] == '"':
            out = []
            i += 1
            while i < len(text) and text[i] != '"':
                if text[i] == "\\":
                    i += 1
                out.append(text[i])
                i += 1
            items.append(bytea_in("".join(out)))
            i += 1
        else:
            start = i
            while i < len(text) and text[i] not in ",}":
                i += 1
            word = text[start:i].strip()
            items.append(None if word.upper() == "NULL" else bytea_in(word))
        if i < len(text) and text[i] == ",":
            i += 1
            continue
        if i < len(text) and text[i] == "}":
            return items, i + 1
        break
    raise RewriteError("22P02", f'malformed array literal: "{text}"')


def bytea_array_recv(data: bytes) -> list[Any]:
    """array_recv's reading of array_send: dimensions, then each element."""
    try:
        ndim, _, _ = struct.unpack_from("!iiI", data, 0)
        dims = [struct.unpack_from("!ii", data, 12 + 8 * d)[0] for d in range(ndim)]
        at = 12 + 8 * ndim
        flat: list[bytes | None] = []
        for _ in range(_product(dims) if ndim else 0):
            (size,) = struct.unpack_from("!i", data, at)
            at += 4
            if size < 0:
                flat.append(None)
                continue
            if at + size > len(data):
                raise struct.error("element past the end")
            flat.append(data[at : at + size])
            at += size
    except struct.error:
        raise RewriteError("22P03", "insufficient data left in message") from None
    return _nest(flat, dims) if ndim else []


def _product(dims: list[int]) -> int:
    total = 1
    for size in dims:
        total *= size
    return total


def _nest(flat: list[Any], dims: list[int]) -> list[Any]:
    if len(dims) == 1:
        return flat
    step = _product(dims[1:])
    return [_nest(flat[i : i + step], dims[1:]) for i in range(0, len(flat), step)]


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in _SPACE:
        i += 1
    return i


def _digits(text: str, i: int, limit: int) -> tuple[int, int, bool]:
    """Accumulate ASCII digits from i; stop early once the value passes `limit`."""
    value = 0
    while i < len(text) and text[i] in "0123456789":
        value = value * 10 + ord(text[i]) - 48
        i += 1
        if value > limit:
            return value, i, True
    return value, i, False


def _sign(text: str, i: int) -> tuple[bool, int]:
    if i < len(text) and text[i] in "+-":
        return text[i] == "-", i + 1
    return False, i


def _strtoint(type_name: str, text: str) -> int:
    """pg_strtoint16/32/64: overflow is reported as soon as the digits pass it."""
    limit = 1 << (_INT_BITS[type_name] - 1)
    negative, i = _sign(text, _skip_space(text, 0))
    if i >= len(text) or text[i] not in "0123456789":
        raise _syntax(type_name, text)
    value, i, overflow = _digits(text, i, limit)
    if overflow:
        raise _out_of_range(type_name, text)
    if _skip_space(text, i) != len(text):
        raise _syntax(type_name, text)
    if not negative and value == limit:
        raise _out_of_range(type_name, text)
    return -value if negative else value


def _oid_in(text: str) -> int:
    """oidin: strtoul(), then either zero- or sign-extension must fit 32 bits."""
    negative, i = _sign(text, _skip_space(text, 0))
    if i >= len(text) or text[i] not in "0123456789":
        raise _syntax("oid", text)
    value, i, overflow = _digits(text, i, 2**64 - 1)
    if overflow:
        raise _out_of_range("oid", text)
    if _skip_space(text, i) != len(text):
        raise _syntax("oid", text)
    converted = -value % 2**64 if negative else value
    result = converted & 0xFFFFFFFF
    signed = result - 2**32 if result >= 2**31 else result
    if converted not in (result, signed % 2**64):
        raise _out_of_range("oid", text)
    return result


def int_in(type_name: str, text: str) -> int:
    if type_name == "oid":
        return _oid_in(text)
    return _strtoint(type_name, text)


def uuid_in(text: str) -> str:
    """string_to_uuid: optional braces, a hyphen allowed after any 4 hex digits."""
    i, braces = (1, True) if text.startswith("{") else (0, False)
    digits = []
    for group in range(16):
        pair = text[i : i + 2]
        if len(pair) < 2 or any(c not in "0123456789abcdefABCDEF" for c in pair):
            raise _syntax("uuid", text)
        digits.append(pair)
        i += 2
        if text[i : i + 1] == "-" and group % 2 == 1 and group < 15:
            i += 1
    if braces:
        if text[i : i + 1] != "}":
            raise _syntax("uuid", text)
        i += 1
    if i != len(text):
        raise _syntax("uuid", text)
    return str(_uuid.UUID(hex="".join(digits)))


# parse_bool_with_len: any prefix of these words, by their first letter.
_BOOL_WORDS = {
    "t": ("true", True),
    "f": ("false", False),
    "y": ("yes", True),
    "n": ("no", False),
}


def bool_in(text: str) -> bool:
    word = text.strip(_SPACE)
    lowered = "".join(c.lower() if "A" <= c <= "Z" else c for c in word)
    if lowered in ("1", "0"):
        return lowered == "1"
    if lowered[:1] in _BOOL_WORDS:
        full, value = _BOOL_WORDS[lowered[:1]]
        if full.startswith(lowered):
            return value
    # 'o' alone is neither on nor off.
    if lowered in ("on", "of", "off"):
        return lowered == "on"
    raise _syntax("boolean", text)


# set_var_from_str; the exponent is read with strtol(), which skips whitespace.
_NUMERIC = re.compile(
    r"(?P<mantissa>[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))"
    r"(?:[eE][ \t\n\v\f\r]*(?P<exponent>[+-]?[0-9]+))?"
)
_NUMERIC_SPECIAL = {
    "nan": "NaN",
    "infinity": "Infinity",
    "+infinity": "Infinity",
    "-infinity": "-Infinity",
    "inf": "Infinity",
    "+inf": "Infinity",
    "-inf": "-Infinity",
}
# Beyond these the server's limits on weight and scale come into play; refused.
_NUMERIC_MAX_EXPONENT = 1000
_NUMERIC_MAX_TEXT = 4096


def numeric_in(text: str) -> str:
    """numeric_in then numeric_out: the canonical text of a numeric value."""
    core = text.strip(_SPACE)
    if len(core) > _NUMERIC_MAX_TEXT:
        raise _refuse("a numeric value this long")
    special = _NUMERIC_SPECIAL.get(core.lower() if core.isascii() else core)
    if special is not None:
        return special
    match = _NUMERIC.fullmatch(core)
    if match is None:
        raise _syntax("numeric", text)
    exponent = int(match["exponent"] or 0)
    if abs(exponent) > _NUMERIC_MAX_EXPONENT:
        raise _refuse("a numeric value with so large an exponent")
    value = Decimal(f"{match['mantissa']}E{exponent}")
    shown = format(value, "f")
    return shown[1:] if value.is_zero() and shown.startswith("-") else shown


def _numeric_to_int(text: str, type_name: str) -> int:
    """numeric_int2/4/8: NaN and infinity refused, ties rounded away from zero."""
    canonical = numeric_in(text)
    if canonical == "NaN":
        raise RewriteError("0A000", f"cannot convert NaN to {type_name}")
    if canonical.endswith("Infinity"):
        raise RewriteError("0A000", f"cannot convert infinity to {type_name}")
    value = int(Decimal(canonical).to_integral_value(rounding=ROUND_HALF_UP))
    return _int_range(value, type_name)


def _int_range(value: int, type_name: str) -> int:
    half = 1 << (_INT_BITS[type_name] - 1)
    if not -half <= value < half:
        raise RewriteError("22003", f"{type_name} out of range")
    return value


# -- text input and output ----------------------------------------------------------


def text_in(type_name: str, text: str) -> object:
    """Convert a value's text form to its Python value for `type_name`."""
    if type_name == "bytea":
        return bytea_in(text)
    if type_name == "bytea[]":
        return bytea_array_in(text)
    if type_name in _INT_BITS or type_name == "oid":
        return int_in(type_name, text)
    if type_name == "uuid":
        return uuid_in(text)
    if type_name == "boolean":
        return bool_in(text)
    if type_name == "numeric":
        return numeric_in(text)
    if type_name == "name":
        return name_in(text)
    if type_name in ("text", "character varying", "unknown"):
        return text
    if type_name.startswith("pgsodium."):
        # Kept as text: the server parses these when the value goes upstream.
        return text
    if type_name in _SERVER_PARSED:
        return Unparsed(text)
    raise _refuse(f"type {type_name}")


# Types whose input the proxy leaves to the server: their values are kept as the
# text written, which only the server turns into its own output (inet's canonical
# form; timestamptz under the session's TimeZone and DateStyle).
_SERVER_PARSED = ("timestamp with time zone", "inet")


class Unparsed(str):
    """The text of a value of a type in _SERVER_PARSED that no server has parsed
    yet. Fine as an argument that goes upstream or to the ipcrypt wrappers (which
    parse it); never sent to the client as the value itself."""


def refuse_unparsed(type_name: str) -> RewriteError:
    return RewriteError(
        "0A000",
        f"pgsodium-proxy cannot return a value cast to {type_name} from text it "
        f"computed: PostgreSQL's {type_name} input and output decide its text, and "
        "the value never reaches the server (return the text and cast it in the "
        "client, or cast it in a query over the result)",
    )


def text_out(type_name: str, value: object, bytea_output: str = "hex") -> str:
    if type_name == "bytea":
        assert isinstance(value, bytes)
        return bytea_out(value, bytea_output)
    if type_name == "boolean":
        return "t" if value else "f"
    if type_name == "numeric":
        return numeric_in(str(value))
    if type_name == "double precision":
        raise _refuse("the text form of a double precision value")
    return str(value)


# -- casts --------------------------------------------------------------------------


# pg_cast entries (any context) among the non-string types above; casts from and to
# the string types are the automatic I/O conversions.
_CASTS = {
    *((a, b) for a in _INT_BITS for b in _INT_BITS),
    *((a, "oid") for a in _INT_BITS),
    ("oid", "integer"),
    ("oid", "bigint"),
    *((a, "numeric") for a in _INT_BITS),
    *(("numeric", b) for b in _INT_BITS),
    *((a, "double precision") for a in (*_INT_BITS, "numeric")),
    *(("double precision", b) for b in (*_INT_BITS, "numeric")),
    ("integer", "boolean"),
    ("boolean", "integer"),
    *((a, b) for a in ("integer", "bigint") for b in ("bit",)),
    *(("bit", b) for b in ("integer", "bigint")),
}


def can_cast(source: str, target: str) -> bool:
    """Whether `CAST(x AS target)` parses for an x of type `source` (else 42846)."""
    return (
        source == target
        or source in STRING_TYPES
        or target in STRING_TYPES
        or (source, target) in _CASTS
    )


def cast(value: object, source: str, target: str, bytea_output: str = "hex") -> object:
    """The server's explicit cast from `source` to `target` of a `source` value."""
    if not can_cast(source, target):
        raise RewriteError("42846", f"cannot cast type {source} to {target}")
    if value is None or source == target:
        return value
    if "double precision" in (source, target):
        raise _refuse("casts involving type double precision")
    if source in STRING_TYPES:
        return text_in(target, str(value))
    if target in STRING_TYPES:
        return _cast_to_string(value, source, target, bytea_output)
    return _cast_number(value, source, target)


def _cast_to_string(value: object, source: str, target: str, bytea_output: str) -> str:
    if isinstance(value, Unparsed):
        raise refuse_unparsed(source)
    if source == "inet" and target != "name":
        return _network_show(str(value))  # pg_cast: text(inet), the mask always shown
    if source == "inet":
        return name_in(str(value))  # an I/O conversion: inet_out's text
    if source == "timestamp with time zone":
        raise _refuse(f"casts from type {source} to {target}")
    if source == "boolean" and target != "name":
        return "true" if value else "false"  # pg_cast: booltext, not boolout
    text = text_out(source, value, bytea_output)
    return name_in(text) if target == "name" else text


def _network_show(text: str) -> str:
    """network_show: the address and its prefix length, even a full-length one."""
    import ipaddress

    try:
        parsed = ipaddress.ip_interface(text)
    except ValueError:
        raise RewriteError(
            "22P02", f'invalid input syntax for type inet: "{text}"'
        ) from None
    return f"{parsed.ip}/{parsed.network.prefixlen}"


def _cast_number(value: object, source: str, target: str) -> object:
    if "bit" in (source, target):
        raise _refuse(f"casts from type {source} to {target}")
    if source in _INT_BITS and target in _INT_BITS:
        return _int_range(int(value), target)  # type: ignore[call-overload]
    if source in ("smallint", "integer") and target == "oid":
        return int(value) % 2**32  # type: ignore[call-overload]
    if (source, target) == ("bigint", "oid"):
        if not 0 <= int(value) < 2**32:  # type: ignore[call-overload]
            raise RewriteError("22003", "OID out of range")
        return int(value)  # type: ignore[call-overload]
    if (source, target) == ("oid", "integer"):
        return int(value) - 2**32 if int(value) >= 2**31 else int(value)  # type: ignore[call-overload]
    if (source, target) == ("oid", "bigint"):
        return int(value)  # type: ignore[call-overload]
    if source in _INT_BITS and target == "numeric":
        return str(value)
    if source == "numeric" and target in _INT_BITS:
        return _numeric_to_int(str(value), target)
    if (source, target) == ("integer", "boolean"):
        return value != 0
    assert (source, target) == ("boolean", "integer")
    return 1 if value else 0


# -- binary send/receive -----------------------------------------------------------

_BINARY_INTS = {"smallint": "!h", "integer": "!i", "bigint": "!q", "oid": "!I"}
_BINARY_SIZES = {**{t: struct.calcsize(f) for t, f in _BINARY_INTS.items()}, "uuid": 16}


def _binary_format(param: int | None) -> RewriteError:
    where = "" if param is None else f" {param}"
    return RewriteError(
        "22P03", f"incorrect binary data format in bind parameter{where}"
    )


def _binary_size(data: bytes, size: int, param: int | None) -> None:
    """pq_getmsgbytes, then exec_bind_message's check that all bytes were used."""
    if len(data) < size:
        message = (
            "no data left in message"
            if size == 1
            else "insufficient data left in message"
        )
        raise RewriteError("08P01", message)
    if len(data) > size:
        raise _binary_format(param)


def binary_in(type_name: str, data: bytes, *, param: int | None = None) -> object:
    """The type's receive function; `param` (1-based) numbers the bind parameter."""
    data = bytes(data)
    if type_name == "bytea":
        return data
    if type_name == "bytea[]":
        return bytea_array_recv(data)
    if type_name in _BINARY_SIZES:
        _binary_size(data, _BINARY_SIZES[type_name], param)
        if type_name == "uuid":
            return str(_uuid.UUID(bytes=data))
        return struct.unpack(_BINARY_INTS[type_name], data)[0]
    if type_name == "boolean":
        _binary_size(data, 1, param)
        return data != b"\x00"
    if type_name in STRING_TYPES:
        text = utf8_text(data)
        if type_name == "name" and len(data) >= NAMEDATALEN:
            raise RewriteError("42622", "identifier too long")
        return text
    raise RewriteError(
        "0A000", f"pgsodium-proxy cannot read binary values of type {type_name}"
    )


def binary_out(type_name: str, value: object) -> bytes:
    if type_name == "bytea":
        assert isinstance(value, bytes)
        return value
    if type_name in _BINARY_INTS:
        return struct.pack(_BINARY_INTS[type_name], value)
    if type_name == "uuid":
        return _uuid.UUID(str(value)).bytes
    if type_name == "boolean":
        return b"\x01" if value else b"\x00"
    if type_name in ("text", "character varying", "name"):
        return str(value).encode("utf-8")
    raise RewriteError(
        "0A000", f"pgsodium-proxy cannot send binary values of type {type_name}"
    )


# -- SQL literals ------------------------------------------------------------------


def sql_literal(type_name: str, value: object) -> str:
    """A literal that means the same whatever standard_conforming_strings is."""
    if value is None:
        return f"NULL::{type_name}"
    if type_name == "bytea":
        assert isinstance(value, bytes)
        return f"E'\\\\x{value.hex()}'::bytea"
    if type_name in _BINARY_INTS:
        return f"'{int(value)}'::{type_name}"  # type: ignore[call-overload]
    if type_name == "boolean":
        return "true" if value else "false"
    text = str(value).replace("\\", "\\\\").replace("'", "''")
    return f"E'{text}'::{type_name}"
