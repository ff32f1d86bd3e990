"""Statements that involve pgsodium: plan, look up keys upstream, compute, rewrite.

Every proxy-side error is raised upstream too (pgsodium._proxy_raise) so that the
upstream transaction and the protocol state are exactly what PostgreSQL would have
after the same error: aborted block, skip until Sync. Proxy lookups use a named
statement and portal of their own and end with Flush, never Sync, so they join the
client's transaction and never disturb its unnamed statement or portal.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from keystore.errors import KeystoreError, PgsodiumError
from rewriter.analyze import analyze
from rewriter.errors import RewriteError
from rewriter.plan import Plan

from . import codec
from .codec import Frame
from .errors import SQLSTATE, ProxyError
from .execution import Execution, LookupFailed, Skipped
from .router import Collect, PassThrough, Reply, SyncReply
from .tce import Tce

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger(__name__)

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


def involves_pgsodium(body: bytes) -> bool:
    return _TRIGGER.search(body) is not None


class Interceptor:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.statements: dict[str, Execution] = {}
        self.portals: dict[str, Execution] = {}
        self._plans: OrderedDict[tuple[str, bool, tuple[int, ...]], list[Plan]] = (
            OrderedDict()
        )
        # Is schema pgsodium on the session's search_path? None: not known (yet).
        self.on_path: bool | None = None
        self.tce = Tce(session)

    # -- deciding --------------------------------------------------------------------

    def wants(self, frame: Frame) -> bool:
        kind = frame.type
        if kind in (ord("Q"), ord("P")):
            if _PATH_CHANGE.search(frame.body):
                self.on_path = None
            return involves_pgsodium(frame.body) or self.tce.wants(frame)
        if not (self.statements or self.portals):
            return False
        if kind == ord("B"):
            message = codec.decode_frontend(frame)
            return message.statement in self.statements
        if kind in (ord("D"), ord("E")):
            message = codec.decode_frontend(frame)
            name = message.name if kind == ord("D") else message.portal
            table = (
                self.portals
                if kind == ord("E") or message.kind == "P"
                else self.statements
            )
            return name in table
        return False

    def forget(self, frame: Frame) -> None:
        """A message forwarded untouched may replace or close a rewritten one."""
        if not (self.statements or self.portals):
            return
        kind = frame.type
        if kind in (ord("P"), ord("B"), ord("C")):
            message = codec.decode_frontend(frame)
            if kind == ord("P"):
                self.statements.pop(message.name, None)
            elif kind == ord("B"):
                self.portals.pop(message.portal, None)
            elif message.kind == "S":
                self.statements.pop(message.name, None)
            else:
                self.portals.pop(message.name, None)

    async def learn_search_path(self, frame: Frame) -> None:
        """Ask the upstream once whether unqualified names may be pgsodium's.

        Not while the message itself may change the search_path: the answer would
        be stale once it ran; the next message asks again.
        """
        if self.on_path is not None or _PATH_CHANGE.search(frame.body):
            return
        try:
            rows = await self.session.internal(
                ("SELECT 'pgsodium' = ANY (current_schemas(true))", [])
            )
        except (LookupFailed, Skipped):
            return  # the statement itself will fail upstream as it would anyway
        self.on_path = rows[0][0][0] == "t"

    def plans(self, sql: str, declared: tuple[int, ...]) -> list[Plan]:
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
        except Exception:
            # A bug in the rewriter: the statement fails (XX000), the session lives.
            self.session.log(logging.ERROR, "planning failed", exc_info=True)
            raise RewriteError(
                SQLSTATE.INTERNAL_ERROR,
                "pgsodium-proxy internal error while planning this statement",
            ) from None
        self._plans[key] = plans
        if len(self._plans) > _PLAN_CACHE_SIZE:
            self._plans.popitem(last=False)
        return plans

    # -- handling --------------------------------------------------------------------

    async def handle(self, frame: Frame) -> None:
        handler = {
            ord("Q"): self._query,
            ord("P"): self._parse,
            ord("B"): self._bind,
            ord("D"): self._describe,
            ord("E"): self._execute,
        }[frame.type]
        await handler(frame)

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
        if sql == original and not involves_pgsodium(frame.body):
            self._forward(frame, SyncReply())  # nothing of TCE after all
            return
        await self.learn_search_path(frame)
        try:
            plans = self.plans(sql, ())
        except RewriteError as exc:
            await self.fail_simple(exc)
            return
        if not any(p.rewrites for p in plans):
            if sql != original:
                self.session.write_upstream(codec.Query(sql).encode())
                self.session.push(SyncReply())
                return
            self._forward(frame, SyncReply())
            return
        execution = Execution(self, sql, plans, extended=False)
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
        text = execution.render_simple()
        self.session.write_upstream(codec.Query(text).encode())
        self.session.push(execution.query_reply())

    def _sync(self) -> None:
        self.session.write_upstream(codec.Sync().encode())
        self.session.push(SyncReply())

    async def fail_simple(self, exc: Exception) -> None:
        """A simple Query fails: error upstream too, then ReadyForQuery."""
        await self.raise_upstream(exc)
        self._sync()

    async def raise_upstream(self, exc: Exception) -> None:
        error = to_proxy_error(exc)
        if isinstance(exc, (RewriteError, PgsodiumError)):
            self.session.log(
                logging.WARNING,
                "statement refused: %s %s",
                error.sqlstate,
                error.message,
            )
        else:
            self.session.log(logging.ERROR, "statement failed: %s", error.message)
        try:
            await self.session.internal(
                (
                    "SELECT pgsodium._proxy_raise($1, $2)",
                    [error.sqlstate, error.message],
                )
            )
        except (LookupFailed, Skipped):
            pass
        self.session.push_emit(error.to_error_response())

    # -- extended protocol ------------------------------------------------------------

    async def _parse(self, frame: Frame) -> None:
        message = codec.decode_frontend(frame)
        query = message.query
        try:
            query = await self.tce.apply(frame, query)
        except Skipped:
            self.statements.pop(message.name, None)
            self._forward(frame, PassThrough(b"1E"))
            return
        except LookupFailed as exc:
            self.session.push_emit(exc.error)
            return
        except RewriteError as exc:
            await self.raise_upstream(exc)
            return
        if query == message.query and not involves_pgsodium(frame.body):
            self.statements.pop(message.name, None)
            self._forward(frame, PassThrough(b"1E"))  # nothing of TCE after all
            return
        await self.learn_search_path(frame)
        try:
            plans = self.plans(query, tuple(message.param_types))
        except RewriteError as exc:
            await self.raise_upstream(exc)
            return
        if len(plans) != 1 or not plans[0].rewrites:
            self.statements.pop(message.name, None)
            if query != message.query:
                parse = codec.Parse(message.name, query, tuple(message.param_types))
                self.session.write_upstream(parse.encode())
                self.session.push(PassThrough(b"1E"))
                return
            self._forward(frame, PassThrough(b"1E"))
            return
        execution = Execution(self, query, plans, extended=True)
        execution.declared = tuple(message.param_types)
        text, types = execution.render_extended()
        upstream = codec.Parse(message.name, text, tuple(types))
        self.session.write_upstream(upstream.encode())
        self.session.push(PassThrough(b"1E"))
        self.statements[message.name] = execution
        await execution.describe_statement(message.name)

    async def _bind(self, frame: Frame) -> None:
        message = codec.decode_frontend(frame)
        execution = self.statements[message.statement].bound(message)
        try:
            upstream = await execution.bind()
        except Skipped:
            self._forward(frame, PassThrough(b"2E"))
            return
        except LookupFailed as exc:
            self.session.push_emit(exc.error)
            return
        except (RewriteError, KeystoreError, ProxyError) as exc:
            await self.raise_upstream(exc)
            return
        self.session.write_upstream(upstream.encode())
        self.session.push(PassThrough(b"2E"))
        self.portals[message.portal] = execution

    async def _describe(self, frame: Frame) -> None:
        message = codec.decode_frontend(frame)
        table = self.statements if message.kind == "S" else self.portals
        execution = table[message.name]
        self.session.write_upstream(frame.raw)
        self.session.push(execution.describe_reply(statement=message.kind == "S"))

    async def _execute(self, frame: Frame) -> None:
        message = codec.decode_frontend(frame)
        execution = self.portals[message.portal]
        reply = execution.execute_reply()
        if not any(p.deferred for p in execution.plans):
            self._forward(frame, reply)
            return
        # Rows computed from rows can fail mid-stream: wait for this Execute to end
        # before anything else goes upstream, so a failure can still abort it.
        self.session.write_upstream(frame.raw + codec.Flush().encode())
        self.session.push(reply)
        await reply.done
        if reply.error is not None:
            await self.raise_upstream(reply.error)

    async def abort_upstream(self) -> None:
        """The client was told a transaction block failed: make the upstream agree."""
        error = self.session.pending_abort
        self.session.pending_abort = None
        assert error is not None
        reply = Collect(b"Z")
        text = "SELECT pgsodium._proxy_raise($$%s$$, $$%s$$)" % (
            error.sqlstate,
            "aborted by pgsodium-proxy",
        )
        self.session.write_upstream(codec.Query(text).encode())
        self.session.push(reply)
        await reply.done


def to_proxy_error(exc: Exception) -> ProxyError:
    if isinstance(exc, ProxyError):
        return exc
    if isinstance(exc, (RewriteError, PgsodiumError)):
        return ProxyError(
            exc.sqlstate, exc.message, position=getattr(exc, "position", None)
        )
    return ProxyError(SQLSTATE.INTERNAL_ERROR, "pgsodium-proxy internal error")


def new_marker() -> str:
    """A column-alias prefix no client can predict."""
    return f"_pgsp_{secrets.token_hex(8)}_"


def decode_params(values: Any) -> Any:
    return values
