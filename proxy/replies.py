"""Replies that rewrite results of rewritten statements on their way to the client.

RowDescription is replaced by what the client would see with pgsodium; each DataRow
is transformed as it arrives. If computing a value fails mid-stream, no further row
of that statement reaches the client and its error takes the place of the command's
completion, as when PostgreSQL fails while producing rows.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from keystore.errors import KeystoreError
from rewriter.errors import RewriteError

from . import codec
from .codec import Frame
from .columns import Layout
from .errors import ProxyError
from .router import Reply

if TYPE_CHECKING:
    from .execution import Execution

log = logging.getLogger(__name__)
_ROW_ERRORS = (KeystoreError, RewriteError, ProxyError)

T, D, C, I, S, Z, E = (ord(c) for c in "TDCIsZE")  # noqa: E741 (message types)


class QueryReply(Reply):
    """The reply to a rewritten simple Query: one result per statement."""

    sync_like = True

    def __init__(self, execution: Execution, *, guarded: bool = False) -> None:
        super().__init__(b"Z")
        self.execution = execution
        self.index = 0
        self.layout: Layout | None = None
        self.error: ProxyError | None = None
        # Inside the proxy's own guard block (Interceptor._guarded_query): the
        # ReadyForQuery is the proxy's to answer, once it has committed or not.
        self.guarded = guarded
        self.status = ""
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def feed(self, frame: Frame, out: list[bytes]) -> bool:
        kind = frame.type
        if kind == Z:
            return self._ready(frame, out)
        if self.error is not None:
            return False  # after our error nothing more of this query is shown
        if kind == T:
            fields = codec.decode_backend(frame).fields
            try:
                self.layout = self.execution.make_layout(self.index, fields)
            except _ROW_ERRORS as exc:
                self.error = self.execution.row_failed(exc)
                out.append(self.error.to_error_response())
                return False
            out.append(
                frame.raw if self.layout.identity else self.layout.row_description()
            )
        elif kind == D and self.layout is not None and not self.layout.identity:
            try:
                out.append(self._row(frame))
            except _ROW_ERRORS as exc:
                self.error = self.execution.row_failed(exc)
                out.append(self.error.to_error_response())
        else:
            if kind in (C, I):
                self.index += 1
                self.layout = None
            out.append(frame.raw)
        return False

    def _row(self, frame: Frame) -> bytes:
        assert self.layout is not None
        return self.layout.transform(frame.body, self.execution.bytea_output)

    def feed_rows(self, frames: list[Frame], start: int, out: list[bytes]) -> int:
        layout = self.layout
        if self.error is not None or layout is None or layout.identity:
            return super().feed_rows(frames, start, out)
        end, self.error = _transform_run(self.execution, layout, frames, start, out)
        if self.error is None:
            return end
        out.append(self.error.to_error_response())  # as feed() answers it
        return super().feed_rows(frames, end + 1, out)

    def _ready(self, frame: Frame, out: list[bytes]) -> bool:
        status = chr(frame.body[0])
        self.status = status
        if not self.done.done():
            self.done.set_result(None)
        if self.guarded:
            return True
        if self.error is not None and status == "T":
            # The upstream's transaction block went on; ours failed. Say 'E' now and
            # make the upstream abort before the client's next message.
            self.execution.session.pending_abort = self.error
            out.append(codec.ready_for_query("E"))
        else:
            out.append(frame.raw)
        return True

    def skip(self) -> None:
        super().skip()
        if not self.done.done():
            self.done.set_result(None)


class DescribeReply(Reply):
    def __init__(self, execution: Execution, *, statement: bool) -> None:
        super().__init__(b"TnE")
        self.execution = execution
        self.statement = statement

    def feed(self, frame: Frame, out: list[bytes]) -> bool:
        kind = frame.type
        if kind == ord("t"):
            oids = codec.decode_backend(frame).type_oids[: self.execution.n_params]
            out.append(codec.ParameterDescription(tuple(oids)).encode())
            return False
        if kind == T:
            fields = codec.decode_backend(frame).fields
            try:
                layout = self.execution.make_layout(0, fields)
            except _ROW_ERRORS as exc:
                out.append(self.execution.row_failed(exc).to_error_response())
                return True
            out.append(layout.row_description())
            return True
        out.append(frame.raw)
        return kind in self.terminals


class ExecuteReply(Reply):
    """Rows of a rewritten portal; completes `done` so the caller can wait for it."""

    def __init__(self, execution: Execution) -> None:
        super().__init__(b"CIsE")
        self.execution = execution
        self.error: ProxyError | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def feed(self, frame: Frame, out: list[bytes]) -> bool:
        kind = frame.type
        finished = kind in self.terminals
        layout = self.execution.layout
        if self.error is None:
            if kind == D and layout is not None and not layout.identity:
                try:
                    out.append(
                        layout.transform(frame.body, self.execution.bytea_output)
                    )
                except _ROW_ERRORS as exc:
                    self.error = self.execution.row_failed(exc)
            elif not (finished and self.error is not None):
                out.append(frame.raw)
        if finished:
            self._finish()
        return finished

    def feed_rows(self, frames: list[Frame], start: int, out: list[bytes]) -> int:
        layout = self.execution.layout
        if self.error is not None or layout is None or layout.identity:
            return super().feed_rows(frames, start, out)
        end, self.error = _transform_run(self.execution, layout, frames, start, out)
        if self.error is None:
            return end
        return super().feed_rows(frames, end + 1, out)  # as feed() answers it

    def skip(self) -> None:
        super().skip()
        self._finish()

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


def _transform_run(
    execution: Execution,
    layout: Layout,
    frames: list[Frame],
    start: int,
    out: list[bytes],
) -> tuple[int, ProxyError | None]:
    """The DataRows of `frames` from `start` on, transformed into `out` in one
    loop: the end of the run, or the index of the row that failed and its error."""
    transform, bytea_output = layout.transform, execution.bytea_output
    end, count = start, len(frames)
    while end < count and frames[end].type == D:
        try:
            out.append(transform(frames[end].body, bytea_output))
        except _ROW_ERRORS as exc:
            return end, execution.row_failed(exc)
        end += 1
    return end, None
