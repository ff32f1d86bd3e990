"""`<decrypted> = v` where PostgreSQL would find no `=` for the two types.

A deterministic search compares ciphertexts, after casting v to the decrypted
value's type: a v of another type would be compared as text (or bytea) where the
server raises 42883 at parse time, whatever the rows. So the search first asks
what the server would: is there an `=` for (text, T), or (bytea, T)?
"""

from __future__ import annotations

from collections.abc import Sequence

from pglast import ast

from . import types
from .errors import RewriteError

# What `=` with a text (or bytea) side resolves to the type's own equality for,
# the other side cast implicitly (unknown: a literal or unspecified parameter).
_EQUAL = {
    "text": frozenset({"text", "character varying", "name"}),
    "bytea": frozenset({"bytea"}),
}
# Built-in types with no `=` against text or bytea: neither an operator of their
# own for the pair nor an implicit cast to the other side.
_NO_EQUALITY = frozenset(
    {
        "bytea",
        "bigint",
        "smallint",
        "integer",
        "numeric",
        "double precision",
        "real",
        "uuid",
        "boolean",
        "timestamp with time zone",
        "oid",
        "bit",
        *_EQUAL["text"],
    }
)
_HINT = (
    "No operator matches the given name and argument types. You might need to add "
    "explicit type casts."
)


def check_operand(
    decrypted: str,
    value: ast.Node,
    declared: Sequence[int],
    decrypted_left: bool,
    operator: int,
) -> None:
    """42883 for `<decrypted> = value` with a value of a type `=` has no operator
    for, as the server's parser gives it: for a parameter, a constant or a cast
    of one (other values are typed where they are compiled). `decrypted` is the
    decrypted value's type."""
    if decrypted not in _EQUAL:
        return
    if isinstance(value, ast.ParamRef):
        found = parameter_type(value.number, declared)
    elif isinstance(value, ast.A_Const):
        found = constant_type(value)
    elif isinstance(value, ast.TypeCast) and isinstance(
        value.arg, (ast.A_Const, ast.ParamRef)
    ):
        found = cast_type(value.typeName)
        if found is None:
            return
    else:
        return
    check(decrypted, found, decrypted_left, operator)


def parameter_type(number: int, declared: Sequence[int]) -> str | None:
    """The type of $number as Parse declared it: "unknown" when unspecified, None
    when the proxy does not know the type."""
    oid = declared[number - 1] if number <= len(declared) else 0
    if not oid:
        return "unknown"
    known = types.BY_OID.get(oid)
    return None if known is None else known.name


def constant_type(node: ast.A_Const) -> str:
    """The type PostgreSQL gives a constant (make_const): a string is unknown."""
    value = node.val
    if node.isnull or isinstance(value, ast.String):
        return "unknown"
    if isinstance(value, ast.Integer):
        return "integer"
    if isinstance(value, ast.Boolean):
        return "boolean"
    if isinstance(value, ast.BitString):
        return "bit"
    text = value.fval
    if text.lstrip("-").isdigit() and -(2**63) <= int(text) < 2**63:
        return "bigint"
    return "numeric"


def cast_type(name: ast.TypeName) -> str | None:
    """The type of `x::name`, when the proxy knows it well enough to check."""
    from .compile import NotFoldable, type_name

    try:
        found = type_name(name)
    except NotFoldable:
        return None
    if found in _EQUAL or found in _NO_EQUALITY:
        return found
    return None


def check(
    decrypted: str, value: str | None, decrypted_left: bool, operator: int | None
) -> None:
    """Raise PostgreSQL's 42883 when `=` has no operator for the two types;
    `decrypted` is "text" or "bytea", `value` None for a type the proxy does not
    know, `operator` the operator's 0-based offset."""
    if value == "unknown" or value in _EQUAL[decrypted]:
        return
    if value not in _NO_EQUALITY:
        # SECURITY: a type of the database's own (a domain, citext) may bring an
        # `=` of its own meaning: never searched as text.
        raise RewriteError(
            "0A000",
            f"pgsodium-proxy cannot evaluate a comparison of a decrypted {decrypted} "
            f"value with a value of type {value or 'unknown to the proxy'}",
            None if operator is None else operator + 1,
        )
    pair = (decrypted, value) if decrypted_left else (value, decrypted)
    raise RewriteError(
        "42883",
        f"operator does not exist: {pair[0]} = {pair[1]}",
        None if operator is None else operator + 1,
        _HINT,
    )
