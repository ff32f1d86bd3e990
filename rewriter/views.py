"""Views that users build over values the proxy computes: a read becomes the view's
definition, as a subquery the rest of the rewriter evaluates.

`create view my_keys as select id, decrypted_raw_key from pgsodium.decrypted_key`
read directly raises the stub's 0A000: the database cannot compute the value. In a
SELECT (or a cursor's) through the proxy, each reference to such a view becomes

    (SELECT <its columns> FROM (<its definition>) _pgsp_view
      WHERE NOT EXISTS (SELECT FROM ONLY <the view> WHERE false)) AS <its name>

whose definition the caller looked up (pg_get_viewdef, every name qualified) and
whose per-row values the rest of the rewriter computes as for any subquery. The
guard reads no row of the view, yet the database checks the current role's SELECT
privilege on it at every execution, as reading the view would (`ONLY` marks it as
the guard: it is never expanded itself). The caller offers
only views whose relations the current role reads with its own privileges anyway
(security_invoker, or its own view): the subquery reads them with the current
role's privileges, which is what the view itself would do. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pglast import ast
from pglast.visitors import Visitor

from . import sqltext
from .tce import _RangeVars, range_var_name, refuse_sampled_view

_ALIAS = "_pgsp_view"
_READS = (ast.SelectStmt, ast.DeclareCursorStmt)
_WRITES = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)


@dataclass(frozen=True)
class View:
    name: str  # as the statement names it (range_var_name)
    qualified: str  # schema.view, quoted
    columns: str  # its columns, quoted, in order
    definition: str  # pg_get_viewdef with names qualified


def read_names(statements: Sequence[ast.RawStmt]) -> list[str]:
    """The relation names the reading statements read, for the lookup."""
    return sorted({range_var_name(rv) for rv in _reads(statements)})


def expand(sql: str, statements: Sequence[ast.RawStmt], views: dict[str, View]) -> str:
    """`sql` with every read of one of `views` replaced by its definition."""
    for raw in statements:
        read = [rv for rv in _reads([raw]) if range_var_name(rv) in views]
        refuse_sampled_view(raw.stmt, read)
    toks = sqltext.tokens(sql)
    replacements = []
    for rv in _reads(statements):
        view = views.get(range_var_name(rv))
        if view is None:
            continue
        start, end = _name_span(toks, rv.location)
        definition = view.definition.strip().rstrip(";").rstrip()
        text = (
            f"(SELECT {view.columns} FROM ({definition}) {_ALIAS} WHERE NOT EXISTS "
            f"(SELECT FROM ONLY {view.qualified} WHERE false))"
        )
        if rv.alias is None:
            text += " AS " + sqltext.quote_ident(rv.relname)
        replacements.append((start, end, text))
    return sqltext.splice(sql, replacements) if replacements else sql


def _reads(statements: Sequence[ast.RawStmt]) -> list[ast.RangeVar]:
    """Relations read by SELECT and DECLARE … CURSOR statements: not a WITH
    query's name, nor the target of SELECT … INTO or of a write in WITH, nor
    `ONLY v` (which a subquery cannot stand for)."""
    found: list[ast.RangeVar] = []
    for raw in statements:
        stmt = raw.stmt
        if not isinstance(stmt, _READS):
            continue
        visitor = _RangeVars()
        visitor(stmt)
        targets = _Targets()
        targets(stmt)
        skip = {id(rv) for rv in targets.found}
        found += [rv for rv in visitor.found if id(rv) not in skip and rv.inh]
    return found


class _Targets(Visitor):  # type: ignore[misc]
    """RangeVars a statement writes or creates, not reads."""

    def __init__(self) -> None:
        self.found: list[ast.RangeVar] = []

    def visit(self, ancestors: Any, node: Any) -> None:
        if isinstance(node, _WRITES) and node.relation is not None:
            self.found.append(node.relation)
        elif isinstance(node, ast.IntoClause) and node.rel is not None:
            self.found.append(node.rel)


def _name_span(toks: list[sqltext.Token], location: int) -> tuple[int, int]:
    """The span of a (possibly qualified) relation name at `location`."""
    index = sqltext.index_at(toks, location)
    end = toks[index].end
    while (
        index + 2 < len(toks)
        and toks[index + 1].name == "ASCII_46"
        and toks[index + 1].start == end
    ):
        index += 2
        end = toks[index].end
    return location, end
