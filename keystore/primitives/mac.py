"""MACs and hashes: crypto_auth, HMAC-SHA-256/512, generichash, shorthash, SHA-2.

Each function keeps pgsodium's check order; verification compares in constant time
and answers false (never an error) when the MAC does not match.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from nacl.bindings import crypto_shorthash_siphash24

from keystore.derive import Env
from keystore.errors import data_exception

from .derivation import key_by_id, need

T = TypeVar("T")

# crypto_auth (HMAC-SHA-512-256): crypto_auth_KEYBYTES / crypto_auth_BYTES
AUTH_KEY_BYTES = 32
AUTH_BYTES = 32
# crypto_auth_hmacsha256_KEYBYTES / _BYTES, crypto_auth_hmacsha512_KEYBYTES / _BYTES
HMACSHA256_KEY_BYTES = 32
HMACSHA256_BYTES = 32
HMACSHA512_KEY_BYTES = 32
HMACSHA512_BYTES = 64
# crypto_generichash: output 32; key NULL or 16..64 bytes; keygen makes 32
GENERICHASH_BYTES = 32
GENERICHASH_KEY_BYTES = 32
GENERICHASH_KEY_BYTES_MIN = 16
GENERICHASH_KEY_BYTES_MAX = 64
# crypto_shorthash (SipHash-2-4): key 16, output 8
SHORTHASH_KEY_BYTES = 16
SHORTHASH_BYTES = 8


@dataclass(frozen=True)
class _Mac:
    """One of libsodium's MACs as pgsodium exposes it."""

    symbol: str  # C symbol of the raw-key variant; the others add suffixes
    digest: str  # hashlib name of the HMAC hash
    key_bytes: int
    tag_bytes: int
    tag_word: str  # what pgsodium calls the tag in `invalid <word>`
    null_tag_word: str  # ... and in `<word> cannot be NULL`

    def compute(self, message: bytes, key: bytes) -> bytes:
        # crypto_auth is HMAC-SHA-512 truncated to 32 bytes; the HMACs are whole.
        return hmac.digest(key, message, self.digest)[: self.tag_bytes]


_AUTH = _Mac(
    "pgsodium_crypto_auth", "sha512", AUTH_KEY_BYTES, AUTH_BYTES, "mac", "signature"
)
_HMAC256 = _Mac(
    "pgsodium_crypto_auth_hmacsha256",
    "sha256",
    HMACSHA256_KEY_BYTES,
    HMACSHA256_BYTES,
    "hash",
    "hash",
)
_HMAC512 = _Mac(
    "pgsodium_crypto_auth_hmacsha512",
    "sha512",
    HMACSHA512_KEY_BYTES,
    HMACSHA512_BYTES,
    "hash",
    "hash",
)


def _named(symbol: str, fn: Callable[..., T]) -> Callable[..., T]:
    fn.__name__ = fn.__qualname__ = symbol
    return fn


def _tag_raw(m: _Mac) -> Callable[..., bytes]:
    symbol = m.symbol

    def impl(env: Env, message: bytes | None, key: bytes | None) -> bytes:
        message = need(symbol, message, "message")
        key = need(symbol, key, "key")

        if len(key) != m.key_bytes:
            raise data_exception(symbol, "invalid key")
        return m.compute(message, key)

    return _named(symbol, impl)


def _tag_by_id(m: _Mac) -> Callable[..., bytes]:
    symbol = f"{m.symbol}_by_id"

    def impl(
        env: Env, message: bytes | None, key_id: int | None, context: bytes | None
    ) -> bytes:
        message = need(symbol, message, "message")
        key_id = need(symbol, key_id, "key id")
        context = need(symbol, context, "key context")

        return m.compute(message, key_by_id(env, key_id, m.key_bytes, context))

    return _named(symbol, impl)


def _verify(m: _Mac, symbol: str, tag: bytes, message: bytes, key: bytes) -> bool:
    if len(tag) != m.tag_bytes:
        raise data_exception(symbol, f"invalid {m.tag_word}")
    if len(key) != m.key_bytes:
        raise data_exception(symbol, "invalid key")
    # SECURITY: constant-time comparison, as libsodium's crypto_verify_NN.
    return hmac.compare_digest(m.compute(message, key), tag)


def _verify_raw(m: _Mac) -> Callable[..., bool]:
    symbol = f"{m.symbol}_verify"

    def impl(
        env: Env, tag: bytes | None, message: bytes | None, key: bytes | None
    ) -> bool:
        tag = need(symbol, tag, m.null_tag_word)
        message = need(symbol, message, "message")
        key = need(symbol, key, "key")

        return _verify(m, symbol, tag, message, key)

    return _named(symbol, impl)


