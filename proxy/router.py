"""Route upstream replies to the request that caused them, in order.

PostgreSQL answers requests strictly in the order they were sent, so every request
the proxy forwards (or sends on its own) enqueues a Reply that consumes backend
messages until its terminal message. After an ErrorResponse to an extended-protocol
message the upstream discards everything until Sync (protocol §55.2.3); the Replies
queued for those discarded messages are resolved as skipped, never waited for.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from .codec import Frame

# Messages that may arrive at any time and belong to no request.
ASYNC_TYPES = frozenset(b"NAS")  # NoticeResponse, NotificationResponse, ParameterStatus
SESSION_TYPES = frozenset(b"AS")  # always the client's, whoever's request is answered

ERROR = ord("E")
READY = ord("Z")
DATA_ROW = ord("D")


class Reply:
    """Consumes the backend messages answering one request.

    `terminals` are the message types that end it; `sync_like` Replies (Query, Sync,
    FunctionCall) end with ReadyForQuery and are never skipped.
    """

    sync_like = False

    def __init__(self, terminals: bytes) -> None:
        self.terminals = frozenset(terminals)
        self.skipped = False

    def feed(self, frame: Frame, out: list[bytes]) -> bool:
        """Handle one message; append bytes for the client to `out`; True when done."""
        out.append(frame.raw)
        return frame.type in self.terminals

    def feed_rows(self, frames: list[Frame], start: int, out: list[bytes]) -> int:
        """feed() each DataRow of the run that starts at frames[start]; the index
        after the run. A DataRow ends no Reply, so the run is this one's."""
        end, count = start, len(frames)
        while end < count and frames[end].type == DATA_ROW:
            self.feed(frames[end], out)
            end += 1
        return end

    def skip(self) -> None:
        """The upstream discarded the request: it will get no reply."""
        self.skipped = True


class PassThrough(Reply):
    """Forwards every message untouched."""


class SyncReply(Reply):
    sync_like = True

    def __init__(self) -> None:
        super().__init__(b"Z")


class Collect(Reply):
    """A proxy-internal request: keeps its messages from the client, resolves a
    future."""

    def __init__(self, terminals: bytes, count: int = 1) -> None:
        super().__init__(terminals)
        self.remaining = count
        self.frames: list[Frame] = []
        self.done: asyncio.Future[list[Frame]] = (
            asyncio.get_running_loop().create_future()
        )

    def feed(self, frame: Frame, out: list[bytes]) -> bool:
        self.frames.append(frame)
        if frame.type == ERROR:
            self._finish()
            return True
        if frame.type in self.terminals:
            self.remaining -= 1
            if self.remaining == 0:
                self._finish()
                return True
        return False

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(self.frames)

    def skip(self) -> None:
        super().skip()
        self._finish()


class CollectToReady(Collect):
    """A proxy-internal request that ends with a Sync of its own: keeps every
    message up to and including its ReadyForQuery, an error among them."""

    sync_like = True

    def __init__(self) -> None:
        super().__init__(b"Z")

    def feed(self, frame: Frame, out: list[bytes]) -> bool:
        self.frames.append(frame)
        if frame.type == READY:
            self._finish()
            return True
        return False


class Swallow(Reply):
    """The reply to a Query the proxy sends on its own (ROLLBACK, an abort): every
    message up to and including its ReadyForQuery stays in the proxy, except, with
    `forward_errors`, an ErrorResponse the client must see (a failed COMMIT)."""

    sync_like = True

    def __init__(self, forward_errors: bool = False) -> None:
        super().__init__(b"Z")
        self.forward_errors = forward_errors
        self.error = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def feed(self, frame: Frame, out: list[bytes]) -> bool:
        if frame.type == ERROR:
            self.error = True
            if self.forward_errors:
                out.append(frame.raw)
        if frame.type != READY:
            return False
        if not self.done.done():
            self.done.set_result(None)
        return True

    def skip(self) -> None:
        super().skip()
        if not self.done.done():
            self.done.set_result(None)


