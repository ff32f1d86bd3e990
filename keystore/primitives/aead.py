"""AEAD: pgsodium's aead-det (XChaCha20-SIV, reference §4) and ChaCha20-Poly1305-IETF.

Rule: decryption returns plaintext only after the tag has been checked in constant
time; a mismatch raises `invalid ciphertext` and the candidate plaintext is dropped.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from keystore.derive import Env
from keystore.errors import PgsodiumError, data_exception

from .derivation import key_by_id, need
from .stream import xchacha20_xor

# crypto_aead_det_xchacha20_KEYBYTES / _ABYTES / _NONCEBYTES
DET_KEY_BYTES = 32
DET_TAG_BYTES = 32
DET_NONCE_BYTES = 16
# crypto_aead_chacha20poly1305_IETF_KEYBYTES / _NPUBBYTES / _ABYTES
IETF_KEY_BYTES = 32
IETF_NONCE_BYTES = 12
IETF_TAG_BYTES = 16

# The first 24 tag bytes are the XChaCha20 nonce of the det construction.
_DET_STREAM_NONCE_BYTES = 24
_BITS = 256
_MASK256 = (1 << _BITS) - 1
# dbl() reduction constant of the S2V doubling in GF(2^256): x^10 + x^5 + x^2 + 1.
_DBL_REDUCTION = 0x425
_ZERO_BLOCK = bytes(DET_TAG_BYTES)


def _b2(key: bytes, *parts: bytes | memoryview) -> bytes:
    """crypto_generichash: keyed BLAKE2b-256 over the concatenation of `parts`."""
    h = _keyed(key).copy()
    for part in parts:
        h.update(part)
    return h.digest()  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=1024)
def _keyed(key: bytes) -> Any:
    """BLAKE2b-256 keyed with `key`, its key block already absorbed: copied per
    message, which saves one compression a call. Cached per key, as _det (as
    secret as the keys the proxy already holds in memory)."""
    return hashlib.blake2b(digest_size=DET_TAG_BYTES, key=key)


def _dbl(d: int) -> int:
    carry = d >> (_BITS - 1)
    return ((d << 1) & _MASK256) ^ (_DBL_REDUCTION if carry else 0)


@dataclass(frozen=True, slots=True)
class _Det:
    """What every message under one det key and nonce shares, computed once: the
    stream key Ke, BLAKE2b keyed with Ka, and the S2V chain's value before the
    AD step. The nonce's step follows the AD's, so only its hash is kept."""

    ke: bytes
    keyed: Any
    d: int  # D = BLAKE2b(32 zero bytes) under Ka
    doubled: int  # dbl(D)
    nonce_hash: int | None


@functools.lru_cache(maxsize=1024)
def _det(key: bytes, nonce: bytes | None) -> _Det:
    """The shared state of (key, nonce). Cached: rows decrypted under one key
    repeat it (the cache is as secret as the keys the proxy already holds)."""
    # Ka || Ke = BLAKE2b-512 of the empty message keyed with the det key.
    both = hashlib.blake2b(b"", digest_size=64, key=key).digest()
    ka, ke = both[:32], both[32:]
    keyed = _keyed(ka)
    d = int.from_bytes(_b2(ka, _ZERO_BLOCK), "big")
    nonce_hash = None if nonce is None else int.from_bytes(_b2(ka, nonce), "big")
    return _Det(ke, keyed, d, _dbl(d), nonce_hash)


def _s2v(det: _Det, m: bytes, ad: bytes | None) -> bytes:
    """The SIV tag: BLAKE2b-based S2V over (AD, nonce, message), as pgsodium's C."""
    d, doubled = det.d, det.doubled
    if ad:  # a NULL and an empty AD both skip this step
        h = det.keyed.copy()
        h.update(ad)
        d = doubled ^ int.from_bytes(h.digest(), "big")
        doubled = _dbl(d)
    if det.nonce_hash is not None:
        d = doubled ^ det.nonce_hash
        doubled = _dbl(d)

    h = det.keyed.copy()
    if len(m) >= DET_TAG_BYTES:
        view = memoryview(m)
        tail = int.from_bytes(view[-DET_TAG_BYTES:], "big")
        h.update(view[:-DET_TAG_BYTES])
        h.update((d ^ tail).to_bytes(DET_TAG_BYTES, "big"))
        return h.digest()  # type: ignore[no-any-return]
    # Short message: pad with 0x80 then zeros, XOR into dbl(D).
    padded = int.from_bytes(bytes(m) + b"\x80", "big") << 8 * (
        DET_TAG_BYTES - 1 - len(m)
    )
    h.update((doubled ^ padded).to_bytes(DET_TAG_BYTES, "big"))
    return h.digest()  # type: ignore[no-any-return]


