"""Transparent Column Encryption in the session: which statements, which rules.

Labels live upstream (pgsodium._proxy_label), so every session and every proxy
sees them. A session keeps the names of labelled tables and of their decrypting
views, read on the client's own connection and re-read when older than
NAMES_TTL_SECONDS or after DDL it passed on (always before the statement that
comes next, whatever its words); a statement whose bytes mention one
of them (or `SECURITY LABEL`, or `vault`) is parsed, its relations' rules are
looked up in the client's transaction, and rewriter.tce_write turns it into
pgsodium calls that the rest of the rewriter evaluates. A stale list never lets
plaintext be stored: such a write goes upstream as the client sent it (so that
one statement's plaintext does reach the database) and the guard trigger rejects
it; the view's decrypted columns raise the stub's 0A000 when read directly.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pglast import ast

from rewriter import sqltext, tce, vault
from rewriter.errors import RewriteError
from rewriter.tce_copy import CopyPlan, plan_copy
from rewriter.tce_reencrypt import ReencryptPlan
from rewriter.tce_write import plan_rewrite

from .codec import Frame, decode_frontend
from .errors import SQLSTATE, redacted_traceback
from .views import Views

if TYPE_CHECKING:
    from .session import Session

NAMES_TTL_SECONDS = 2.0
# SECURITY: the proxy's own queries name everything schema-qualified
# (proxy/lookup.py says why).
_INSTALLED = (
    "SELECT pg_catalog.to_regprocedure('pgsodium._proxy_tce_names()') IS NOT NULL, "
    "pg_catalog.to_regprocedure('pgsodium._proxy_view_names()') IS NOT NULL, "
    "pg_catalog.to_regprocedure('pgsodium._proxy_tce_version()') IS NOT NULL"
)
_LABEL = re.compile(rb"security\s+label", re.IGNORECASE)
_VAULT = re.compile(rb"vault|create_secret|update_secret|secrets", re.IGNORECASE)
# A statement that may change what is labelled, or the names of labelled tables and
# their views: a DDL keyword where a statement starts (after blanks and comments),
# or update_mask(s). The list is read again before the session's next statement.
_DDL = re.compile(
    rb"(?:^|;)(?:\s|--[^\n]*(?:\n|$)|/\*.*?\*/)*"
    rb"(?:create|alter|drop|do|security\s+label)(?![\w$])|update_mask",
    re.IGNORECASE | re.DOTALL,
)
# What each name resolves to now (names the proxy keeps, written unqualified).
_RESOLVE = (
    "SELECT x.n, ns.nspname::pg_catalog.text, c.relname::pg_catalog.text "
    "FROM pg_catalog.unnest($1::pg_catalog.text[]) AS x(n) "
    "JOIN pg_catalog.pg_class c "
    "ON c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(x.n) "
    "JOIN pg_catalog.pg_namespace ns "
    "ON ns.oid OPERATOR(pg_catalog.=) c.relnamespace"
)
# A `TABLE name` query, wherever it stands (rewritten as SELECT * FROM name when
# it may need us).
_TABLE = re.compile(rb"(?<![\w$])table(?![\w$])", re.IGNORECASE)
_PGSODIUM = re.compile(rb"pgsodium", re.IGNORECASE)
# What one of the patterns below needs in a statement, lowercased.
_WORDS = (b"label", b"vault", b"secret", b'u&"', b"prepare", b"execute", b"deallocate")
# SQL-level PREPARE / EXECUTE / DEALLOCATE (PrepareStmt text is kept by name).
_PREPARED = re.compile(rb"(?:^|;)\s*(?:prepare|execute|deallocate)\s", re.IGNORECASE)
# A Unicode-escaped identifier (U&"…") may name a labelled table in other letters.
_ESCAPED_NAME = re.compile(rb'u&"', re.IGNORECASE)
# A message that is one transaction-control statement and nothing else: no name,
# no value, nothing to rewrite. The label list is not refreshed for it: inside a
# transaction block that query would take the snapshot first, and PostgreSQL
# then refuses SET TRANSACTION ISOLATION LEVEL (25001, "must be called before any
# query"). A comment, a semicolon before the end or a dollar quote makes it
# anything else (refreshed as usual).
_TRANSACTION_ONLY = re.compile(
    rb"\s*(?:begin|start\s+transaction|set\s+(?:local\s+|session\s+)?transaction"
    rb"|set\s+session\s+characteristics|commit|end|rollback|abort|savepoint"
    rb"|release|prepare\s+transaction)\b(?:[^;'\"$/\\-]|'[^'\\]*')*;?\s*\x00",
    re.IGNORECASE,
)


class Tce:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.pattern: re.Pattern[bytes] | None = None
        self.loaded_at: float | None = None
        self.installed = False  # has the upstream pgsodium._proxy_tce_names()?
        # A fingerprint of the labels' rules (pgsodium._proxy_tce_version()), when
        # the schema has it: a statement prepared under another is prepared anew.
        self.versioned = False
        self.version: str | None = None
        # SQL PREPARE: the relation names of each prepared statement, by name.
        self.prepared_names: dict[str, tuple[str, ...]] = {}
        # Views users build over computed values (proxy/views.py); None until the
        # upstream is known to have pgsodium._proxy_view_names().
        self.views: Views | None = None
        # The last statement was COPY … FROM STDIN into a labelled table: its rows
        # are encrypted as they stream (rewriter.tce_copy, Session.copy_in).
        self.copy: CopyPlan | None = None
        # The last statement is an UPDATE that re-encrypts rows before it runs
        # (rewriter.tce_reencrypt, proxy.reencrypt).
        self.reencrypt: ReencryptPlan | None = None

    def stale(self) -> bool:
        return (
            self.loaded_at is None
            or time.monotonic() - self.loaded_at > NAMES_TTL_SECONDS
        )

    def mentions(self, body: bytes) -> bool:
        return self.mentions_tce(body) or (
            self.views is not None and self.views.mentioned(body)
        )

    def mentions_tce(self, body: bytes) -> bool:
        return self.pattern is not None and self.pattern.search(body) is not None

    def wants(self, frame: Frame) -> bool:
        if self.session.replication:
            return False  # no labels on a walsender: its upstream guard still holds
        body = frame.body
        if _TRANSACTION_ONLY.match(_statement_text(frame)):
            return False
        return self.stale() or self._maybe(body)

    def names_in(self, body: bytes) -> bool:
        """Whether a message's text may involve TCE (as the cheap check says)."""
        return self._maybe(body)

    def _watched(self, name: str) -> bool:
        """Whether a relation name is one the session keeps (a labelled table's,
        its view's, a partition's, a view over one, a view over computed values)."""
        encoded = name.encode("utf-8")
        return (
            self.pattern is not None and self.pattern.fullmatch(encoded) is not None
        ) or (
            self.views is not None
            and self.views.pattern is not None
            and self.views.pattern.fullmatch(encoded) is not None
        )

    def _maybe(self, body: bytes) -> bool:
        """Whether a statement may involve TCE or Vault (the cheap check): a name
        the session keeps, or a word of SECURITY LABEL, Vault, U&"…" or SQL
        PREPARE / EXECUTE (plain substrings first: most statements have none)."""
        if self.mentions(body):
            return True
        lowered = body.lower()
        if not any(word in lowered for word in _WORDS):
            return False
        return (
            _LABEL.search(body) is not None
            or _VAULT.search(body) is not None
            or _ESCAPED_NAME.search(body) is not None
            or _PREPARED.search(body) is not None
        )

    async def _refuse_unqualified_vault(self, frame: Frame) -> None:
        """Vault's functions and relations reached through search_path: the proxy
        would pass the call on as written, secret included (refused unless the
        schema is not on the path)."""
        interceptor = self.session.interceptor
        await interceptor.learn_search_path(frame)
        if interceptor.vault_on_path is not False:
            raise tce.refuse(
                "Vault's functions or views without their schema while vault is on "
                "the search_path (write vault.create_secret, vault.decrypted_secrets)"
            )

    def _sql_prepared(self, statements: Sequence[Any]) -> None:
        """SQL PREPARE and EXECUTE: the proxy rewrites a statement when it is sent,
        so a prepared one that names a labelled table (or reads Vault) cannot be
        rewritten when EXECUTE runs it: refused at PREPARE, and at EXECUTE when its
        table was labelled since."""
        for raw in statements:
            stmt = raw.stmt
            if isinstance(stmt, ast.PrepareStmt):
                inner = [ast.RawStmt(stmt=stmt.query)]
                if tce.read_from(inner, self._watched) or vault.mentions_vault(inner):
                    raise tce.refuse(
                        "PREPARE of a statement that names a table with encrypted "
                        "columns, a decrypting view or Vault (prepare it with the "
                        "protocol's Parse, as drivers do)"
                    )
                self.prepared_names[stmt.name] = tce.relnames(inner)
            elif isinstance(stmt, ast.ExecuteStmt):
                names = self.prepared_names.get(stmt.name, ())
                if any(self._watched(n) for n in names):
                    raise tce.refuse(
                        f"EXECUTE {stmt.name}: it was prepared before a table it "
                        "names got encrypted columns (DEALLOCATE it and prepare it "
                        "again with the protocol's Parse)"
                    )
            elif isinstance(stmt, ast.DeallocateStmt):
                if stmt.name is None:
                    self.prepared_names.clear()
                else:
                    self.prepared_names.pop(stmt.name, None)

    async def refresh(self) -> None:
        if self.session.transaction_status == "E":
            return
        if not self.installed:
            # A database without the proxy's schema (or with an older one) has no
            # labels; asking must not fail: that would abort the client's transaction.
            found = await self.session.internal((_INSTALLED, []))
            self.installed = found[0][0][0] == "t"
            if found[0][0][1] == "t":
                self.views = Views(self.session)
            self.versioned = found[0][0][2] == "t"
            if not self.installed:
                self.pattern = None
                self.loaded_at = time.monotonic()
                return
        queries = [("SELECT pgsodium._proxy_tce_names()", [])]
        if self.views is not None:
            queries.append(("SELECT pgsodium._proxy_view_names()", []))
        if self.versioned:
            queries.append(("SELECT pgsodium._proxy_tce_version()", []))
        rows = await self.session.internal(*queries)
        self.pattern = names_pattern(row[0] for row in rows[0])
        if self.views is not None:
            self.views.pattern = names_pattern(row[0] for row in rows[1])
        if self.versioned:
            self.version = rows[-1][0][0]
        self.loaded_at = time.monotonic()

    async def apply(self, frame: Frame, sql: str) -> str:
        """The statement text with TCE turned into pgsodium calls (and views over
        computed values into their definitions, proxy/views.py)."""
        self.copy = None
        self.reencrypt = None
        if self.session.replication:
            return sql
        body = frame.body
        if self.stale():
            # The names first: `TABLE t` as a session's first statement is known
            # as naming a labelled relation only once they are read.
            await self.refresh()
        if _TABLE.search(body) and (self._maybe(body) or _PGSODIUM.search(body)):
            client = sql
            sql = sqltext.table_as_select(sql)
            if sql != client:
                return await _unplaced(self._apply(frame, sql))
        return await self._apply(frame, sql)

    async def _apply(self, frame: Frame, sql: str) -> str:
        body = frame.body
        # SECURITY: the list must be fresh for this statement, whatever it says:
        # a stale one would let a write of a newly labelled table go up as it is.
        if self.stale():
            await self.refresh()
        if _DDL.search(body):
            self.loaded_at = None  # what is labelled may change: re-read next time
        if self.views is not None and self.views.mentioned(body):
            expanded = await self.views.expand(frame, sql)
            refusal: RewriteError | None = None
            if expanded is not None:
                try:
                    text = await self._rewrite(frame, expanded, looked_up=True)
                    await self.views.check(frame, text)
                    return text
                except RewriteError as exc:
                    refusal = exc  # the database may read the views as they stand
                    # Placed in the views' definitions, which the client never sent.
                    refusal.position = None
            # SECURITY: not with a value in the statement, which a condition on a
            # computed column of the view would take upstream (a search term).
            statements = tce.data_statements(tce.parse(sql))
            if tce.has_values(statements) and tce.read_from(
                statements, self._view_watched
            ):
                raise refusal or RewriteError(
                    SQLSTATE.FEATURE_NOT_SUPPORTED,
                    "pgsodium-proxy cannot evaluate a statement with literals or "
                    "parameters over a view of computed values that runs with its "
                    "owner's privileges (make it security_invoker, or read the "
                    "decrypting view itself)",
                )
        return await self._rewrite(frame, sql)

    def _view_watched(self, name: str) -> bool:
        views = self.views
        return (
            views is not None
            and views.pattern is not None
            and views.pattern.fullmatch(name.encode("utf-8")) is not None
        )

    async def _rewrite(self, frame: Frame, sql: str, looked_up: bool = False) -> str:
        """TCE and Vault turned into pgsodium calls. `looked_up`: the text holds
        view definitions, which may name labelled relations the client did not."""
        body = frame.body
        if not (looked_up or self._maybe(body)):
            return sql
        # SECURITY: a malformed statement is not passed on: a write of a labelled
        # table would take its plaintext to the database (and its log). tce.parse
        # raises the error PostgreSQL's parser gives, position included.
        statements = tce.parse(sql)
        self._sql_prepared(statements)
        if vault.unqualified(statements):
            await self._refuse_unqualified_vault(frame)
        relabelled = tce.labelled_then_named(statements)
        if relabelled is not None:
            raise RewriteError(
                SQLSTATE.FEATURE_NOT_SUPPORTED,
                f"pgsodium-proxy cannot evaluate a statement naming {relabelled} "
                "after SECURITY LABEL FOR pgsodium on it in the same Query message "
                "(its labels are read before the message runs): send the label as "
                "a Query of its own",
            )
        # SECURITY: names are resolved before the message runs; a statement of it
        # that changes their resolution first would send a write of a labelled
        # table (or of one named as it is) up without its encryption.
        renamed = tce.renamed_then_named(sql, statements, self._watched)
        if renamed is not None:
            raise RewriteError(
                SQLSTATE.FEATURE_NOT_SUPPORTED,
                f"pgsodium-proxy cannot evaluate a statement naming {renamed} after "
                "a statement that may change what names resolve to (SET "
                "search_path, set_config, a call of a user's function, DDL, COMMIT "
                "or ROLLBACK, ...) in the same Query message: send it as a Query of "
                "its own",
            )
        relations: dict[str, tce.Relation] = {}
        qualified: list[tuple[int, int, str]] = []  # names written schema-qualified
        guards: dict[str, str] = {}
        names = tce.relation_names(statements)
        if names and (
            looked_up or self.mentions_tce(body) or _ESCAPED_NAME.search(body)
        ):
            bare = {
                text: name
                for text, name in tce.unqualified(statements).items()
                if self._watched(name)
            }
            rows = await self.session.internal(
                (
                    "SELECT name, rules::pg_catalog.text "
                    "FROM pgsodium._proxy_tce_rules($1)",
                    [_text_array(names)],
                ),
                (_RESOLVE, [_text_array(list(bare))]),
            )
            for name, rules in rows[0]:
                assert name is not None and rules is not None
                relations[name] = tce.Relation.from_json(json.loads(rules))
            # Each name as it resolves now, written into the statement: it then
            # reaches the relation its labels are for, whatever search_path is
            # when it runs (a prepared statement, later).
            resolved = {
                row[0]: (row[1], row[2])
                for row in rows[1]
                if row[0] is not None and row[1] is not None and row[2] is not None
            }
            unresolved = tce.unresolved_data_name(statements, set(bare), resolved)
            if unresolved is not None:
                raise RewriteError(
                    SQLSTATE.FEATURE_NOT_SUPPORTED,
                    f"pgsodium-proxy cannot evaluate a statement naming {unresolved} "
                    "among other statements of a Query message: the name reaches no "
                    "relation now, yet a labelled table or decrypting view has it in "
                    "another schema, which a statement before it could make the name "
                    "reach; send it as a Query of its own",
                )
            if resolved:
                sql, renames, qualified = tce.qualify(sql, statements, resolved)
                if renames:
                    # Resolved before the message ran; a statement of it may yet
                    # change search_path in ways no text shows (an operator, a
                    # cast, a trigger): its values are guarded upstream.
                    if len(statements) > 1:
                        guards = {new: old for new, old in renames.items()}
                    statements = tce.parse(sql)
                    for new, old in renames.items():
                        if old in relations:
                            relations[new] = relations[old]
                    unguarded = tce.unguarded_write(statements, renames, set(relations))
                    if unguarded is not None:
                        raise RewriteError(
                            SQLSTATE.FEATURE_NOT_SUPPORTED,
                            f"pgsodium-proxy cannot write {unguarded} among other "
                            "statements of a Query message: a labelled table of that "
                            "name exists in another schema, which a statement before "
                            "it could make the name reach; send it as a Query of its "
                            "own",
                        )
        if not (
            relations
            or tce.has_security_label(statements)
            or vault.mentions_vault(statements)
        ):
            return sql
        if not self.installed and tce.has_security_label(statements):
            raise RewriteError(
                "3F000",
                "the pgsodium schema of pgsodium-proxy is not installed in this "
                "database",
                hint="Run `pgsodium-proxy init` for this database.",
            )
        self.copy = _copy_plan(frame, statements, relations)
        try:
            declared: tuple[int, ...] = ()
            if frame.type == ord("P"):
                declared = tuple(decode_frontend(frame).param_types)
            text, self.reencrypt = plan_rewrite(
                sql, statements, relations, declared, guards
            )
            return text
        except RewriteError as exc:
            # Placed in the qualified text: moved back to where the client wrote it.
            exc.position = sqltext.position_before(qualified, exc.position)
            raise
        except Exception as exc:
            # A bug in the TCE pass: the statement fails (XX000), the session lives.
            self.session.log(
                logging.ERROR, "TCE rewrite failed\n%s", redacted_traceback(exc)
            )
            raise RewriteError(
                SQLSTATE.INTERNAL_ERROR,
                "pgsodium-proxy internal error while planning this statement",
            ) from None


