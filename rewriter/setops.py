"""UNION ALL over values computed per row, as the outermost query, a subquery in
FROM or a WITH query: `SELECT decrypt(a…) FROM a UNION ALL SELECT decrypt(b…) FROM b`.

A column with such a value in either branch becomes, in each branch's select list,
the columns of both branches' items (rewriter.levels), each item's own inputs and a
`true` that tags its rows; the other branch's are NULL. PostgreSQL types each
column from the branch that gives it (a NULL takes the other side's type), and the
proxy computes each row's value from the branch its tag names, as a CASE would.

Kept: only UNION ALL of two queries. With a third, PostgreSQL would resolve two
NULLs of one column as text first, and the proxy cannot name the type instead
before the database reports it. UNION, INTERSECT and EXCEPT compare rows in the
database, which would compare inputs instead of values: refused.
"""

from __future__ import annotations

from typing import Any

from pglast import ast

from . import sqltext
from .compile import NotFoldable, is_pgsodium_call
from .errors import RewriteError, refuse
from .inner import InnerItem, rebase
from .late import Input, LateCase, RowInput, static_type
from .plan import Call, Const, Param, walk

_OVER = "values computed per row"
_INTO = "SELECT … INTO"
_OPERATIONS = {
    "SETOP_UNION": "UNION",
    "SETOP_INTERSECT": "INTERSECT",
    "SETOP_EXCEPT": "EXCEPT",
}


def is_set_operation(node: ast.Node) -> bool:
    return (
        isinstance(node, ast.SelectStmt)
        and node.op.name != "SETOP_NONE"
        and node.intoClause is None
    )


def union_level(levels: Any, query: ast.SelectStmt, scope: Any) -> Any:
    """What a set operation gives the query above (levels._Exported): for each
    column computed per row in a branch, an InnerItem whose members are the
    branches' items. A set operation over no such value gives nothing."""
    from .levels import _Exported

    scope = levels._scope(query, scope)
    leaves, refused = _leaves(query)
    exported = [levels._level(leaf, scope) for leaf in leaves]
    if not any(e.items for e in exported):
        return _Exported([], exported[0].names)
    if refused == _INTO:
        raise refuse(
            f"{_INTO} over {_OVER}: the new table would get their inputs", None
        )
    if refused is not None:
        raise refuse(
            f"{refused} over {_OVER}: it compares rows in the database, which has "
            "their inputs only (UNION ALL works)",
            None,
        )
    if len(leaves) != 2:
        raise refuse(
            f"UNION ALL of more than two queries over {_OVER}: select the columns "
            "of a UNION ALL of two by name from a subquery in FROM, and UNION ALL "
            "that with the next",
            None,
        )
    if any(_has_star(leaf) for leaf in leaves):
        raise refuse(
            f"* in a branch of UNION ALL over {_OVER}: name the columns",
            None,
        )
    if any(leaf.valuesLists for leaf in leaves):
        raise refuse(
            f"VALUES in a branch of UNION ALL over {_OVER}: write it as a SELECT",
            None,
        )
    names = [e.names for e in exported]
    if len(names[0]) != len(names[1]):
        raise RewriteError(
            "42601", "each UNION query must have the same number of columns"
        )

    items = []
    for position in sorted({p for e in exported for p, _, _ in e.items}):
        members = [
            _member(levels, leaf, found, position)
            for leaf, found in zip(leaves, exported, strict=True)
        ]
        _type_parameters(levels, members)
        items.append(
            (
                position,
                _union_item(levels, members, names[0][position]),
                names[0][position],
            )
        )
    computed = {name for _, _, name in items}
    positions = {position + 1 for position, _, _ in items}
    levels.st._check_result_clauses(query, computed, positions, False)
    return _Exported(items, names[0])


def _type_parameters(levels: Any, members: list[InnerItem]) -> None:
    """A branch's value that is a bare untyped bind parameter takes the other
    branch's type, as PostgreSQL types it (select_common_type over the union's
    column): Describe reports that type and Bind reads the value as one."""
    for member, other in ((members[0], members[1]), (members[1], members[0])):
        tree = member.tree
        if not isinstance(tree, Param) or tree.type != "unknown":
            continue
        kind = static_type(other.tree)
        if kind is None:
            continue
        levels.st.compiler.param_types[tree.number] = kind
        member.tree = Param(tree.number, kind)


