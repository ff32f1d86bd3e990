"""Transparent Column Encryption: SQL text in, SQL text with pgsodium calls out.

This pass runs before the rest of the rewriter, on statements that name a labelled
table or its decrypting view, and turns TCE into plain pgsodium calls that the
existing machinery then evaluates:

- `SECURITY LABEL FOR pgsodium ...` (vanilla PostgreSQL has no such provider)
  becomes a `DO` block calling pgsodium._proxy_tce_set_label, which records the
  label upstream and regenerates the decrypting view and the guard trigger.
- A write of an encrypted column (`INSERT ... VALUES`, `UPDATE ... SET c = v`, on
  the table or through its decrypting view) gets each value `v` replaced by
  pgsodium's own trigger expression, e.g. for text
  `encode(crypto_aead_det_encrypt(convert_to((v)::text, 'utf8'), <ad>, <key>::uuid,
  <nonce>), 'base64')`; its inputs are literals or bind parameters, so the proxy
  folds it and only the ciphertext goes upstream.
- A read of a decrypting view becomes a subquery over the view with the same
  columns, whose `decrypted_<c>` is pgsodium's CASE expression; the per-row
  machinery computes it in the result stream.

`COPY ... FROM STDIN` into a labelled table is encrypted row by row as the data
streams (rewriter.tce_copy); an UPDATE of only a column's key, associated data or
nonce re-encrypts its rows (rewriter.tce_reencrypt). Anything else that would
write an encrypted column (INSERT ... SELECT, COPY from a server file, MERGE,
values the proxy cannot see) is refused with 0A000: the proxy never lets
plaintext reach a labelled column.
Pure: no I/O; the caller looks the rules up upstream (`Relation`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pglast import ast, parse_sql
from pglast.enums import ObjectType, TransactionStmtKind
from pglast.parser import ParseError
from pglast.visitors import Visitor

from . import sqltext, unrewritten
from .errors import RewriteError

FEATURE_NOT_SUPPORTED = "0A000"
INVALID_PARAMETER_VALUE = "22023"

_IDENT = r"[\w$-]+"
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# pgsodium's clauses, in the exact spacing its masking_rule regexes read them.
_COLUMN_HEAD = re.compile(
    rf"encrypt +with +key +(?:id +({_UUID})|column +({_IDENT}))", re.IGNORECASE
)
_COLUMN_CLAUSES = re.compile(
    rf" +associated +\(({_IDENT}(?:, *{_IDENT})*)\)| +nonce +({_IDENT})"
    r"| +security +invoker",
    re.IGNORECASE,
)
_NAME = r"[a-z_][a-z0-9_$]*"
_TABLE_LABEL = re.compile(rf"decrypt +with +view +{_NAME}\.{_NAME} *", re.IGNORECASE)
_ROLE_LABEL = re.compile(
    rf"access +{_IDENT}\.{_IDENT}(?: *, *{_IDENT}\.{_IDENT})* *", re.IGNORECASE
)
_DO_TAG = "$pgsodium_proxy_label$"
# Types whose text output the proxy reproduces exactly (associated data), as
# format_type names them without a type modifier.
_AD_TYPES = {
    "text": "text",
    "character varying": "varchar",
    "smallint": "int2",
    "integer": "int4",
    "bigint": "int8",
    "uuid": "uuid",
    "boolean": "bool",
}
_VARCHAR_LENGTH = re.compile(r"character varying\((\d+)\)")


def associated_type(type_name: str) -> tuple[str, int | None] | None:
    """A column's type (format_type's text) as associated data: the type without
    its modifier and, for `varchar(n)`, n; None where the proxy cannot reproduce
    its text form."""
    varchar = _VARCHAR_LENGTH.fullmatch(type_name)
    if varchar is not None:
        return "character varying", int(varchar.group(1))
    return (type_name, None) if type_name in _AD_TYPES else None


def associated_text(value: str, type_name: str, schema: str = "") -> str | None:
    """SQL for the text that `value` (SQL text), written into a column of
    `type_name`, contributes to the associated data: the stored value's `::text`.
    Storing into `varchar(n)` cuts an over-long value's excess spaces (anything
    else there fails the write): the first n characters, as the cast to it gives.
    `schema` ("pg_catalog.") qualifies the types, for SQL that runs upstream."""
    found = associated_type(type_name)
    if found is None:
        return None
    base, length = found
    text = f"({value})::{schema}{_AD_TYPES[base]}::{schema}text"
    if length is not None:
        text = f"pg_catalog.substr({text}, 1, {length})"
    return text


def refuse(what: str, location: int | None = None) -> RewriteError:
    error = RewriteError(
        FEATURE_NOT_SUPPORTED,
        f"pgsodium-proxy cannot {what}: the column is encrypted (refused, nothing "
        "was written)",
    )
    error.position = None if location is None or location < 0 else location + 1
    return error


def visible(node: Any) -> bool:
    """A value the proxy can see in the statement: a literal, a bind parameter, or
    a cast of one."""
    if isinstance(node, ast.TypeCast):
        return visible(node.arg)
    return isinstance(node, (ast.A_Const, ast.ParamRef))


def is_null(node: Any) -> bool:
    if isinstance(node, ast.TypeCast):
        return is_null(node.arg)
    return isinstance(node, ast.A_Const) and bool(node.isnull)


# -- labels ----------------------------------------------------------------------------


def check_column_label(label: str) -> None:
    """pgsodium's column label grammar, strictly: a clause the upstream regexes would
    skip (and so silently leave a column in plaintext) is an error here."""
    head = _COLUMN_HEAD.match(label)
    if head is None:
        if re.match(r"encrypt +with", label, re.IGNORECASE):
            raise _bad_label(label, "expected KEY ID <uuid> or KEY COLUMN <column>")
        return  # pgsodium's own prefix check (42602) runs upstream
    rest = label[head.end() :]
    seen: set[str] = set()
    while rest.strip():
        clause = _COLUMN_CLAUSES.match(rest)
        if clause is None:
            raise _bad_label(label, f"cannot parse {rest.strip()!r}")
        word = clause.group(0).split()[0].lower()
        if word in seen:
            raise _bad_label(label, f"{word.upper()} given twice")
        seen.add(word)
        rest = rest[clause.end() :]


def check_table_label(label: str) -> None:
    if re.match(r"decrypt", label, re.IGNORECASE) and not _TABLE_LABEL.fullmatch(label):
        raise _bad_label(label, "expected DECRYPT WITH VIEW <schema>.<view>")


def check_role_label(label: str) -> None:
    if re.match(r"access", label, re.IGNORECASE) and not _ROLE_LABEL.fullmatch(label):
        raise _bad_label(label, "expected ACCESS <schema>.<table>[, ...]")


def _bad_label(label: str, why: str) -> RewriteError:
    return RewriteError(
        INVALID_PARAMETER_VALUE, f"invalid pgsodium label {label!r}: {why}"
    )


def security_label(stmt: ast.SecLabelStmt) -> str:
    """The upstream statement that records a pgsodium label."""
    label = stmt.label
    names = stmt.object
    if stmt.objtype == ObjectType.OBJECT_COLUMN:
        parts = [n.sval for n in names]
        objtype, obj, column = "column", _qualified(parts[:-1]), parts[-1]
        if label is not None:
            check_column_label(label)
    elif stmt.objtype == ObjectType.OBJECT_TABLE:
        objtype, obj, column = "table", _qualified([n.sval for n in names]), None
        if label is not None:
            check_table_label(label)
    elif stmt.objtype == ObjectType.OBJECT_ROLE:
        objtype, obj, column = "role", names.sval, None
        if label is not None:
            check_role_label(label)
    else:
        raise RewriteError(
            FEATURE_NOT_SUPPORTED,
            "pgsodium provider does not support labels on this object",
        )
    args = ", ".join(_literal(v) for v in (objtype, obj, column, label))
    if _DO_TAG in args:
        raise _bad_label(label or "", f"it contains {_DO_TAG}")
    return (
        f"DO {_DO_TAG} BEGIN "
        f"PERFORM pgsodium._proxy_tce_set_label({args}); "
        f"END {_DO_TAG}"
    )


def _qualified(parts: Sequence[str]) -> str:
    return ".".join(sqltext.quote_ident(p) for p in parts)


def _literal(value: str | None) -> str:
    """A literal that means the same whatever standard_conforming_strings is."""
    if value is None:
        return "NULL"
    text = "'" + value.replace("'", "''") + "'"
    if "\\" in value:
        return "E" + text.replace("\\", "\\\\")
    return text


# -- rules -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    encrypted: bool = False
    key_id: str | None = None
    key_column: str | None = None
    associated: tuple[str, ...] = ()
    nonce: str | None = None
    generated: bool = False  # GENERATED ALWAYS AS: not in COPY's default list


@dataclass(frozen=True)
class Relation:
    """A labelled table, or its decrypting view, as a statement names it."""

    kind: str  # "table" | "view" | "dependent" (a user's view over either)
    table: str  # quoted, schema-qualified
    view: str  # as pgsodium's masking_rule spells it
    columns: tuple[Column, ...]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Relation:
        columns = tuple(
            Column(
                name=c["name"],
                type=c["type"],
                encrypted=bool(c["encrypted"]),
                key_id=c["key_id"],
                key_column=c["key_column"],
                associated=tuple(
                    a.strip() for a in (c["associated"] or "").split(",") if a.strip()
                ),
                nonce=c["nonce"],
                generated=bool(c.get("generated")),
            )
            for c in data["columns"]
        )
        return cls(data["kind"], data["table"], data["view"], columns)

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


class _RangeVars(Visitor):  # type: ignore[misc]
    """Relations named in a statement; not an unqualified name that a WITH query of
    the statement also has (that may be the WITH query: left alone)."""

    def __init__(self) -> None:
        self.found: list[ast.RangeVar] = []
        self.ctes: set[str] = set()

    def __call__(self, node: Any) -> Any:
        super().__call__(node)
        self.found = [
            rv
            for rv in self.found
            if rv.schemaname is not None or rv.relname not in self.ctes
        ]

    def visit_CommonTableExpr(self, ancestors: Any, node: ast.CommonTableExpr) -> None:
        self.ctes.add(node.ctename)

    def visit_RangeVar(self, ancestors: Any, node: ast.RangeVar) -> None:
        self.found.append(node)


class _Sampled(Visitor):  # type: ignore[misc]
    def __init__(self) -> None:
        self.found: set[int] = set()

    def visit_RangeTableSample(self, ancestors: Any, node: Any) -> None:
        self.found.add(id(node.relation))


def refuse_sampled_view(stmt: Any, views: Sequence[ast.RangeVar]) -> None:
    """PostgreSQL's own error for TABLESAMPLE over a view (a decrypting view is
    one, with pgsodium too): raised before the proxy puts a subquery in the
    view's place, which would turn it into a syntax error."""
    if not views:
        return
    sampled = _Sampled()
    sampled(stmt)
    for rv in views:
        if id(rv) in sampled.found:
            raise RewriteError(
                "0A000",
                "TABLESAMPLE clause can only be applied to tables and "
                "materialized views",
                rv.location + 1,
            )


