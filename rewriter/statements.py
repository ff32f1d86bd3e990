"""Kinds of statements, as the rewriter's passes need to tell them apart."""

from __future__ import annotations

from pglast import ast

# Statements that define objects whose expressions run later, in the server (a
# view read, a default taken, a rule or trigger fired): their pgsodium calls and
# relation names are passed on as written, never evaluated or expanded now.
DEFINITIONS = (
    ast.ViewStmt,
    ast.CreateStmt,
    ast.AlterTableStmt,
    ast.CreateFunctionStmt,
    ast.CreateTrigStmt,
    ast.RuleStmt,
    ast.IndexStmt,
    ast.CreateDomainStmt,
    ast.AlterDomainStmt,
    ast.CreatePolicyStmt,
    ast.AlterPolicyStmt,
    ast.CreateStatsStmt,
    ast.DefineStmt,
)
