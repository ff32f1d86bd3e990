"""A scalar subquery in the select list whose value comes up from levels below it:
`SELECT (SELECT decrypted_secret FROM decrypted_t WHERE id = 1)`, over a decrypting
view, vault.decrypted_secrets or a subquery in FROM that computes values per row.

As in rewriter.scalar, each input becomes a scalar subquery of its own over the
subquery's FROM and WHERE (rendered once, the levels' columns in place, and
repeated: RowOutput.body), plus one that says whether there is a row. The rule
kept: every copy must find the same row, so nothing in the subquery, at any
depth, may pick rows differently from one evaluation to the next: in its FROM
and WHERE no LIMIT, OFFSET, DISTINCT, TABLESAMPLE, row locking, set operation,
or function other than those the proxy evaluates itself (none volatile).
"""

from __future__ import annotations

from typing import Any

from pglast import ast
from pglast.visitors import Visitor

from keystore.catalogue import overloads

from . import builtins, scalar, sqltext
from .compile import NotFoldable, function_name, is_pgsodium_call
from .errors import RewriteError, refuse
from .inner import Resolver, record_use, refuse_expression
from .late import Input, LateCase, RowCompiler, RowInput, RowOutput
from .plan import Const

_WHAT = "a scalar subquery over values computed per row"


def scalar_over_levels(
    st: Any, levels: Any, link: ast.SubLink, span: tuple[int, int], name: str | None
) -> RowOutput | None:
    """The RowOutput of a scalar subquery (select-list item `span`, relative to
    the statement) whose FROM items compute values per row, or None when they
    compute none (the subquery is then the database's, or refused elsewhere)."""
    sub = link.subselect
    if not _shape(sub):
        return None
    visibles = levels.below(sub)
    if not visibles:
        return None
    target = sub.targetList[0]
    uses: dict[int, set[tuple[int, bool]]] = {}
    resolver = Resolver(visibles, lambda v: record_use(uses, v, 0, False))
    computed = resolver.reads(target.val)
    levels.check_refs(sub, Resolver(visibles), {id(target)} if computed else set())
    if not computed:
        return None  # it reads none of them: the database computes it all
    for clause, what in _CLAUSES:
        if getattr(sub, clause, None):
            raise _refuse_picking(what, None)
    _check_same_row(sub, st.on_path)

    builder = RowCompiler(st.compiler, st.sql, st.tokens, st.on_path)
    builder.scope = resolver
    try:
        tree = builder.build(target.val)
    except NotFoldable as exc:
        raise refuse_expression(target.val, resolver.suspect, exc) from None

    toks = st.tokens
    end = sqltext.list_items(toks, target.location)[0][1]
    close = scalar._closing_paren(toks, link.location)
    if close is None:
        raise RewriteError("XX000", "scalar subquery without its closing parenthesis")
    builder.inputs.append(Input("true", False))  # there is a row
    found = RowInput(len(builder.inputs) - 1)
    value = LateCase(((found, tree),), Const("unknown", None))
    st._mark_handled(target.val)
    return RowOutput(
        span,
        name or target.name or scalar_name(target.val),
        value,
        tuple(builder.inputs),
        frozenset(builder.candidates),
        st.span(end, close),
    )


def _shape(sub: ast.Node) -> bool:
    """One select-list item (not `*`) over a FROM."""
    if not isinstance(sub, ast.SelectStmt) or sub.op.name != "SETOP_NONE":
        return False
    if len(sub.targetList or ()) != 1 or not sub.fromClause:
        return False
    value = sub.targetList[0].val
    return not (
        isinstance(value, ast.ColumnRef) and isinstance(value.fields[-1], ast.A_Star)
    )


def _check_same_row(sub: ast.SelectStmt, on_path: bool) -> None:
    found = row_picker(sub, on_path)
    if found is not None:
        raise _refuse_picking(*found)


def row_picker(sub: ast.SelectStmt, on_path: bool) -> tuple[str, int | None] | None:
    """The first construct that may make two evaluations of the subquery pick
    different rows, in what picks them: its FROM and WHERE (its select list only
    computes values of that row, each input once, in its own copy)."""
    checker = _SameRow(on_path)
    for part in (sub.fromClause, sub.whereClause):
        if part is not None:
            checker(part)
    return checker.found


def _refuse_picking(what: str, location: int | None) -> RewriteError:
    return refuse(
        f"{what} in {_WHAT}: the proxy reads each input of such a subquery with a "
        "subquery of its own, which must find the same row every time",
        location,
    )


class _SameRow(Visitor):  # type: ignore[misc]
    """The first construct that could make two evaluations pick different rows."""

    def __init__(self, on_path: bool) -> None:
        super().__init__()
        self.on_path = on_path
        self.found: tuple[str, int | None] | None = None

    def visit(self, ancestors: Any, node: Any) -> None:
        if self.found is not None:
            return
        if isinstance(node, ast.SelectStmt):
            for clause, what in _ROW_PICKING:
                if getattr(node, clause, None):
                    self.found = (what, None)
                    return
            if node.op.name != "SETOP_NONE":
                self.found = ("a set operation", None)
        elif isinstance(node, ast.RangeTableSample):
            self.found = ("TABLESAMPLE", None)
        elif isinstance(node, ast.FuncCall) and not self._steady(node):
            self.found = (f"the function {function_name(node)[1]}()", node.location)

    def _steady(self, call: ast.FuncCall) -> bool:
        """A function whose value depends on its arguments alone, as the proxy
        knows it: one it evaluates (convert_from, …) or a pgsodium function
        that is not volatile (the proxy computes it, never the database)."""
        if call.over is not None or call.agg_star or call.agg_distinct:
            return False
        schema, name = function_name(call)
        if is_pgsodium_call(call, self.on_path):
            found = overloads(name)
            return bool(found) and all(sig.volatility != "v" for sig in found)
        return schema in (None, "pg_catalog") and builtins.is_builtin_name(name)


# The subquery's own clauses, none of which it may have.
_CLAUSES = (
    ("sortClause", "ORDER BY"),
    ("limitCount", "LIMIT"),
    ("limitOffset", "OFFSET"),
    ("distinctClause", "DISTINCT"),
    ("groupClause", "GROUP BY"),
    ("havingClause", "HAVING"),
    ("windowClause", "WINDOW"),
    ("lockingClause", "FOR UPDATE/SHARE"),
    ("withClause", "WITH"),
    ("intoClause", "INTO"),
)

# Clauses of the queries below it that pick rows.
_ROW_PICKING = (
    ("limitCount", "LIMIT"),
    ("limitOffset", "OFFSET"),
    ("distinctClause", "DISTINCT"),
    ("lockingClause", "FOR UPDATE/SHARE"),
)


def scalar_name(node: ast.Node) -> str:
    from .analyze import figure_colname

    return figure_colname(node)


__all__ = ["row_picker", "scalar_over_levels"]
