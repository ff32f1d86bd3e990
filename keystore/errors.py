"""Errors of the keystore package: one root, and pgsodium's own errors by SQLSTATE.

Messages never contain key bytes, plaintext or argument values: only function names
and pgsodium's fixed reason texts.
"""

from __future__ import annotations

# SQLSTATEs that pgsodium itself raises (and that the proxy reproduces).
DATA_EXCEPTION = "22000"
NO_DATA_FOUND = "P0002"
INSUFFICIENT_PRIVILEGE = "42501"
FEATURE_NOT_SUPPORTED = "0A000"
INVALID_PARAMETER_VALUE = "22023"


class KeystoreError(Exception):
    """Root of every error raised by the keystore package."""


class PgsodiumError(KeystoreError):
    """An error pgsodium 3.1.11 raises from SQL, with its SQLSTATE and exact text."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message

    def __repr__(self) -> str:
        return f"PgsodiumError({self.sqlstate!r}, {self.message!r})"


def data_exception(function: str, reason: str) -> PgsodiumError:
    """pgsodium's C convention: SQLSTATE 22000, `<c function>: <reason>`."""
    return PgsodiumError(DATA_EXCEPTION, f"{function}: {reason}")


class RootKeyError(KeystoreError):
    """The root key is missing, unreadable or malformed; the proxy must not start."""
