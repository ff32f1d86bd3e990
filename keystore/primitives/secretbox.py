"""crypto_secretbox (XSalsa20-Poly1305, MAC first) with raw keys and key ids.

Check order and texts follow pgsodium; opening never returns unauthenticated bytes.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from nacl.bindings import crypto_secretbox_easy, crypto_secretbox_open_easy
from nacl.exceptions import CryptoError

from keystore.derive import Env
from keystore.errors import data_exception

from .derivation import key_by_id, need, undefined

# crypto_secretbox_KEYBYTES / _NONCEBYTES / _MACBYTES
KEY_BYTES = 32
NONCE_BYTES = 24
MAC_BYTES = 16


def _open(symbol: str, box: bytes, nonce: bytes, key: bytes) -> bytes:
    try:
        return crypto_secretbox_open_easy(box, nonce, key)
    except CryptoError:
        raise data_exception(symbol, "invalid message") from None


def _by_id_nonce(symbol: str, nonce: bytes) -> bytes:
    """pgsodium_crypto_secretbox_by_id never checks the nonce length: libsodium reads
    24 bytes. A longer nonce therefore means its first 24 bytes (reproduced); a
    shorter one reads past the argument (refused)."""
    if len(nonce) < NONCE_BYTES:
        raise undefined(symbol, "nonce shorter than 24 bytes")
    return nonce[:NONCE_BYTES]


def pgsodium_crypto_secretbox(
    env: Env, message: bytes | None, nonce: bytes | None, key: bytes | None
) -> bytes:
    symbol = "pgsodium_crypto_secretbox"
    message = need(symbol, message, "message")
    nonce = need(symbol, nonce, "nonce")
    key = need(symbol, key, "key")

    if len(nonce) != NONCE_BYTES:
        raise data_exception(symbol, "invalid nonce")
    if len(key) != KEY_BYTES:
        raise data_exception(symbol, "invalid key")
    return crypto_secretbox_easy(message, nonce, key)


def pgsodium_crypto_secretbox_by_id(
    env: Env,
    message: bytes | None,
    nonce: bytes | None,
    key_id: int | None,
    context: bytes | None,
) -> bytes:
    symbol = "pgsodium_crypto_secretbox_by_id"
    message = need(symbol, message, "message")
    nonce = need(symbol, nonce, "nonce")
    key_id = need(symbol, key_id, "key id")
    context = need(symbol, context, "key context")

    key = key_by_id(env, key_id, KEY_BYTES, context)
    return crypto_secretbox_easy(message, _by_id_nonce(symbol, nonce), key)


def pgsodium_crypto_secretbox_open(
    env: Env, ciphertext: bytes | None, nonce: bytes | None, key: bytes | None
) -> bytes:
    symbol = "pgsodium_crypto_secretbox_open"
    ciphertext = need(symbol, ciphertext, "message")
    nonce = need(symbol, nonce, "nonce")
    key = need(symbol, key, "key")

    if len(ciphertext) <= MAC_BYTES:
        raise data_exception(symbol, "invalid message")
    if len(nonce) != NONCE_BYTES:
        raise data_exception(symbol, "invalid nonce")
    if len(key) != KEY_BYTES:
        raise data_exception(symbol, "invalid key")
    return _open(symbol, ciphertext, nonce, key)


def pgsodium_crypto_secretbox_open_by_id(
    env: Env,
    message: bytes | None,
    nonce: bytes | None,
    key_id: int | None,
    context: bytes | None,
) -> bytes:
    symbol = "pgsodium_crypto_secretbox_open_by_id"
    message = need(symbol, message, "message")
    nonce = need(symbol, nonce, "nonce")
    key_id = need(symbol, key_id, "key id")
    context = need(symbol, context, "key context")

    key = key_by_id(env, key_id, KEY_BYTES, context)
    if len(message) <= MAC_BYTES:
        raise data_exception(symbol, "invalid message")
    if len(nonce) != NONCE_BYTES:
        raise data_exception(symbol, "invalid nonce")
    return _open(symbol, message, nonce, key)


def pgsodium_crypto_secretbox_keygen(env: Env) -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def pgsodium_crypto_secretbox_noncegen(env: Env) -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {
    "pgsodium_crypto_secretbox": pgsodium_crypto_secretbox,
    "pgsodium_crypto_secretbox_by_id": pgsodium_crypto_secretbox_by_id,
    "pgsodium_crypto_secretbox_open": pgsodium_crypto_secretbox_open,
    "pgsodium_crypto_secretbox_open_by_id": pgsodium_crypto_secretbox_open_by_id,
    "pgsodium_crypto_secretbox_keygen": pgsodium_crypto_secretbox_keygen,
    "pgsodium_crypto_secretbox_noncegen": pgsodium_crypto_secretbox_noncegen,
}
