"""A scalar subquery in the select list whose one column is computed per row:
`SELECT (SELECT decrypted_raw_key FROM pgsodium.decrypted_key WHERE id = $1)`.

The subquery can only return its value's inputs, and a scalar subquery returns one
column; so one evaluation of its FROM and WHERE returns them all as one record,
with one that says whether there is a row (none: the value is NULL, as PostgreSQL
gives, without calling anything), decoded by the proxy (late.scalar_columns).
Inputs of two rows would give a value of neither (an HMAC has no tag to fail).
The subquery has none of its own ORDER BY, LIMIT, DISTINCT, GROUP BY or set
operation.

`decrypted_raw_key` is expanded to pgsodium's own definition of the column, so it
takes every wrapper and shape the per-row machinery takes.
"""

from __future__ import annotations

from pglast import ast, parse_sql

from . import sqltext
from .compile import Compiler, NotFoldable, is_pgsodium_call
from .late import Input, LateCase, Open, RowCompiler, RowInput
from .plan import Const

_CLAUSES = (
    "sortClause",
    "limitCount",
    "limitOffset",
    "distinctClause",
    "groupClause",
    "havingClause",
    "windowClause",
    "lockingClause",
    "withClause",
    "intoClause",
)

# pgsodium.decrypted_key's columns, in the view's order.
DECRYPTED_KEY_COLUMNS = (
    "id",
    "status",
    "created",
    "expires",
    "key_type",
    "key_id",
    "key_context",
    "name",
    "associated_data",
    "raw_key",
    "decrypted_raw_key",
    "raw_key_nonce",
    "parent_key",
    "comment",
)

# pgsodium's decrypted_key.decrypted_raw_key, over the view's row source {q}.
DECRYPTED_RAW_KEY = (
    "CASE WHEN {q}.raw_key IS NULL THEN NULL WHEN {q}.parent_key IS NULL THEN NULL "
    "ELSE pgsodium.crypto_aead_det_decrypt({q}.raw_key, "
    "convert_to({q}.id::text || {q}.associated_data, 'utf8'), {q}.parent_key, "
    "{q}.raw_key_nonce) END"
)


def scalar_subquery(
    compiler: Compiler,
    sql: str,
    toks: list[sqltext.Token],
    on_path: bool,
    link: ast.SubLink,
    view: str | None,
) -> tuple[Open, list[Input], frozenset[str], tuple[int, int]] | None:
    """The open tree and inputs of a scalar subquery over rows and the span of
    its FROM … WHERE in `sql` (RowOutput.body), or None when it is not one the
    proxy computes (then the usual refusal applies). `view` is the qualifier of
    pgsodium.decrypted_key in the subquery's FROM, if it is there."""
    sub = link.subselect
    if not _simple(sub, on_path):
        return None
    target = sub.targetList[0]
    start, end = sqltext.list_items(toks, target.location)[0]
    close = _closing_paren(toks, link.location)
    if close is None:
        return None

    node = target.val
    if view is not None and reads_decrypted_raw_key(node, view):
        builder, node = expanded(compiler, sql, (start, end), node, view, on_path)
    elif any(is_pgsodium_call(c, on_path) for c in _calls(node)):
        builder = RowCompiler(compiler, sql, toks, on_path)
    else:
        return None
    try:
        tree = builder.build(node)
    except NotFoldable:
        return None

    inputs = [*builder.inputs, Input("true", False)]  # the last: there is a row
    found = RowInput(len(inputs) - 1)
    value = LateCase(((found, tree),), Const("unknown", None))
    return value, inputs, frozenset(builder.candidates), (end, close)


def _simple(sub: ast.Node, on_path: bool) -> bool:
    if not isinstance(sub, ast.SelectStmt) or sub.op.name != "SETOP_NONE":
        return False
    if len(sub.targetList or ()) != 1 or not sub.fromClause:
        return False
    if isinstance(sub.targetList[0].val, ast.ColumnRef) and isinstance(
        sub.targetList[0].val.fields[-1], ast.A_Star
    ):
        return False
    if any(getattr(sub, clause, None) for clause in _CLAUSES):
        return False
    # SECURITY: FROM and WHERE go upstream as written, so they may hold nothing
    # the proxy would rewrite (a pgsodium call).
    outside = [part for part in (sub.fromClause, sub.whereClause) if part is not None]
    return not any(
        is_pgsodium_call(c, on_path) for part in outside for c in _calls(part)
    )


def expanded(
    compiler: Compiler,
    sql: str,
    span: tuple[int, int],
    node: ast.Node,
    view: str,
    on_path: bool,
) -> tuple[RowCompiler, ast.Node]:
    """A select-list item with decrypted_raw_key written out as pgsodium defines
    it, and the RowCompiler that reads that text."""
    source = "SELECT " + _expand(sql, span[0], span[1], node, view)
    value = parse_sql(source)[0].stmt.targetList[0].val
    return RowCompiler(compiler, source, sqltext.tokens(source), on_path), value


def expanded_column(
    compiler: Compiler, view: str, on_path: bool
) -> tuple[RowCompiler, ast.Node]:
    """decrypted_raw_key alone, written out as pgsodium defines it over the view's
    row source `view`, and the RowCompiler that reads that text."""
    source = f"SELECT ({DECRYPTED_RAW_KEY.format(q=sqltext.quote_ident(view))})"
    value = parse_sql(source)[0].stmt.targetList[0].val
    return RowCompiler(compiler, source, sqltext.tokens(source), on_path), value


def reads_decrypted_raw_key(node: ast.Node, view: str) -> bool:
    from .analyze import _column_refs

    return any(_is_decrypted_raw_key(ref, view) for ref in _column_refs(node))


def _is_decrypted_raw_key(ref: ast.ColumnRef, view: str) -> bool:
    names = [f.sval for f in ref.fields if isinstance(f, ast.String)]
    return names in (["decrypted_raw_key"], [view, "decrypted_raw_key"])


def _expand(sql: str, start: int, end: int, node: ast.Node, view: str) -> str:
    """The select-list text with each decrypted_raw_key replaced by its definition."""
    from .analyze import _column_refs

    toks = sqltext.tokens(sql)
    q = sqltext.quote_ident(view)
    replacements = []
    for ref in _column_refs(node):
        if not _is_decrypted_raw_key(ref, view):
            continue
        # The reference ends with the token that names the column.
        last = next(
            t
            for t in toks
            if t.start >= ref.location
            and sql[t.start : t.end].strip('"') == "decrypted_raw_key"
        )
        replacements.append(
            (
                ref.location - start,
                last.end - start,
                f"({DECRYPTED_RAW_KEY.format(q=q)})",
            )
        )
    return sqltext.splice(sql[start:end], replacements)


def _closing_paren(toks: list[sqltext.Token], start: int) -> int | None:
    depth = 0
    for tok in toks:
        if tok.start < start:
            continue
        if tok.name == "ASCII_40":
            depth += 1
        elif tok.name == "ASCII_41":
            depth -= 1
            if depth == 0:
                return tok.start
    return None


def _calls(node: ast.Node) -> list[ast.FuncCall]:
    from .analyze import _calls as collect

    return collect(node)
