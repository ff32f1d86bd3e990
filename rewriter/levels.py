"""Per-row values that reach the outermost select list through any number of query
levels: subqueries in FROM and non-recursive WITH queries, joined or not.

At each level a select-list item over rows (a pgsodium call, a FROM item's per-row
value, a function the proxy evaluates around one) becomes an InnerItem: the level
that computes an input returns it in a column named with the execution's marker,
each level above passes that column on (by name or the client's own `*`), and the
proxy computes the value in the result stream. An item nothing reads becomes a
NULL column, safe only because every reader is known: the rule kept here is that
a per-row value read anywhere but the select list right above is refused.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pglast import ast
from pglast.visitors import Skip, Visitor

from . import context, scalar, setops, sqltext
from .compile import NotFoldable
from .errors import RewriteError, refuse
from .inner import (
    _OVER,
    InnerItem,
    Resolver,
    Visible,
    _collect,
    _shown,
    record_use,
    refuse_expression,
)
from .late import Input, LateCase, Open, RowCompiler, RowInput
from .plan import Const, placeholder


@dataclass
class _Cte:
    node: ast.CommonTableExpr
    scope: tuple[dict[str, _Cte | None], ...]  # what its query sees
    exported: _Exported | None = None  # None: not analysed (yet)
    references: int = 0  # FROM items of analysed queries that name it
    star: bool = False  # its values pass a `*`


@dataclass
class _Exported:
    """What one level gives the query above."""

    # (0-based select-list position, or None behind a `*`; the item; its name as
    # the query above sees it)
    items: list[tuple[int | None, InnerItem, str]]
    names: list[str] | None  # every output column's name; None: a `*` hides some


_Scope = tuple[dict[str, "_Cte | None"], ...]


class Levels:
    """The query levels below one outermost SELECT (`st`, analyze._Statement)."""

    def __init__(self, st: Any) -> None:
        self.st = st
        self.items: list[InnerItem] = []
        self.ctes: list[_Cte] = []
        self.scope: _Scope = ()  # the WITH queries the outermost query sees

    def top(self, stmt: ast.SelectStmt) -> list[Visible]:
        """The per-row values the outermost query's FROM items give it."""
        self.scope = self._scope(stmt, ())
        return self._from(stmt, self.scope)

    def below(self, query: ast.SelectStmt) -> list[Visible]:
        """The per-row values that the FROM items of `query`, a subquery in an
        expression of the outermost query, give it (rewriter.scalar_levels)."""
        return self._from(query, self._scope(query, self.scope))

    # -- scopes and FROM items -----------------------------------------------------

    def _scope(self, query: ast.SelectStmt, outer: _Scope) -> _Scope:
        """The WITH queries `query`'s FROM may name. A recursive WITH query, or one
        that is not a plain SELECT, is opaque: read as a relation, analysed never
        (its pgsodium calls are refused as anywhere else)."""
        clause = query.withClause
        if clause is None:
            return outer
        names: dict[str, _Cte | None] = {}
        for cte in clause.ctes or ():
            query = cte.ctequery
            # A VALUES list has no select list, and no rows to compute over.
            values = _plain(query) and not query.targetList
            if (
                clause.recursive
                or values
                or not (_plain(query) or setops.is_set_operation(query))
            ):
                names[cte.ctename] = None
                continue
            # A non-recursive WITH query sees the ones before it, and the outer ones.
            state = _Cte(cte, (dict(names), *outer))
            names[cte.ctename] = state
            self.ctes.append(state)
        return (names, *outer)

    def _from(self, query: ast.SelectStmt, scope: _Scope) -> list[Visible]:
        visibles: list[Visible] = []
        under: dict[int, list[Visible]] = {}
        for leaf in _leaves(query.fromClause or ()):
            found = self._child(leaf, scope)
            under[id(leaf)] = found
            visibles += found
        if visibles:
            _check_joins(query.fromClause or (), under)
        return visibles

    def _child(self, leaf: ast.Node, scope: _Scope) -> list[Visible]:
        """The per-row values of one FROM item, if it is a query."""
        toks = self.st.tokens
        cte = None
        if isinstance(leaf, ast.RangeSubselect):
            if setops.is_set_operation(leaf.subquery):
                exported = setops.union_level(self, leaf.subquery, scope)
            elif not _plain(leaf.subquery) or not leaf.subquery.targetList:
                return []
            else:
                exported = self._level(leaf.subquery, scope)
            qualifier = leaf.alias.aliasname if leaf.alias is not None else None
            if leaf.alias is not None and leaf.alias.colnames and exported.items:
                spans = self._subquery_alias_list(leaf)
                exported = self._renamed(exported, leaf.alias.colnames, spans)
        elif isinstance(leaf, ast.RangeVar):
            cte = _lookup(leaf, scope)
            if cte is None:
                return []
            cte.references += 1
            if cte.exported is None:
                cte.exported = self.query(cte.node.ctequery, cte.scope)
                names = cte.node.aliascolnames
                if names and cte.exported.items:  # WITH d(a, b) AS (…)
                    at = sqltext.index_at(toks, cte.node.location)
                    spans = sqltext.alias_list(toks, at)
                    cte.exported = self._renamed(cte.exported, names, spans)
            exported = cte.exported
            qualifier = leaf.alias.aliasname if leaf.alias is not None else leaf.relname
            if leaf.alias is not None and leaf.alias.colnames and exported.items:
                at = sqltext.index_at(toks, leaf.location) + 1  # d [AS] x(a, b)
                spans = sqltext.alias_list(toks, at)
                exported = self._renamed(exported, leaf.alias.colnames, spans)
        else:
            return []
        return _visibles(qualifier, exported, cte)

    def _subquery_alias_list(self, leaf: ast.RangeSubselect) -> list[tuple[int, int]]:
        """The spans of the names in `(subquery) [AS] s(a, b)`: after the closing
        parenthesis of the innermost pair around every node of the subquery that
        is followed by that alias."""
        assert leaf.alias is not None
        toks, sql = self.st.tokens, self.st.sql
        where = [n for n in _locations(leaf.subquery) if n >= 0]
        for close in sqltext.enclosing_close(toks, min(where), max(where)):
            at = close + 1
            if at < len(toks) and toks[at].name == "AS":
                at += 1
            if at >= len(toks) or sqltext.ident_text(sql, toks[at]) != (
                leaf.alias.aliasname
            ):
                continue
            spans = sqltext.alias_list(toks, close + 1)
            if spans is not None:
                return spans
        return []

    def _renamed(
        self,
        exported: _Exported,
        names: Sequence[ast.String],
        spans: list[tuple[int, int]] | None,
    ) -> _Exported:
        """The values of a level under a column alias list. The list renames
        columns by position, and a value is as many columns as it has inputs
        upstream: each name that stands for a value is rendered as the names of
        its columns (Plan.inner_names), so that the list renames none of them."""
        listed = [n.sval for n in names]
        if exported.names is None or spans is None or len(spans) != len(listed):
            raise refuse(
                f"a column alias list over {_OVER} where the query's columns are "
                "not all named (a *): name the columns inside the subquery or WITH "
                "query",
                None,
            )
        items = []
        for position, item, name in exported.items:
            if position is not None and position < len(listed):
                start, end = spans[position]
                self.st.result.inner_names.append(
                    (self.st.span(start, end), item.index, self.st.sql[start:end])
                )
                name = listed[position]
            items.append((position, item, name))
        every = [
            listed[i] if i < len(listed) else name
            for i, name in enumerate(exported.names)
        ]
        return _Exported(items, every)

    # -- one level -----------------------------------------------------------------

    def query(self, query: ast.SelectStmt, outer: _Scope) -> _Exported:
        """A WITH query's level: a SELECT, or a set operation of them."""
        if setops.is_set_operation(query):
            return setops.union_level(self, query, outer)
        return self._level(query, outer)

    def _level(self, query: ast.SelectStmt, outer: _Scope) -> _Exported:
        scope = self._scope(query, outer)
        visibles = self._from(query, scope)
        view, alone = self.st.decrypted_key_in(query)
        level = _Level(self, query, visibles, view, alone)
        exported = level.select_list()
        names = {name for _, _, name in exported.items}
        self.st._check_result_clauses(query, names, level.positions, level.star)
        self.check_refs(query, Resolver(visibles), level.handled)
        self.st._add_searches(query.whereClause)
        return exported

    def new_item(
        self,
        span: tuple[int, int],
        name: str,
        tree: Open,
        inputs: Sequence[Input],
        candidates: frozenset[str],
    ) -> InnerItem:
        item = InnerItem(len(self.items), span, name, tree, list(inputs), candidates)
        self.items.append(item)
        self.st.result.inner.append((span, name))
        return item

    # -- checks --------------------------------------------------------------------

    def check_refs(
        self, query: ast.SelectStmt, resolver: Resolver, handled: set[int]
    ) -> None:
        """Refuse every reference the database could take for a per-row value of
        `query`'s FROM items, outside the select-list items computed from them
        (`handled`, ids of ResTargets). Everything that can see those FROM items
        is searched: the clauses, JOIN conditions, functions in FROM, LATERAL
        subqueries and subqueries anywhere, however deep; not the WITH queries nor
        the other subqueries in FROM, which cannot see them."""
        if not resolver.visibles:
            return
        skip = set(handled)
        if query.withClause is not None:
            skip.add(id(query.withClause))
        for leaf in _leaves(query.fromClause or ()):
            if isinstance(leaf, ast.RangeSubselect) and not leaf.lateral:
                skip.add(id(leaf))
        visitor = _Refs(skip)
        visitor(query)
        for ref, where in visitor.found:
            if resolver.suspect(ref):
                raise refuse(
                    f'"{_shown(ref)}" in {where or "this expression"}: it is computed '
                    "per row by the proxy, so the database cannot use it there",
                    ref.location,
                )

    def finish(self, stmt: ast.Node) -> None:
        """Every WITH query whose values are computed per row must be read only
        where this analysis followed it (else a NULL column would be read as its
        value), and through a `*` only when read once (else the columns a `*`
        passes up would repeat). One that nothing names is analysed all the same:
        PostgreSQL never runs it, and its items become NULL columns."""
        counts = Counter(
            rv.relname
            for rv in _collect(stmt, ast.RangeVar)
            if rv.schemaname is None and rv.catalogname is None
        )
        index = 0
        while index < len(self.ctes):  # analysing one may find more
            state = self.ctes[index]
            index += 1
            if state.exported is None and counts[state.node.ctename] == 0:
                state.exported = self.query(state.node.ctequery, state.scope)
        for state in self.ctes:
            name = state.node.ctename
            if state.exported is None or not state.exported.items:
                continue
            if state.references != counts[name]:
                raise refuse(
                    f'the WITH query "{name}", whose values are computed per row, '
                    "read other than by a FROM of a query that feeds the outer select "
                    "list",
                    state.node.location,
                )
            if state.star and counts[name] > 1:
                raise refuse(
                    f'the WITH query "{name}", whose values are computed per row, '
                    "named more than once and read through *: select its columns by "
                    "name",
                    state.node.location,
                )