def range_var_name(node: ast.RangeVar) -> str:
    parts = [p for p in (node.catalogname, node.schemaname, node.relname) if p]
    return _qualified(parts)


def parse(sql: str) -> tuple[ast.RawStmt, ...]:
    try:
        return tuple(parse_sql(sql))
    except ParseError as exc:
        raise sqltext.syntax_error(exc, sql) from None
    except UnicodeEncodeError:
        raise RewriteError(
            "22021", 'invalid byte sequence for encoding "UTF8"'
        ) from None


def relation_names(statements: Sequence[ast.RawStmt]) -> list[str]:
    """Every relation name the statements mention, for the upstream rule lookup."""
    names: list[str] = []
    for raw in statements:
        visitor = _RangeVars()
        visitor(raw.stmt)
        names += [range_var_name(rv) for rv in visitor.found]
    return sorted(set(names))


def labelled_then_named(statements: Sequence[ast.RawStmt]) -> str | None:
    """A table that a pgsodium SECURITY LABEL of these statements labels and that
    a later one names (or its decrypting view). The proxy reads the labels before
    the message runs, so that later statement would be planned without them."""
    labelled: set[str] = set()
    for raw in statements:
        if labelled:
            visitor = _RangeVars()
            visitor(raw.stmt)
            for rv in visitor.found:
                name = rv.relname
                if name in labelled or name.removeprefix("decrypted_") in labelled:
                    return str(name)
        stmt = raw.stmt
        if isinstance(stmt, ast.SecLabelStmt) and stmt.provider == "pgsodium":
            parts = [p.sval for p in stmt.object or () if isinstance(p, ast.String)]
            if stmt.objtype == ObjectType.OBJECT_COLUMN and len(parts) >= 2:
                labelled.add(parts[-2])
            elif stmt.objtype == ObjectType.OBJECT_TABLE and parts:
                labelled.add(parts[-1])
    return None


