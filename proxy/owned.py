"""Portals and cursors whose rows the proxy computes, and the check that each is
still the one the proxy opened before their rows are read as its own.

SECURITY: code that runs inside the server (a DO block, any function a statement
calls) can close a portal or a cursor and open another under the same name. Its
rows would then reach the proxy in place of the ones it asked for, as inputs and
key references that no client may choose. So before the proxy reads a portal's
rows it checks in pg_cursors that the portal still runs the text the proxy sent
for it. That costs a round trip only when some other statement ran since the
proxy last read it (none for a Bind and its Execute, or for consecutive FETCHes
sent as Query messages). The same query reads the session's client_encoding,
which a message sent ahead may have changed without the proxy knowing yet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .session import Session

# pg_cursors lists the protocol's portals as well as SQL cursors; `statement` is
# the text that created the portal (the whole Query message for a DECLARE).
# SECURITY: schema-qualified throughout (proxy/lookup.py says why).
STATEMENT_SQL = """\
SELECT (SELECT statement FROM pg_catalog.pg_cursors
         WHERE name OPERATOR(pg_catalog.=) $1::pg_catalog.text),
       pg_catalog.current_setting('client_encoding')"""
_UNKNOWN = -1  # opened by a message that ran more than the proxy's statement


class Owned:
    def __init__(self, session: Session) -> None:
        self.session = session
        # Client messages that may have run code upstream (all but Describe
        # and Flush), counted as they arrive.
        self.runs = 0
        # Portal or cursor name -> [self.runs when the proxy last knew it was its
        # own, the text that opened it].
        self._marks: dict[str, list[int | str]] = {}

    def ran(self) -> None:
        self.runs += 1

    def opened(self, name: str, text: str, *, alone: bool = True) -> None:
        """The proxy opened `name` with `text`; `alone`: the message that opens it
        runs nothing else after it (a Query of one statement, a Bind)."""
        self._marks[name] = [self.runs if alone else _UNKNOWN, text]

    def read(self, name: str) -> None:
        """Its own statement ran just now (the Execute of a DECLARE)."""
        entry = self._marks.get(name)
        if entry is not None:
            entry[0] = self.runs

    def quiet(self, name: str) -> bool:
        """Nothing but the message being handled ran since the proxy opened or
        last read `name` (a Bind and its Execute, say)."""
        entry = self._marks.get(name)
        return entry is not None and entry[0] == self.runs - 1

    def closed(self, name: str) -> None:
        self._marks.pop(name, None)

    async def not_own(self, *names: str) -> tuple[list[str], str | None]:
        """Those of `names` that are no longer what the proxy opened, asked while
        the message that reads them is handled (ran() counted it already), and
        the upstream's client_encoding if it was asked (None: nothing ran since).
        Raises Skipped or LookupFailed as Session.internal does."""
        unknown = [name for name in names if name not in self._marks]
        stale = [
            name
            for name in names
            if name in self._marks and self._marks[name][0] != self.runs - 1
        ]
        encoding = None
        if stale:
            results = await self.session.internal(
                *[(STATEMENT_SQL, [name]) for name in stale]
            )
            for name, rows in zip(stale, results, strict=True):
                if rows[0][0] != self._marks[name][1]:
                    unknown.append(name)
                encoding = rows[0][1]
        for name in names:
            if name not in unknown:
                self._marks[name][0] = self.runs
        return unknown, encoding


class Replaced(Exception):
    """A prepared statement the proxy parsed is no longer the one upstream."""


# Protocol-level statements are made by Parse messages only, which the proxy
# sees; SQL's PREPARE (from_sql) is how code can put another under the name.
PREPARED_SQL = """\
SELECT (SELECT s.statement FROM pg_catalog.pg_prepared_statements s
         WHERE s.name OPERATOR(pg_catalog.=) $1::pg_catalog.text AND NOT s.from_sql)"""


async def statement_replaced(session: Session, name: str, text: str) -> bool:
    """Whether prepared statement `name` upstream is no longer `text`, the one the
    proxy parsed (Execution.prepare asks the same within its key lookup)."""
    (rows,) = await session.internal((PREPARED_SQL, [name]))
    return rows[0][0] != text
