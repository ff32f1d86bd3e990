"""PostgreSQL's checks of VALUES lists, for statements the proxy answers itself:
rows of one length (transformValuesClause), and an INSERT's rows against its
target columns (transformInsertRow); same SQLSTATE, text, hint and place.

A row that does not fit is the client's mistake, not a construct the proxy cannot
evaluate: 42601 as the server says it, never 0A000, and never sent upstream (a
write's plaintext would reach the server's log with the error).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pglast import ast
from pglast.visitors import Visitor

from . import sqltext
from .errors import RewriteError
from .sqltext import Token

_HINT_ROW = (
    "The insertion source is a row expression containing the same number of "
    "columns expected by the INSERT. Did you accidentally use extra parentheses?"
)


Spans = list[tuple[int, int]]


def check_lengths(statements: Sequence[ast.RawStmt], sql: str) -> None:
    """Every VALUES list of the statements (parsed from `sql`) has rows of one
    length."""
    for raw in statements:
        visitor = _Values()
        visitor(raw.stmt)
        for rows in visitor.found:
            # A row with `x.*` is as long as x is: the server counts after it.
            if any(_expands(item) for row in rows for item in row):
                continue
            bad = next((r for r in rows[1:] if len(r) != len(rows[0])), None)
            if bad is None:
                continue
            # The list's text: the VALUES whose rows have the same lengths.
            toks = sqltext.tokens(sql)
            at = [i for i, t in enumerate(toks) if t.name == "VALUES"]
            blocks = [rows_at(toks, i) for i in at]
            shape = [len(r) for r in rows]
            spans = next((b for b in blocks if [len(r) for r in b] == shape), None)
            where = None
            if spans is not None:
                index = next(i for i, r in enumerate(rows) if r is bad)
                where = item_starts(toks, bad, spans[index])[0]
            raise _error("VALUES lists must all be the same length", where)


def check_inserts(statements: Sequence[ast.RawStmt], sql: str) -> None:
    """Every INSERT ... VALUES with a column list has as many items in each row
    as it names columns (without one, the table's columns count: upstream's to
    check)."""
    for raw in statements:
        stmt = raw.stmt
        select = getattr(stmt, "selectStmt", None)
        if not isinstance(stmt, ast.InsertStmt) or not stmt.cols or select is None:
            continue
        rows = select.valuesLists or ()
        if all(len(r) == len(stmt.cols) for r in rows) or any(
            _expands(item) for row in rows for item in row
        ):
            continue
        toks = sqltext.tokens(sql)
        after = stmt.relation.location
        index = next(
            (i for i, t in enumerate(toks) if t.start > after and t.name == "VALUES"),
            None,
        )
        spans = [] if index is None else rows_at(toks, index)[: len(rows)]
        if len(spans) != len(rows):
            spans = [[] for _ in rows]
        check_insert(rows, spans, [c.name for c in stmt.cols], stmt.cols, toks)


def check_insert(
    rows: Sequence[Sequence[Any]],
    spans: Sequence[Spans],
    names: Sequence[str],
    columns: Sequence[Any] | None,
    toks: list[Token],
) -> None:
    """`rows` are an INSERT's VALUES lists, `spans` their items' spans in the
    text, `names` its target columns and `columns` its own column list
    (ResTargets), None when it has none."""
    for index, (row, row_spans) in enumerate(zip(rows, spans, strict=True)):
        at = item_starts(toks, row, row_spans)
        if index and len(row) != len(rows[0]):
            raise _error("VALUES lists must all be the same length", at[0])
        if len(row) > len(names):
            raise _error(
                "INSERT has more expressions than target columns", at[len(names)]
            )
        if columns is not None and len(row) < len(names):
            hint = None
            if (
                len(row) == 1
                and isinstance(row[0], ast.RowExpr)
                and len(row[0].args or ()) == len(names)
            ):
                hint = _HINT_ROW
            raise _error(
                "INSERT has more target columns than expressions",
                columns[len(row)].location,
                hint,
            )


def rows_at(toks: list[Token], index: int) -> list[Spans]:
    """The spans of each row's items of the VALUES at token `index`."""
    rows: list[Spans] = []
    depth = 0
    item: list[int] = []
    items: Spans = []
    for tok in toks[index + 1 :]:
        if depth == 0 and tok.name not in ("ASCII_40", "ASCII_44"):
            break  # the list ends: no row, nor a comma before one
        if tok.name in ("ASCII_40", "ASCII_91") or tok.name == "CASE":
            depth += 1
            if depth == 1:
                continue
        elif tok.name in ("ASCII_41", "ASCII_93") or tok.name == "END_P":
            depth -= 1
            if depth == 0:
                if item:
                    items.append((item[0], item[1]))
                rows.append(items)
                items, item = [], []
                continue
        elif tok.name == "ASCII_44" and depth == 1:
            if item:
                items.append((item[0], item[1]))
            item = []
            continue
        if depth == 0:
            continue
        if not item:
            item = [tok.start, tok.end]
        item[1] = tok.end
    return rows


def item_starts(toks: list[Token], nodes: Sequence[Any], spans: Spans) -> list[int]:
    """Where PostgreSQL places each item of a VALUES row: at its first token
    inside any parentheses around it (a subquery's and a row's own parenthesis
    is where they start)."""
    if len(spans) != len(nodes):
        return [getattr(n, "location", None) or -1 for n in nodes]
    starts = []
    for node, (start, end) in zip(nodes, spans, strict=True):
        index = sqltext.index_at(toks, start)
        while (
            not isinstance(node, (ast.SubLink, ast.RowExpr))
            and index + 1 < len(toks)
            and toks[index].name == "ASCII_40"
            and toks[index + 1].start < end
        ):
            index += 1
        starts.append(toks[index].start if index < len(toks) else start)
    return starts


class _Values(Visitor):  # type: ignore[misc]
    def __init__(self) -> None:
        self.found: list[Sequence[Sequence[Any]]] = []

    def visit_SelectStmt(self, ancestors: Any, node: ast.SelectStmt) -> None:
        if node.valuesLists:
            self.found.append(node.valuesLists)


def _expands(item: Any) -> bool:
    if isinstance(item, ast.ColumnRef):
        return isinstance(item.fields[-1], ast.A_Star)
    if isinstance(item, ast.A_Indirection):
        return isinstance(item.indirection[-1], ast.A_Star)
    return False


def _error(message: str, location: int | None, hint: str | None = None) -> RewriteError:
    position = None if location is None or location < 0 else location + 1
    return RewriteError("42601", message, position, hint)