def _has_star(leaf: ast.SelectStmt) -> bool:
    """A `*` passes columns up as they come, so no NULL can stand beside them."""
    return any(expands(t.val) for t in leaf.targetList or ())


def expands(value: ast.Node) -> bool:
    """A select-list item that PostgreSQL expands into several columns: `*`,
    `t.*`, and `(composite).*`, `(f()).*` (an A_Indirection ending in `*`).
    SECURITY: where the proxy places columns by position (a second branch, a
    column alias list), one that expands would shift the client's own columns
    into the places of the proxy's inputs and key references."""
    if isinstance(value, ast.ColumnRef):
        return isinstance(value.fields[-1], ast.A_Star)
    if isinstance(value, ast.A_Indirection):
        return any(isinstance(i, ast.A_Star) for i in value.indirection)
    return False


def _leaves(query: ast.SelectStmt) -> tuple[list[ast.SelectStmt], str | None]:
    """The branches, left to right, and the first operation that is not UNION
    ALL, if any."""
    if query.op.name == "SETOP_NONE":
        # SELECT … INTO in the first branch writes the rows to a new table, where
        # the proxy's values would never reach them.
        return [query], _INTO if query.intoClause is not None else None
    left, first = _leaves(query.larg)
    right, second = _leaves(query.rarg)
    refused = first or second
    if query.op.name != "SETOP_UNION" or not query.all:
        refused = refused or _OPERATIONS.get(query.op.name, "a set operation")
    return left + right, refused


def _member(
    levels: Any, leaf: ast.SelectStmt, exported: Any, position: int
) -> InnerItem:
    """One branch's item of a computed column, its tag last: the branch's own
    item, or the branch's select-list item made one."""
    found = [item for p, item, _ in exported.items if p == position]
    if found:
        item = found[0]
    else:
        item = _plain_item(levels, leaf, position)
    item.inputs.append(Input("true", False))
    return item


def _plain_item(levels: Any, leaf: ast.SelectStmt, position: int) -> InnerItem:
    """A branch's item that reads no value computed per row: folded by the proxy
    (a literal, a bind parameter, a pgsodium call of those) or computed by the
    database (an expression that calls nothing of pgsodium) as a row input."""
    st = levels.st
    target = leaf.targetList[position]
    start, end = sqltext.list_items(st.tokens, leaf.targetList[0].location)[position]
    name = target.name or _figure(target.val)
    try:
        tree: Any = st.compiler.compile(target.val)
        inputs: list[Input] = []
        if any(
            isinstance(n, Call) and n.signature.key_variant == "uuid"
            for n in walk(tree)
        ):
            # Computed as each row passes, a call reads only the key rows that
            # come up with the row: a key uuid written in the statement has none.
            raise refuse(
                "a pgsodium call with a key uuid in a branch of UNION ALL over "
                f"{_OVER} (select it in a statement of its own)",
                getattr(target.val, "location", None),
            )
        st._mark_handled(target.val)
    except NotFoldable:
        # SECURITY: the database computes this text as it stands; a pgsodium call
        # in it (a raw key of create_key, a decrypting view's expansion) must not
        # go up so.
        if any(is_pgsodium_call(c, st.on_path) for c in _calls(target.val)):
            raise refuse(
                f"this expression in a branch of UNION ALL over {_OVER}",
                getattr(target.val, "location", None),
            ) from None
        text = _value_text(st.sql, st.tokens, (start, end), target)
        tree, inputs = RowInput(0), [Input(text, False)]
    return levels.new_item(st.span(start, end), name, tree, inputs, frozenset())


def _union_item(levels: Any, members: list[InnerItem], name: str) -> InnerItem:
    """The column as the query above reads it: the value of the branch whose tag
    is set."""
    whens = []
    offset = 0
    for member in members:
        count = len(member.inputs)
        whens.append((RowInput(offset + count - 1), rebase(member.tree, offset)))
        offset += count
    tree = LateCase(tuple(whens), Const("unknown", None), "UNION ALL")
    candidates = frozenset().union(*(m.candidates for m in members))
    item = levels.new_item((-1, -1), name, tree, [], candidates)
    item.members = tuple(members)
    levels.st.result.inner_groups.append((item.index, [m.index for m in members]))
    return item


