"""crypto_box (X25519 + XSalsa20-Poly1305), sealed boxes and box keypairs.

Results are always complete: pgsodium's are 3 bytes short when an argument arrives
with a 1-byte varlena header (reference §5), which the proxy cannot see or mimic.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from nacl.bindings import (
    crypto_box_easy,
    crypto_box_keypair,
    crypto_box_open_easy,
    crypto_box_seal,
    crypto_box_seal_open,
    crypto_box_seed_keypair,
)
from nacl.exceptions import CryptoError
from nacl.exceptions import RuntimeError as SodiumFailure

from keystore.derive import Env
from keystore.errors import data_exception

from .derivation import need, undefined

# crypto_box_PUBLICKEYBYTES / _SECRETKEYBYTES / _SEEDBYTES / _NONCEBYTES / _MACBYTES
PUBLIC_KEY_BYTES = 32
SECRET_KEY_BYTES = 32
SEED_BYTES = 32
NONCE_BYTES = 24
MAC_BYTES = 16
# crypto_box_SEALBYTES: ephemeral public key (32) + MAC (16)
SEAL_BYTES = 48


def _check_box_args(symbol: str, nonce: bytes, public: bytes, secret: bytes) -> None:
    if len(nonce) != NONCE_BYTES:
        raise data_exception(symbol, "invalid nonce")
    if len(public) != PUBLIC_KEY_BYTES:
        raise data_exception(symbol, "invalid public key")
    if len(secret) != SECRET_KEY_BYTES:
        raise data_exception(symbol, "invalid secret key")


def pgsodium_crypto_box(
    env: Env,
    message: bytes | None,
    nonce: bytes | None,
    public: bytes | None,
    secret: bytes | None,
) -> bytes:
    symbol = "pgsodium_crypto_box"
    message = need(symbol, message, "message")
    nonce = need(symbol, nonce, "nonce")
    public = need(symbol, public, "publickey")
    secret = need(symbol, secret, "secretkey")

    _check_box_args(symbol, nonce, public, secret)
    try:
        return crypto_box_easy(message, nonce, public, secret)
    except SodiumFailure:
        # libsodium refuses a public key of small order (all-zero shared secret).
        raise data_exception(symbol, "invalid message") from None


def pgsodium_crypto_box_open(
    env: Env,
    ciphertext: bytes | None,
    nonce: bytes | None,
    public: bytes | None,
    secret: bytes | None,
) -> bytes:
    symbol = "pgsodium_crypto_box_open"
    ciphertext = need(symbol, ciphertext, "message")
    nonce = need(symbol, nonce, "nonce")
    public = need(symbol, public, "publickey")
    secret = need(symbol, secret, "secretkey")

    _check_box_args(symbol, nonce, public, secret)
    if len(ciphertext) <= MAC_BYTES:
        raise data_exception(symbol, "invalid message")
    try:
        return crypto_box_open_easy(ciphertext, nonce, public, secret)
    except CryptoError:
        raise data_exception(symbol, "invalid message") from None


def pgsodium_crypto_box_seal(
    env: Env, message: bytes | None, public_key: bytes | None
) -> bytes:
    symbol = "pgsodium_crypto_box_seal"
    message = need(symbol, message, "message")
    public_key = need(symbol, public_key, "publickey")

    if len(public_key) != PUBLIC_KEY_BYTES:
        raise data_exception(symbol, "invalid public key")
    try:
        return crypto_box_seal(message, public_key)
    except SodiumFailure:
        # pgsodium ignores this failure and returns the ephemeral public key
        # followed by uninitialised memory: there is no result to reproduce.
        raise undefined(symbol, "public key of small order") from None


def pgsodium_crypto_box_seal_open(
    env: Env,
    ciphertext: bytes | None,
    public_key: bytes | None,
    secret_key: bytes | None,
) -> bytes:
    symbol = "pgsodium_crypto_box_seal_open"
    ciphertext = need(symbol, ciphertext, "ciphertext")
    public_key = need(symbol, public_key, "public_key")
    secret_key = need(symbol, secret_key, "secret_key")

    if len(public_key) != PUBLIC_KEY_BYTES:
        raise data_exception(symbol, "invalid public key")
    if len(secret_key) != SECRET_KEY_BYTES:
        raise data_exception(symbol, "invalid secret key")
    if len(ciphertext) <= SEAL_BYTES:
        raise data_exception(symbol, "invalid message")
    try:
        return crypto_box_seal_open(ciphertext, public_key, secret_key)
    except CryptoError:
        raise data_exception(symbol, "invalid message") from None


def pgsodium_crypto_box_seed_keypair(
    env: Env, seed: bytes | None
) -> tuple[bytes, bytes]:
    """(public, secret) from a 32-byte seed: secret = SHA-512(seed)[:32]."""
    symbol = "pgsodium_crypto_box_seed_keypair"
    seed = need(symbol, seed, "seed")

    if len(seed) != SEED_BYTES:
        raise data_exception(symbol, "invalid seed")
    return crypto_box_seed_keypair(seed)


def pgsodium_crypto_box_keypair(env: Env) -> tuple[bytes, bytes]:
    return crypto_box_keypair()


def pgsodium_crypto_box_new_seed(env: Env) -> bytes:
    return secrets.token_bytes(SEED_BYTES)


def pgsodium_crypto_box_noncegen(env: Env) -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {
    "pgsodium_crypto_box": pgsodium_crypto_box,
    "pgsodium_crypto_box_open": pgsodium_crypto_box_open,
    "pgsodium_crypto_box_seal": pgsodium_crypto_box_seal,
    "pgsodium_crypto_box_seal_open": pgsodium_crypto_box_seal_open,
    "pgsodium_crypto_box_seed_keypair": pgsodium_crypto_box_seed_keypair,
    "pgsodium_crypto_box_keypair": pgsodium_crypto_box_keypair,
    "pgsodium_crypto_box_new_seed": pgsodium_crypto_box_new_seed,
    "pgsodium_crypto_box_noncegen": pgsodium_crypto_box_noncegen,
}
