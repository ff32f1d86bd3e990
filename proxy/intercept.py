"""Statements that involve pgsodium: plan, look up keys upstream, compute, rewrite.

Every proxy-side error is raised upstream too (pgsodium._proxy_raise) so that the
upstream transaction and the protocol state are exactly what PostgreSQL would have
after the same error: aborted block, skip until Sync. Proxy lookups use a named
statement and portal of their own and end with Flush, never Sync, so they join the
client's transaction and never disturb its unnamed statement or portal.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pglast import ast, parse_sql
from pglast.parser import ParseError

from keystore.derive import Env
from keystore.errors import KeystoreError, PgsodiumError
from rewriter.analyze import analyze
from rewriter.errors import RewriteError
from rewriter.plan import Plan
from rewriter.tce_copy import CopyPlan, CopyRows

from . import codec, metrics
from .codec import Frame
from .errors import SQLSTATE, ProxyError, redacted_message, redacted_traceback
from .execution import (
    CountingEvaluator,
    Execution,
    FetchExecution,
    LookupFailed,
    Skipped,
    default_arg,
)
from .lookup import (
    all_key_materials,
    encoding_may_change,
    encoding_refused,
    lookup,
    utf8_session,
)
from .owned import Owned, Replaced
from .reencrypt import TCE_DECRYPT, TCE_ENCRYPT
from .router import Collect, Hidden, PassThrough, Reply, Swallow, SyncReply
from .tce import Tce

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger(__name__)

# SECURITY: statements may quote keys or plaintext, and an unkeyed hash of a short
# secret can be searched for; so the debug log's fingerprints are keyed, with a
# key of this process alone (they match within one run of the proxy only).
_FINGERPRINT_KEY = secrets.token_bytes(16)


def statement_fingerprint(body: bytes) -> str:
    """A short keyed fingerprint of a message, to follow it through the log."""
    return hashlib.blake2b(body, digest_size=6, key=_FINGERPRINT_KEY).hexdigest()


# Cheap check on raw message bytes, before any parsing: anything that could name a
# pgsodium function, view or proxy-internal object.
_TRIGGER = re.compile(
    rb"pgsodium|crypto_|derive_key|create_key|randombytes_|sodium_|decrypted_key"
    rb"|_proxy_",
    re.IGNORECASE,
)
# Statements that may change what an unqualified name resolves to.
_PATH_CHANGE = re.compile(rb"search_path|discard|reset", re.IGNORECASE)
_PLAN_CACHE_SIZE = 512
# A prepared statement's Vault call, rewritten for each execution (_fresh_statement).
_VAULT_WRITE = re.compile(r"vault\._proxy_(?:create|update)_secret")
_FRESH = "_pgsodium_proxy_vault"
# A statement that may read a cursor (FETCH; MOVE returns no rows).
_FETCH = re.compile(rb"fetch", re.IGNORECASE)
# Cursors over computed rows open at once in a session. One more is refused
# (54000) rather than forgotten: a forgotten cursor would be read back with its
# marker columns (inputs, not values). Cursors without WITH HOLD are forgotten
# when their transaction block ends, as the upstream closes them then.
_CURSORS = 1024


_ENCODINGS = ("client_encoding", "server_encoding")
_SCS = "standard_conforming_strings"
# Statements that may change the current role, whose EXECUTE privileges a later
# pgsodium call in the same Query message would need.
_ROLE_CHANGE = re.compile(
    r"\b(role|session\s+authorization|reset|discard|set_config)\b", re.IGNORECASE
)


def _statement_text(frame: Frame) -> str:
    """A Query's or a Parse's SQL text, for the log (log.sql_text only)."""
    message = codec.decode_frontend(frame)
    return str(getattr(message, "sql", None) or getattr(message, "query", ""))


_PARSE, _BIND, _CLOSE = ord("P"), ord("B"), ord("C")
_STATEMENT_KINDS = frozenset({_PARSE, _BIND, _CLOSE})
_TEXT_KINDS = frozenset({ord("Q"), _PARSE})
# Messages that cannot run code in the server. Any other may (a Bind plans the
# unnamed statement, folding an immutable function; a domain's CHECK reads a bind
# value; a Sync commits and runs deferred triggers): proxy/owned.py counts them.
_RUNS_NOTHING = frozenset({ord("D"), ord("H")})  # Describe, Flush


def _first_string(body: bytes) -> bytes:
    """A message's first NUL-terminated string (a statement's name)."""
    return body.split(b"\0", 1)[0]


def involves_pgsodium(body: bytes) -> bool:
    return _TRIGGER.search(body) is not None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Interceptor:
    def __init__(self, session: Session) -> None:
        self.session = session
        self._statement: Frame | None = None  # the last Query or Parse handled
        self.statements: dict[str, Execution] = {}
        # Prepared statements that call vault.create_secret/update_secret: each
        # Bind rewrites them again (a new secret id and nonce for each execution,
        # as Vault draws them) and parses that upstream under _FRESH.
        self.fresh: dict[str, tuple[Frame, str, tuple[int, ...]]] = {}
        self.portals: dict[str, Execution] = {}
        # Which portals and cursors are still the proxy's own (proxy/owned.py).
        self.owned = Owned(session)
        self._plans: OrderedDict[tuple[str, bool, tuple[int, ...]], list[Plan]] = (
            OrderedDict()
        )
        # Is schema pgsodium on the session's search_path? None: not known (yet).
        self.on_path: bool | None = None
        self.vault_on_path: bool | None = None  # found with on_path
        # How the Query or Parse being handled is evaluated (for metrics only).
        self.strategy = "passthrough"
        # Cursors declared over computed rows: name -> (execution, statement index).
        self.cursors: OrderedDict[str, tuple[Execution, int]] = OrderedDict()
        # Cursor name -> the ReadyForQuery from which it is closed (None: WITH HOLD).
        self._closes_at: dict[str, int | None] = {}
        self.tce = Tce(session)
        # Every prepared statement's Parse and the labels' fingerprint when it was
        # parsed: one that names a labelled table and was parsed under other
        # labels (or before its table was labelled) is parsed again before it
        # runs, so its writes are encrypted under the labels as they are now.
        self.prepared: dict[bytes, tuple[Frame, str | None]] = {}
        self._parse_reply: Callable[[], Reply] = lambda: PassThrough(b"1E")

    # -- deciding --------------------------------------------------------------------

    def wants(self, frame: Frame) -> bool:
        kind = frame.type
        if kind not in _RUNS_NOTHING:
            self.owned.ran()
        if kind in _STATEMENT_KINDS and self.tce.versioned:
            if kind == _PARSE:
                self.prepared[_first_string(frame.body)] = (frame, self.tce.version)
            elif kind == _CLOSE and frame.body[:1] == b"S":
                self.prepared.pop(_first_string(frame.body[1:]), None)
            elif kind == _BIND and self._may_replan(frame):
                return True
        if kind in _TEXT_KINDS:
            if _PATH_CHANGE.search(frame.body):
                self.on_path = self.vault_on_path = None
            if self.cursors and _FETCH.search(frame.body):
                return True
            if involves_pgsodium(frame.body) or self.tce.wants(frame):
                return True
            metrics.PASSTHROUGH.inc()
            return False
        if not (self.statements or self.portals or self.cursors):
            return False
        if kind == ord("B"):
            message = codec.decode_frontend(frame)
            return message.statement in self.statements
        if kind in (ord("D"), ord("E")):
            message = codec.decode_frontend(frame)
            name = message.name if kind == ord("D") else message.portal
            if kind == ord("E") or message.kind == "P":
                # A cursor declared in SQL is also a portal of the protocol.
                return name in self.portals or name in self.cursors
            return name in self.statements
        return False

    def forget(self, frame: Frame) -> None:
        """A message forwarded untouched may replace or close a rewritten one."""
        if not (self.statements or self.portals or self.cursors):
            return
        kind = frame.type
        if kind in (ord("P"), ord("B"), ord("C")):
            message = codec.decode_frontend(frame)
            if kind == ord("P"):
                self.statements.pop(message.name, None)
                self.fresh.pop(message.name, None)
            elif kind == ord("B"):
                self.portals.pop(message.portal, None)
                self.owned.closed(message.portal)
            elif message.kind == "S":
                self.statements.pop(message.name, None)
                self.fresh.pop(message.name, None)
            else:
                self._drop(message.name)

    def _drop(self, name: str) -> None:
        """Portal or cursor `name` is no longer one the proxy computes rows of."""
        self.portals.pop(name, None)
        self.cursors.pop(name, None)
        self._closes_at.pop(name, None)
        self.owned.closed(name)

    async def learn_search_path(self, frame: Frame) -> None:
        """Ask the upstream once whether unqualified names may be pgsodium's.

        Not while the message itself may change the search_path: the answer would
        be stale once it ran; the next message asks again.
        """
        if self.on_path is not None or _PATH_CHANGE.search(frame.body):
            return
        try:
            rows = await self.session.internal(
                (
                    # SECURITY: qualified, as lookup.CHECK_SQL is.
                    "SELECT 'pgsodium' OPERATOR(pg_catalog.=) ANY "
                    "(pg_catalog.current_schemas(true)), 'vault' "
                    "OPERATOR(pg_catalog.=) ANY (pg_catalog.current_schemas(true))",
                    [],
                )
            )
        except (LookupFailed, Skipped):
            return  # the statement itself will fail upstream as it would anyway
        self.on_path = rows[0][0][0] == "t"
        self.vault_on_path = rows[0][0][1] == "t"

    def plans(self, sql: str, declared: tuple[int, ...]) -> list[Plan]:
        """The statement's plans; none for text PostgreSQL refuses before parsing."""
        if not _is_utf8(sql):
            return self._not_utf8()
        if "\\" in sql and self.session.parameters.get(_SCS) == "off":
            # pglast reads string literals as standard_conforming_strings = on
            # does; with it off, '\\x41' means other bytes. Refused, not guessed.
            raise RewriteError(
                SQLSTATE.FEATURE_NOT_SUPPORTED,
                "pgsodium-proxy cannot evaluate a pgsodium statement with "
                "backslashes while standard_conforming_strings is off: use bind "
                "parameters, or turn it on",
            )
        on_path = bool(self.on_path)
        key = (sql, on_path, declared)
        cached = self._plans.get(key)
        if cached is not None:
            self._plans.move_to_end(key)
            return cached
        try:
            plans = analyze(sql, on_path=on_path, declared=declared)
        except RewriteError:
            raise
        except Exception as exc:
            # A bug in the rewriter: the statement fails (XX000), the session lives.
            self.session.log(
                logging.ERROR, "planning failed\n%s", redacted_traceback(exc)
            )
            raise RewriteError(
                SQLSTATE.INTERNAL_ERROR,
                "pgsodium-proxy internal error while planning this statement",
            ) from None
        self._plans[key] = plans
        if len(self._plans) > _PLAN_CACHE_SIZE:
            self._plans.popitem(last=False)
        return plans

    def _note_strategy(self, plans: list[Plan], reencrypt: bool = False) -> None:
        if reencrypt or any(p.deferred or p.rows for p in plans):
            self.strategy = "per_row"
        elif any(p.rewrites for p in plans):
            self.strategy = "fold"

    def _not_utf8(self) -> list[Plan]:
        """Bytes that are not UTF-8 (the codec kept them as surrogate escapes).

        With client and server encoding UTF8, PostgreSQL checks a Query's or
        Parse's text before it parses anything and answers 22021: forwarded
        untouched, the client gets exactly that. Under any other encoding the text
        would reach the parser, so a pgsodium call in it is refused here.
        """
        parameters = self.session.parameters
        if all(parameters.get(p) == "UTF8" for p in _ENCODINGS):
            return []
        self._check_encoding()
        raise RewriteError(
            SQLSTATE.FEATURE_NOT_SUPPORTED,
            "pgsodium-proxy evaluates pgsodium calls only in UTF8 text "
            "(client_encoding and server_encoding UTF8)",
        )

    def _check_encoding(self, plans: Sequence[Plan] = ()) -> None:
        """Refuse evaluating text the client reads and writes in another encoding
        than UTF-8 (lookup.utf8_session), as the session stands or as a statement
        of the same message may leave it before one the proxy evaluates. The
        upstream's own setting is checked again when the keys are looked up, after
        what the client sent ahead of this message ran (lookup.check_encoding)."""
        client = self.session.parameters.get("client_encoding")
        error = None
        if not utf8_session(client, self.session.parameters.get("server_encoding")):
            error = encoding_refused(client)
        changed = False
        for plan in plans:
            evaluated = plan.rewrites or plan.rows or plan.deferred
            if evaluated and (changed or plan.calls_set_config):
                error = error or encoding_may_change()
            changed = changed or plan.may_change_encoding
        if error is not None:
            raise RewriteError(error.sqlstate, error.message, hint=error.hint)

    def _check_upstream_encoding(self, client: str | None) -> None:
        """The upstream's client_encoding, when the proxy asked it (None: not)."""
        server = self.session.parameters.get("server_encoding")
        if client is not None and not utf8_session(client, server):
            error = encoding_refused(client)
            raise RewriteError(error.sqlstate, error.message, hint=error.hint)

    # -- handling --------------------------------------------------------------------

    async def handle(self, frame: Frame) -> None:
        handler = {
            ord("Q"): self._query,
            ord("P"): self._parse,
            ord("B"): self._bind,
            ord("D"): self._describe,
            ord("E"): self._execute,
        }[frame.type]
        if frame.type not in (ord("Q"), ord("P")):
            await handler(frame)
            return
        self.strategy = "passthrough"
        self._statement = frame  # for the log's statement text (log.sql_text)
        started = time.perf_counter()
        await handler(frame)
        elapsed = time.perf_counter() - started
        metrics.STATEMENTS.labels(self.strategy).inc()
        metrics.INTERCEPT_SECONDS.labels(self.strategy).observe(elapsed)
        if log.isEnabledFor(logging.DEBUG):
            self.session.log(
                logging.DEBUG,
                "%s statement %s (%d bytes): %s, %.3f ms of the proxy's own",
                "Query" if frame.type == ord("Q") else "Parse",
                statement_fingerprint(frame.body),
                len(frame.body),
                self.strategy,
                elapsed * 1000,
            )

    def _forward(self, frame: Frame, reply: Reply) -> None:
        self.session.write_upstream(frame.raw)
        self.session.push(reply)

    async def _query(self, frame: Frame) -> None:
        session = self.session
        if session.transaction_status == "E":
            # The upstream answers 25P02 itself; nothing of ours would run.
            self._forward(frame, SyncReply())
            return
        original = sql = codec.decode_frontend(frame).sql
        try:
            cursor = self._fetch_target(sql)
        except RewriteError as exc:
            await self.fail_simple(exc)
            return
        if cursor is not None:
            await self._fetch_query(frame, sql, cursor)
            return
        try:
            if not _is_utf8(sql):
                self._not_utf8()  # before TCE reads it, as plans() would
            sql = await self.tce.apply(frame, sql)
        except Skipped:
            self._forward(frame, SyncReply())
            return
        except LookupFailed as exc:
            self.session.push_emit(exc.error)
            self._sync()
            return
        except RewriteError as exc:
            await self.fail_simple(exc)
            return
        try:
            if (
                sql != original
                or self.tce.copy is not None
                or self.tce.reencrypt is not None
            ):
                self._check_encoding()
        except RewriteError as exc:
            await self.fail_simple(exc)
            return
        if self.tce.copy is not None:
            await self._copy_in(frame, self.tce.copy)
            return
        reencrypt = self.tce.reencrypt
        if sql == original and not involves_pgsodium(frame.body):
            self._forward(frame, SyncReply())  # it only said "fetch", or a TCE name
            return
        await self.learn_search_path(frame)
        try:
            plans = self.plans(sql, ())
        except RewriteError as exc:
            await self.fail_simple(_in_clients_text(exc, sql, original))
            return
        self._note_strategy(plans, reencrypt is not None)
        if not any(p.rewrites for p in plans) and reencrypt is None:
            if sql != original:
                self.session.write_upstream(codec.Query(sql).encode())
                self.session.push(SyncReply())
                return
            self._forward(frame, SyncReply())
            return
        try:
            self._check_encoding(plans)
        except RewriteError as exc:
            await self.fail_simple(exc)
            return
        declared = _fetched_where_declared(plans)
        if declared is not None:
            await self.fail_simple(
                RewriteError(
                    SQLSTATE.FEATURE_NOT_SUPPORTED,
                    f'pgsodium-proxy cannot evaluate FETCH from cursor "{declared}" '
                    "in the Query message that declares it: send the FETCH as a "
                    "statement of its own",
                )
            )
            return
        if _role_change_before_call(plans):
            await self.fail_simple(
                RewriteError(
                    "0A000",
                    "pgsodium-proxy cannot evaluate a pgsodium call after a statement "
                    "that may change the current role (SET ROLE, SET SESSION "
                    "AUTHORIZATION, RESET, DISCARD, DO, CALL, set_config, a user's "
                    "function, COMMIT or ROLLBACK) in the same Query message: send "
                    "the call as a Query of its own",
                )
            )
            return
        execution = Execution(self, sql, plans, extended=False)
        execution.reencrypt = reencrypt
        try:
            await execution.prepare(params={})
        except Skipped:
            self._forward(frame, SyncReply())
            return
        except LookupFailed as exc:
            self.session.push_emit(exc.error)
            self._sync()
            return
        except (RewriteError, KeystoreError, ProxyError) as exc:
            await self.fail_simple(exc)
            return
        try:
            for index, plan in enumerate(plans):
                self._remember_cursor(plan, execution, index)
        except RewriteError as exc:
            await self.fail_simple(exc)
            return
        try:
            text = execution.render_simple()
        except ProxyError as exc:
            await self.fail_simple(exc)
            return
        for plan in plans:
            if plan.cursor is not None:
                self.owned.opened(plan.cursor, text, alone=len(plans) == 1)
        if _needs_guard(plans, self.session.transaction_status):
            await self._guarded_query(execution, text)
            return
        self.session.write_upstream(codec.Query(text).encode())
        self.session.push(execution.query_reply())

    async def _fetch_query(
        self, frame: Frame, sql: str, cursor: tuple[Execution, int]
    ) -> None:
        """A Query that FETCHes from a cursor over computed rows: its rows are the
        proxy's to compute while the cursor is still the one it declared."""
        name = _cursor_name(cursor)
        try:
            self._check_encoding()
            lost, encoding = await self.owned.not_own(name)
            self._check_upstream_encoding(encoding)
        except Skipped:
            lost = []  # the upstream skips the FETCH too
        except LookupFailed as exc:
            self.session.push_emit(exc.error)
            self._sync()
            return
        except RewriteError as exc:
            await self.fail_simple(exc)
            return
        if lost:
            # Not the proxy's cursor any more: its rows are what they are.
            self._drop(name)
            self._forward(frame, SyncReply())
            return
        fetch = FetchExecution(self, sql, *cursor)
        self.strategy = "per_row"  # rows of a cursor over computed rows
        self._forward(frame, fetch.query_reply())

    async def _copy_in(self, frame: Frame, plan: CopyPlan) -> None:
        """COPY … FROM STDIN into a labelled table: the keys are looked up (and
        EXECUTE checked) on the client's connection first, then the statement goes
        up as it is and its rows are encrypted as they stream (Session.copy_in).
        Rows that name their own keys (KEY COLUMN labels) may need any aead-det
        key: all of them are read first, as the client's role."""
        self.strategy = "fold"
        keys = [(key_id, "aead-det") for key_id in plan.key_ids]
        try:
            found = await lookup(self.session, [TCE_ENCRYPT.regprocedure], keys, 0)
            materials = dict(found.materials)
            if plan.key_columns:
                materials.update(await all_key_materials(self.session))
        except Skipped:
            self._forward(frame, SyncReply())
            return
        except LookupFailed as exc:
            self.session.push_emit(exc.error)
            self._sync()
            return
        except ProxyError as exc:
            await self.fail_simple(exc)
            return
        if any(key not in materials for key in keys):
            await self.fail_simple(RewriteError("P0002", "query returned no rows"))
            return
        evaluator = CountingEvaluator(
            Env(self.session.server.root_key.secret), materials, default_arg
        )

        def encrypt(
            message: bytes, additional: bytes | None, nonce: bytes | None, key: str
        ) -> Any:
            return evaluator(TCE_ENCRYPT, [message, additional, key, nonce])

        def decrypts(
            value: bytes, additional: bytes | None, nonce: bytes | None, key: str
        ) -> bool:
            try:
                evaluator(TCE_DECRYPT, [value, additional, key, nonce])
            except PgsodiumError:
                return False
            return True

        self.session.copy_pending = CopyRows(plan, encrypt, decrypts)
        self._forward(frame, SyncReply())

    async def _guarded_query(self, execution: Execution, text: str) -> None:
        """A simple Query whose rows the proxy computes and that may change data,
        outside a transaction block: run it inside a block of the proxy's own, and
        commit only if every row was computed. PostgreSQL would run it as one
        implicit transaction that a failure undoes whole; without the block the
        upstream would have committed before the proxy sees the failing row.
        """
        session = self.session
        session.write_upstream(codec.Query("BEGIN").encode())
        session.push(Swallow())
        reply = execution.query_reply(guarded=True)
        session.write_upstream(codec.Query(text).encode())
        session.push(reply)
        session.flush_upstream()
        await reply.done
        committed = reply.error is None and reply.status == "T"
        end = Swallow(forward_errors=committed)  # a failed COMMIT is the client's
        session.write_upstream(
            codec.Query("COMMIT" if committed else "ROLLBACK").encode()
        )
        session.push(end)
        session.push_emit(codec.ready_for_query("I"))
        session.flush_upstream()
        await end.done

    def _fetch_target(self, sql: str) -> tuple[Execution, int] | None:
        """The cursor a FETCH reads, if it is one declared over computed rows."""
        if not self.cursors or not _FETCH.search(sql.encode("utf-8", "replace")):
            return None
        try:
            statements = parse_sql(sql)
        except (ParseError, UnicodeEncodeError):
            return None  # the upstream answers it with its own error
        names = [
            s.stmt.portalname
            for s in statements
            if isinstance(s.stmt, ast.FetchStmt) and not s.stmt.ismove
        ]
        known = [n for n in names if n in self.cursors]
        if not known:
            return None
        if len(statements) > 1:
            raise RewriteError(
                SQLSTATE.FEATURE_NOT_SUPPORTED,
                f'pgsodium-proxy cannot evaluate FETCH from cursor "{known[0]}" '
                "among other statements: send it as a statement of its own",
            )
        self.cursors.move_to_end(known[0])
        return self.cursors[known[0]]

    def _remember_cursor(self, plan: Plan, execution: Execution, index: int) -> None:
        """Called before the DECLARE goes upstream; raises when there is no room."""
        if plan.cursor is None:
            return
        if plan.cursor not in self.cursors and len(self.cursors) >= _CURSORS:
            raise RewriteError(
                "54000",
                f"pgsodium-proxy keeps at most {_CURSORS} cursors over computed rows "
                "open in one session: CLOSE some, or end the transaction",
            )
        self.cursors[plan.cursor] = (execution, index)
        self.cursors.move_to_end(plan.cursor)
        # The DECLARE's own ReadyForQuery is the next one queued; a cursor without
        # WITH HOLD is gone at the first idle ReadyForQuery from that one on.
        ends = None if plan.cursor_hold else self.session.router.syncs_pushed + 1
        self._closes_at[plan.cursor] = ends

    def transaction_ended(self, ready: int) -> None:
        """ReadyForQuery number `ready` said idle: the transaction block is over, and
        so are the cursors without WITH HOLD declared up to that point."""
        for name, ends in list(self._closes_at.items()):
            if ends is not None and ends <= ready:
                self._drop(name)

    def _sync(self) -> None:
        self.session.write_upstream(codec.Sync().encode())
        self.session.push(SyncReply())

    async def fail_simple(self, exc: Exception) -> None:
        """A simple Query fails: error upstream too, then ReadyForQuery."""
        await self.raise_upstream(exc)
        self._sync()

    @property
    def current_statement(self) -> Frame | None:
        """The Query or Parse message being handled (or the last one handled)."""
        return self._statement

    def log_failure(
        self, exc: Exception, error: ProxyError, statement: Frame | None
    ) -> None:
        """The log line of a statement the proxy refused or that failed in it,
        before it ran or while it computed its rows. `statement`: the Query or
        Parse message it came in."""
        # The client's statement is at fault (WARNING), or the proxy is (ERROR).
        # SECURITY: a message may quote a value the proxy computed (a decrypted
        # plaintext in a cast's error): redacted whatever log.sql_text says. That
        # setting adds the statement's text, as the client wrote it.
        ours = not isinstance(exc, (RewriteError, PgsodiumError))
        text = ""
        if self.session.server.config.log.sql_text and statement is not None:
            text = "; statement: " + _statement_text(statement)
        refused = error.sqlstate == SQLSTATE.FEATURE_NOT_SUPPORTED
        self.session.log(
            logging.ERROR if ours else logging.WARNING,
            "statement %s: %s %s%s",
            "refused" if refused else "failed",
            error.sqlstate,
            redacted_message(error.message),
            text,
        )

    async def raise_upstream(self, exc: Exception) -> None:
        error = to_proxy_error(exc)
        if error.sqlstate == SQLSTATE.FEATURE_NOT_SUPPORTED:
            self.strategy = "refused"
        self.log_failure(exc, error, self._statement)
        try:
            await self.session.internal(
                (
                    # Only to abort the transaction as the server would: the
                    # client's error is the proxy's own, below. SECURITY: what the
                    # message quotes (a literal of the statement) stays here.
                    "SELECT pgsodium._proxy_raise($1, $2)",
                    [error.sqlstate, redacted_message(error.message)],
                ),
                join=True,  # the error must leave the upstream as the client sees it
            )
        except (LookupFailed, Skipped):
            pass
        self.session.push_emit(error.to_error_response())

    # -- extended protocol ------------------------------------------------------------

    async def _parse(self, frame: Frame) -> None:
        message = codec.decode_frontend(frame)
        self.fresh.pop(message.name, None)
        try:
            cursor = self._fetch_target(message.query)
        except RewriteError as exc:
            await self.raise_upstream(exc)
            return
        if cursor is not None:
            try:
                self._check_encoding()
            except RewriteError as exc:
                await self._refuse_parse(message.name, exc)
                return
            fetch = FetchExecution(self, message.query, *cursor)
            fetch.upstream_sql = message.query
            self.strategy = "per_row"  # rows of a cursor over computed rows
            self._forward(frame, self._parse_reply())
            self.statements[message.name] = fetch
            await fetch.describe_statement(message.name)
            return
        query = message.query
        try:
            if not _is_utf8(query):
                self._not_utf8()  # before TCE reads it, as plans() would
            query = await self.tce.apply(frame, query)
        except Skipped:
            self.statements.pop(message.name, None)
            self._forward(frame, self._parse_reply())
            return
        except LookupFailed as exc:
            self.session.push_emit(exc.error)
            return
        except RewriteError as exc:
            await self._refuse_parse(message.name, exc)
            return
        try:
            if query != message.query or self.tce.reencrypt is not None:
                self._check_encoding()
        except RewriteError as exc:
            await self._refuse_parse(message.name, exc)
            return
        reencrypt = self.tce.reencrypt
        if query == message.query and not involves_pgsodium(frame.body):
            self.statements.pop(message.name, None)  # it only said "fetch", or TCE's
            self._forward(frame, self._parse_reply())
            return
        await self.learn_search_path(frame)
        try:
            plans = self.plans(query, tuple(message.param_types))
        except RewriteError as exc:
            await self._refuse_parse(
                message.name, _in_clients_text(exc, query, message.query)
            )
            return
        self._note_strategy(plans, reencrypt is not None)
        if (len(plans) != 1 or not plans[0].rewrites) and reencrypt is None:
            self.statements.pop(message.name, None)
            if query != message.query:
                parse = codec.Parse(message.name, query, tuple(message.param_types))
                self.session.write_upstream(parse.encode())
                self.session.push(self._parse_reply())
                return
            self._forward(frame, self._parse_reply())
            return
        try:
            self._check_encoding(plans)
            if plans[0].statement == "CopyStmt":
                # COPY takes no bind parameters, which is how the extended
                # protocol's folded values go up (the simple protocol's literals).
                raise RewriteError(
                    SQLSTATE.FEATURE_NOT_SUPPORTED,
                    "pgsodium-proxy cannot evaluate a pgsodium call in COPY over the "
                    "extended protocol: send it as a simple Query",
                )
        except RewriteError as exc:
            await self._refuse_parse(message.name, exc)
            return
        execution = Execution(self, query, plans, extended=True)
        execution.declared = tuple(message.param_types)
        execution.reencrypt = reencrypt
        try:
            text, types = execution.render_extended()
        except ProxyError as exc:
            await self._refuse_parse(message.name, exc)
            return
        execution.upstream_sql = text
        upstream = codec.Parse(message.name, text, tuple(types))
        self.session.write_upstream(upstream.encode())
        self.session.push(self._parse_reply())
        self.statements[message.name] = execution
        if _VAULT_WRITE.search(query):
            self.fresh[message.name] = (frame, message.query, execution.declared)
        else:
            self.fresh.pop(message.name, None)
        await execution.describe_statement(message.name)

    async def _refuse_parse(self, name: str, exc: Exception) -> None:
        if not name:
            # PostgreSQL drops the unnamed statement before parsing: a Bind or
            # Describe of it that follows must not find the previous one, here or
            # upstream.
            self.statements.pop("", None)
            self.session.write_upstream(codec.Close("S", "").encode())
            self.session.push(Collect(b"3"))
        await self.raise_upstream(exc)

    def _may_replan(self, frame: Frame) -> bool:
        """A Bind of a statement parsed untouched, while the labels may have
        changed since (the list is stale) or did."""
        name = frame.body.split(b"\0", 2)[1]
        return name in self.prepared and (self.tce.stale() or self._replan_needed(name))

    def _replan_needed(self, name: bytes) -> bool:
        parsed, version = self.prepared[name]
        return version != self.tce.version and self.tce.names_in(parsed.body)

    async def _replan(self, name: bytes) -> None:
        """Parse the client's statement again, as its own Parse would be now
        (rewritten for the labels it names), under its own name; the replies stay
        in the proxy, but for an error."""
        frame, _ = self.prepared[name]
        if name:
            self.session.write_upstream(codec.Close("S", name.decode()).encode())
            self.session.push(Hidden(b"3"))
        self._parse_reply = lambda: Hidden(b"1")
        try:
            await self._parse(frame)
        finally:
            self._parse_reply = lambda: PassThrough(b"1E")
        self.prepared[name] = (frame, self.tce.version)

    async def _bind(self, frame: Frame) -> None:
        message = codec.decode_frontend(frame)
        if not message.portal:
            # A Bind replaces the unnamed portal, whatever becomes of it: an
            # Execute after it must never find a previous statement's Execution.
            self.portals.pop("", None)
            self.owned.closed("")
        name = message.statement.encode()
        if self.tce.versioned and name in self.prepared:
            if self.tce.stale():
                try:
                    await self.tce.refresh()
                except (Skipped, LookupFailed):
                    pass  # an earlier error: the upstream skips this Bind anyway
            if self._replan_needed(name):
                await self._replan(name)
        if message.statement not in self.statements:
            # SECURITY: untouched, as _track forwards it: the portal it names is no
            # longer a rewritten one's (its rows would be transformed as those).
            self.forget(frame)
            self._forward(frame, PassThrough(b"2E"))
            return
        try:
            self._check_encoding()
        except RewriteError as exc:
            await self.raise_upstream(exc)
            return
        if message.statement in self.fresh:
            fresh = await self._fresh_statement(message.statement)
            if fresh is None:
                return
            execution = fresh.bound(replace(message, statement=_FRESH))
        else:
            execution = self.statements[message.statement].bound(message)
        try:
            upstream = await execution.bind()
        except Replaced:
            # Not the proxy's statement any more: its rows are what they are.
            self.statements.pop(message.statement, None)
            self.fresh.pop(message.statement, None)
            self.forget(frame)
            self._forward(frame, PassThrough(b"2E"))
            return
        except Skipped:
            self.forget(frame)
            self._forward(frame, PassThrough(b"2E"))
            return
        except LookupFailed as exc:
            self.session.push_emit(exc.error)
            return
        except (RewriteError, KeystoreError, ProxyError) as exc:
            await self.raise_upstream(exc)
            return
        try:
            self._remember_cursor(execution.plans[0], execution, 0)
        except RewriteError as exc:
            await self.raise_upstream(exc)
            return
        self.session.write_upstream(upstream.encode())
        self.session.push(PassThrough(b"2E"))
        self.portals[message.portal] = execution
        self.owned.opened(message.portal, execution.upstream_sql)
        # PostgreSQL checks privileges after a Bind's own code ran (a domain's
        # CHECK on a bind value, a function the planner folds): so does the
        # proxy, at Execute.
        execution.bind_ran_code = execution.may_run_code_at_bind()
        cursor = execution.plans[0].cursor
        if cursor is not None and not isinstance(execution, FetchExecution):
            self.owned.opened(cursor, execution.upstream_sql)

    async def _fresh_statement(self, name: str) -> Execution | None:
        """The client's prepared Vault call rewritten anew for one execution, and
        parsed upstream as _FRESH ahead of its Bind (the replies of the Close and
        Parse stay in the proxy, but for an error)."""
        frame, query, declared = self.fresh[name]
        try:
            sql = await self.tce.apply(frame, query)
            plans = self.plans(sql, declared)
        except (Skipped, LookupFailed):
            sql, plans = None, []
        except RewriteError as exc:
            await self.raise_upstream(exc)
            return None
        if not plans or len(plans) != 1 or not plans[0].rewrites:
            await self.raise_upstream(
                RewriteError(
                    SQLSTATE.INTERNAL_ERROR,
                    "pgsodium-proxy could not prepare this Vault call again",
                )
            )
            return None
        assert sql is not None
        fresh = Execution(self, sql, plans, extended=True)
        fresh.declared = declared
        fresh.described = self.statements[name].described
        text, types = fresh.render_extended()
        fresh.upstream_sql = text
        self.session.write_upstream(
            codec.Close("S", _FRESH).encode()
            + codec.Parse(_FRESH, text, tuple(types)).encode()
        )
        self.session.push(Hidden(b"3"))
        self.session.push(Hidden(b"1"))
        return fresh

    async def _describe(self, frame: Frame) -> None:
        message = codec.decode_frontend(frame)
        if message.kind == "P" and message.name not in self.portals:
            execution: Execution = FetchExecution(self, "", *self.cursors[message.name])
        else:
            table = self.statements if message.kind == "S" else self.portals
            execution = table[message.name]
        self.session.write_upstream(frame.raw)
        self.session.push(execution.describe_reply(statement=message.kind == "S"))

    async def _cursor_portal(self, name: str) -> Execution | None:
        """A cursor declared in SQL, executed as a portal: its rows, as FETCH's.

        None if the upstream refused to describe it (the cursor is gone): its error
        goes to the client in place of the Execute's, which the upstream now skips.
        No frames at all: the upstream skips until Sync, the Execute too.
        """
        fetch = FetchExecution(self, "", *self.cursors[name])
        frames = await self.session.internal_describe(name, kind="P")
        for described in frames:
            if described.type == ord("E"):
                self.session.push_emit(described.raw)
                return None
            if described.type == ord("T"):
                fields = codec.decode_backend(described).fields
                fetch.layout = fetch.make_layout(0, fields)
        return fetch

    async def _execute(self, frame: Frame) -> None:
        message = codec.decode_frontend(frame)
        execution: Execution | None = self.portals.get(message.portal)
        if (
            execution is not None
            and not isinstance(execution, FetchExecution)
            and (
                execution.bind_ran_code
                or not (
                    execution.plans[0].checked_at_bind
                    or self.owned.quiet(message.portal)
                )
            )
        ):
            try:
                await execution.recheck()
            except Skipped:
                pass  # the upstream skips this Execute too
            except LookupFailed as exc:
                self.session.push_emit(exc.error)
                return
            except (RewriteError, KeystoreError, ProxyError) as exc:
                await self.raise_upstream(exc)
                return
        if execution is None or any(p.deferred or p.rows for p in execution.plans):
            try:
                self._check_encoding()
            except RewriteError as exc:
                await self.raise_upstream(exc)
                return
        if not await self._reads_own(frame, message.portal, execution):
            return
        if execution is None:
            execution = await self._cursor_portal(message.portal)
        if execution is None:
            return
        reply = execution.execute_reply()
        if not any(p.deferred or p.rows for p in execution.plans):
            self._forward(frame, reply)
            return
        # Rows computed from rows can fail mid-stream: wait for this Execute to end
        # before anything else goes upstream, so a failure can still abort it.
        self.session.write_upstream(frame.raw + codec.Flush().encode())
        self.session.push(reply)
        self.session.flush_upstream()
        await reply.done
        if reply.error is not None:
            await self.raise_upstream(reply.error)

    async def _reads_own(
        self, frame: Frame, portal: str, execution: Execution | None
    ) -> bool:
        """Before an Execute whose rows the proxy reads as its own (a portal over
        computed rows, a cursor, a FETCH from one): whether the portal, and the
        cursor a FETCH reads, are still the ones the proxy opened (proxy/owned.py).
        Those that are not are forgotten, and the Execute goes up untouched."""
        if execution is not None and not any(
            p.deferred or p.rows for p in execution.plans
        ):
            return True  # its values were computed at Bind: no rows are read
        names = [portal]
        if isinstance(execution, FetchExecution):
            names.append(_cursor_name((execution.source, execution.index)))
        try:
            lost, encoding = await self.owned.not_own(*names)
            self._check_upstream_encoding(encoding)
        except Skipped:
            lost = []  # the upstream skips this Execute too
        except LookupFailed as exc:
            self.session.push_emit(exc.error)
            return False
        except RewriteError as exc:
            await self.raise_upstream(exc)
            return False
        if lost:
            for name in lost:
                self._drop(name)
            self._forward(frame, PassThrough(b"CIsE"))
            return False
        declared = None if execution is None else execution.plans[0].cursor
        if declared is not None and not isinstance(execution, FetchExecution):
            self.owned.read(declared)  # this Execute runs the DECLARE
        return True

    async def abort_upstream(self) -> None:
        """The client was told a transaction block failed: make the upstream agree."""
        error = self.session.pending_abort
        self.session.pending_abort = None
        assert error is not None
        reply = Swallow()
        text = (
            f"SELECT pgsodium._proxy_raise($${error.sqlstate}$$, "
            "$$aborted by pgsodium-proxy$$)"
        )
        self.session.write_upstream(codec.Query(text).encode())
        self.session.push(reply)
        self.session.flush_upstream()
        await reply.done


