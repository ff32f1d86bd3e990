"""Where things are in the client's SQL text, from PostgreSQL's own scanner.

The rewriter never re-prints a statement: it splices replacements into the original
text at spans found here (pglast's printer follows a newer grammar and normalises).
Spans are [start, end) character offsets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pglast import ast
from pglast.parser import ParseError, parse_sql, scan
from pglast.visitors import Visitor

from .errors import RewriteError

# Clause keywords that end a select list (or RETURNING list) at paren depth 0.
_LIST_END = frozenset(
    {
        "FROM",
        "INTO",
        "WHERE",
        "GROUP_P",
        "HAVING",
        "WINDOW",
        "ORDER",
        "LIMIT",
        "OFFSET",
        "FETCH",
        "FOR",
        "UNION",
        "INTERSECT",
        "EXCEPT",
        "RETURNING",
        "ON",
        "ASCII_59",  # ;
    }
)
_OPEN = frozenset({"ASCII_40", "ASCII_91"})  # ( [
_CLOSE = frozenset({"ASCII_41", "ASCII_93"})  # ) ]
_COMMA = "ASCII_44"


@dataclass(frozen=True, slots=True)
class Token:
    start: int
    end: int  # exclusive
    name: str


# The raw parser's errors that PostgreSQL does not report as 42601 syntax_error
# (pglast gives the message only). By the message's start: the scanner checks a
# string's bytes with pg_verifymbstr (22021, `E'\xff'`); the grammar checks
# float(p)'s precision (22023) and a window frame's bounds (42P20).
_NOT_SYNTAX = (
    ("invalid byte sequence for encoding ", "22021"),
    ("precision for type float must be ", "22023"),
    ("frame start cannot be ", "42P20"),
    ("frame end cannot be ", "42P20"),
    ("frame starting from ", "42P20"),
)


def tokens(sql: str) -> list[Token]:
    try:
        return [Token(t.start, t.end + 1, t.name) for t in scan(sql)]
    except ParseError as exc:
        raise syntax_error(exc, sql) from None
    except UnicodeEncodeError:  # text decoded with surrogate escapes
        raise RewriteError(
            "22021", 'invalid byte sequence for encoding "UTF8"'
        ) from None


def syntax_error(exc: ParseError, sql: str) -> RewriteError:
    """pglast's ParseError in PostgreSQL's form: its SQLSTATE, the message without
    pglast's ", at index N", and the position field. pglast's index already counts
    characters of `sql` (the client's whole text), 0-based; at the end of input it
    gives none, where PostgreSQL points just past the last character."""
    message = exc.args[0]
    sqlstate = next((s for p, s in _NOT_SYNTAX if message.startswith(p)), "42601")
    index = exc.args[1] if len(exc.args) > 1 else None
    if index is not None:
        position = index + 1
    elif message.endswith("at end of input"):
        position = len(sql) + 1
    else:
        position = None
    return RewriteError(sqlstate, message, position)


def index_at(toks: list[Token], offset: int) -> int:
    """The index of the first token at or after `offset`."""
    return _index_at(toks, offset)


def _index_at(toks: list[Token], offset: int) -> int:
    for i, tok in enumerate(toks):
        if tok.start >= offset:
            return i
    return len(toks)


def list_items(toks: list[Token], start: int) -> list[tuple[int, int]]:
    """Spans of the comma-separated items of a select/RETURNING list at `start`."""
    items: list[tuple[int, int]] = []
    depth = 0
    first = _index_at(toks, start)
    item_start = toks[first].start if first < len(toks) else start
    last_end = item_start
    for tok in toks[first:]:
        if depth == 0 and (tok.name in _LIST_END):
            break
        # CASE … END nests like parentheses: `CASE WHEN a IS DISTINCT FROM b …`
        # holds a FROM that does not end the list.
        if tok.name in _OPEN or tok.name == "CASE":
            depth += 1
        elif tok.name in _CLOSE or tok.name == "END_P":
            if depth == 0:
                break
            depth -= 1
        elif tok.name == _COMMA and depth == 0:
            items.append((item_start, last_end))
            item_start = -1
            continue
        if item_start == -1:
            item_start = tok.start
        last_end = tok.end
    items.append((item_start, last_end))
    return items


def call_span(toks: list[Token], start: int) -> tuple[int, int, list[tuple[int, int]]]:
    """A function call starting at `start`: its span and its argument spans."""
    index = _index_at(toks, start)
    while index < len(toks) and toks[index].name != "ASCII_40":
        index += 1
    if index == len(toks):
        raise RewriteError("42601", "syntax error: function call without arguments")
    depth = 0
    args: list[tuple[int, int]] = []
    arg_start = -1
    arg_end = -1
    for tok in toks[index:]:
        if tok.name in _OPEN:
            depth += 1
            if depth == 1:
                continue
        elif tok.name in _CLOSE:
            depth -= 1
            if depth == 0:
                if arg_start != -1:
                    args.append((arg_start, arg_end))
                return start, tok.end, args
        elif tok.name == _COMMA and depth == 1:
            args.append((arg_start, arg_end))
            arg_start = -1
            continue
        if arg_start == -1:
            arg_start = tok.start
        arg_end = tok.end
    raise RewriteError("42601", "syntax error: unbalanced parentheses")


def case_parts(toks: list[Token], start: int) -> list[tuple[str, int, int]]:
    """The parts of the CASE expression at `start`: ("WHEN" | "THEN" | "ELSE", span)
    in order, found at the CASE's own nesting level (inner CASEs and parentheses
    are skipped)."""
    index = _index_at(toks, start)
    if index == len(toks) or toks[index].name != "CASE":
        raise RewriteError("XX000", "CASE expression not found in the text")
    parts: list[tuple[str, int, int]] = []
    depth = 0  # parentheses and nested CASE ... END
    kind, part_start, part_end = "", -1, -1
    for tok in toks[index + 1 :]:
        if depth == 0 and tok.name in ("WHEN", "THEN", "ELSE", "END_P"):
            if kind:
                parts.append((kind, part_start, part_end))
            if tok.name == "END_P":
                return parts
            kind, part_start, part_end = tok.name, -1, -1
            continue
        if tok.name in _OPEN or tok.name == "CASE":
            depth += 1
        elif tok.name in _CLOSE or tok.name == "END_P":
            depth -= 1
        if part_start == -1:
            part_start = tok.start
        part_end = tok.end
    raise RewriteError("42601", "syntax error: CASE without END")


def case_end(toks: list[Token], start: int) -> int:
    """The end of the CASE expression at `start` (its END included)."""
    index = _index_at(toks, start)
    depth = 0
    for tok in toks[index:]:
        if tok.name == "CASE":
            depth += 1
        elif tok.name == "END_P":
            depth -= 1
            if depth == 0:
                return tok.end
    raise RewriteError("42601", "syntax error: CASE without END")


def splice(sql: str, replacements: list[tuple[int, int, str]]) -> str:
    """Replace non-overlapping [start, end) spans of `sql`."""
    out: list[str] = []
    position = 0
    for start, end, text in sorted(replacements):
        if start < position:
            raise RewriteError("XX000", "overlapping rewrites")
        out.append(sql[position:start])
        out.append(text)
        position = end
    out.append(sql[position:])
    return "".join(out)


def position_before(
    replacements: list[tuple[int, int, str]], position: int | None
) -> int | None:
    """A 1-based position in splice(sql, replacements), as a position in `sql`: a
    position inside a replacement is where the text it replaced starts."""
    if position is None:
        return None
    offset = position - 1
    shift = 0  # how much longer the spliced text is, so far
    for start, end, text in sorted(replacements):
        if offset < start + shift:
            break
        if offset < start + shift + len(text):
            return start + 1
        shift += len(text) - (end - start)
    return offset - shift + 1


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class AggregateParts:
    """The text of an aggregate call `f(a, b ORDER BY …) FILTER (WHERE …)`."""

    args: list[tuple[int, int]]  # each argument's span
    order: tuple[int, int] | None  # `ORDER BY …` inside the parentheses
    filter: tuple[int, int] | None  # `FILTER (…)` after them
    end: int  # the end of the whole call, FILTER included


def aggregate_parts(toks: list[Token], start: int) -> AggregateParts:
    """The argument, ORDER BY and FILTER spans of the aggregate call at `start`."""
    index = _index_at(toks, start)
    while index < len(toks) and toks[index].name != "ASCII_40":
        index += 1
    depth = 0
    args: list[tuple[int, int]] = []
    order_start = -1
    arg_start = arg_end = -1
    close = -1
    for position in range(index, len(toks)):
        tok = toks[position]
        if tok.name in _OPEN:
            depth += 1
            if depth == 1:
                continue
        elif tok.name in _CLOSE:
            depth -= 1
            if depth == 0:
                close = position
                break
        elif depth == 1 and order_start == -1 and tok.name == "ORDER":
            order_start = tok.start
        elif depth == 1 and order_start == -1 and tok.name == _COMMA:
            args.append((arg_start, arg_end))
            arg_start = -1
            continue
        if order_start == -1:
            if arg_start == -1:
                arg_start = tok.start
            arg_end = tok.end
    if close == -1:
        raise RewriteError("42601", "syntax error: unbalanced parentheses")
    if arg_start != -1:
        args.append((arg_start, arg_end))
    order = None if order_start == -1 else (order_start, toks[close - 1].end)
    end = toks[close].end
    filter_span = None
    if close + 1 < len(toks) and toks[close + 1].name == "FILTER":
        _, filter_end, _ = call_span(toks, toks[close + 1].start)
        filter_span = (toks[close + 1].start, filter_end)
        end = filter_end
    return AggregateParts(args, order, filter_span, end)


def ident_text(sql: str, tok: Token) -> str:
    """An identifier token's name as the parser reads it (folded, or unquoted)."""
    text = sql[tok.start : tok.end]
    if text.startswith('"') and text.endswith('"') and len(text) >= 2:
        return text[1:-1].replace('""', '"')
    return text.lower()