class _Level:
    """The select list of one level below the outermost query."""

    def __init__(
        self,
        levels: Levels,
        query: ast.SelectStmt,
        visibles: list[Visible],
        view: str | None,
        alone: bool,
    ) -> None:
        self.levels = levels
        self.st = levels.st
        self.query = query
        self.visibles = visibles
        self.view = view  # pgsodium.decrypted_key's qualifier in FROM
        self.alone = alone  # it is the only FROM item
        self.positions: set[int] = set()  # 1-based items that are per-row values
        self.handled: set[int] = set()  # id() of their ResTargets
        self.star = False
        self._uses: dict[int, set[tuple[int, bool]]] = {}
        self._spans: list[tuple[int, int]] | None = None

    def select_list(self) -> _Exported:
        items: list[tuple[int | None, InnerItem, str]] = []
        names: list[str] = []
        if self.query.valuesLists:
            # A VALUES list (a set operation's branch): columns column1, column2…
            width = len(self.query.valuesLists[0])
            return _Exported([], [f"column{n}" for n in range(1, width + 1)])
        for position, target in enumerate(self.query.targetList, start=1):
            value = target.val
            if _is_star(value):
                self.star = True
                found = self._star(value, position)
                items += [(None, item, item.name) for item in found]
            else:
                # (composite).* is as many columns as its type has: the names
                # after it are not known here, as after a `*`.
                self.star = self.star or setops.expands(value)
                names.append(target.name or figure_colname(value))
                item = self._item(target, position, names[-1])
                found = [] if item is None else [item]
                items += [(position - 1, item, item.name) for item in found]
            if found:
                self.positions.add(position)
                self.handled.add(id(target))
        return _Exported(items, None if self.star else names)

    def _span(self, position: int) -> tuple[int, int]:
        if self._spans is None:
            targets = self.query.targetList
            self._spans = sqltext.list_items(self.st.tokens, targets[0].location)
            if len(self._spans) != len(targets):
                raise RewriteError(
                    "XX000", "select list spans do not match the parse tree"
                )
        return self._spans[position - 1]

    def _use(self, visible: Visible, position: int, star: bool) -> None:
        record_use(self._uses, visible, position, star)

    def _star(self, value: ast.ColumnRef, position: int) -> list[InnerItem]:
        qualifier = value.fields[0].sval if len(value.fields) == 2 else None
        found = []
        if self.view is not None and qualifier in (None, self.view):
            if qualifier is None and not self.alone:
                raise refuse(
                    "* over pgsodium.decrypted_key joined with other relations: "
                    f"select {self.view}.* and the other relations' columns by name",
                    value.location,
                )
            found.append(self._view_star(position))
        for visible in self.visibles:
            if qualifier is not None and visible.qualifier != qualifier:
                continue
            self._use(visible, position, star=True)
            found.append(
                self.levels.new_item(
                    (-1, -1),
                    visible.name,
                    visible.item.tree,
                    visible.inputs(),
                    visible.item.candidates,
                )
            )
        return found

    def _view_star(self, position: int) -> InnerItem:
        """`*` over pgsodium.decrypted_key: its columns by name, decrypted_raw_key
        written out as pgsodium defines it and computed per row."""
        assert self.view is not None
        builder, node = scalar.expanded_column(
            self.st.compiler, self.view, self.st.on_path
        )
        tree = _present(builder, builder.build(node))
        item = self.levels.new_item(
            (-1, -1),
            "decrypted_raw_key",
            tree,
            builder.inputs,
            frozenset(builder.candidates),
        )
        q = sqltext.quote_ident(self.view)
        parts = [
            placeholder("inner", item.index) if c == "decrypted_raw_key" else f"{q}.{c}"
            for c in scalar.DECRYPTED_KEY_COLUMNS
        ]
        self.st.result.texts.append(
            (*self.st.span(*self._span(position)), ", ".join(parts))
        )
        return item

    def _item(
        self, target: ast.ResTarget, position: int, name: str
    ) -> InnerItem | None:
        """A select-list item over rows, or None for one the database computes
        (its pgsodium calls, if any, are folded or refused with the rest)."""
        value = target.val
        resolver = Resolver(self.visibles, lambda v: self._use(v, position, star=False))
        view = self.view
        reads_view = view is not None and scalar.reads_decrypted_raw_key(value, view)
        reads = resolver.reads(value)
        if not (reads_view or reads or self.st._mentions_pgsodium_call(value)):
            return None
        if not (reads_view or reads):
            try:
                self.st.compiler.compile(value)
                return None  # it folds: sent upstream as a value, or refused
            except NotFoldable:
                pass
        start, end = self._span(position)
        if reads_view:
            assert view is not None
            builder, node = scalar.expanded(
                self.st.compiler,
                self.st.sql,
                (start, end),
                value,
                view,
                self.st.on_path,
            )
        else:
            builder = RowCompiler(
                self.st.compiler, self.st.sql, self.st.tokens, self.st.on_path
            )
            node = value
        builder.scope = resolver
        try:
            tree = builder.build(node)
        except NotFoldable as exc:
            if reads:
                raise refuse_expression(value, resolver.suspect, exc) from None
            if reads_view:
                assert view is not None
                raise refuse_expression(
                    value, lambda ref: scalar.reads_decrypted_raw_key(ref, view), exc
                ) from None
            return None
        if not builder.inputs:
            return None
        if not isinstance(value, ast.ColumnRef):
            tree = _present(builder, tree)
        self.st._mark_handled(value)
        return self.levels.new_item(
            self.st.span(start, end),
            name,
            tree,
            builder.inputs,
            frozenset(builder.candidates),
        )