def _verify_by_id(m: _Mac) -> Callable[..., bool]:
    """Key-id verify: pgsodium derives the key before it checks the tag length."""
    symbol = f"{m.symbol}_verify_by_id"

    def impl(
        env: Env,
        tag: bytes | None,
        message: bytes | None,
        key_id: int | None,
        context: bytes | None,
    ) -> bool:
        tag = need(symbol, tag, m.null_tag_word)
        message = need(symbol, message, "message")
        key_id = need(symbol, key_id, "key id")
        context = need(symbol, context, "key context")

        key = key_by_id(env, key_id, m.key_bytes, context)
        return _verify(m, symbol, tag, message, key)

    return _named(symbol, impl)


def pgsodium_crypto_generichash(
    env: Env, message: bytes | None, key: bytes | None
) -> bytes:
    """BLAKE2b-256 of the message, keyed when `key` is not NULL."""
    symbol = "pgsodium_crypto_generichash"
    message = need(symbol, message, "data")

    if key is None:
        return hashlib.blake2b(message, digest_size=GENERICHASH_BYTES).digest()
    if not GENERICHASH_KEY_BYTES_MIN <= len(key) <= GENERICHASH_KEY_BYTES_MAX:
        raise data_exception(symbol, "invalid key")
    return hashlib.blake2b(message, digest_size=GENERICHASH_BYTES, key=key).digest()


def pgsodium_crypto_generichash_by_id(
    env: Env, message: bytes | None, key_id: int | None, context: bytes | None
) -> bytes:
    """Key-id generichash. As in pgsodium, a NULL key id means an unkeyed hash, and
    a NULL context is only checked when there is a key id (with pgsodium's text)."""
    symbol = "pgsodium_crypto_generichash_by_id"
    message = need(symbol, message, "data")

    if key_id is None:
        return hashlib.blake2b(message, digest_size=GENERICHASH_BYTES).digest()
    if context is None:
        raise data_exception(symbol, "key context be NULL")
    key = key_by_id(env, key_id, GENERICHASH_KEY_BYTES, context)
    return hashlib.blake2b(message, digest_size=GENERICHASH_BYTES, key=key).digest()


def pgsodium_crypto_shorthash(
    env: Env, message: bytes | None, key: bytes | None
) -> bytes:
    """SipHash-2-4. pgsodium reads both arguments at a fixed 4-byte header offset, so a
    short-header (table column) argument hashes shifted bytes there; the proxy always
    returns the hash of the actual argument values (the correct result)."""
    symbol = "pgsodium_crypto_shorthash"
    message = need(symbol, message, "data")
    key = need(symbol, key, "key")

    if len(key) != SHORTHASH_KEY_BYTES:
        raise data_exception(symbol, "invalid key")
    return crypto_shorthash_siphash24(message, key)


def pgsodium_crypto_shorthash_by_id(
    env: Env, message: bytes | None, key_id: int | None, context: bytes | None
) -> bytes:
    symbol = "pgsodium_crypto_shorthash_by_id"
    message = need(symbol, message, "data")
    key_id = need(symbol, key_id, "key id")
    context = need(symbol, context, "key context")

    key = key_by_id(env, key_id, SHORTHASH_KEY_BYTES, context)
    return crypto_shorthash_siphash24(message, key)


def pgsodium_crypto_hash_sha256(env: Env, message: bytes | None) -> bytes:
    message = need("pgsodium_crypto_hash_sha256", message, "message")
    return hashlib.sha256(message).digest()


def pgsodium_crypto_hash_sha512(env: Env, message: bytes | None) -> bytes:
    message = need("pgsodium_crypto_hash_sha512", message, "message")
    return hashlib.sha512(message).digest()


def _keygen(size: int) -> Callable[[Env], bytes]:
    def keygen(env: Env) -> bytes:
        return secrets.token_bytes(size)

    return keygen


def _mac_family(m: _Mac) -> dict[str, Callable[..., Any]]:
    return {
        m.symbol: _tag_raw(m),
        f"{m.symbol}_by_id": _tag_by_id(m),
        f"{m.symbol}_verify": _verify_raw(m),
        f"{m.symbol}_verify_by_id": _verify_by_id(m),
        f"{m.symbol}_keygen": _keygen(m.key_bytes),
    }


IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {
    **_mac_family(_AUTH),
    **_mac_family(_HMAC256),
    **_mac_family(_HMAC512),
    "pgsodium_crypto_generichash": pgsodium_crypto_generichash,
    "pgsodium_crypto_generichash_by_id": pgsodium_crypto_generichash_by_id,
    "pgsodium_crypto_generichash_keygen": _keygen(GENERICHASH_KEY_BYTES),
    "pgsodium_crypto_shorthash": pgsodium_crypto_shorthash,
    "pgsodium_crypto_shorthash_by_id": pgsodium_crypto_shorthash_by_id,
    "pgsodium_crypto_shorthash_keygen": _keygen(SHORTHASH_KEY_BYTES),
    "pgsodium_crypto_hash_sha256": pgsodium_crypto_hash_sha256,
    "pgsodium_crypto_hash_sha512": pgsodium_crypto_hash_sha512,
}