# Statements after which a relation name may resolve to another relation: the
# proxy looks names up before a message runs, so a later statement of the same
# message naming a labelled table (or one of the same name) is refused.
_KEEPS_NAMES = (
    ast.TransactionStmt,
    ast.SelectStmt,
    ast.InsertStmt,
    ast.UpdateStmt,
    ast.DeleteStmt,
    ast.MergeStmt,
    ast.CopyStmt,
    ast.DeclareCursorStmt,
    ast.FetchStmt,
    ast.ClosePortalStmt,
    ast.ExplainStmt,
    ast.VariableShowStmt,
    ast.NotifyStmt,
    ast.ListenStmt,
    ast.UnlistenStmt,
    ast.LockStmt,
    ast.VacuumStmt,
    ast.CheckPointStmt,
)
_RESOLVING_SETTINGS = frozenset({"search_path", "role", "session_authorization"})


# Functions a statement may call without changing what names resolve to: they run
# no user code and set nothing (pg_catalog's, written with or without the schema).
_SAFE_FUNCTIONS = frozenset(
    {"now", "current_timestamp", "clock_timestamp", "statement_timestamp",
     "transaction_timestamp", "gen_random_uuid", "nextval", "currval", "setval",
     "lower", "upper", "length", "octet_length", "concat", "concat_ws", "format",
     "coalesce", "nullif", "greatest", "least", "substr", "substring", "trim",
     "replace", "md5", "sha256", "encode", "decode", "convert_to", "convert_from",
     "to_char", "to_timestamp", "to_date", "to_number", "to_json", "to_jsonb",
     "jsonb_build_object", "json_build_object", "jsonb_build_array",
     "json_build_array", "array_agg", "string_agg", "count", "sum", "min", "max",
     "avg", "generate_series", "unnest", "random", "abs", "round", "floor", "ceil",
     "date_trunc", "extract", "date_part", "age", "current_setting"}
)  # fmt: skip
# Transaction ends: SET LOCAL and set_config(..., true) end with them, and so do
# temporary tables created ON COMMIT DROP.
_ENDS = frozenset(
    {TransactionStmtKind.TRANS_STMT_COMMIT, TransactionStmtKind.TRANS_STMT_ROLLBACK,
     TransactionStmtKind.TRANS_STMT_ROLLBACK_TO,
     TransactionStmtKind.TRANS_STMT_PREPARE}
)  # fmt: skip


