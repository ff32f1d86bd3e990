"""Which function calls the server may evaluate more than once in one execution.

A volatile pgsodium function (randombytes_*, every keygen and noncegen, the new
keypairs) gives a new value each time the server evaluates it: once per row in a
select list over rows, in UPDATE … SET, in WHERE. A value the proxy folds is
computed once for the whole statement, so it may stand only where the server too
evaluates the call once; anywhere else the proxy computes it per row or refuses it.
Reusing one nonce for every row would be a silent security failure.
"""

from __future__ import annotations

from pglast import ast
from pglast.enums import ObjectType
from pglast.visitors import Visitor

# Members of a statement whose expressions the server evaluates for each row it
# reads or writes (a SELECT's only when it has a FROM clause).
_PER_ROW_SELECT = frozenset(
    {"targetList", "whereClause", "havingClause", "groupClause", "sortClause",
     "distinctClause", "windowClause"}
)  # fmt: skip
_PER_ROW_WRITE = frozenset(
    {"targetList", "whereClause", "returningList", "returningClause", "fromClause",
     "usingClause", "onConflictClause", "mergeWhenClauses", "joinCondition"}
)  # fmt: skip


def repeated_calls(stmt: ast.Node) -> set[int]:
    """id() of every FuncCall in `stmt` that the server may evaluate more than
    once per execution of the statement."""
    finder = _Repeated()
    finder(stmt)
    if (
        isinstance(stmt, ast.CreateTableAsStmt)
        and stmt.objtype == ObjectType.OBJECT_MATVIEW
    ):
        # REFRESH MATERIALIZED VIEW runs the query again: a value folded into its
        # definition would be the same at every refresh.
        return {id(c) for c in _calls(stmt)}
    return finder.found


class _Repeated(Visitor):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.found: set[int] = set()

    def visit(self, ancestors, node):  # type: ignore[no-untyped-def]
        if isinstance(node, ast.FuncCall) and _repeats(ancestors):
            self.found.add(id(node))


def _repeats(ancestors) -> bool:  # type: ignore[no-untyped-def]
    """Walks up from a call: the first enclosing construct that runs its
    expressions per row decides; a WITH query or FROM item is evaluated once."""
    level = ancestors
    while level is not None and level.node is not None:
        parent, member = level.node, level.member
        if isinstance(parent, ast.SelectStmt):
            if member in _PER_ROW_SELECT and parent.fromClause:
                return True
            if member == "targetList" and _has_other_calls(parent):
                return True  # a set-returning function makes rows without FROM
        elif isinstance(parent, (ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)):
            if member in _PER_ROW_WRITE:
                return True
        elif isinstance(parent, ast.InsertStmt):
            if member in ("returningList", "returningClause", "onConflictClause"):
                return True
        elif isinstance(parent, ast.CommonTableExpr):
            return False
        elif isinstance(parent, ast.FuncCall) and (
            parent.over is not None or parent.agg_filter is not None
        ):
            return True
        level = level.parent
    return False


def _has_other_calls(select: ast.SelectStmt) -> bool:
    """A select list without FROM that calls a function other than pgsodium's
    may call a set-returning one (generate_series, unnest, …)."""
    from keystore.catalogue import overloads

    from .compile import function_name

    for target in select.targetList or ():
        for call in _calls(target):
            schema, name = function_name(call)
            if schema == "pgsodium" or (schema is None and overloads(name)):
                continue
            if name not in _SCALAR_WRAPPERS:
                return True
    return False


# Functions the proxy evaluates around pgsodium's: never set-returning.
_SCALAR_WRAPPERS = frozenset(
    {"convert_to", "convert_from", "encode", "decode", "length", "octet_length",
     "substring", "substr", "btrim", "ltrim", "rtrim", "coalesce"}
)  # fmt: skip


def _calls(node: ast.Node) -> list[ast.FuncCall]:
    from .analyze import _calls as collect

    return collect(node)