def alias_list(toks: list[Token], index: int) -> list[tuple[int, int]] | None:
    """The spans of the column names of `[AS] alias (a, b, …)`, the alias being
    token `index` or the one after an AS there; None if the text is not that."""
    if index < len(toks) and toks[index].name == "AS":
        index += 1
    index += 1
    if index >= len(toks) or toks[index].name != "ASCII_40":
        return None
    spans: list[tuple[int, int]] = []
    index += 1
    while index + 1 < len(toks):
        spans.append((toks[index].start, toks[index].end))
        following = toks[index + 1].name
        if following == "ASCII_41":
            return spans
        if following != _COMMA:
            return None
        index += 2
    return None


def enclosing_close(toks: list[Token], first: int, last: int) -> list[int]:
    """Indexes of the closing parentheses of the pairs that enclose the offsets
    `first` … `last`, innermost first."""
    opens: list[int] = []
    found: list[tuple[int, int]] = []
    for index, tok in enumerate(toks):
        if tok.name == "ASCII_40":
            opens.append(index)
        elif tok.name == "ASCII_41" and opens:
            start = opens.pop()
            if toks[start].start < first and tok.start >= last:
                found.append((start, index))
    return [close for _, close in sorted(found, reverse=True)]


def table_as_select(sql: str) -> str:
    """Each `TABLE name` query written as the `SELECT * FROM name` it means, so
    that a relation the proxy expands (a decrypting view) sits in a FROM clause:
    wherever the query stands (a statement, a subquery, a CTE, a set operation's
    branch). Text that does not parse is left as it is (its error comes later)."""
    try:
        statements = parse_sql(sql)
    except ParseError:
        return sql
    finder = _TableQueries()
    for raw in statements:
        finder(raw)
    if not finder.relations:
        return sql
    toks = tokens(sql)
    replacements: list[tuple[int, int, str]] = []
    for location in sorted(set(finder.relations)):
        keyword = [t for t in toks if t.start < location and t.name == "TABLE"]
        if keyword:
            replacements.append((keyword[-1].start, keyword[-1].end, "SELECT * FROM"))
    return splice(sql, replacements)


class _TableQueries(Visitor):  # type: ignore[misc]
    """The relations' locations of `TABLE name` queries: PostgreSQL's parser
    makes them a SelectStmt whose `*` and select-list item have no location."""

    def __init__(self) -> None:
        self.relations: list[int] = []

    def visit_SelectStmt(self, ancestors: Any, node: ast.SelectStmt) -> None:
        targets = node.targetList or ()
        items = node.fromClause or ()
        if not (len(targets) == 1 and len(items) == 1):
            return
        (target,), (item,) = targets, items
        if (
            target.location is None
            and isinstance(target.val, ast.ColumnRef)
            and target.val.location is None
            and isinstance(item, ast.RangeVar)
            and item.location is not None
        ):
            self.relations.append(item.location)