def _value_text(
    sql: str, toks: list[sqltext.Token], span: tuple[int, int], target: ast.ResTarget
) -> str:
    """A select-list item's expression, without its alias."""
    inside = [t for t in toks if span[0] <= t.start and t.end <= span[1]]
    if target.name is not None and inside:
        inside.pop()  # the alias
        if inside and inside[-1].name == "AS":
            inside.pop()
    if not inside:
        raise RewriteError("XX000", "select-list item without its expression")
    return sql[inside[0].start : inside[-1].end]


def _calls(node: ast.Node) -> list[ast.FuncCall]:
    from .analyze import _calls as collect

    return collect(node)


def _figure(node: ast.Node) -> str:
    from .analyze import figure_colname

    return figure_colname(node)


__all__ = ["is_set_operation", "union_level"]


# -- `*` in a branch, written out ----------------------------------------------------


def expand_stars(sql: str, stmt: ast.Node, on_path: bool) -> list[tuple[int, int, str]]:
    """Each `*` (or `q.*`) of a set operation's branch that computes values per
    row, written out as the columns it stands for (`q.a, q.b`), where every FROM
    item it expands is a subquery whose columns are all named (a decrypting
    view's expansion, vault.decrypted_secrets'): the same columns, names and
    types, and room beside each for the other branch's NULL columns. Any other
    `*` stays, and is refused if the branch's values need the room."""
    from pglast.visitors import Visitor

    class _SetOperations(Visitor):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.found: list[ast.SelectStmt] = []

        def visit(self, ancestors: Any, node: Any) -> None:
            if isinstance(node, ast.SelectStmt) and node.op.name != "SETOP_NONE":
                self.found.append(node)

    finder = _SetOperations()
    finder(stmt)
    out: list[tuple[int, int, str]] = []
    toks: list[sqltext.Token] | None = None
    for operation in finder.found:
        if not any(is_pgsodium_call(c, on_path) for c in _calls(operation)):
            continue
        for leaf in (operation.larg, operation.rarg):
            if leaf.op.name == "SETOP_NONE" and _has_star(leaf):
                toks = toks or sqltext.tokens(sql)
                out += _written_out(sql, toks, leaf)
    return out


def _written_out(
    sql: str, toks: list[sqltext.Token], leaf: ast.SelectStmt
) -> list[tuple[int, int, str]]:
    items = _from_columns(leaf.fromClause or ())
    if items is None:
        return []
    spans = sqltext.list_items(toks, leaf.targetList[0].location)
    if len(spans) != len(leaf.targetList):
        return []
    out = []
    q = sqltext.quote_ident
    for target, (start, end) in zip(leaf.targetList, spans, strict=True):
        value = target.val
        if not (
            isinstance(value, ast.ColumnRef)
            and isinstance(value.fields[-1], ast.A_Star)
        ):
            continue
        qualifier = value.fields[0].sval if len(value.fields) == 2 else None
        chosen = [(a, n) for a, n in items if qualifier in (None, a)]
        if not chosen or len(value.fields) > 2:
            return []
        text = ", ".join(f"{q(a)}.{q(n)}" for a, names in chosen for n in names)
        out.append((start, end, text))
    return out


def _from_columns(items: Any) -> list[tuple[str, list[str]]] | None:
    """The FROM items' aliases and column names, in `*`'s order; None when one
    is not a subquery with an alias and named columns, or a join merges them."""
    out: list[tuple[str, list[str]]] = []
    for item in items:
        if isinstance(item, ast.JoinExpr):
            if item.isNatural or item.usingClause or item.alias is not None:
                return None
            inner = _from_columns([item.larg, item.rarg])
            if inner is None:
                return None
            out += inner
        elif isinstance(item, ast.RangeSubselect) and item.alias is not None:
            names = _names(item.subquery)
            listed = [n.sval for n in item.alias.colnames or ()]
            if names is None or len(listed) > len(names):
                return None
            names = listed + names[len(listed) :]
            if "?column?" in names or len(set(names)) != len(names):
                return None
            out.append((item.alias.aliasname, names))
        else:
            return None
    return out


def _names(query: ast.Node) -> list[str] | None:
    """A SELECT's output column names ("?column?" where PostgreSQL's name is not
    known here), or None behind a `*`."""
    while isinstance(query, ast.SelectStmt) and query.op.name != "SETOP_NONE":
        query = query.larg
    if not isinstance(query, ast.SelectStmt) or not query.targetList:
        return None
    names = []
    for target in query.targetList:
        if expands(target.val):
            return None
        names.append(target.name or _figure(target.val))
    return names
