"""Ed25519 signatures (crypto_sign*) and pgsodium's multi-part Ed25519ph API.

The multi-part state is libsodium's raw 208-byte crypto_sign_state (SHA-512 H[8],
count[2], buf[128], little-endian) as bytea; it is loaded into and read back from a
libsodium Ed25519ph state, so libsodium's own code absorbs and signs: byte-exact.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from nacl._sodium import ffi  # type: ignore[import-not-found]
from nacl.bindings import (
    crypto_sign,
    crypto_sign_ed25519ph_final_create,
    crypto_sign_ed25519ph_final_verify,
    crypto_sign_ed25519ph_state,
    crypto_sign_ed25519ph_STATEBYTES,
    crypto_sign_ed25519ph_update,
    crypto_sign_keypair,
    crypto_sign_open,
    crypto_sign_seed_keypair,
)
from nacl.exceptions import BadSignatureError
from nacl.exceptions import RuntimeError as SodiumFailure

from keystore.derive import Env
from keystore.errors import data_exception

from .derivation import need, undefined

# crypto_sign_PUBLICKEYBYTES / _SECRETKEYBYTES (seed || public) / _SEEDBYTES / _BYTES
PUBLIC_KEY_BYTES = 32
SECRET_KEY_BYTES = 64
SEED_BYTES = 32
SIGNATURE_BYTES = 64
# sizeof(crypto_sign_state): SHA-512 state 64 + count 16 + buffer 128.
STATE_BYTES = 208

if crypto_sign_ed25519ph_STATEBYTES != STATE_BYTES:  # pragma: no cover
    raise ImportError("libsodium's crypto_sign_state is not the 208-byte layout")


def _load(state: bytes) -> crypto_sign_ed25519ph_state:
    """A libsodium Ed25519ph state holding these raw 208 bytes."""
    loaded = crypto_sign_ed25519ph_state()
    ffi.memmove(loaded.state, state[:STATE_BYTES], STATE_BYTES)
    return loaded


def _dump(loaded: crypto_sign_ed25519ph_state) -> bytes:
    return bytes(ffi.buffer(loaded.state, STATE_BYTES))


def pgsodium_crypto_sign_init(env: Env) -> bytes:
    """A fresh state: the SHA-512 IV, zero count, zero buffer."""
    return _dump(crypto_sign_ed25519ph_state())


def pgsodium_crypto_sign_update(
    env: Env, state: bytes | None, message: bytes | None
) -> bytes:
    """Absorb a message part. pgsodium does not check the state length: a longer
    state has its first 208 bytes updated and the rest returned unchanged (as in
    pgsodium); a shorter one would be read and written past its end (refused)."""
    symbol = "pgsodium_crypto_sign_update"
    state = need(symbol, state, "state")
    message = need(symbol, message, "message part")

    if len(state) < STATE_BYTES:
        raise undefined(symbol, "state shorter than 208 bytes")
    loaded = _load(state)
    crypto_sign_ed25519ph_update(loaded, bytes(message))
    return _dump(loaded) + state[STATE_BYTES:]


def pgsodium_crypto_sign_final_create(
    env: Env, state: bytes | None, key: bytes | None
) -> bytes:
    """Ed25519ph signature of the absorbed message. Neither length is checked by
    pgsodium: longer arguments mean their prefixes, shorter ones are refused."""
    symbol = "pgsodium_crypto_sign_final_create"
    state = need(symbol, state, "state")
    key = need(symbol, key, "key")

    if len(state) < STATE_BYTES:
        raise undefined(symbol, "state shorter than 208 bytes")
    if len(key) < SECRET_KEY_BYTES:
        raise undefined(symbol, "key shorter than 64 bytes")
    try:
        return crypto_sign_ed25519ph_final_create(
            _load(state), bytes(key[:SECRET_KEY_BYTES])
        )
    except SodiumFailure:
        raise data_exception(symbol, "unable to complete signature") from None


def pgsodium_crypto_sign_final_verify(
    env: Env, state: bytes | None, signature: bytes | None, key: bytes | None
) -> bool:
    """Verify an Ed25519ph signature. pgsodium checks no length; arguments shorter
    than libsodium reads can never verify (false), longer ones mean their prefixes."""
    symbol = "pgsodium_crypto_sign_final_verify"
    state = need(symbol, state, "state")
    signature = need(symbol, signature, "signature")
    key = need(symbol, key, "key")

    if (
        len(state) < STATE_BYTES
        or len(signature) < SIGNATURE_BYTES
        or len(key) < PUBLIC_KEY_BYTES
    ):
        return False
    try:
        return crypto_sign_ed25519ph_final_verify(
            _load(state),
            bytes(signature[:SIGNATURE_BYTES]),
            bytes(key[:PUBLIC_KEY_BYTES]),
        )
    except BadSignatureError:
        return False


def _sign_args(
    symbol: str, message: bytes | None, key: bytes | None
) -> tuple[bytes, bytes]:
    message = need(symbol, message, "message")
    key = need(symbol, key, "secretkey")
    if len(key) != SECRET_KEY_BYTES:
        raise data_exception(symbol, "invalid secret key")
    return bytes(message), bytes(key)


def pgsodium_crypto_sign(env: Env, message: bytes | None, key: bytes | None) -> bytes:
    """signature (64) || message. pgsodium truncates this by 3 bytes for a
    short-header message argument; the proxy returns the correct full result."""
    message, key = _sign_args("pgsodium_crypto_sign", message, key)
    return crypto_sign(message, key)


def pgsodium_crypto_sign_detached(
    env: Env, message: bytes | None, key: bytes | None
) -> bytes:
    message, key = _sign_args("pgsodium_crypto_sign_detached", message, key)
    # Ed25519 is deterministic: the combined form starts with the detached signature.
    return crypto_sign(message, key)[:SIGNATURE_BYTES]


def pgsodium_crypto_sign_open(
    env: Env, signed_message: bytes | None, key: bytes | None
) -> bytes:
    """The message of a combined signed message (also exempt from the 3-byte
    truncation pgsodium shows for short-header arguments)."""
    symbol = "pgsodium_crypto_sign_open"
    signed_message = need(symbol, signed_message, "message")
    key = need(symbol, key, "publickey")

    if len(key) != PUBLIC_KEY_BYTES:
        raise data_exception(symbol, "invalid public key")
    if len(signed_message) <= SIGNATURE_BYTES:
        raise data_exception(symbol, "invalid message")
    try:
        return crypto_sign_open(bytes(signed_message), bytes(key))
    except BadSignatureError:
        raise data_exception(symbol, "invalid message") from None


def pgsodium_crypto_sign_verify_detached(
    env: Env, sig: bytes | None, message: bytes | None, key: bytes | None
) -> bool:
    """pgsodium does not check the signature length: libsodium reads 64 bytes. A
    longer signature is judged by its first 64 bytes (as in pgsodium); a shorter
    one can never verify (false)."""
    symbol = "pgsodium_crypto_sign_verify_detached"
    sig = need(symbol, sig, "signature")
    message = need(symbol, message, "message")
    key = need(symbol, key, "publickey")

    if len(key) != PUBLIC_KEY_BYTES:
        raise data_exception(symbol, "invalid public key")
    if len(sig) < SIGNATURE_BYTES:
        return False
    try:
        # crypto_sign_open runs the same Ed25519 verification as the detached API.
        crypto_sign_open(bytes(sig[:SIGNATURE_BYTES]) + bytes(message), bytes(key))
    except BadSignatureError:
        return False
    return True


def pgsodium_crypto_sign_seed_keypair(
    env: Env, seed: bytes | None
) -> tuple[bytes, bytes]:
    """(public 32, secret 64 = seed || public)."""
    symbol = "pgsodium_crypto_sign_seed_keypair"
    seed = need(symbol, seed, "seed")

    if len(seed) != SEED_BYTES:
        raise data_exception(symbol, "invalid seed")
    return crypto_sign_seed_keypair(bytes(seed))


def pgsodium_crypto_sign_keypair(env: Env) -> tuple[bytes, bytes]:
    return crypto_sign_keypair()


def pgsodium_crypto_sign_new_seed(env: Env) -> bytes:
    return secrets.token_bytes(SEED_BYTES)


IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {
    "pgsodium_crypto_sign": pgsodium_crypto_sign,
    "pgsodium_crypto_sign_open": pgsodium_crypto_sign_open,
    "pgsodium_crypto_sign_detached": pgsodium_crypto_sign_detached,
    "pgsodium_crypto_sign_verify_detached": pgsodium_crypto_sign_verify_detached,
    "pgsodium_crypto_sign_seed_keypair": pgsodium_crypto_sign_seed_keypair,
    "pgsodium_crypto_sign_keypair": pgsodium_crypto_sign_keypair,
    "pgsodium_crypto_sign_new_seed": pgsodium_crypto_sign_new_seed,
    "pgsodium_crypto_sign_init": pgsodium_crypto_sign_init,
    "pgsodium_crypto_sign_update": pgsodium_crypto_sign_update,
    "pgsodium_crypto_sign_final_create": pgsodium_crypto_sign_final_create,
    "pgsodium_crypto_sign_final_verify": pgsodium_crypto_sign_final_verify,
}