# -- helpers ---------------------------------------------------------------------


def _present(builder: RowCompiler, tree: Open) -> Open:
    """The value only where its row is there. An outer join above its level
    NULL-extends the columns of its inputs, and PostgreSQL would give NULL
    there without computing anything; over NULL inputs COALESCE, CASE or a key
    lookup would not. So a `true` computed at the item's own level comes up
    with the inputs, and the value is NULL where it arrives NULL. (A name that
    only passes a value on needs none: the value it passes has its own.)"""
    builder.inputs.append(Input("true", False))
    return LateCase(
        ((RowInput(len(builder.inputs) - 1), tree),), Const("unknown", None)
    )


def _visibles(
    qualifier: str | None, exported: _Exported, cte: _Cte | None
) -> list[Visible]:
    """The per-row values of a FROM item; a name two of its columns have is
    ambiguous (known when its select list has no `*`)."""
    counts = Counter(exported.names or ())
    return [
        Visible(qualifier, name, item, counts[name] > 1, cte)
        for _, item, name in exported.items
    ]


def _check_joins(items: Sequence[ast.Node], under: dict[int, list[Visible]]) -> None:
    """Joins PostgreSQL would run over a per-row value's column (NATURAL, USING),
    or that rename it (a join alias), are refused."""
    for item in items:
        if not isinstance(item, ast.JoinExpr):
            continue
        below = [v for leaf in _leaves([item]) for v in under.get(id(leaf), ())]
        if below:
            if item.alias is not None:
                raise refuse(
                    f"a join with an alias over {_OVER}: qualify its columns by the "
                    "subquery's own alias",
                    None,
                )
            if item.isNatural:
                raise refuse(f"NATURAL JOIN over {_OVER}: join with ON", None)
            using = {n.sval for n in item.usingClause or ()}
            hit = sorted(using & {v.name for v in below})
            if hit:
                raise refuse(f'JOIN … USING ("{hit[0]}") over {_OVER}', None)
        _check_joins([item.larg, item.rarg], under)