class _Calls(Visitor):  # type: ignore[misc]
    """Whether a statement calls a function that may run user code (a user's
    function may SET search_path or create a temporary table of the same name)."""

    def __init__(self) -> None:
        self.found = False

    def visit_FuncCall(self, ancestors: Any, node: ast.FuncCall) -> None:
        names = [n.sval for n in node.funcname]
        if names[0] in ("pgsodium", "vault"):
            return  # evaluated by the proxy, or its own fixed-search_path functions
        if len(names) == 2 and names[0] != "pg_catalog":
            self.found = True
        elif names[-1] not in _SAFE_FUNCTIONS:
            self.found = True


def _may_change_names(raw: ast.RawStmt, sql: str) -> bool:
    stmt = raw.stmt
    if isinstance(stmt, ast.VariableSetStmt):
        return stmt.name is None or stmt.name.lower() in _RESOLVING_SETTINGS
    if isinstance(stmt, ast.TransactionStmt):
        return stmt.kind in _ENDS
    if not isinstance(stmt, _KEEPS_NAMES):
        return True  # DDL, DO, CALL, DISCARD, ...: anything may be renamed or made
    end = raw.stmt_location + raw.stmt_len if raw.stmt_len else len(sql)
    if "set_config" in sql[raw.stmt_location : end].lower():
        return True
    # A trigger, rule, default, policy, view, operator or cast that a statement
    # runs may call a user's function too; only what the statement itself calls
    # is seen here. What is not seen is caught upstream: the values encrypted for
    # a later statement check that its name still means the labelled table
    # (tce_write's guards), and a later write to an unlabelled table of a watched
    # name is refused (unguarded_write).
    calls = _Calls()
    calls(stmt)
    return calls.found


