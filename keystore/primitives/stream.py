"""XChaCha20 (libsodium's crypto_stream_xchacha20*) and pgsodium's stream functions.

HChaCha20 is computed here; the ChaCha20 blocks come from `cryptography`, fed the
64-bit block counter of libsodium's original (djb) ChaCha20 so every output equals
libsodium's. The 'pgosdium' default context of one overload lives in the SQL default.
"""

from __future__ import annotations

import secrets
import struct
import threading
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from keystore.derive import Env
from keystore.errors import data_exception

from .derivation import VARHDRSZ, as_uint64, check_alloc, key_by_id, need, undefined

# crypto_stream_xchacha20_KEYBYTES / _NONCEBYTES
KEY_BYTES = 32
NONCE_BYTES = 24
# HChaCha20 consumes the first 16 nonce bytes; the last 8 are the ChaCha20 nonce.
HCHACHA20_INPUT_BYTES = 16
BLOCK_BYTES = 64

# "expand 32-byte k"
_SIGMA = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)
_MASK32 = 0xFFFF_FFFF
# OpenSSL's ChaCha20 counter word is 32 bits; never let one call cross its wrap.
_BLOCKS_PER_WORD = 1 << 32
_COUNTER_MOD = 1 << 64
_UINT64 = _COUNTER_MOD - 1  # as_uint64, inline on the per-row path


_ZERO_BLOCK = bytes(BLOCK_BYTES)


def hchacha20(key: bytes, nonce16: bytes) -> bytes:
    """crypto_core_hchacha20 with the default constants: a 32-byte subkey.

    HChaCha20 is the ChaCha20 block function without the final feed-forward, so it
    is read off one keystream block computed in C: the block is (rounds + initial
    state), and the initial state's words 0-3 and 12-15 are the constants and the
    16 input bytes (`cryptography` takes them as its 16-byte counter-and-nonce).
    """
    block = Cipher(algorithms.ChaCha20(key, nonce16), mode=None).encryptor()
    words = struct.unpack("<16L", block.update(_ZERO_BLOCK))
    given = struct.unpack("<4L", nonce16)
    return struct.pack(
        "<8L",
        *((words[i] - _SIGMA[i]) & _MASK32 for i in range(4)),
        *((words[12 + i] - given[i]) & _MASK32 for i in range(4)),
    )


_CDEF = """
int crypto_core_hchacha20(unsigned char *out, const unsigned char *in,
                          const unsigned char *k, const unsigned char *c);
int crypto_stream_chacha20_xor_ic(unsigned char *c, const unsigned char *m,
                                  unsigned long long mlen, const unsigned char *n,
                                  uint64_t ic, const unsigned char *k);
"""


def _libsodium() -> tuple[Any, Any] | None:
    """libsodium's own hchacha20 and chacha20_xor_ic from PyNaCl's bundled library.

    PyNaCl binds neither, but its extension module exports libsodium's whole API;
    when these two symbols are there they are libsodium's exact code, called
    through cffi (a few times faster than `cryptography` contexts per call).
    Without them the code below is used.
    """
    try:
        import nacl._sodium as bundled  # type: ignore[import-not-found]
        from cffi import FFI  # type: ignore[import-untyped]

        ffi = FFI()
        ffi.cdef(_CDEF)
        library = ffi.dlopen(bundled.__file__)
        library.crypto_core_hchacha20  # noqa: B018 -- present, or AttributeError
        library.crypto_stream_chacha20_xor_ic  # noqa: B018
    except (ImportError, OSError, AttributeError):
        return None
    return ffi, library


_LIBSODIUM = _libsodium()


class _Scratch(threading.local):
    """One thread's C buffers for the libsodium path, reused by every call (making
    them costs more than the two libsodium calls themselves; bench/rows.py): the
    HChaCha20 subkey and the output of a message of up to _SCRATCH_BYTES."""

    def __init__(self) -> None:
        assert _LIBSODIUM is not None
        ffi = _LIBSODIUM[0]
        self.buffers = (
            ffi.new("unsigned char[32]"),
            ffi.new(f"unsigned char[{_SCRATCH_BYTES}]"),
        )


_SCRATCH_BYTES = 4096