# Statements that must not run inside the proxy's guard block, or that end it.
_UNGUARDED = frozenset(
    {"TransactionStmt", "VacuumStmt", "CreatedbStmt", "DropdbStmt", "IndexStmt",
     "CreateTableSpaceStmt", "DropTableSpaceStmt", "ReindexStmt", "AlterSystemStmt"}
)  # fmt: skip


def _needs_guard(plans: list[Plan], transaction_status: str) -> bool:
    """Whether a simple Query needs the proxy's guard block (_guarded_query): it
    computes rows, runs outside a block, and is more than one plain SELECT."""
    if transaction_status != "I":
        return False  # inside a block the client's own block is aborted instead
    if not any(p.rows or p.deferred for p in plans):
        return False
    if any(p.statement in _UNGUARDED for p in plans):
        return False
    return len(plans) > 1 or plans[0].statement != "SelectStmt"


def _fetched_where_declared(plans: list[Plan]) -> str | None:
    """A cursor over computed rows declared in a Query message that also fetches
    (or moves): its rows would come back before the proxy knows the cursor."""
    for index, plan in enumerate(plans):
        if plan.cursor is not None and any(
            later.statement == "FetchStmt" for later in plans[index + 1 :]
        ):
            return plan.cursor
    return None


def _cursor_name(cursor: tuple[Execution, int]) -> str:
    execution, index = cursor
    name = execution.plans[index].cursor
    assert name is not None
    return name