def may_change_role(raw: ast.RawStmt, sql: str) -> bool:
    """Whether a statement may change the current role before the next statement
    of its message runs: SET or RESET of role or session_authorization however
    spelled (`SET U&"r\\006Fle"` is SET role), a transaction end (which undoes a
    SET LOCAL), or what may change any setting (_may_change_settings)."""
    stmt = raw.stmt
    if isinstance(stmt, ast.TransactionStmt):
        return stmt.kind in _ENDS
    return _may_change_settings(raw, sql, _ROLE_SETTINGS)


_ROLE_SETTINGS = frozenset({"role", "session_authorization"})


def may_change_encoding(raw: ast.RawStmt, sql: str) -> bool:
    """Whether a statement may change client_encoding before the next statement
    of its message runs: SET or RESET of it (SET NAMES is SET client_encoding),
    or what may change any setting (_may_change_settings)."""
    return _may_change_settings(raw, sql, frozenset({"client_encoding"}))


def _may_change_settings(raw: ast.RawStmt, sql: str, names: frozenset[str]) -> bool:
    """SET or RESET of one of `names`, RESET ALL, DISCARD, DO, CALL, set_config,
    or a call of a user's function (which may call set_config). Not DDL as such:
    an event trigger, a rule, a trigger or a view that changes a setting is not
    seen here (README)."""
    stmt = raw.stmt
    if isinstance(stmt, ast.VariableSetStmt):
        return stmt.name is None or stmt.name.lower() in names
    if isinstance(stmt, (ast.DiscardStmt, ast.DoStmt, ast.CallStmt)):
        return True
    end = raw.stmt_location + raw.stmt_len if raw.stmt_len else len(sql)
    if "set_config" in sql[raw.stmt_location : end].lower():
        return True
    calls = _Calls()
    calls(stmt)
    return bool(calls.found)


def renamed_then_named(
    sql: str, statements: Sequence[ast.RawStmt], watched: Callable[[str], bool]
) -> str | None:
    """A relation name that `watched` accepts (a labelled table's, its view's, or
    one the proxy keeps) named after a statement of the same message that may
    change what names resolve to (SET search_path, DDL, ...)."""
    changed = False
    for raw in statements:
        if changed:
            visitor = _RangeVars()
            visitor(raw.stmt)
            for rv in visitor.found:
                if watched(rv.relname):
                    return str(rv.relname)
        changed = changed or _may_change_names(raw, sql)
    return None


_DATA = (
    ast.SelectStmt,
    ast.InsertStmt,
    ast.UpdateStmt,
    ast.DeleteStmt,
    ast.MergeStmt,
    ast.CopyStmt,
    ast.DeclareCursorStmt,
    ast.ExplainStmt,
    ast.CreateTableAsStmt,
)


def data_statements(statements: Sequence[ast.RawStmt]) -> list[ast.RawStmt]:
    """The statements that read or write rows (not definitions, which pass on as
    written)."""
    return [raw for raw in statements if isinstance(raw.stmt, _DATA)]


def has_values(statements: Sequence[ast.RawStmt]) -> bool:
    """Whether the statements hold a literal or a bind parameter (a value that a
    condition upstream could compare with a computed one)."""
    return any(unrewritten.has_values(raw.stmt) for raw in statements)


def read_from(
    statements: Sequence[ast.RawStmt], watched: Callable[[str], bool]
) -> bool:
    """Whether the statements read a relation that `watched` accepts (a write's
    own target does not count)."""
    for raw in statements:
        visitor = _RangeVars()
        visitor(raw.stmt)
        target = getattr(raw.stmt, "relation", None)
        if any(watched(rv.relname) for rv in visitor.found if rv is not target):
            return True
    return False


def relnames(statements: Sequence[ast.RawStmt]) -> tuple[str, ...]:
    """The relation names (without schema) the statements name."""
    found: list[str] = []
    for raw in statements:
        visitor = _RangeVars()
        visitor(raw.stmt)
        found += [rv.relname for rv in visitor.found]
    return tuple(found)


