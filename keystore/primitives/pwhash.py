"""crypto_pwhash (Argon2id13, MODERATE limits): raw hashes and password strings.

Limits are libsodium's MODERATE pair, as pgsodium hard-codes them: about 1 s of CPU and
256 MiB of memory per call. Stored strings are 128-byte NUL-padded bytea values.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from nacl._sodium import lib as _sodium_lib  # type: ignore[import-not-found]
from nacl.bindings import (
    crypto_pwhash_alg,
    crypto_pwhash_ALG_ARGON2ID13,
    crypto_pwhash_str_alg,
)
from nacl.exceptions import RuntimeError as SodiumFailure

from keystore.derive import Env
from keystore.errors import data_exception

from .derivation import need

# crypto_pwhash_OPSLIMIT_MODERATE / crypto_pwhash_MEMLIMIT_MODERATE (256 MiB)
OPSLIMIT_MODERATE = 3
MEMLIMIT_MODERATE = 268_435_456
# crypto_pwhash output length pgsodium asks for (crypto_box_SEEDBYTES)
HASH_BYTES = 32
# crypto_pwhash_SALTBYTES / crypto_pwhash_STRBYTES
SALT_BYTES = 16
STR_BYTES = 128
# crypto_pwhash_PASSWD_MAX (a bytea can never reach it; kept for the check's shape)
PASSWD_MAX = 4_294_967_295


def pgsodium_crypto_pwhash(
    env: Env, password: bytes | None, salt: bytes | None
) -> bytes:
    symbol = "pgsodium_crypto_pwhash"
    password = need(symbol, password, "data")
    salt = need(symbol, salt, "salt")

    if len(salt) != SALT_BYTES:
        raise data_exception(symbol, "invalid salt")
    if len(password) > PASSWD_MAX:
        raise data_exception(symbol, "invalid password")
    # XXX: every call costs ~1 s CPU and 256 MiB, as in pgsodium; a client can make
    # the proxy spend both. Callers should bound concurrent pwhash evaluations.
    try:
        return crypto_pwhash_alg(
            HASH_BYTES,
            bytes(password),
            bytes(salt),
            OPSLIMIT_MODERATE,
            MEMLIMIT_MODERATE,
            crypto_pwhash_ALG_ARGON2ID13,
        )
    except SodiumFailure:
        raise data_exception(symbol, "invalid message") from None


def pgsodium_crypto_pwhash_str(env: Env, password: bytes | None) -> bytes:
    """`$argon2id$v=19$m=262144,t=3,p=1$<salt>$<hash>` NUL-padded to 128 bytes."""
    symbol = "pgsodium_crypto_pwhash_str"
    password = need(symbol, password, "password")

    try:
        text = crypto_pwhash_str_alg(
            bytes(password),
            OPSLIMIT_MODERATE,
            MEMLIMIT_MODERATE,
            crypto_pwhash_ALG_ARGON2ID13,
        )
    except SodiumFailure:
        raise data_exception(symbol, "out of memory in pwhash_str") from None
    return text.ljust(STR_BYTES, b"\0")


def pgsodium_crypto_pwhash_str_verify(
    env: Env, hashed_password: bytes | None, password: bytes | None
) -> bool:
    """libsodium reads the stored hash as a C string: it ends at the first NUL.

    pgsodium passes the bytea without a terminator, so a value with no NUL in it is
    read past its end there; the proxy reads exactly the value's bytes (correct).
    The algorithm and limits come from the string (argon2id or argon2i).
    """
    symbol = "pgsodium_crypto_pwhash_str_verify"
    hashed_password = need(symbol, hashed_password, "hashed password")
    password = need(symbol, password, "password")

    text = bytes(hashed_password).split(b"\0", 1)[0]
    # XXX: the string chooses the cost (m=, t=); a crafted one can make this call
    # as expensive as libsodium allows, exactly as it can in pgsodium.
    # PyNaCl's wrapper refuses strings over 127 bytes that libsodium itself parses,
    # so libsodium's entry point is called directly.
    status = _sodium_lib.crypto_pwhash_str_verify(text, password, len(password))
    return bool(status == 0)


def pgsodium_crypto_pwhash_saltgen(env: Env) -> bytes:
    return secrets.token_bytes(SALT_BYTES)


IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {
    "pgsodium_crypto_pwhash": pgsodium_crypto_pwhash,
    "pgsodium_crypto_pwhash_str": pgsodium_crypto_pwhash_str,
    "pgsodium_crypto_pwhash_str_verify": pgsodium_crypto_pwhash_str_verify,
    "pgsodium_crypto_pwhash_saltgen": pgsodium_crypto_pwhash_saltgen,
}
