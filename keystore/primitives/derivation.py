"""pgsodium_derive, and the argument rules every pgsodium C function shares.

Each rule mirrors what pgsodium's C does before any crypto: NULL checks of non-STRICT
functions (`<symbol>: <what> cannot be NULL`, SQLSTATE 22000), PostgreSQL's
unsigned reinterpretation of integer arguments, and palloc's size limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from keystore.derive import Env
from keystore.errors import FEATURE_NOT_SUPPORTED, PgsodiumError, data_exception

T = TypeVar("T")

# PostgreSQL's MaxAllocSize: palloc refuses requests above 1 GB - 1.
MAX_ALLOC_SIZE = 0x3FFF_FFFF
# VARHDRSZ: pgsodium allocates results as header + payload.
VARHDRSZ = 4
# elog(ERROR) without an errcode, as palloc raises it.
INTERNAL_ERROR = "XX000"

_UINT32_MASK = 0xFFFF_FFFF
_UINT64_MASK = 0xFFFF_FFFF_FFFF_FFFF


def need(symbol: str, value: T | None, what: str) -> T:
    """pgsodium's ERRORIF(PG_ARGISNULL(n), "%s: <what> cannot be NULL")."""
    if value is None:
        raise data_exception(symbol, f"{what} cannot be NULL")
    return value


def as_uint32(value: int) -> int:
    """PG_GETARG_UINT32: the low 32 bits of the argument, unsigned."""
    return value & _UINT32_MASK


def as_uint64(value: int) -> int:
    """A bigint (or size_t/uint64_t C variable) read as two's complement unsigned."""
    return value & _UINT64_MASK


def check_alloc(total: int) -> None:
    """palloc(total) of a result: fails above MaxAllocSize, as PostgreSQL does."""
    if total > MAX_ALLOC_SIZE:
        raise PgsodiumError(
            INTERNAL_ERROR, f"invalid memory alloc request size {total}"
        )


def undefined(symbol: str, what: str) -> PgsodiumError:
    """Inputs for which pgsodium reads or writes past an argument: no defined result.

    The proxy refuses them (fail closed, 0A000) instead of inventing a value.
    """
    return PgsodiumError(
        FEATURE_NOT_SUPPORTED,
        f"{symbol}: {what} (pgsodium 3.1.11 has no defined result for this input)",
    )


def key_by_id(env: Env, key_id: int, size: int, context: bytes) -> bytes:
    """pgsodium_derive_helper(key_id, size, context) for a KI (`_by_id`) function."""
    return env.derive(as_uint64(key_id), size, context)


def pgsodium_derive(
    env: Env, key_id: int | None, key_len: int | None, context: bytes | None
) -> bytes:
    """derive_key(key_id, key_len, context) and its legacy alias pgsodium_derive."""
    symbol = "pgsodium_derive"
    key_id = need(symbol, key_id, "key id")
    key_len = need(symbol, key_len, "key size")
    context = need(symbol, context, "key context")

    # The integer key_len is read as uint32, so -1 is 4294967295: an invalid size.
    return env.derive(as_uint64(key_id), as_uint32(key_len), context)


IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {
    "pgsodium_derive": pgsodium_derive,
}
