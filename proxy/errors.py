"""The one table of SQLSTATEs the proxy sends, and the proxy's own error type.

Only this package turns errors into ErrorResponse messages; keystore and rewriter
errors are mapped here.
"""

from __future__ import annotations

import re

from . import codec
from .metrics import ERRORS


class SQLSTATE:
    FEATURE_NOT_SUPPORTED = "0A000"
    PROTOCOL_VIOLATION = "08P01"
    CONNECTION_FAILURE = "08006"
    CANNOT_CONNECT_NOW = "57P03"
    TOO_MANY_CONNECTIONS = "53300"
    ADMIN_SHUTDOWN = "57P01"
    IDLE_SESSION_TIMEOUT = "57P05"
    QUERY_CANCELED = "57014"
    INTERNAL_ERROR = "XX000"
    INVALID_SQL_STATEMENT_NAME = "26000"
    UNDEFINED_FUNCTION = "42883"
    AMBIGUOUS_FUNCTION = "42725"
    SYNTAX_ERROR = "42601"
    INSUFFICIENT_PRIVILEGE = "42501"
    INVALID_TEXT_REPRESENTATION = "22P02"
    DATA_EXCEPTION = "22000"
    CHARACTER_NOT_IN_REPERTOIRE = "22021"
    INVALID_PARAMETER_VALUE = "22023"
    CONFIG_FILE_ERROR = "F0000"
    PROGRAM_LIMIT_EXCEEDED = "54000"
    # The proxy's root key or schema does not match the database.
    ROOT_KEY_MISMATCH = "55000"
    OBJECT_NOT_IN_PREREQUISITE_STATE = "55000"


class ProxyError(Exception):
    """An error the proxy reports to the client as an ErrorResponse."""

    def __init__(
        self,
        sqlstate: str,
        message: str,
        *,
        detail: str | None = None,
        hint: str | None = None,
        position: int | None = None,
    ) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.detail = detail
        self.hint = hint
        self.position = position

    def to_error_response(self, *, fatal: bool = False) -> bytes:
        ERRORS.labels(self.sqlstate).inc()
        return codec.error_response(
            "FATAL" if fatal else "ERROR",
            self.sqlstate,
            self.message,
            detail=self.detail,
            hint=self.hint,
            position=None if self.position is None else str(self.position),
        )


# PostgreSQL's messages put the values they quote in double quotes (a token, an
# input literal, a name) and bytes as 0xNN. Greedy from the first quote to the last:
# a quoted value may itself hold quotes, so pairing them could leave part of it out.
# Double quotes (PostgreSQL's) or single ones (a literal, as the proxy's label
# errors quote the label).
_QUOTED = re.compile(r'".*"|\'.*\'', re.DOTALL)
_BYTES = re.compile(r"0x[0-9a-fA-F]+")


def redacted_message(message: str) -> str:
    """An error message for the log when SQL text is not logged: what it says,
    without the values it quotes (`syntax error at or near "…"`).

    SECURITY: a message can quote the data it choked on (a literal of the
    statement, which may be a key or a plaintext); the client still gets it whole.
    """
    return _BYTES.sub(
        "0x…", _QUOTED.sub(lambda m: m.group()[0] + "…" + m.group()[0], message)
    )


def redacted_traceback(exc: BaseException) -> str:
    """Where a bug happened, for the log: the exception's type and the frames
    (file, line, function), never its message nor any value.

    SECURITY: an exception's text can quote the data it choked on (a bind value, a
    plaintext literal, key material), and logs must hold none of those.
    """
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    lines = [f'  File "{f.filename}", line {f.lineno}, in {f.name}' for f in frames]
    chain = type(exc).__qualname__
    cause = exc.__cause__ or exc.__context__
    if cause is not None:
        chain += f" (while handling {type(cause).__qualname__})"
    return "Traceback (message redacted):\n" + "\n".join(lines) + f"\n{chain}"
