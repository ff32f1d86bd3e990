"""The PostgreSQL types the proxy computes with: OIDs, categories, casts, I/O.

Each conversion follows the server's own input and output functions (byteain,
byteaout, int8in, uuid_in, boolin, ...), including their error SQLSTATEs and texts,
because clients see these results exactly as if the server had produced them.
"""

from __future__ import annotations

import re
import struct
import uuid as _uuid
from dataclasses import dataclass

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
    PgType("oid", 26, "N", size=4),
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
    ("name", "text"),
    ("text", "character varying"),
    ("integer", "oid"),
    ("smallint", "oid"),
    ("bigint", "oid"),
}


def lookup(name: str) -> PgType:
    key = ALIASES.get(name, name)
    found = BY_NAME.get(key)
    if found is None:
        raise RewriteError("0A000", f"pgsodium-proxy cannot evaluate type {name}")
    return found


def can_coerce_implicitly(source: str, target: str) -> bool:
    return source == target or source == "unknown" or (source, target) in _IMPLICIT


# -- text input functions ----------------------------------------------------------


def _syntax(type_name: str, text: str) -> RewriteError:
    return RewriteError(
        "22P02", f'invalid input syntax for type {type_name}: "{text}"'
    )


def bytea_in(text: str) -> bytes:
    """byteain: `\\x` hex form, or the escape form with `\\\\` and `\\ooo`."""
    if text.startswith("\\x"):
        digits = re.sub(r"\s", "", text[2:])
        if len(digits) % 2:
            raise RewriteError("22023", "invalid hexadecimal data: odd number of digits")
        try:
            return bytes.fromhex(digits)
        except ValueError:
            bad = next(c for c in digits if c not in "0123456789abcdefABCDEF")
            raise RewriteError(
                "22023", f'invalid hexadecimal digit: "{bad}"'
            ) from None
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out += ch.encode("utf-8")
            i += 1
        elif text[i + 1 : i + 2] == "\\":
            out.append(0x5C)
            i += 2
        elif re.fullmatch(r"[0-3][0-7][0-7]", text[i + 1 : i + 4]):
            out.append(int(text[i + 1 : i + 4], 8))
            i += 4
        else:
            raise _syntax("bytea", text)
    return bytes(out)


_INT_RANGES = {
    "smallint": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
    "oid": (0, 2**32 - 1),
}


def int_in(type_name: str, text: str) -> int:
    stripped = text.strip()
    if not re.fullmatch(r"[+-]?[0-9]+", stripped):
        raise _syntax(type_name, text)
    value = int(stripped)
    low, high = _INT_RANGES[type_name]
    if not low <= value <= high:
        raise RewriteError(
            "22003", f'value "{text}" is out of range for type {type_name}'
        )
    return value


def uuid_in(text: str) -> str:
    core = text.strip()
    if core.startswith("{") and core.endswith("}"):
        core = core[1:-1]
    # uuid_in accepts hyphens after any group of four hex digits; simplest exact
    # check: 32 hex digits once hyphens are removed, no leading/trailing hyphen.
    digits = core.replace("-", "")
    if (
        len(digits) != 32
        or core.startswith("-")
        or core.endswith("-")
        or "--" in core
        or not re.fullmatch(r"[0-9a-fA-F]{32}", digits)
    ):
        raise _syntax("uuid", text)
    return str(_uuid.UUID(hex=digits))


def bool_in(text: str) -> bool:
    word = text.strip().lower()
    if word and "true".startswith(word) or word in ("yes", "on", "1", "y"):
        return True
    if word and "false".startswith(word) or word in ("no", "off", "0", "n"):
        return False
    raise _syntax("boolean", text)


def text_in(type_name: str, text: str) -> object:
    """Convert a value's text form to its Python value for `type_name`."""
    if type_name == "bytea":
        return bytea_in(text)
    if type_name in _INT_RANGES:
        return int_in(type_name, text)
    if type_name == "uuid":
        return uuid_in(text)
    if type_name == "boolean":
        return bool_in(text)
    if type_name in ("text", "character varying", "name", "unknown"):
        return text
    if type_name.startswith("pgsodium.") or type_name in (
        "timestamp with time zone",
        "inet",
        "numeric",
    ):
        # Kept as text: the server parses these when the value goes upstream.
        return text
    raise RewriteError("0A000", f"pgsodium-proxy cannot evaluate type {type_name}")


# -- text output functions ---------------------------------------------------------


def bytea_out(value: bytes, bytea_output: str = "hex") -> str:
    if bytea_output == "hex":
        return "\\x" + value.hex()
    parts = []
    for byte in value:
        if byte == 0x5C:
            parts.append("\\\\")
        elif byte < 0x20 or byte > 0x7E:
            parts.append(f"\\{byte:03o}")
        else:
            parts.append(chr(byte))
    return "".join(parts)


def text_out(type_name: str, value: object, bytea_output: str = "hex") -> str:
    if type_name == "bytea":
        assert isinstance(value, bytes)
        return bytea_out(value, bytea_output)
    if type_name == "boolean":
        return "t" if value else "f"
    return str(value)


# -- binary send/receive -----------------------------------------------------------

_INT_FORMATS = {"smallint": "!h", "integer": "!i", "bigint": "!q", "oid": "!I"}


def binary_in(type_name: str, data: bytes) -> object:
    if type_name == "bytea":
        return bytes(data)
    if type_name in _INT_FORMATS:
        fmt = _INT_FORMATS[type_name]
        if len(data) != struct.calcsize(fmt):
            raise RewriteError(
                "22P03", f"incorrect binary data format in bind parameter"
            )
        return struct.unpack(fmt, data)[0]
    if type_name == "uuid":
        if len(data) != 16:
            raise RewriteError("22P03", "incorrect binary data format in bind parameter")
        return str(_uuid.UUID(bytes=bytes(data)))
    if type_name == "boolean":
        return data != b"\x00"
    if type_name in ("text", "character varying", "name", "unknown"):
        return bytes(data).decode("utf-8")
    raise RewriteError(
        "0A000", f"pgsodium-proxy cannot read binary values of type {type_name}"
    )


def binary_out(type_name: str, value: object) -> bytes:
    if type_name == "bytea":
        assert isinstance(value, bytes)
        return value
    if type_name in _INT_FORMATS:
        return struct.pack(_INT_FORMATS[type_name], value)
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
    if type_name in _INT_RANGES:
        return f"'{int(value)}'::{type_name}"  # type: ignore[call-overload]
    if type_name == "boolean":
        return "true" if value else "false"
    text = str(value).replace("\\", "\\\\").replace("'", "''")
    return f"E'{text}'::{type_name}"