async def _unplaced(rewrite: Awaitable[str]) -> str:
    """A rewrite of text the client did not send as it is: its errors have no
    position (the message names the construct)."""
    try:
        return await rewrite
    except RewriteError as exc:
        exc.position = None
        raise


def _copy_plan(
    frame: Frame, statements: tuple[Any, ...], relations: dict[str, tce.Relation]
) -> CopyPlan | None:
    """The plan of a COPY FROM STDIN into a table with encrypted columns."""
    found = None
    for raw in statements:
        stmt = raw.stmt
        if not (isinstance(stmt, ast.CopyStmt) and stmt.is_from and stmt.relation):
            continue
        relation = relations.get(tce.range_var_name(stmt.relation))
        if relation is None or not any(c.encrypted for c in relation.columns):
            continue
        if frame.type != ord("Q") or len(statements) != 1:
            raise tce.refuse(
                "COPY FROM STDIN into a table with encrypted columns other than as "
                "a simple Query of its own"
            )
        found = plan_copy(stmt, relation)
    return found


def names_pattern(names: Iterable[str | None]) -> re.Pattern[bytes] | None:
    """The cheap check for relation names: any of them as a word, any case."""
    found = sorted({n for n in names if n}, key=len, reverse=True)
    if not found:
        return None
    return re.compile(
        rb"(?<![\w$])(?:"
        + b"|".join(re.escape(n.encode("utf-8")) for n in found)
        + rb")(?![\w$])",
        re.IGNORECASE,
    )


def text_array(values: list[str]) -> str:
    """A text[] literal of `values`, as a bind parameter's text."""
    return _text_array(values)


def _text_array(values: list[str]) -> str:
    quoted = ['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]
    return "{" + ",".join(quoted) + "}"


def _statement_text(frame: Frame) -> bytes:
    """A Query's or Parse's statement text, with its terminating NUL."""
    body = frame.body
    if frame.type == ord("P"):
        return body[body.find(b"\x00") + 1 :]
    return body
