"""Where an equality of a WHERE clause stands, for the deterministic search.

A search (`decrypt(c, …) = v`, `decrypted_c = v`) runs upstream as `c =
<ciphertext of v>`: a row that does not decrypt is false there instead of an
error. Only a condition of WHERE itself, alone or joined to others by AND and
OR, can take that: false there only drops the row. Anywhere else (under NOT,
in CASE, IS [NOT] TRUE/FALSE/UNKNOWN, a function's argument, another operator,
a subquery) false may turn into a match, so the equality is not rewritten.
"""

from __future__ import annotations

from typing import Any

from pglast import ast
from pglast.enums import A_Expr_Kind, BoolExprType, BoolTestType, NullTestType
from pglast.visitors import Visitor

from .errors import RewriteError

_BOOL_TESTS = {
    BoolTestType.IS_TRUE: "IS TRUE",
    BoolTestType.IS_NOT_TRUE: "IS NOT TRUE",
    BoolTestType.IS_FALSE: "IS FALSE",
    BoolTestType.IS_NOT_FALSE: "IS NOT FALSE",
    BoolTestType.IS_UNKNOWN: "IS UNKNOWN",
    BoolTestType.IS_NOT_UNKNOWN: "IS NOT UNKNOWN",
}
_OPERATOR_KINDS = {
    A_Expr_Kind.AEXPR_DISTINCT: "IS DISTINCT FROM",
    A_Expr_Kind.AEXPR_NOT_DISTINCT: "IS NOT DISTINCT FROM",
    A_Expr_Kind.AEXPR_NULLIF: "NULLIF",
    A_Expr_Kind.AEXPR_IN: "IN",
    A_Expr_Kind.AEXPR_BETWEEN: "BETWEEN",
    A_Expr_Kind.AEXPR_NOT_BETWEEN: "NOT BETWEEN",
}


def is_equality(node: Any) -> bool:
    return (
        isinstance(node, ast.A_Expr)
        and node.kind == A_Expr_Kind.AEXPR_OP
        and [getattr(n, "sval", None) for n in node.name or ()] == ["="]
    )


def constructs(where: Any) -> dict[int, str | None]:
    """id() of every `=` expression in `where` (subqueries included) -> None where
    it stands as a condition of WHERE (through AND/OR only), else the innermost
    construct that puts it elsewhere, in words for an error message (`refuse`)."""
    finder = _Equalities()
    finder(where)
    return finder.found


def refuse(what: str, construct: str, location: int | None) -> RewriteError:
    """0A000 for a search that does not stand as a condition of WHERE."""
    return RewriteError(
        "0A000",
        f"pgsodium-proxy cannot evaluate {what} {construct} in WHERE: it compares "
        "ciphertexts only as a condition of WHERE itself, alone or joined by AND/OR, "
        "where a row that does not decrypt simply does not match",
        None if location is None or location < 0 else location + 1,
    )


class _Equalities(Visitor):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.found: dict[int, str | None] = {}

    def visit_A_Expr(self, ancestors: Any, node: ast.A_Expr) -> None:
        if is_equality(node):
            self.found[id(node)] = _construct(ancestors)


def _construct(ancestors: Any) -> str | None:
    """The innermost node above that is not AND/OR (None: there is none below the
    WHERE clause the visitor started from)."""
    step = ancestors
    while step is not None and step.node is not None:
        node = step.node
        if isinstance(node, ast.BoolExpr) and node.boolop in (
            BoolExprType.AND_EXPR,
            BoolExprType.OR_EXPR,
        ):
            step = step.parent
            continue
        if not isinstance(node, tuple):
            return _words(node)
        step = step.parent
    return None


def _words(node: Any) -> str:
    """Where the equality stands, as words that follow "cannot evaluate ..."."""
    if isinstance(node, ast.BoolExpr):
        return "under NOT"
    if isinstance(node, ast.BooleanTest):
        test = node.booltesttype
        words = None if test is None else _BOOL_TESTS.get(test)
        return "under " + (words or "a boolean test")
    if isinstance(node, ast.NullTest):
        negated = node.nulltesttype == NullTestType.IS_NOT_NULL
        return "under IS NOT NULL" if negated else "under IS NULL"
    if isinstance(node, (ast.CaseExpr, ast.CaseWhen)):
        return "inside CASE"
    if isinstance(node, ast.FuncCall):
        name = node.funcname[-1].sval if node.funcname else "a function"
        return f"as an argument of {name}()"
    if isinstance(node, ast.A_Expr):
        kind = _OPERATOR_KINDS.get(node.kind) if node.kind is not None else None
        if kind is not None:
            return f"inside {kind}"
        operator = " ".join(getattr(n, "sval", "") for n in node.name or ())
        return f"as an operand of {operator}"
    if isinstance(node, (ast.SubLink, ast.SelectStmt)):
        return "in a subquery"
    if isinstance(node, ast.CoalesceExpr):
        return "inside COALESCE"
    if isinstance(node, ast.TypeCast):
        return "under a cast"
    return "inside an expression"