def _xchacha20_xor_libsodium(
    data: bytes, nonce: bytes, key: bytes, ic: int = 0
) -> bytes:
    subkey, out = _SCRATCH.buffers
    size = len(data)
    if size > _SCRATCH_BYTES:  # a large message: a buffer of its own, not kept
        out = _NEW("unsigned char[]", size)
    # cffi passes bytes as they are; only other buffers (memoryview, bytearray)
    # are copied. Every call on a row's path counts (bench/rows.py).
    if type(nonce) is not bytes:
        nonce = bytes(nonce)
    _HCHACHA20(subkey, nonce[:HCHACHA20_INPUT_BYTES], bytes(key), _NULL)
    _CHACHA20_XOR_IC(
        out,
        data if type(data) is bytes else bytes(data),
        size,
        nonce[HCHACHA20_INPUT_BYTES:],
        ic & _UINT64,
        subkey,
    )
    # SECURITY: both buffers are overwritten by the thread's next call; they hold a
    # per-message subkey and the last output, as secret as the plaintext returned.
    return _BUFFER(out, size)[:]  # type: ignore[no-any-return]


def _xchacha20_xor_portable(
    data: bytes, nonce: bytes, key: bytes, ic: int = 0
) -> bytes:
    subkey = hchacha20(key, nonce[:HCHACHA20_INPUT_BYTES])
    nonce8 = nonce[HCHACHA20_INPUT_BYTES:NONCE_BYTES]
    view = memoryview(data)
    counter = as_uint64(ic)
    pieces: list[bytes] = []
    pos = 0
    while pos < len(view):
        room = (_BLOCKS_PER_WORD - (counter & _MASK32)) * BLOCK_BYTES
        take = min(len(view) - pos, room)
        # Words 12-15 of djb ChaCha20: 64-bit counter (LE), then the 8-byte nonce.
        iv = struct.pack("<Q", counter) + nonce8
        enc = Cipher(algorithms.ChaCha20(subkey, iv), mode=None).encryptor()
        pieces.append(enc.update(view[pos : pos + take]))
        pos += take
        counter = (counter + take // BLOCK_BYTES) % _COUNTER_MOD
    return b"".join(pieces)


xchacha20_xor: Callable[..., bytes]
"""crypto_stream_xchacha20_xor_ic(data, nonce, key, ic=0): data XOR keystream from
64-byte block `ic`, libsodium's uint64 block counter (it wraps modulo 2**64 like
libsodium). libsodium's own code when PyNaCl's library exports it (a call less on
each row's path), else the portable code."""

if _LIBSODIUM is not None:
    _SCRATCH = _Scratch()
    _HCHACHA20 = _LIBSODIUM[1].crypto_core_hchacha20
    _CHACHA20_XOR_IC = _LIBSODIUM[1].crypto_stream_chacha20_xor_ic
    _NULL, _BUFFER, _NEW = _LIBSODIUM[0].NULL, _LIBSODIUM[0].buffer, _LIBSODIUM[0].new
    xchacha20_xor = _xchacha20_xor_libsodium
else:
    xchacha20_xor = _xchacha20_xor_portable


def xchacha20_stream(size: int, nonce: bytes, key: bytes) -> bytes:
    """crypto_stream_xchacha20: `size` bytes of keystream."""
    return xchacha20_xor(bytes(size), nonce, key)


def _check_nonce_key(symbol: str, nonce: bytes, key: bytes) -> None:
    if len(nonce) != NONCE_BYTES:
        raise data_exception(symbol, "invalid nonce")
    if len(key) != KEY_BYTES:
        raise data_exception(symbol, "invalid key")


def _stream_size(symbol: str, size: int) -> int:
    """pgsodium allocates VARHDRSZ + size (size_t arithmetic) before other checks.

    A size below -4 wraps to a huge request and fails in palloc exactly as in
    pgsodium; -4..-1 make pgsodium build a malformed bytea, so the proxy refuses.
    """
    total = as_uint64(size + VARHDRSZ)
    check_alloc(total)
    if size < 0:
        raise undefined(symbol, "negative size")
    return size


def pgsodium_crypto_stream_xchacha20(
    env: Env, size: int | None, nonce: bytes | None, key: bytes | None
) -> bytes:
    symbol = "pgsodium_crypto_stream_xchacha20"
    size = need(symbol, size, "size")
    nonce = need(symbol, nonce, "nonce")
    key = need(symbol, key, "key")

    size = _stream_size(symbol, size)
    _check_nonce_key(symbol, nonce, key)
    return xchacha20_stream(size, nonce, key)


def pgsodium_crypto_stream_xchacha20_by_id(
    env: Env,
    size: int | None,
    nonce: bytes | None,
    key_id: int | None,
    context: bytes | None,
) -> bytes:
    symbol = "pgsodium_crypto_stream_xchacha20_by_id"
    size = need(symbol, size, "size")
    nonce = need(symbol, nonce, "nonce")
    key_id = need(symbol, key_id, "key id")
    context = need(symbol, context, "key context")

    key = key_by_id(env, key_id, KEY_BYTES, context)
    size = _stream_size(symbol, size)
    _check_nonce_key(symbol, nonce, key)
    return xchacha20_stream(size, nonce, key)


def pgsodium_crypto_stream_xchacha20_xor(
    env: Env, data: bytes | None, nonce: bytes | None, key: bytes | None
) -> bytes:
    symbol = "pgsodium_crypto_stream_xchacha20_xor"
    data = need(symbol, data, "data")
    nonce = need(symbol, nonce, "nonce")
    key = need(symbol, key, "key")

    _check_nonce_key(symbol, nonce, key)
    return xchacha20_xor(data, nonce, key)


def pgsodium_crypto_stream_xchacha20_xor_by_id(
    env: Env,
    data: bytes | None,
    nonce: bytes | None,
    key_id: int | None,
    context: bytes | None,
) -> bytes:
    symbol = "pgsodium_crypto_stream_xchacha20_xor_by_id"
    data = need(symbol, data, "data")
    nonce = need(symbol, nonce, "nonce")
    key_id = need(symbol, key_id, "key id")
    context = need(symbol, context, "key context")

    key = key_by_id(env, key_id, KEY_BYTES, context)
    _check_nonce_key(symbol, nonce, key)
    return xchacha20_xor(data, nonce, key)


def pgsodium_crypto_stream_xchacha20_xor_ic(
    env: Env,
    data: bytes | None,
    nonce: bytes | None,
    ic: int | None,
    key: bytes | None,
) -> bytes:
    symbol = "pgsodium_crypto_stream_xchacha20_xor_ic"
    data = need(symbol, data, "data")
    nonce = need(symbol, nonce, "nonce")
    ic = need(symbol, ic, "ic")
    key = need(symbol, key, "key")

    _check_nonce_key(symbol, nonce, key)
    return xchacha20_xor(data, nonce, key, ic)


def pgsodium_crypto_stream_xchacha20_xor_ic_by_id(
    env: Env,
    data: bytes | None,
    nonce: bytes | None,
    ic: int | None,
    key_id: int | None,
    context: bytes | None,
) -> bytes:
    symbol = "pgsodium_crypto_stream_xchacha20_xor_ic_by_id"
    data = need(symbol, data, "data")
    nonce = need(symbol, nonce, "nonce")
    ic = need(symbol, ic, "ic")
    # pgsodium's own wording for a NULL key id here ("key id context").
    key_id = need(symbol, key_id, "key id context")
    context = need(symbol, context, "key context")

    key = key_by_id(env, key_id, KEY_BYTES, context)
    _check_nonce_key(symbol, nonce, key)
    return xchacha20_xor(data, nonce, key, ic)


def pgsodium_crypto_stream_xchacha20_keygen(env: Env) -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def pgsodium_crypto_stream_xchacha20_noncegen(env: Env) -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {
    "pgsodium_crypto_stream_xchacha20": pgsodium_crypto_stream_xchacha20,
    "pgsodium_crypto_stream_xchacha20_by_id": pgsodium_crypto_stream_xchacha20_by_id,
    "pgsodium_crypto_stream_xchacha20_xor": pgsodium_crypto_stream_xchacha20_xor,
    "pgsodium_crypto_stream_xchacha20_xor_by_id": (
        pgsodium_crypto_stream_xchacha20_xor_by_id
    ),
    "pgsodium_crypto_stream_xchacha20_xor_ic": pgsodium_crypto_stream_xchacha20_xor_ic,
    "pgsodium_crypto_stream_xchacha20_xor_ic_by_id": (
        pgsodium_crypto_stream_xchacha20_xor_ic_by_id
    ),
    "pgsodium_crypto_stream_xchacha20_keygen": pgsodium_crypto_stream_xchacha20_keygen,
    "pgsodium_crypto_stream_xchacha20_noncegen": (
        pgsodium_crypto_stream_xchacha20_noncegen
    ),
}
