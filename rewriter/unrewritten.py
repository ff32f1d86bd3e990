"""Statements whose queries the TCE and Vault passes leave as written: refused where
they would take a secret or a search term upstream.

CREATE TABLE AS, CREATE MATERIALIZED VIEW, EXPLAIN, definitions (views, rules,
defaults) and other utility statements hold expressions that are not expanded or
rewritten; passed on, their literals and bind values reach the database, its log
and, for a definition, its catalog. Each check runs on the parse tree, before any
byte of the statement goes upstream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pglast import ast
from pglast.enums import ObjectType
from pglast.visitors import Visitor

from .errors import RewriteError

_FEATURE_NOT_SUPPORTED = "0A000"


def check(
    stmt: Any,
    views: Sequence[ast.RangeVar],
    calls: Sequence[ast.FuncCall] = (),
) -> None:
    """Refuse `stmt`, which the caller does not rewrite, when it reads one of
    `views` (decrypting views, vault.decrypted_secrets) with a value in it, or
    calls one of `calls` (vault.create_secret/update_secret) at all. CREATE TABLE
    AS and CREATE MATERIALIZED VIEW over a decrypting view are refused with or
    without a value: the proxy decrypts only the rows it returns to the client."""
    what = statement_name(stmt)
    if calls:
        name = calls[0].funcname[-1].sval
        # SECURITY: the call would go up with its arguments, the secret among them,
        # as written (and be kept in the catalog by a definition).
        raise _refuse(
            f"call vault.{name}() in {what}: its secret would reach the database "
            "as written (call it in a SELECT, INSERT or UPDATE of its own)",
            calls[0].location,
        )
    if not views:
        return
    if isinstance(stmt, ast.CreateTableAsStmt):
        raise _refuse(
            f"read {_name(views[0])} in {what}: the proxy decrypts only the rows "
            "it returns to the client, and any value compared with a decrypted "
            "one would reach the database as written",
            views[0].location,
        )
    if has_values(stmt):
        # SECURITY: a value compared with a decrypted column (a search term) would
        # go up as written; the proxy rewrites such searches in SELECT only.
        raise _refuse(
            f"read {_name(views[0])} in {what} with literals or parameters: a "
            "value compared with a decrypted one would reach the database as "
            "written (the proxy rewrites such comparisons in SELECT)",
            views[0].location,
        )


def statement_name(stmt: Any) -> str:
    """How the client wrote the statement's kind, for a message."""
    if isinstance(stmt, ast.CreateTableAsStmt):
        if stmt.objtype == ObjectType.OBJECT_MATVIEW:
            return "CREATE MATERIALIZED VIEW"
        return "CREATE TABLE AS"
    if isinstance(stmt, ast.ExplainStmt):
        return "EXPLAIN"
    names = {
        ast.ViewStmt: "CREATE VIEW",
        ast.RuleStmt: "CREATE RULE",
        ast.CreateStmt: "CREATE TABLE",
        ast.AlterTableStmt: "ALTER TABLE",
        ast.CreateFunctionStmt: "CREATE FUNCTION",
        ast.CreateTrigStmt: "CREATE TRIGGER",
        ast.CreatePolicyStmt: "CREATE POLICY",
        ast.AlterPolicyStmt: "ALTER POLICY",
        ast.CreateDomainStmt: "CREATE DOMAIN",
        ast.AlterDomainStmt: "ALTER DOMAIN",
        ast.IndexStmt: "CREATE INDEX",
        ast.CallStmt: "CALL",
        ast.DeleteStmt: "DELETE",
        ast.MergeStmt: "MERGE",
        ast.CopyStmt: "COPY",
    }
    return names.get(type(stmt), "this statement")


class _Values(Visitor):  # type: ignore[misc]
    def __init__(self) -> None:
        self.found = False

    def visit_A_Const(self, ancestors: Any, node: ast.A_Const) -> None:
        self.found = self.found or not node.isnull

    def visit_ParamRef(self, ancestors: Any, node: ast.ParamRef) -> None:
        self.found = True


def has_values(stmt: Any) -> bool:
    """Whether a statement holds a literal (not NULL) or a bind parameter."""
    visitor = _Values()
    visitor(stmt)
    return visitor.found


def _name(rv: ast.RangeVar) -> str:
    return ".".join(p for p in (rv.schemaname, rv.relname) if p)


def _refuse(what: str, location: int | None) -> RewriteError:
    error = RewriteError(_FEATURE_NOT_SUPPORTED, f"pgsodium-proxy cannot {what}")
    error.position = None if location is None or location < 0 else location + 1
    return error
