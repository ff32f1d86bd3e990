"""Where in a statement an expression stands, in the words of an error message.

A pgsodium call over rows can only be computed by the proxy in the result stream,
so a refusal must say which construct (WHERE, ORDER BY, an aggregate, ...) put it
out of reach. The parse tree's ancestors tell; PostgreSQL's own clause names are used.
"""

from __future__ import annotations

from pglast import ast
from pglast.visitors import Ancestor, Visitor

from .builtins import is_builtin_name

# (parent node type, member) -> the construct an expression below it stands in.
_MEMBERS: dict[tuple[str, str], str] = {
    ("SelectStmt", "whereClause"): "WHERE",
    ("SelectStmt", "havingClause"): "HAVING",
    ("SelectStmt", "groupClause"): "GROUP BY",
    ("SelectStmt", "sortClause"): "ORDER BY",
    ("SelectStmt", "distinctClause"): "DISTINCT ON",
    ("SelectStmt", "limitCount"): "LIMIT",
    ("SelectStmt", "limitOffset"): "OFFSET",
    ("SelectStmt", "windowClause"): "WINDOW",
    ("SelectStmt", "valuesLists"): "VALUES",
    ("JoinExpr", "quals"): "JOIN ON",
    ("UpdateStmt", "whereClause"): "WHERE",
    ("DeleteStmt", "whereClause"): "WHERE",
    ("UpdateStmt", "targetList"): "UPDATE SET",
    ("UpdateStmt", "fromClause"): "UPDATE ... FROM",
    ("OnConflictClause", "targetList"): "ON CONFLICT DO UPDATE SET",
    ("OnConflictClause", "whereClause"): "ON CONFLICT ... WHERE",
    ("InsertStmt", "selectStmt"): "INSERT ... SELECT",
    ("FuncCall", "over"): "a window definition",
    ("FuncCall", "agg_filter"): "an aggregate FILTER",
    ("FuncCall", "agg_order"): "an aggregate ORDER BY",
    ("CaseExpr", "args"): "CASE",
    ("CaseExpr", "defresult"): "CASE",
    ("SubLink", "subselect"): "a subquery",
    ("RangeSubselect", "subquery"): "a subquery in FROM",
    ("SelectStmt", "larg"): "a set operation (UNION, INTERSECT, EXCEPT)",
    ("SelectStmt", "rarg"): "a set operation (UNION, INTERSECT, EXCEPT)",
    ("CommonTableExpr", "ctequery"): "a WITH query",
    ("RangeFunction", "functions"): "a function in FROM",
}

# Aggregates and window functions PostgreSQL ships; a call inside one is evaluated
# by the server over many rows at once.
_AGGREGATES = frozenset(
    "array_agg avg bit_and bit_or bit_xor bool_and bool_or count every json_agg "
    "jsonb_agg json_object_agg jsonb_object_agg max min range_agg range_intersect_agg "
    "string_agg sum xmlagg corr covar_pop covar_samp regr_avgx regr_avgy regr_count "
    "regr_intercept regr_r2 regr_slope regr_sxx regr_sxy regr_syy stddev stddev_pop "
    "stddev_samp variance var_pop var_samp mode percentile_cont percentile_disc "
    "rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value "
    "nth_value row_number crypto_sign_update_agg".split()
)


# Constructs through which per-row values can reach the outermost select list
# (rewriter.levels), and CASE, which the proxy evaluates there (and which a
# decrypting view's expansion puts around its decrypt call): named only when
# nothing above them says more (a UNION over a decrypting view is refused for the
# UNION, not for the view's CASE).
_LEVELS = frozenset({"a subquery in FROM", "a WITH query", "CASE"})


def construct(ancestors: Ancestor) -> str | None:
    """The innermost construct of interest above the node `ancestors` leads to;
    a subquery in FROM or a WITH query only if no construct above it is."""
    step = ancestors
    level = None
    while step is not None and step.node is not None:
        node = step.node
        if isinstance(node, ast.FuncCall):
            name = node.funcname[-1].sval
            if node.over is not None:
                return f"the window function {name}()"
            if name in _AGGREGATES or node.agg_star or node.agg_distinct:
                return f"the aggregate {name}()"
        found = _MEMBERS.get((type(node).__name__, step.member or ""))
        if found in _LEVELS:
            level = level or found
        elif found is not None:
            return found
        step = step.parent
    return level


class _Constructs(Visitor):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.found: dict[int, str | None] = {}

    def visit(self, ancestors, node):  # type: ignore[no-untyped-def]
        if isinstance(node, (ast.FuncCall, ast.ColumnRef)):
            self.found[id(node)] = construct(ancestors)


def constructs(stmt: ast.Node) -> dict[int, str | None]:
    """id() of every FuncCall and ColumnRef in `stmt` -> the construct it stands in."""
    visitor = _Constructs()
    visitor(stmt)
    return visitor.found


def enclosing(value: ast.Node, target: ast.Node) -> str | None:
    """The innermost function call or operator of `value` around `target` that
    the proxy does not evaluate, in words: the expression a refusal names when no
    clause is to blame."""
    finder = _Enclosing(target)
    finder(value)
    return finder.found


class _Enclosing(Visitor):  # type: ignore[misc]
    def __init__(self, target: ast.Node) -> None:
        super().__init__()
        self.target = target
        self.found: str | None = None

    def visit(self, ancestors, node):  # type: ignore[no-untyped-def]
        if node is not self.target:
            return
        step = ancestors
        while step is not None and step.node is not None:
            node = step.node
            evaluated = isinstance(node, ast.FuncCall) and is_builtin_name(
                node.funcname[-1].sval
            )
            self.found = None if evaluated else expression_name(node)
            if self.found is not None:
                return
            step = step.parent


def expression_name(node: ast.Node) -> str | None:
    """A function call or an operator expression, in words."""
    if isinstance(node, ast.FuncCall):
        return f"function {node.funcname[-1].sval}()"
    if isinstance(node, ast.A_Expr) and node.name:
        return f"operator {node.name[-1].sval}"
    return None


def construct_word(what: str) -> str | None:
    """NotFoldable's `what`, if it names a function or an operator, for
    "in <construct>"."""
    return what if what.startswith(("function ", "operator ")) else None


def describe(what: str) -> str:
    """NotFoldable's `what` (often a node type name) in words."""
    return _NODE_WORDS.get(what, what)


_NODE_WORDS = {
    "ColumnRef": "a column",
    "SubLink": "a subquery",
    "A_Expr": "an operator expression",
    "CaseExpr": "a CASE expression",
    "A_ArrayExpr": "an array",
    "RowExpr": "a row constructor",
    "BoolExpr": "a boolean expression",
    "NullTest": "an IS NULL test",
    "CoalesceExpr": "COALESCE",
    "SQLValueFunction": "a SQL value function",
    "ParamRef": "a bind parameter",
    "A_Indirection": "a subscript or field",
}
