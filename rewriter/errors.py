"""The rewriter's one error type: a refusal or a user error, with its SQLSTATE.

The message names the construct; it never contains argument values.
"""

from __future__ import annotations


class RewriteError(Exception):
    def __init__(
        self,
        sqlstate: str,
        message: str,
        position: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        # 1-based character position in the statement, as ErrorResponse 'P' wants.
        self.position = position
        # PostgreSQL's own HINT for the same error, where it gives one.
        self.hint = hint


def refuse(what: str, location: int | None) -> RewriteError:
    """0A000 for what the proxy cannot evaluate where it stands; `location` is the
    construct's 0-based offset in the text, if known."""
    return RewriteError(
        "0A000",
        f"pgsodium-proxy cannot evaluate {what}",
        None if location is None or location < 0 else location + 1,
    )
