"""Random bytes, base64 helpers, the raw-key KDF, crypto_cmp and leftover keygens.

Integer arguments are read the way pgsodium's C reads them (uint32 from an integer),
and integer results are returned the way PostgreSQL stores a uint32 in an integer.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from collections.abc import Callable
from typing import Any

from nacl.bindings import randombytes_buf_deterministic

from keystore.derive import (
    CONTEXT_BYTES,
    ROOT_KEY_BYTES,
    SUBKEY_BYTES_MAX,
    SUBKEY_BYTES_MIN,
    Env,
    kdf_derive,
)
from keystore.errors import data_exception

from .derivation import VARHDRSZ, as_uint32, check_alloc, need, undefined

# randombytes_SEEDBYTES: seeds of randombytes_buf_deterministic / new_seed
SEED_BYTES = 32
# crypto_kdf_KEYBYTES, crypto_secretstream_xchacha20poly1305_KEYBYTES
KDF_KEY_BYTES = ROOT_KEY_BYTES
SECRETSTREAM_KEY_BYTES = 32

_INT32_SPAN = 1 << 32
_INT32_MAX = (1 << 31) - 1
_URLSAFE_ALPHABET = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
)


def _as_int32(value: int) -> int:
    """PG_RETURN_UINT32 into an `integer` result: values above 2**31-1 go negative."""
    return value - _INT32_SPAN if value > _INT32_MAX else value


def pgsodium_randombytes_random(env: Env) -> int:
    return _as_int32(secrets.randbits(32))


def pgsodium_randombytes_uniform(env: Env, upper_bound: int | None) -> int:
    """Uniform in [0, upper_bound) with the bound read as uint32 (-1 = 2**32-1);
    libsodium answers 0 for bounds below 2."""
    upper_bound = need("pgsodium_randombytes_uniform", upper_bound, "upper bound")

    bound = as_uint32(upper_bound)
    return _as_int32(secrets.randbelow(bound) if bound >= 2 else 0)


def pgsodium_randombytes_buf(env: Env, size: int | None) -> bytes:
    """`size` random bytes; a negative size is a huge uint32 and fails in palloc."""
    size = need("pgsodium_randombytes_buf", size, "buffer size")

    size = as_uint32(size)
    check_alloc(VARHDRSZ + size)
    return secrets.token_bytes(size)


def pgsodium_randombytes_new_seed(env: Env) -> bytes:
    return secrets.token_bytes(SEED_BYTES)


def pgsodium_randombytes_buf_deterministic(
    env: Env, size: int | None, seed: bytes | None
) -> bytes:
    """libsodium's ChaCha20 DRBG. pgsodium never checks the seed length and reads 32
    bytes: a longer seed means its first 32 bytes (as in pgsodium), a shorter one is
    read past its end (refused)."""
    symbol = "pgsodium_randombytes_buf_deterministic"
    size = need(symbol, size, "buffer size")
    seed = need(symbol, seed, "seed")

    size = as_uint32(size)
    check_alloc(VARHDRSZ + size)
    if len(seed) < SEED_BYTES:
        raise undefined(symbol, "seed shorter than 32 bytes")
    return randombytes_buf_deterministic(size, bytes(seed[:SEED_BYTES]))


def pgsodium_sodium_bin2base64(env: Env, bin: bytes | None) -> str:
    """libsodium's URL-safe base64 without padding."""
    bin = need("pgsodium_sodium_bin2base64", bin, "bin")
    return base64.urlsafe_b64encode(bin).rstrip(b"=").decode("ascii")


def _base642bin(text: str) -> bytes | None:
    """sodium_base642bin(URLSAFE_NO_PADDING) into pgsodium's output buffer, or None.

    libsodium accepts only the URL-safe alphabet, no padding, and zero unused low
    bits. pgsodium sizes its buffer as ((len + 1) / 4) * 3 bytes, one byte short
    whenever len % 4 == 2, so such inputs fail in pgsodium 3.1.11 (reproduced).
    """
    raw = text.encode("utf-8")
    if not _URLSAFE_ALPHABET.issuperset(raw) or len(raw) % 4 == 1:
        return None
    decoded = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != raw:
        return None  # non-zero unused bits: not the canonical encoding
    if len(decoded) > ((len(raw) + 1) // 4) * 3:
        return None
    return decoded


def pgsodium_sodium_base642bin(env: Env, base64_text: str | None) -> bytes:
    symbol = "pgsodium_sodium_base642bin"
    base64_text = need(symbol, base64_text, "base64")

    decoded = _base642bin(base64_text)
    if decoded is None:
        raise data_exception(symbol, "sodium_base642bin() failed")
    return decoded


def pgsodium_crypto_kdf_derive_from_key(
    env: Env,
    subkey_size: int | None,
    subkey_id: int | None,
    context: bytes | None,
    primary_key: bytes | None,
) -> bytes:
    """crypto_kdf_derive_from_key with a caller-supplied primary key. The bigint
    size is read as uint32 by pgsodium, so only its low 32 bits count."""
    symbol = "pgsodium_crypto_kdf_derive_from_key"
    subkey_size = need(symbol, subkey_size, "subkey size")
    subkey_id = need(symbol, subkey_id, "subkey id")
    context = need(symbol, context, "subkey context")
    primary_key = need(symbol, primary_key, "primary key")

    size = as_uint32(subkey_size)
    if len(primary_key) != ROOT_KEY_BYTES:
        raise data_exception(symbol, "invalid derivation key")
    if not SUBKEY_BYTES_MIN <= size <= SUBKEY_BYTES_MAX:
        raise data_exception(symbol, "invalid key size requested")
    if len(context) != CONTEXT_BYTES:
        raise data_exception(symbol, "context must be 8 bytes")
    return kdf_derive(bytes(primary_key), subkey_id, size, bytes(context))


def pgsodium_cmp(env: Env, a: str, b: str) -> bool:
    """crypto_cmp(text, text), STRICT: constant-time equality of the two texts.

    pgsodium's loop runs over the varlena size (header included) from the start of
    the data, i.e. 1 or 4 bytes past the end, so its answer depends on memory; the
    proxy returns the intended (correct) result.
    """
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def pgsodium_crypto_kdf_keygen(env: Env) -> bytes:
    return secrets.token_bytes(KDF_KEY_BYTES)


def pgsodium_crypto_secretstream_xchacha20poly1305_keygen(env: Env) -> bytes:
    return secrets.token_bytes(SECRETSTREAM_KEY_BYTES)


IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {
    "pgsodium_randombytes_random": pgsodium_randombytes_random,
    "pgsodium_randombytes_uniform": pgsodium_randombytes_uniform,
    "pgsodium_randombytes_buf": pgsodium_randombytes_buf,
    "pgsodium_randombytes_new_seed": pgsodium_randombytes_new_seed,
    "pgsodium_randombytes_buf_deterministic": pgsodium_randombytes_buf_deterministic,
    "pgsodium_sodium_bin2base64": pgsodium_sodium_bin2base64,
    "pgsodium_sodium_base642bin": pgsodium_sodium_base642bin,
    "pgsodium_crypto_kdf_derive_from_key": pgsodium_crypto_kdf_derive_from_key,
    "pgsodium_cmp": pgsodium_cmp,
    "pgsodium_crypto_kdf_keygen": pgsodium_crypto_kdf_keygen,
    "pgsodium_crypto_secretstream_xchacha20poly1305_keygen": (
        pgsodium_crypto_secretstream_xchacha20poly1305_keygen
    ),
}