def det_encrypt(m: bytes, ad: bytes | None, key: bytes, nonce: bytes | None) -> bytes:
    """crypto_aead_det_xchacha20_encrypt: ciphertext || 32-byte tag."""
    return _fast_det_seal(_det(key, nonce), m, ad)


def det_decrypt(
    c: bytes, ad: bytes | None, key: bytes, nonce: bytes | None
) -> bytes | None:
    """crypto_aead_det_xchacha20_decrypt: plaintext, or None if the tag is wrong."""
    if len(c) < DET_TAG_BYTES:
        return None
    return _open(_det(key, nonce), c, ad)


def _open(det: _Det, c: bytes, ad: bytes | None) -> bytes | None:
    tag = c[-DET_TAG_BYTES:]
    m = xchacha20_xor(c[:-DET_TAG_BYTES], tag[:_DET_STREAM_NONCE_BYTES], det.ke)
    # SECURITY: constant-time tag check; unauthenticated plaintext never escapes.
    if not hmac.compare_digest(_s2v(det, m, ad), tag):
        return None
    return m


def _check_det_nonce(symbol: str, nonce: bytes | None) -> None:
    if nonce is not None and len(nonce) != DET_NONCE_BYTES:
        raise data_exception(symbol, "invalid nonce")


def _det_open(
    symbol: str, c: bytes, ad: bytes | None, key: bytes, nonce: bytes | None
) -> bytes:
    m = det_decrypt(c, ad, key, nonce)
    if m is None:
        raise data_exception(symbol, "invalid ciphertext")
    return m


def pgsodium_crypto_aead_det_encrypt(
    env: Env,
    message: bytes | None,
    additional: bytes | None,
    key: bytes | None,
    nonce: bytes | None,
) -> bytes:
    symbol = "pgsodium_crypto_aead_det_encrypt"
    message = need(symbol, message, "message")
    key = need(symbol, key, "key")

    if len(key) != DET_KEY_BYTES:
        raise data_exception(symbol, "invalid key")
    _check_det_nonce(symbol, nonce)
    return det_encrypt(message, additional, key, nonce)


def pgsodium_crypto_aead_det_decrypt(
    env: Env,
    ciphertext: bytes | None,
    additional: bytes | None,
    key: bytes | None,
    nonce: bytes | None,
) -> bytes:
    """Raw-key det decrypt. A 32-byte input (an empty message's ciphertext) is refused
    with `invalid message`, as in pgsodium."""
    symbol = "pgsodium_crypto_aead_det_decrypt"
    ciphertext = need(symbol, ciphertext, "ciphertext")
    key = need(symbol, key, "key")

    if len(ciphertext) <= DET_TAG_BYTES:
        raise data_exception(symbol, "invalid message")
    if len(key) != DET_KEY_BYTES:
        raise data_exception(symbol, "invalid key")
    _check_det_nonce(symbol, nonce)
    return _det_open(symbol, ciphertext, additional, key, nonce)


def pgsodium_crypto_aead_det_encrypt_by_id(
    env: Env,
    message: bytes | None,
    additional: bytes | None,
    key_id: int | None,
    context: bytes | None,
    nonce: bytes | None,
) -> bytes:
    symbol = "pgsodium_crypto_aead_det_encrypt_by_id"
    message = need(symbol, message, "message")
    key_id = need(symbol, key_id, "key id")
    context = need(symbol, context, "key context")

    _check_det_nonce(symbol, nonce)
    key = key_by_id(env, key_id, DET_KEY_BYTES, context)
    return det_encrypt(message, additional, key, nonce)


def pgsodium_crypto_aead_det_decrypt_by_id(
    env: Env,
    message: bytes | None,
    additional: bytes | None,
    key_id: int | None,
    context: bytes | None,
    nonce: bytes | None,
) -> bytes:
    """Key-id det decrypt: nonce length is checked before the input length, and the
    NULL-ciphertext error says `message` (the SQL argument's name), as in pgsodium."""
    symbol = "pgsodium_crypto_aead_det_decrypt_by_id"
    message = need(symbol, message, "message")
    key_id = need(symbol, key_id, "key id")
    context = need(symbol, context, "key context")

    _check_det_nonce(symbol, nonce)
    if len(message) <= DET_TAG_BYTES:
        raise data_exception(symbol, "invalid message")
    key = key_by_id(env, key_id, DET_KEY_BYTES, context)
    return _det_open(symbol, message, additional, key, nonce)