def _lookup(var: ast.RangeVar, scope: _Scope) -> _Cte | None:
    if var.schemaname is not None or var.catalogname is not None:
        return None
    for names in scope:
        if var.relname in names:
            return names[var.relname]
    return None


def _plain(node: ast.Node) -> bool:
    return (
        isinstance(node, ast.SelectStmt)
        and node.op.name == "SETOP_NONE"
        and node.intoClause is None
    )


def _is_star(node: ast.Node) -> bool:
    return isinstance(node, ast.ColumnRef) and isinstance(node.fields[-1], ast.A_Star)


def _leaves(items: Sequence[ast.Node]) -> list[ast.Node]:
    """The FROM items of a FROM list, through joins."""
    out: list[ast.Node] = []
    for item in items:
        if isinstance(item, ast.JoinExpr):
            out += _leaves([item.larg, item.rarg])
        else:
            out.append(item)
    return out


class _Refs(Visitor):  # type: ignore[misc]
    """Column references of a query, not descending into the given nodes."""

    def __init__(self, skip: set[int]) -> None:
        super().__init__()
        self.skip = skip
        self.found: list[tuple[ast.ColumnRef, str | None]] = []

    def visit(self, ancestors, node):  # type: ignore[no-untyped-def]
        if id(node) in self.skip:
            return Skip
        if isinstance(node, ast.ColumnRef):
            self.found.append((node, context.construct(ancestors)))
        return None


def _locations(node: ast.Node) -> list[int]:
    """The text offsets of every node below `node` that has one."""
    return [
        n.location
        for n in _collect(node, ast.Node)
        if isinstance(getattr(n, "location", None), int)
    ]


def figure_colname(node: ast.Node) -> str:
    from .analyze import figure_colname as figure

    return figure(node)


__all__ = ["Levels"]
