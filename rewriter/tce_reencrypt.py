"""TCE: an UPDATE that changes an encrypted column's key, associated data or nonce
without setting the column itself, planned as a re-encryption.

pgsodium's trigger would leave the old ciphertext, which then no longer decrypts.
The proxy re-encrypts instead: before the UPDATE runs it reads and locks the rows
it will change (`select`, with the client's WHERE and parameters), decrypts each
old value under the row's old key, associated data and nonce, encrypts it under
the new ones, and the UPDATE takes the new ciphertexts from a FROM item of its
own, joined on each row's table oid and ctid (`source`). The locks keep every
such row, and so its ctid, as it was read until the transaction ends.

Only a plain `UPDATE t SET … [WHERE …] [RETURNING …]` whose new key, associated
data and nonce values are literals or bind parameters is planned this way; any
other statement in this situation is refused with 0A000 naming the construct.
Pure: the caller runs `select` and fills `source` (proxy.reencrypt).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pglast import ast
from pglast.visitors import Visitor

from keystore.catalogue import FUNCTIONS

from . import sqltext
from .sqltext import Token
from .tce import (
    Column,
    Relation,
    associated_text,
    associated_type,
    is_null,
    refuse,
    visible,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

# The most rows one statement re-encrypts: the proxy holds every affected row's
# old and new ciphertext at once (the pre-read reads one more to tell).
# TODO: re-encrypt in parts (the pre-read through a cursor, one UPDATE per part,
# their results merged into one for the client) — when the bound is too small.
MAX_ROWS = 100_000


def max_rows() -> int:
    return MAX_ROWS  # read at each use, so a test can lower it


ALIAS = "_pgsp_reencrypt"
_OID, _TID = "_pgsp_oid", "_pgsp_tid"
# SECURITY: what the proxy writes here runs upstream under the client's
# search_path, which may put a schema of the client's before pg_catalog: every
# function, operator and type it names is qualified.
_C = "pg_catalog."
_EQ = "OPERATOR(pg_catalog.=)"
# Function names whose call the pre-read could not send upstream as it is.
_PGSODIUM_NAMES = frozenset(f.name for f in FUNCTIONS) | {
    "create_secret",
    "update_secret",
}


@dataclass(frozen=True)
class Reencrypted:
    """One encrypted column, and where its inputs are in a row of the pre-read
    (None: the label's constant key, no associated data, no nonce)."""

    name: str
    type: str  # "text" | "bytea"
    key_id: str | None  # ENCRYPT WITH KEY ID
    value: int  # the stored value (text: as stored; bytea: base64)
    old_key: int | None  # KEY COLUMN: the key uuid, as text
    old_ad: int | None  # base64 of the associated data's UTF-8 bytes
    old_nonce: int | None  # base64
    new_key: int | None
    new_ad: int | None
    new_nonce: int | None


@dataclass(frozen=True)
class ReencryptPlan:
    select: str  # the pre-read; each row: table oid, ctid, then the items
    columns: tuple[Reencrypted, ...]
    placeholder: str  # the FROM item of the rewritten UPDATE, to be filled
    where: tuple[int, int] | None  # the client's WHERE condition in its text

    def source(self, arrays: Sequence[str]) -> str:
        return source(len(self.columns), arrays)


def source(count: int, arrays: Sequence[str]) -> str:
    """The FROM item with the rows' table oids, ctids and the new values of `count`
    columns, given as SQL expressions of arrays (literals or bind parameters)."""
    types = ["oid[]", "tid[]"] + ["text[]"] * count
    args = ", ".join(
        f"{_C}unnest({a}::{_C}{t})" for a, t in zip(arrays, types, strict=True)
    )
    names = [_OID, _TID] + [_value_name(i) for i in range(count)]
    return f"ROWS FROM ({args}) AS {ALIAS}({', '.join(names)})"


def _value_name(index: int) -> str:
    return f"_pgsp_c{index}"


def plan(
    sql: str,
    toks: list[Token],
    stmt: ast.UpdateStmt,
    relation: Relation,
    stale: Sequence[Column],
    row: dict[str, tuple[Any, str]],
    set_end: int,
) -> tuple[ReencryptPlan | None, list[tuple[int, int, str]]]:
    """The re-encryption of `stale` (encrypted columns whose key, associated data
    or nonce `row`, the SET list, changes): the plan (None: nothing to read) and
    the replacements that turn the client's UPDATE into the one that takes the
    new values."""
    names = ", ".join(c.name for c in stale)
    _check_shape(stmt, relation, names)
    q = sqltext.quote_ident
    rv = stmt.relation
    ref = q(rv.alias.aliasname if rv.alias is not None else rv.relname)
    target = _target_span(toks, rv.location)
    where = _where_span(toks, set_end) if stmt.whereClause is not None else None
    if where is not None and _calls_pgsodium(stmt.whereClause):
        raise refuse(
            f"re-encrypt {names} for an UPDATE whose WHERE calls a pgsodium function"
        )

    items = _Items()
    columns: list[Reencrypted] = []
    nulled: list[str] = []
    for column in stale:
        if column.key_column and is_null(row.get(column.key_column, (None, ""))[0]):
            # A NULL key column stores NULL, as an INSERT with it does (pgsodium's
            # trigger drops the plaintext): nothing to read.
            nulled.append(column.name)
            continue
        columns.append(_column(column, relation, row, items, ref))

    if not columns:
        return None, [(set_end, set_end, _assignments(nulled, columns))]
    placeholder = source(len(columns), ["NULL"] * (2 + len(columns)))
    select = (
        f"SELECT {ref}.tableoid, {ref}.ctid"
        + "".join(", " + item for item in items.texts)
        + f" FROM {sql[target[0] : target[1]]}"
        + ("" if where is None else f" WHERE {sql[where[0] : where[1]]}")
        + f" LIMIT {max_rows() + 1} FOR UPDATE OF {ref}"
    )
    out = _joined(set_end, where, _assignments(nulled, columns), placeholder, ref)
    out += _returning_stars(toks, stmt, ref)
    return ReencryptPlan(select, tuple(columns), placeholder, where), out


def _assignments(nulled: list[str], columns: list[Reencrypted]) -> str:
    """The SET items the proxy adds: NULL, or the value from its FROM item."""
    q = sqltext.quote_ident
    assignments = [f"{q(n)} = NULL" for n in nulled]
    for index, column in enumerate(columns):
        value = f"{ALIAS}.{_value_name(index)}"
        if column.type != "text":
            value = f"{_C}decode({value}, 'base64')"
        assignments.append(f"{q(column.name)} = {value}")
    return ", " + ", ".join(assignments)


def _joined(
    set_end: int,
    where: tuple[int, int] | None,
    assignments: str,
    placeholder: str,
    ref: str,
) -> list[tuple[int, int, str]]:
    """The UPDATE's added SET items and FROM item, joined on each row's table oid
    and ctid (and the client's WHERE, which the locked rows still match)."""
    join = f"{ref}.tableoid {_EQ} {ALIAS}.{_OID} AND {ref}.ctid {_EQ} {ALIAS}.{_TID}"
    added = f"{assignments} FROM {placeholder}"
    if where is None:
        return [(set_end, set_end, f"{added} WHERE {join}")]
    return [
        (set_end, set_end, added),
        (where[0], where[0], f"{join} AND ("),
        (where[1], where[1], ")"),
    ]


def _check_shape(stmt: ast.UpdateStmt, relation: Relation, names: str) -> None:
    if relation.kind == "view":
        raise refuse(
            f"re-encrypt {names} in an UPDATE of the decrypting view {relation.view} "
            f"(update the table {relation.table})"
        )
    if stmt.withClause is not None:
        raise refuse(f"re-encrypt {names} in WITH ... UPDATE")
    if stmt.fromClause:
        raise refuse(f"re-encrypt {names} in UPDATE ... FROM")
    if isinstance(stmt.whereClause, ast.CurrentOfExpr):
        raise refuse(f"re-encrypt {names} in UPDATE ... WHERE CURRENT OF")


def _column(
    column: Column,
    relation: Relation,
    row: dict[str, tuple[Any, str]],
    items: _Items,
    ref: str,
) -> Reencrypted:
    q = sqltext.quote_ident
    stored = f"{ref}.{q(column.name)}"
    if column.type != "text":
        stored = f"{_C}encode({stored}, 'base64')"
    old_key = new_key = None
    if column.key_column:
        old_key = items.add(f"{ref}.{q(column.key_column)}::{_C}text")
        new_key = old_key
        if column.key_column in row:
            value = _new_value(row, column.key_column, column.name)
            new_key = items.add(f"({value})::{_C}uuid::{_C}text")
    old_nonce = new_nonce = None
    if column.nonce:
        old_nonce = items.add(f"{_C}encode({ref}.{q(column.nonce)}, 'base64')")
        new_nonce = old_nonce
        if column.nonce in row:
            value = _new_value(row, column.nonce, column.name)
            new_nonce = items.add(f"{_C}encode(({value})::{_C}bytea, 'base64')")
    old_ad = new_ad = None
    if column.associated:
        old_parts, new_parts = [], []
        for name in column.associated:
            found = relation.column(name)
            type_name = found.type if found else ""
            if associated_type(type_name) is None:
                raise refuse(f"compute the associated data {name} of {column.name}")
            old_parts.append(f"{ref}.{q(name)}::{_C}text")
            if name in row:
                value = _new_value(row, name, column.name)
                new_parts.append(str(associated_text(value, type_name, _C)))
            else:
                new_parts.append(f"{ref}.{q(name)}::{_C}text")
        old_ad = items.add(_ad_bytes(old_parts))
        new_ad = items.add(_ad_bytes(new_parts))
    return Reencrypted(
        column.name,
        column.type,
        column.key_id,
        items.add(stored),
        old_key,
        old_ad,
        old_nonce,
        new_key,
        new_ad,
        new_nonce,
    )


def _ad_bytes(parts: list[str]) -> str:
    """The associated data as pgsodium computes it (`a::text || b::text`, NULL if
    any part is), its UTF-8 bytes in base64: the same whatever the encodings."""
    joined = f" OPERATOR({_C}||) ".join(parts)
    return f"{_C}encode({_C}convert_to(({joined})::{_C}text, 'utf8'), 'base64')"


def _new_value(row: dict[str, tuple[Any, str]], name: str, encrypted: str) -> str:
    node, text = row[name]
    if not visible(node):
        raise refuse(
            f"re-encrypt {encrypted} for a new {name} that is not a literal or a "
            "parameter"
        )
    return text


class _Items:
    """The pre-read's select list after the table oid and ctid, each item once."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def add(self, text: str) -> int:
        if text not in self.texts:
            self.texts.append(text)
        return 2 + self.texts.index(text)


def _target_span(toks: list[Token], location: int) -> tuple[int, int]:
    """`[ONLY] name [*] [[AS] alias]`: from the relation to the SET keyword."""
    first = next(i for i, t in enumerate(toks) if t.start >= location)
    start = toks[first].start
    index = first
    while index > 0 and toks[index - 1].name in ("ONLY", "ASCII_40"):
        index -= 1  # `ONLY t` or `ONLY (t)`
        start = toks[index].start
    end = start
    for tok in toks[first:]:
        if tok.name == "SET":
            return start, end
        end = tok.end
    raise refuse("find the SET list", location)


def _where_span(toks: list[Token], after: int) -> tuple[int, int]:
    """The WHERE condition's text: from the WHERE keyword after the SET list to
    RETURNING, a semicolon or the end, at depth 0."""
    index = next(
        (i for i, t in enumerate(toks) if t.start >= after and t.name == "WHERE"),
        None,
    )
    if index is None:
        raise refuse("find the WHERE clause", after)
    depth = 0
    start = end = -1
    for tok in toks[index + 1 :]:
        if depth == 0 and tok.name in ("RETURNING", "ASCII_59"):
            break
        if tok.name in ("ASCII_40", "ASCII_91", "CASE"):
            depth += 1
        elif tok.name in ("ASCII_41", "ASCII_93", "END_P"):
            depth -= 1
        if start == -1:
            start = tok.start
        end = tok.end
    if start == -1:
        raise refuse("find the WHERE clause", after)
    return start, end


def _returning_stars(
    toks: list[Token], stmt: ast.UpdateStmt, ref: str
) -> list[tuple[int, int, str]]:
    """`RETURNING *` would also return the FROM item's columns: the target's only."""
    clause = stmt.returningClause
    out: list[tuple[int, int, str]] = []
    for target in clause.exprs if clause is not None else ():
        value = target.val
        if (
            isinstance(value, ast.ColumnRef)
            and len(value.fields) == 1
            and isinstance(value.fields[0], ast.A_Star)
        ):
            star = next(t for t in toks if t.start >= value.location)
            out.append((star.start, star.end, f"{ref}.*"))
    return out


class _Calls(Visitor):  # type: ignore[misc]
    def __init__(self) -> None:
        self.names: list[str] = []

    def visit_FuncCall(self, ancestors: Any, node: ast.FuncCall) -> None:
        self.names += [n.sval for n in node.funcname if isinstance(n, ast.String)]


def _calls_pgsodium(node: Any) -> bool:
    calls = _Calls()
    calls(node)
    return any(n in _PGSODIUM_NAMES or n in ("pgsodium", "vault") for n in calls.names)
