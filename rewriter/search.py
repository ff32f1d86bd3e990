"""Deterministic search: equality with a decrypted aead-det value, done on ciphertext.

`WHERE convert_from(crypto_aead_det_decrypt(c, ad, key), 'utf8') = 'alice'` cannot
run upstream (the database has no key) nor in the proxy (it filters rows). With the
associated data, key and nonce fixed, aead-det is deterministic, so the condition is
the same as `c = crypto_aead_det_encrypt(convert_to('alice', 'utf8'), ad, key)`:
the proxy folds the right-hand side to ciphertext and PostgreSQL compares bytes,
with any index on c. The plaintext never goes upstream.

One difference from pgsodium, which decrypts every row: a row whose value does not
decrypt (NULL, tampered, another key) simply does not match instead of raising.
That is right only where the equality is a condition of WHERE itself, alone or
joined by AND/OR (rewriter.positive); elsewhere it is refused with 0A000. A NULL
value gives NULL, no match, as `x = NULL` does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pglast import ast
from pglast.parser import parse_sql
from pglast.stream import RawStream
from pglast.visitors import Visitor

from . import positive, sqltext
from .compile import function_name, is_pgsodium_call
from .tce import is_null

DECRYPT = "crypto_aead_det_decrypt"
_MAX_OPERAND_TOKENS = 64


@dataclass(frozen=True, slots=True)
class Search:
    """`<decrypted> = <value>` found in a WHERE clause."""

    decrypt: ast.FuncCall
    wrapper: ast.FuncCall | None  # convert_from(decrypt(...), <encoding>)
    value: ast.Node  # the other operand
    decrypted_span: tuple[int, int]  # the operand holding the decrypt call
    value_span: tuple[int, int]
    message_span: tuple[int, int]  # the decrypt call's first argument
    operator: int  # the `=`'s offset
    decrypted_left: bool  # `<decrypted> = <value>`, not `<value> = <decrypted>`
    # Where the equality stands (rewriter.positive): None as a condition of WHERE,
    # where it may be searched; else the construct, for the refusal.
    construct: str | None = None


class _Equalities(Visitor):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.found: list[ast.A_Expr] = []

    def visit(self, ancestors, node):  # type: ignore[no-untyped-def]
        if (
            isinstance(node, ast.A_Expr)
            and node.kind.name == "AEXPR_OP"
            and [n.sval for n in node.name] == ["="]
        ):
            self.found.append(node)


def searches(
    where: ast.Node | None, sql: str, toks: list[sqltext.Token], on_path: bool
) -> list[Search]:
    """Every deterministic search in a WHERE clause."""
    if where is None:
        return []
    visitor = _Equalities()
    visitor(where)
    standing = positive.constructs(where)
    found = []
    for expr in visitor.found:
        for decrypted, value, left in (
            (expr.lexpr, expr.rexpr, True),
            (expr.rexpr, expr.lexpr, False),
        ):
            search = _search(expr, decrypted, value, left, sql, toks, on_path)
            if search is not None:
                construct = None if is_null(value) else standing.get(id(expr))
                found.append(dataclasses.replace(search, construct=construct))
                break
    return found


def _search(
    expr: ast.A_Expr,
    decrypted: ast.Node,
    value: ast.Node,
    decrypted_left: bool,
    sql: str,
    toks: list[sqltext.Token],
    on_path: bool,
) -> Search | None:
    wrapper = None
    call = decrypted
    if _named(call, "convert_from", on_path=False) and len(call.args or ()) == 2:
        wrapper, call = call, call.args[0]
    if not _named(call, DECRYPT, on_path) or not call.args:
        return None
    if isinstance(call.args[0], ast.NamedArgExpr):
        return None
    if _mentions_pgsodium(value, on_path) and not _foldable_shape(value):
        return None

    outer = wrapper or call
    decrypted_span = sqltext.call_span(toks, outer.location)[:2]
    _, _, arg_spans = sqltext.call_span(toks, call.location)
    if decrypted_left:
        value_span = _operand_after(sql, toks, expr.location, value)
    else:
        value_span = _operand_before(sql, toks, value, expr.location)
    if value_span is None:
        return None
    return Search(
        call,
        wrapper,
        value,
        decrypted_span,
        value_span,
        arg_spans[0],
        expr.location,
        decrypted_left,
    )


def _named(node: ast.Node, name: str, on_path: bool) -> bool:
    if not isinstance(node, ast.FuncCall):
        return False
    schema, called = function_name(node)
    if called != name:
        return False
    if name == DECRYPT:
        return is_pgsodium_call(node, on_path)
    return schema in (None, "pg_catalog")


def _mentions_pgsodium(node: ast.Node, on_path: bool) -> bool:
    from .analyze import _calls

    return any(is_pgsodium_call(c, on_path) for c in _calls(node))


def _foldable_shape(node: ast.Node) -> bool:
    return isinstance(node, (ast.A_Const, ast.ParamRef, ast.TypeCast, ast.FuncCall))


def _operand_after(
    sql: str, toks: list[sqltext.Token], operator: int, node: ast.Node
) -> tuple[int, int] | None:
    """The span of the right operand of the operator at `operator`: the shortest
    run of tokens after it that parses to the same expression."""
    wanted = _printed(node)
    after = [t for t in toks if t.start > operator]
    for count in range(1, min(len(after), _MAX_OPERAND_TOKENS) + 1):
        start, end = after[0].start, after[count - 1].end
        if _parses_to(sql[start:end], wanted):
            return start, end
    return None


def _operand_before(
    sql: str, toks: list[sqltext.Token], node: ast.Node, operator: int
) -> tuple[int, int] | None:
    """The span of the left operand: the shortest run of tokens ending just before
    the operator that parses to the same expression."""
    wanted = _printed(node)
    before = [t for t in toks if t.end <= operator]
    for count in range(1, min(len(before), _MAX_OPERAND_TOKENS) + 1):
        start, end = before[-count].start, before[-1].end
        if _parses_to(sql[start:end], wanted):
            return start, end
    return None


def operand_span(
    sql: str,
    toks: list[sqltext.Token],
    node: ast.Node,
    operator: int,
    *,
    left: bool,
) -> tuple[int, int] | None:
    """The text span of an operand of the binary operator at `operator`."""
    if left:
        return _operand_before(sql, toks, node, operator)
    return _operand_after(sql, toks, operator, node)


def _printed(node: ast.Node) -> str:
    return str(RawStream()(node))


def _parses_to(text: str, wanted: str) -> bool:
    try:
        (raw,) = parse_sql("SELECT " + text)
    except Exception:  # not an expression (yet): pglast's ParseError and friends
        return False
    targets = raw.stmt.targetList or ()
    return (
        len(targets) == 1
        and targets[0].name is None
        and (_printed(targets[0].val) == wanted)
    )
