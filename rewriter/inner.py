"""pgsodium calls over rows inside a subquery or WITH query that feeds the outer
select list: `select id, convert_from(p, 'utf8') from (select id, decrypt(...) p
from t) s`.

The inner select-list item becomes its row inputs (columns named with the
execution's marker), the outer query passes them on, by `*` or by name, and the
proxy computes the value in the result stream as for an outermost select-list item.
Only one level: the outer statement must be the outermost SELECT. A reference to
such a value anywhere but the outer select list is refused (the database never sees
the value, so it cannot filter, sort or group by it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from pglast import ast

from . import sqltext
from .compile import Compiler, NotFoldable, is_pgsodium_call
from .late import (
    Input,
    LateAggregate,
    LateApply,
    LateCall,
    LateCase,
    LateField,
    Open,
    RowCompiler,
    RowInput,
)
from .plan import Node


@dataclass
class InnerItem:
    """A select-list item over rows of an inner query."""

    index: int  # in Plan.inner
    span: tuple[int, int]  # the inner select-list item, relative to the statement
    name: str  # its output column name
    qualifier: str  # how the outer query names the inner query
    tree: Open
    inputs: list[Input] = field(default_factory=list)
    candidates: frozenset[str] = frozenset()


def inner_queries(stmt: ast.SelectStmt) -> list[tuple[str, ast.SelectStmt]]:
    """(qualifier, query) for each plain subquery in FROM and each WITH query that
    FROM names, as the outer query refers to them."""
    found: list[tuple[str, ast.SelectStmt]] = []
    ctes = {}
    if stmt.withClause is not None and not stmt.withClause.recursive:
        for cte in stmt.withClause.ctes or ():
            if _plain_select(cte.ctequery):
                ctes[cte.ctename] = cte.ctequery
    for item in _from_items(stmt.fromClause or ()):
        if isinstance(item, ast.RangeSubselect) and item.alias is not None:
            if _plain_select(item.subquery):
                found.append((item.alias.aliasname, item.subquery))
        elif (
            isinstance(item, ast.RangeVar)
            and item.schemaname is None
            and item.relname in ctes
        ):
            qualifier = item.alias.aliasname if item.alias else item.relname
            found.append((qualifier, ctes[item.relname]))
    return found


def _plain_select(node: ast.Node) -> bool:
    return isinstance(node, ast.SelectStmt) and node.op.name == "SETOP_NONE"


def _from_items(items: tuple[ast.Node, ...] | list[ast.Node]) -> list[ast.Node]:
    out: list[ast.Node] = []
    for item in items:
        if isinstance(item, ast.JoinExpr):
            out += _from_items([item.larg, item.rarg])
        else:
            out.append(item)
    return out


def build_item(
    compiler: Compiler,
    sql: str,
    tokens: list[sqltext.Token],
    on_path: bool,
    target: ast.ResTarget,
    name: str,
) -> tuple[Open, list[Input], frozenset[str]] | None:
    """The open tree of an inner select-list item over rows, or None if it is not
    one the proxy can compute (then the usual refusal applies)."""
    if not any(is_pgsodium_call(c, on_path) for c in _calls(target.val)):
        return None
    try:
        compiler.compile(target.val)
        return None  # it folds: an ordinary value, sent upstream as such
    except NotFoldable:
        pass
    builder = RowCompiler(compiler, sql, tokens, on_path)
    try:
        tree = builder.build(target.val)
    except NotFoldable:
        return None
    return tree, list(builder.inputs), frozenset(builder.candidates)


def rebase(tree: Open, offset: int) -> Open:
    """The same tree with its row inputs numbered from `offset`."""
    if isinstance(tree, RowInput):
        return RowInput(tree.index + offset)
    if isinstance(tree, LateCall):
        return replace(tree, args=tuple(rebase(a, offset) for a in tree.args))
    if isinstance(tree, LateApply):
        return replace(tree, args=tuple(rebase(a, offset) for a in tree.args))
    if isinstance(tree, LateField):
        return replace(tree, node=rebase(tree.node, offset))
    if isinstance(tree, LateAggregate):
        return replace(tree, rows=rebase(tree.rows, offset))
    if isinstance(tree, LateCase):
        return LateCase(
            tuple((rebase(c, offset), rebase(r, offset)) for c, r in tree.whens),
            rebase(tree.default, offset),
        )
    return tree


def resolver(
    items: list[InnerItem], used: Callable[[InnerItem], None]
) -> Callable[[ast.ColumnRef], InnerItem | None]:
    """Finds the inner item an outer column reference names, if any."""
    by_qualified = {(i.qualifier, i.name): i for i in items}
    by_name: dict[str, list[InnerItem]] = {}
    for item in items:
        by_name.setdefault(item.name, []).append(item)

    def find(ref: ast.ColumnRef) -> InnerItem | None:
        names = [f.sval for f in ref.fields if isinstance(f, ast.String)]
        if len(names) != len(ref.fields):
            return None
        found: InnerItem | None = None
        if len(names) == 2:
            found = by_qualified.get((names[0], names[1]))
        elif len(names) == 1 and len(by_name.get(names[0], ())) == 1:
            found = by_name[names[0]][0]
        if found is not None:
            used(found)
        return found

    return find


def _calls(node: ast.Node) -> list[ast.FuncCall]:
    from .analyze import _calls as collect

    return collect(node)


__all__ = ["InnerItem", "Input", "Node", "build_item", "inner_queries", "rebase"]
