"""Deterministic search through a decrypting view: `WHERE decrypted_c = v`.

For a column with a fixed key (KEY ID) and neither associated data nor a nonce,
every row's ciphertext of v is the same, so the comparison runs upstream as
`c = <ciphertext of v>` (folded by the proxy): PostgreSQL compares ciphertexts and v
never reaches it. Only where the equality stands as a condition of WHERE
(rewriter.positive). `st` is the rewriter.tce_write statement being rewritten; its
replacements are appended to `st.out`.
"""

from __future__ import annotations

from typing import Any

from pglast import ast
from pglast.enums import A_Expr_Kind
from pglast.visitors import Skip, Visitor

from . import equality, marks, positive, sqltext
from .sqltext import Token
from .tce import Column, Relation, is_null

# SECURITY: the encryption this pass writes for a search is marked as standing
# for the view's decrypt (rewriter.marks): its EXECUTE is what the role needs.
SEARCH_MARK = marks.SEARCH
SEARCH_DECRYPT = marks.STANDS_FOR[marks.SEARCH]


def search(st: Any, stmt: ast.SelectStmt) -> None:
    """`WHERE decrypted_c = v` over a decrypting view in this query's FROM, for a
    column with a fixed key and neither associated data nor nonce: compared as
    `c = <ciphertext of v>`, so v never reaches the database (as for the
    deterministic search on tables), only as a condition of WHERE (through AND/OR;
    elsewhere refused: rewriter.positive); `decrypted_c = NULL`, NULL whatever the
    row, as `c = NULL` anywhere in WHERE. Anything else is left for the rewriter, which
    refuses a decrypted value in WHERE."""
    views: dict[str, Relation] = {}
    for rv in _from_range_vars(stmt.fromClause or ()):
        relation = st._relation(rv)
        if relation is not None and relation.kind == "view":
            views[rv.alias.aliasname if rv.alias else rv.relname] = relation
    if not views:
        return
    standing = positive.constructs(stmt.whereClause)
    finder = _Equalities()
    finder(stmt.whereClause)
    for expr in finder.found:
        operator = next(i for i, t in enumerate(st.toks) if t.start >= expr.location)
        for ref, value, at, beyond, left in (
            (expr.lexpr, expr.rexpr, operator + 1, operator + 2, True),
            (expr.rexpr, expr.lexpr, operator - 1, operator - 2, False),
        ):
            decrypted = _decrypted(ref, views)
            if decrypted is None:
                continue
            # PostgreSQL resolves the operator before anything runs: its 42883
            # comes first, wherever the comparison stands.
            equality.check_operand(
                decrypted.type, value, st.declared, left, expr.location
            )
            if 0 <= beyond < len(st.toks) and st.toks[beyond].name == "SCONST":
                continue  # not one value next to the operator: left (and refused)
            column = _searchable(decrypted, value, st.toks[at])
            if column is None:
                continue
            construct = standing.get(id(expr))
            if construct is not None and not is_null(value):
                raise positive.refuse(
                    f"a comparison of decrypted_{column.name}", construct, ref.location
                )
            _rewrite(st, ref, value, st.toks[at], column)
            break


def _decrypted(ref: Any, views: dict[str, Relation]) -> Column | None:
    """The encrypted column whose decrypted_<c> of a view in FROM `ref` is."""
    if not isinstance(ref, ast.ColumnRef) or not all(
        isinstance(f, ast.String) for f in ref.fields
    ):
        return None
    *qualifier, name = [f.sval for f in ref.fields]
    if len(qualifier) > 1 or not name.startswith("decrypted_"):
        return None
    found = [r for a, r in views.items() if not qualifier or qualifier == [a]]
    column = found[0].column(name[len("decrypted_") :]) if len(found) == 1 else None
    if column is None or not column.encrypted:
        return None
    return column


def _searchable(column: Column, value: Any, token: Token) -> Column | None:
    """`column`, if `decrypted_c = value` can be searched; `value` is a constant or
    parameter next to the operator: `token`."""
    if is_null(value):
        return column  # NULL whatever the row's key, associated data and nonce
    if column.key_column or column.associated or column.nonce:
        return None
    constant = isinstance(value, ast.A_Const) and isinstance(value.val, ast.String)
    if not (constant or isinstance(value, ast.ParamRef)):
        return None
    if token.name not in ("SCONST", "PARAM"):
        return None
    return column


def _rewrite(st: Any, ref: Any, value: Any, token: Token, column: Column) -> None:
    """`decrypted_c` becomes `c`, and `value` its ciphertext (NULL stays NULL)."""
    start, end = st._name_span(ref.location)
    qualifier = [f.sval for f in ref.fields][:-1]
    prefix = "".join(sqltext.quote_ident(q) + "." for q in qualifier)
    st.out.append((start, end, prefix + sqltext.quote_ident(column.name)))
    if is_null(value):
        return
    text = st.sql[token.start : token.end]
    ad = "convert_to(('')::text, 'utf8')"
    key = f"'{column.key_id}'::uuid"
    if column.type == "text":
        cipher = (
            f"encode(pgsodium.crypto_aead_det_encrypt({SEARCH_MARK}"
            f"convert_to(({text})::text, "
            f"'utf8'), {ad}, {key}, NULL::bytea), 'base64')"
        )
    else:
        cipher = (
            f"pgsodium.crypto_aead_det_encrypt({SEARCH_MARK}({text})::bytea, "
            f"{ad}, {key}, NULL::bytea)"
        )
    if token.name == "PARAM":
        # A bind parameter may be NULL: `c = NULL`, no row, as `decrypted_c =
        # NULL` gives (the proxy folds the CASE; encrypt is never given NULL).
        cipher = f"CASE WHEN ({text}) IS NULL THEN NULL ELSE {cipher} END"
    st.out.append((token.start, token.end, cipher))


class _Equalities(Visitor):  # type: ignore[misc]
    """`a = b` in a WHERE clause, not inside its subqueries."""

    def __init__(self) -> None:
        self.found: list[ast.A_Expr] = []

    def visit_SubLink(self, ancestors: Any, node: Any) -> Any:
        return Skip

    def visit_A_Expr(self, ancestors: Any, node: ast.A_Expr) -> None:
        if (
            node.kind == A_Expr_Kind.AEXPR_OP
            and len(node.name) == 1
            and node.name[0].sval == "="
        ):
            self.found.append(node)


def _from_range_vars(items: Any) -> list[ast.RangeVar]:
    found: list[ast.RangeVar] = []
    for item in items:
        if isinstance(item, ast.RangeVar):
            found.append(item)
        elif isinstance(item, ast.JoinExpr):
            found += _from_range_vars([item.larg, item.rarg])
    return found