class Hidden(Reply):
    """The reply to a message the proxy adds on its own among the client's in the
    extended protocol (a Close, a Parse): kept from the client, except an error,
    which the client then reads as the answer to its own next message."""

    def feed(self, frame: Frame, out: list[bytes]) -> bool:
        if frame.type == ERROR:
            out.append(frame.raw)
            return True
        return frame.type in self.terminals


class Emit(Reply):
    """Bytes the proxy itself sends to the client, in their place in the stream."""

    def __init__(self, data: bytes) -> None:
        super().__init__(b"")
        self.data = data


class Router:
    """The FIFO of pending Replies for one session."""

    def __init__(self, write_client: Callable[[bytes], None]) -> None:
        self._queue: deque[Reply] = deque()
        self._write = write_client
        # Sync-like requests queued so far: the n-th is answered by the n-th
        # ReadyForQuery, which orders what happens at transaction ends.
        self.syncs_pushed = 0
        # True after an extended-protocol error until the next Sync is queued.
        self._skipping = False
        # True once an extended-protocol message (the client's or the proxy's)
        # went upstream after the last sync-like one: the implicit transaction it
        # started may be open, with the client's unnamed portal or the proxy's
        # row locks in it.
        self.unsynced = False

    @property
    def idle(self) -> bool:
        return not self._queue

    def push(self, reply: Reply) -> None:
        if not isinstance(reply, Emit):
            self.unsynced = not reply.sync_like
        if self._skipping and not reply.sync_like and not isinstance(reply, Emit):
            reply.skip()
            return
        if reply.sync_like:
            self._skipping = False
            self.syncs_pushed += 1
        self._queue.append(reply)
        self._release_emits()

    def _release_emits(self) -> None:
        out: list[bytes] = []
        while self._queue and isinstance(self._queue[0], Emit):
            out.append(self._queue.popleft().data)  # type: ignore[attr-defined]
        if out:
            self._write(b"".join(out))

    def feed(self, frames: list[Frame]) -> None:
        """Dispatch a batch of backend messages; writes the client's bytes once."""
        out: list[bytes] = []
        queue = self._queue
        index, count = 0, len(frames)
        while index < count:
            frame = frames[index]
            if frame.type == DATA_ROW:
                while queue and isinstance(queue[0], Emit):
                    out.append(queue.popleft().data)  # type: ignore[attr-defined]
                if queue:
                    # Result rows, the bulk of most replies: a run at a time.
                    index = queue[0].feed_rows(frames, index, out)
                    continue
            self._dispatch(frame, out)
            index += 1
        self._release_into(out)

    def _release_into(self, out: list[bytes]) -> None:
        while self._queue and isinstance(self._queue[0], Emit):
            out.append(self._queue.popleft().data)  # type: ignore[attr-defined]
        if out:
            self._write(b"".join(out))

    def _dispatch(self, frame: Frame, out: list[bytes]) -> None:
        while self._queue and isinstance(self._queue[0], Emit):
            out.append(self._queue.popleft().data)  # type: ignore[attr-defined]
        if not self._queue:
            # Nothing is waiting: async messages, or replies to requests the proxy
            # does not track (e.g. after Terminate). Forward them as they are.
            out.append(frame.raw)
            return
        head = self._queue[0]
        if frame.type in SESSION_TYPES or (
            frame.type in ASYNC_TYPES and not isinstance(head, Collect)
        ):
            # A notification or a parameter change belongs to the client's session
            # even while the proxy's own lookup is answered; a notice then is the
            # lookup's (the client did not run it), so the lookup keeps it.
            out.append(frame.raw)
            return
        finished = head.feed(frame, out)
        if not finished:
            return
        self._queue.popleft()
        if frame.type == ERROR and not head.sync_like:
            self._skip_until_sync()

    def _skip_until_sync(self) -> None:
        kept: deque[Reply] = deque()
        while self._queue and not self._queue[0].sync_like:
            reply = self._queue.popleft()
            if isinstance(reply, Emit):
                kept.append(reply)
            else:
                reply.skip()
        if not self._queue:
            self._skipping = True
        self._queue.extendleft(reversed(kept))

    def fail_all(self) -> None:
        """The upstream is gone: nothing will answer the pending requests."""
        while self._queue:
            self._queue.popleft().skip()
