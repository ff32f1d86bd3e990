"""Views that users build over values the proxy computes, in the session.

The upstream lists them (pgsodium._proxy_view_names(), keystore/sql/views.sql):
views whose definitions call what only the proxy evaluates, or read a relation
that does. Their names are read with TCE's (proxy/tce.py: on the client's own
connection, again when older than NAMES_TTL_SECONDS or after DDL it passed on);
a statement whose bytes mention none of them is not parsed for them. In a statement
that reads one, each reference becomes the view's definition (rewriter/views.py),
looked up in the client's transaction, for the views whose relations the current
role reads with its own privileges anyway; others are left to the database, which
raises the stub's 0A000 where it would compute a value. If the expanded statement
is one the proxy refuses, the client's text goes on as it was, and the database
reads the views as they stand: expanding never makes a statement fail that did not.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from rewriter import tce, views
from rewriter.errors import RewriteError

from . import codec
from .codec import Frame
from .errors import SQLSTATE

if TYPE_CHECKING:
    from .session import Session

_LOOKUP = "SELECT name, qualified, columns, definition FROM pgsodium._proxy_views($1)"
# Views over views: each level looked up in turn. PostgreSQL allows no recursive
# view, so this only bounds the round trips.
_MAX_DEPTH = 16
# A statement of the same message may change what a name means, or whose
# privileges apply, before the read runs: the lookup would answer for the wrong
# one. The views are then left to the database.
_CONTEXT_CHANGE = re.compile(
    rb"search_path|discard|reset|role|session\s+authorization|set_config",
    re.IGNORECASE,
)


class Views:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.pattern: re.Pattern[bytes] | None = None

    def mentioned(self, body: bytes) -> bool:
        return self.pattern is not None and self.pattern.search(body) is not None

    async def expand(self, frame: Frame, sql: str) -> str | None:
        """`sql` with the views it reads replaced by their definitions, or None
        when there is none to replace."""
        if _CONTEXT_CHANGE.search(frame.body):
            return None
        from .tce import text_array

        text = sql
        for _ in range(_MAX_DEPTH):
            statements = tce.parse(text)
            names = views.read_names(statements)
            if not names:
                break
            rows = await self.session.internal((_LOOKUP, [text_array(names)]))
            found = {}
            for name, qualified, columns, definition in rows[0]:
                if name and qualified and columns and definition:  # not a 0-column one
                    found[name] = views.View(name, qualified, columns, definition)
            if not found:
                break
            text = views.expand(text, statements, found)
        else:
            raise RewriteError(
                SQLSTATE.FEATURE_NOT_SUPPORTED,
                f"pgsodium-proxy cannot evaluate views over computed values nested "
                f"more than {_MAX_DEPTH} deep",
            )
        return None if text == sql else text

    async def check(self, frame: Frame, text: str) -> None:
        """Plan the expanded text as the interceptor will (a RewriteError if the
        proxy would refuse it); the plan is cached for that."""
        interceptor = self.session.interceptor
        await interceptor.learn_search_path(frame)
        declared: tuple[int, ...] = ()
        if frame.type == ord("P"):
            declared = tuple(codec.decode_frontend(frame).param_types)
        interceptor.plans(text, declared)