def _ietf_seal(m: bytes, ad: bytes | None, nonce: bytes, key: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(nonce, m, ad)


def _ietf_open(
    symbol: str, c: bytes, ad: bytes | None, nonce: bytes, key: bytes
) -> bytes:
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, c, ad)
    except InvalidTag:
        raise data_exception(symbol, "invalid ciphertext") from None


def pgsodium_crypto_aead_ietf_encrypt(
    env: Env,
    message: bytes | None,
    additional: bytes | None,
    nonce: bytes | None,
    key: bytes | None,
) -> bytes:
    symbol = "pgsodium_crypto_aead_ietf_encrypt"
    message = need(symbol, message, "message")
    nonce = need(symbol, nonce, "nonce")
    key = need(symbol, key, "key")

    if len(nonce) != IETF_NONCE_BYTES:
        raise data_exception(symbol, "invalid nonce")
    if len(key) != IETF_KEY_BYTES:
        raise data_exception(symbol, "invalid key")
    return _ietf_seal(message, additional, nonce, key)


def pgsodium_crypto_aead_ietf_decrypt(
    env: Env,
    message: bytes | None,
    additional: bytes | None,
    nonce: bytes | None,
    key: bytes | None,
) -> bytes:
    symbol = "pgsodium_crypto_aead_ietf_decrypt"
    message = need(symbol, message, "ciphertext")
    nonce = need(symbol, nonce, "nonce")
    key = need(symbol, key, "key")

    if len(message) <= IETF_TAG_BYTES:
        raise data_exception(symbol, "invalid message")
    if len(nonce) != IETF_NONCE_BYTES:
        raise data_exception(symbol, "invalid nonce")
    if len(key) != IETF_KEY_BYTES:
        raise data_exception(symbol, "invalid key")
    return _ietf_open(symbol, message, additional, nonce, key)


def pgsodium_crypto_aead_ietf_encrypt_by_id(
    env: Env,
    message: bytes | None,
    additional: bytes | None,
    nonce: bytes | None,
    key_id: int | None,
    context: bytes | None,
) -> bytes:
    symbol = "pgsodium_crypto_aead_ietf_encrypt_by_id"
    message = need(symbol, message, "message")
    nonce = need(symbol, nonce, "nonce")
    key_id = need(symbol, key_id, "key id")
    context = need(symbol, context, "key context")

    if len(nonce) != IETF_NONCE_BYTES:
        raise data_exception(symbol, "invalid nonce")
    key = key_by_id(env, key_id, IETF_KEY_BYTES, context)
    return _ietf_seal(message, additional, nonce, key)


def pgsodium_crypto_aead_ietf_decrypt_by_id(
    env: Env,
    message: bytes | None,
    additional: bytes | None,
    nonce: bytes | None,
    key_id: int | None,
    context: bytes | None,
) -> bytes:
    symbol = "pgsodium_crypto_aead_ietf_decrypt_by_id"
    message = need(symbol, message, "ciphertext")
    nonce = need(symbol, nonce, "nonce")
    key_id = need(symbol, key_id, "key id")
    context = need(symbol, context, "key context")

    if len(message) <= IETF_TAG_BYTES:
        raise data_exception(symbol, "invalid message")
    if len(nonce) != IETF_NONCE_BYTES:
        raise data_exception(symbol, "invalid nonce")
    key = key_by_id(env, key_id, IETF_KEY_BYTES, context)
    return _ietf_open(symbol, message, additional, nonce, key)


def pgsodium_crypto_aead_det_keygen(env: Env) -> bytes:
    return secrets.token_bytes(DET_KEY_BYTES)


def pgsodium_crypto_aead_det_noncegen(env: Env) -> bytes:
    return secrets.token_bytes(DET_NONCE_BYTES)


def pgsodium_crypto_aead_ietf_keygen(env: Env) -> bytes:
    return secrets.token_bytes(IETF_KEY_BYTES)


def pgsodium_crypto_aead_ietf_noncegen(env: Env) -> bytes:
    return secrets.token_bytes(IETF_NONCE_BYTES)


IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {
    "pgsodium_crypto_aead_det_encrypt": pgsodium_crypto_aead_det_encrypt,
    "pgsodium_crypto_aead_det_decrypt": pgsodium_crypto_aead_det_decrypt,
    "pgsodium_crypto_aead_det_encrypt_by_id": pgsodium_crypto_aead_det_encrypt_by_id,
    "pgsodium_crypto_aead_det_decrypt_by_id": pgsodium_crypto_aead_det_decrypt_by_id,
    "pgsodium_crypto_aead_det_keygen": pgsodium_crypto_aead_det_keygen,
    "pgsodium_crypto_aead_det_noncegen": pgsodium_crypto_aead_det_noncegen,
    "pgsodium_crypto_aead_ietf_encrypt": pgsodium_crypto_aead_ietf_encrypt,
    "pgsodium_crypto_aead_ietf_decrypt": pgsodium_crypto_aead_ietf_decrypt,
    "pgsodium_crypto_aead_ietf_encrypt_by_id": pgsodium_crypto_aead_ietf_encrypt_by_id,
    "pgsodium_crypto_aead_ietf_decrypt_by_id": pgsodium_crypto_aead_ietf_decrypt_by_id,
    "pgsodium_crypto_aead_ietf_keygen": pgsodium_crypto_aead_ietf_keygen,
    "pgsodium_crypto_aead_ietf_noncegen": pgsodium_crypto_aead_ietf_noncegen,
}


# -- per-row binding ---------------------------------------------------------------
#
# A call over rows with a constant key id, context and nonce (the common shape:
# `crypto_aead_det_decrypt(secret, ad, 42)`) derives the same key for every row.
# bind_* derive it once; each row then takes the fast path exactly when every check
# of the unbound function would pass, and the unbound function otherwise, so errors
# and their order are pgsodium's.

KEY_ARGS = (2, 3, 4)  # key_id, context, nonce of the two _by_id functions


def _bound_state(env: Env, constants: dict[int, Any]) -> _Det | None:
    """The det state of a call's constant key id, context and nonce, when every
    check of the unbound function on them passes."""
    key_id, context, nonce = (constants[i] for i in KEY_ARGS)
    if key_id is None or context is None:
        return None
    if nonce is not None and len(nonce) != DET_NONCE_BYTES:
        return None
    try:
        return _det(key_by_id(env, key_id, DET_KEY_BYTES, context), nonce)
    except PgsodiumError:  # the unbound path raises it, row by row
        return None


Fast = Callable[[_Det, bytes, bytes | None], bytes | None]


def _binder(
    unbound: Callable[..., bytes], fast: Fast, shortest: int = 0
) -> Callable[..., Any]:
    """A binder for `unbound`: `fast(state, message, additional)` serves a row
    of at least `shortest` bytes whose checks all pass; None from it, or a
    shorter message, lets the unbound function answer (with its error)."""

    def bind(
        env: Env, constants: dict[int, Any]
    ) -> Callable[[bytes | None, bytes | None], bytes] | None:
        if not set(KEY_ARGS) <= constants.keys():
            return None
        state = _bound_state(env, constants)
        key_id, context, nonce = (constants[i] for i in KEY_ARGS)

        def slow(message: bytes | None, additional: bytes | None) -> bytes:
            return unbound(env, message, additional, key_id, context, nonce)

        if state is None:
            return slow

        def run(message: bytes | None, additional: bytes | None) -> bytes:
            if message is not None and len(message) >= shortest:
                result = fast(state, message, additional)
                if result is not None:
                    return result
            return slow(message, additional)

        return run

    return bind


def _fast_det_seal(det: _Det, message: bytes, additional: bytes | None) -> bytes:
    tag = _s2v(det, message, additional)
    return xchacha20_xor(message, tag[:_DET_STREAM_NONCE_BYTES], det.ke) + tag


# A wrong tag is `invalid ciphertext`, 32 bytes or fewer `invalid message`.
bind_det_decrypt_by_id = _binder(
    pgsodium_crypto_aead_det_decrypt_by_id, _open, DET_TAG_BYTES + 1
)
bind_det_encrypt_by_id = _binder(pgsodium_crypto_aead_det_encrypt_by_id, _fast_det_seal)


BINDERS: dict[str, Callable[..., Any]] = {
    "pgsodium_crypto_aead_det_decrypt_by_id": bind_det_decrypt_by_id,
    "pgsodium_crypto_aead_det_encrypt_by_id": bind_det_encrypt_by_id,
}