def unqualified(statements: Sequence[ast.RawStmt]) -> dict[str, str]:
    """Each relation name written without a schema: its text for to_regclass, and
    the name itself."""
    found: dict[str, str] = {}
    for raw in statements:
        visitor = _RangeVars()
        visitor(raw.stmt)
        for rv in visitor.found:
            if rv.schemaname is None and rv.catalogname is None:
                found[range_var_name(rv)] = rv.relname
    return found


def unresolved_data_name(
    statements: Sequence[ast.RawStmt],
    watched: set[str],
    resolved: dict[str, tuple[str, str]],
) -> str | None:
    """In a message of several statements, a name that a statement reading or
    writing rows writes without a schema, that a labelled table or decrypting
    view has somewhere (`watched`), and that resolves to nothing now: nothing of
    the statement is rewritten, yet a statement before it may change search_path
    so that it reaches that table or view, with plaintext or a search term as
    written."""
    if len(statements) < 2:
        return None
    for rv in _unqualified_data_names(statements):
        name = range_var_name(rv)
        if name in watched and name not in resolved:
            return name
    return None


def _unqualified_data_names(statements: Sequence[ast.RawStmt]) -> Iterator[Any]:
    """The RangeVars written without a schema in statements that read or write
    rows. DDL names what it creates or changes as PostgreSQL resolves it:
    `create temp table t` is not public.t, whatever t is labelled."""
    for raw in statements:
        if not isinstance(raw.stmt, _QUALIFIED_STATEMENTS):
            continue
        visitor = _RangeVars()
        visitor(raw.stmt)
        for rv in visitor.found:
            if rv.schemaname is None and rv.catalogname is None:
                yield rv


def unguarded_write(
    statements: Sequence[ast.RawStmt], renames: dict[str, str], labelled: set[str]
) -> str | None:
    """In a message of several statements, the name as written of a table a
    statement writes that qualify() wrote out but that has no labels: were a
    statement before it to change search_path, PostgreSQL would write another
    table of that name (a labelled one, the reason it was resolved) with values
    the proxy sent as they are. A labelled one's values are guarded upstream,
    except COPY's."""
    if len(statements) < 2:
        return None
    for raw in statements:
        target = getattr(raw.stmt, "relation", None)
        if not isinstance(
            raw.stmt, (ast.InsertStmt, ast.UpdateStmt, ast.MergeStmt, ast.CopyStmt)
        ) or not isinstance(target, ast.RangeVar):
            continue
        name = range_var_name(target)
        # COPY's rows come after the message: no value of them carries a guard.
        copy = isinstance(raw.stmt, ast.CopyStmt)
        if name in renames and (copy or name not in labelled):
            return renames[name]
    return None


# The statements whose relation names qualify() writes out: those that read or
# write rows, whose labels the rewrite applies.
_QUALIFIED_STATEMENTS = tuple(t for t in _DATA if t is not ast.CreateTableAsStmt)


def qualify(
    sql: str,
    statements: Sequence[ast.RawStmt],
    resolved: dict[str, tuple[str, str]],
) -> tuple[str, dict[str, str], list[tuple[int, int, str]]]:
    """`sql` with each unqualified relation name in `resolved` (name -> schema,
    relation) written schema-qualified, as it resolves now: the statement then
    reaches the relation whose labels it was rewritten for, whatever the
    search_path is when it runs (a prepared statement later). Also each new
    name's old one, and the replacements made (to place errors in `sql`)."""
    toks = sqltext.tokens(sql)
    replacements: list[tuple[int, int, str]] = []
    renamed: dict[str, str] = {}
    for rv in _unqualified_data_names(statements):
        name = range_var_name(rv)
        target = resolved.get(name)
        token = next((t for t in toks if t.start == rv.location), None)
        if target is None or token is None:
            continue
        qualified = _qualified(target)
        replacements.append((token.start, token.end, qualified))
        renamed[qualified] = name
    if not replacements:
        return sql, renamed, replacements
    return sqltext.splice(sql, replacements), renamed, replacements


def has_security_label(statements: Sequence[ast.RawStmt]) -> bool:
    return any(
        isinstance(raw.stmt, ast.SecLabelStmt) and raw.stmt.provider == "pgsodium"
        for raw in statements
    )
