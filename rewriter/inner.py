"""Per-row values of a query's FROM items, as the query reading them names them.

A value computed per row below the outermost query (rewriter.levels) is an
InnerItem; each FROM item that passes one up makes it Visible under its alias;
a Resolver says which one a column reference names, and (conservatively) whether
the database could take a reference for one: such a reference is refused
anywhere but a select-list item the proxy computes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pglast import ast
from pglast.visitors import Visitor

from . import context
from .compile import NotFoldable
from .errors import RewriteError, refuse
from .late import (
    Input,
    LateAggregate,
    LateApply,
    LateCall,
    LateCase,
    LateField,
    Open,
    RowInput,
)

_OVER = "a value computed per row by the proxy"


@dataclass
class InnerItem:
    """A select-list item over rows of a query below the outermost one."""

    index: int  # in Plan.inner
    span: tuple[int, int]  # relative to the statement; (-1, -1): no text of its own
    name: str  # its output column name in its own query
    tree: Open
    inputs: list[Input] = field(default_factory=list)  # paths below this item
    candidates: frozenset[str] = frozenset()
    # A UNION ALL's column (rewriter.setops): no text of its own; its inputs are
    # those of each branch's item, which come up through that item.
    members: tuple[InnerItem, ...] = ()


@dataclass(frozen=True)
class Visible:
    """A per-row value of a FROM item, as the query reading that item names it."""

    qualifier: str | None  # the FROM item's alias (None: a subquery without one)
    name: str
    item: InnerItem
    ambiguous: bool = False  # the FROM item has two columns of this name
    cte: Any = None  # the _Cte it comes from, if a WITH query

    def inputs(self) -> list[Input]:
        """The item's inputs as the reading query's select list sees them."""
        return through(self.item, self.qualifier)


def through(item: InnerItem, qualifier: str | None) -> list[Input]:
    """`item`'s inputs as a query naming its FROM item `qualifier` sees them; a
    UNION ALL's column passes each branch item's inputs up through that item."""
    if item.members:
        return [i for m in item.members for i in through(m, qualifier)]
    step = (item.index, qualifier)
    return [replace(i, path=(step, *i.path)) for i in item.inputs]


class Resolver:
    """Which per-row value a column reference of one query level names."""

    def __init__(
        self,
        visibles: Sequence[Visible],
        used: Callable[[Visible], None] | None = None,
    ) -> None:
        self.visibles = visibles
        self.used = used or (lambda visible: None)
        self.names = {v.name for v in visibles}
        self.qualifiers = {v.qualifier for v in visibles if v.qualifier is not None}
        self.pairs = {(v.qualifier, v.name) for v in visibles}

    def find(self, ref: ast.ColumnRef) -> Visible | None:
        """The value `ref` names, as PostgreSQL resolves it at this level."""
        if not all(isinstance(f, ast.String) for f in ref.fields):
            return None
        names = [f.sval for f in ref.fields]
        if len(names) == 1:
            matches = [v for v in self.visibles if v.name == names[0]]
        elif len(names) == 2:
            matches = [
                v
                for v in self.visibles
                if v.qualifier == names[0] and v.name == names[1]
            ]
        else:
            return None
        if not matches:
            return None
        if len(matches) > 1 or matches[0].ambiguous:
            raise RewriteError(
                "42702",
                f'column reference "{names[-1]}" is ambiguous',
                ref.location + 1,
            )
        self.used(matches[0])
        return matches[0]

    def suspect(self, ref: ast.ColumnRef) -> bool:
        """Whether the database may take `ref` for a per-row value: by name, by
        qualified name, as a field of one (`p.f`), or as a whole row (`s`, `s.*`)
        of a FROM item that has one. Conservative: a column of the same name of
        another relation is suspect too."""
        first = ref.fields[0]
        if not isinstance(first, ast.String):
            return False  # a bare `*` expands the query's own FROM items
        if first.sval in self.names:
            return True
        if first.sval not in self.qualifiers:
            return False
        if len(ref.fields) == 1:
            return True
        second = ref.fields[1]
        return isinstance(second, ast.A_Star) or (
            isinstance(second, ast.String) and (first.sval, second.sval) in self.pairs
        )

    def reads(self, node: ast.Node) -> bool:
        return any(self.suspect(ref) for ref in column_refs(node))


def record_use(
    uses: dict[int, set[tuple[int, bool]]], visible: Visible, key: int, star: bool
) -> None:
    """Note that a query level reads `visible` (at `key`, by `*` or by name); a
    value passed up by `*` and read again would reach the client twice."""
    seen = uses.setdefault(visible.item.index, set())
    seen.add((key, star))
    if star and visible.cte is not None:
        visible.cte.star = True
    if len(seen) > 1 and any(s for _, s in seen):
        raise refuse(
            f'"{visible.name}" passed up by * and read again (by name or by '
            "another *): select it once",
            None,
        )


def refuse_expression(
    value: ast.Node, reads: Callable[[ast.ColumnRef], bool], exc: NotFoldable
) -> RewriteError:
    """A select-list item over a per-row value that the proxy cannot compute:
    named by the value it reads (`reads`; the first one at or after where the
    proxy gave up, `exc`) and the construct around it (an aggregate, a window
    function …)."""
    where = context.constructs(value)
    refs = [ref for ref in column_refs(value) if reads(ref)]
    at = exc.location if exc.location is not None else -1
    refs.sort(key=lambda ref: (ref.location < at, ref.location))
    if not refs:
        return refuse(f"this expression over {_OVER}", getattr(value, "location", None))
    ref = refs[0]
    construct = (
        where.get(id(ref))
        or context.construct_word(exc.what)
        or context.enclosing(value, ref)
        or context.describe(exc.what)
    )
    return refuse(
        f'"{_shown(ref)}" in {construct or "this expression"}: it is '
        "computed per row by the proxy, which evaluates pgsodium calls, casts and "
        "convert_from/encode/length-like functions around such a value",
        ref.location,
    )


def _shown(ref: ast.ColumnRef) -> str:
    return ".".join(f.sval if isinstance(f, ast.String) else "*" for f in ref.fields)


class _Collect(Visitor):  # type: ignore[misc]
    def __init__(self, kind: type) -> None:
        super().__init__()
        self.kind = kind
        self.found: list[Any] = []

    def visit(self, ancestors, node):  # type: ignore[no-untyped-def]
        if isinstance(node, self.kind):
            self.found.append(node)


def _collect(node: ast.Node, kind: type) -> list[Any]:
    collector = _Collect(kind)
    collector(node)
    return collector.found


def column_refs(node: ast.Node) -> list[ast.ColumnRef]:
    return _collect(node, ast.ColumnRef)


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
            tree.what,
        )
    return tree


__all__ = ["InnerItem", "Resolver", "Visible", "column_refs", "rebase"]