def _role_change_before_call(plans: list[Plan]) -> bool:
    """Key lookups and EXECUTE checks run before the message does: a statement
    before the call that may change the role would make them use the wrong one."""
    changed = False
    for plan in plans:
        if changed and (plan.rewrites or plan.rows or plan.deferred):
            return True
        changed = (
            changed
            or plan.may_change_role
            or _ROLE_CHANGE.search(plan.text) is not None
        )
    return False


def to_proxy_error(exc: Exception) -> ProxyError:
    if isinstance(exc, ProxyError):
        return exc
    if isinstance(exc, (RewriteError, PgsodiumError)):
        return ProxyError(
            exc.sqlstate,
            exc.message,
            position=getattr(exc, "position", None),
            hint=getattr(exc, "hint", None),
            detail=getattr(exc, "detail", None),
        )
    return ProxyError(SQLSTATE.INTERNAL_ERROR, "pgsodium-proxy internal error")


def new_marker() -> str:
    """A column-alias prefix no client can predict."""
    return f"_pgsp_{secrets.token_hex(8)}_"


def decode_params(values: Any) -> Any:
    return values


def _in_clients_text(exc: RewriteError, sql: str, original: str) -> RewriteError:
    """An error found in the text TCE or Vault rewrote: its position would point
    into text the client never sent, so it has none (the message names the
    construct)."""
    if sql != original:
        exc.position = None
    return exc
