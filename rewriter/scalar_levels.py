"""A scalar subquery in the select list whose value comes up from levels below it:
`SELECT (SELECT decrypted_secret FROM decrypted_t WHERE id = 1)`, over a decrypting
view, vault.decrypted_secrets or a subquery in FROM that computes values per row.

As in rewriter.scalar, the inputs (and one that says whether there is a row)
come from one evaluation of the subquery's FROM and WHERE, rendered with the
levels' columns in place (RowOutput.body, late.scalar_columns): all of one row,
picked as PostgreSQL picks it, whatever those clauses hold.
"""

from __future__ import annotations

from typing import Any

from pglast import ast

from keystore.catalogue import overloads

from . import scalar, sqltext
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
            raise _refuse_clause(what)
    _check_folds(sub, st.on_path)

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


def _check_folds(sub: ast.SelectStmt, on_path: bool) -> None:
    found = volatile_fold(sub, on_path)
    if found is not None:
        raise refuse(
            f"the function pgsodium.{found[0]}() in the FROM or WHERE of {_WHAT}: "
            "the proxy would compute it once for the statement, where PostgreSQL "
            "computes it for each row",
            found[1],
        )


def volatile_fold(sub: ast.SelectStmt, on_path: bool) -> tuple[str, int] | None:
    """The first volatile pgsodium function in the subquery's FROM and WHERE, at
    any depth. The database reads them in one evaluation (late.scalar_columns),
    so whatever else they hold (a LIMIT, random(), a view, a user's operator)
    picks rows as PostgreSQL picks them; but a pgsodium call there is folded by
    the proxy, once, where the server would call a volatile one for each row."""
    for part in (sub.fromClause, sub.whereClause):
        for call in _calls(part) if part is not None else ():
            if not is_pgsodium_call(call, on_path):
                continue
            name = function_name(call)[1]
            found = overloads(name)
            if not found or any(sig.volatility == "v" for sig in found):
                return name, call.location
    return None


def _refuse_clause(what: str) -> RewriteError:
    return refuse(
        f"{what} in {_WHAT}: the proxy reads all its inputs from one evaluation "
        "of its FROM and WHERE, with none of its own clauses",
        None,
    )


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


def scalar_name(node: ast.Node) -> str:
    from .analyze import figure_colname

    return figure_colname(node)


def _calls(node: ast.Node) -> list[ast.FuncCall]:
    from .analyze import _calls as collect

    return collect(node)


__all__ = ["scalar_over_levels", "volatile_fold"]
