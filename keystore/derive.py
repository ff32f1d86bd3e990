"""Root-key derivation: crypto_kdf_derive_from_key and pgsodium_derive_helper.

The root key lives only inside an `Env`; what leaves it is a derived key, computed
exactly as pgsodium 3.1.11 computes it (keyed BLAKE2b with salt and personal), and no
repr or error text ever shows key bytes.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

from .errors import RootKeyError, data_exception

# crypto_kdf_KEYBYTES: the root key (and any primary key of crypto_kdf) is 32 bytes.
ROOT_KEY_BYTES = 32
# crypto_kdf_CONTEXTBYTES: a key context is exactly 8 bytes.
CONTEXT_BYTES = 8
# crypto_kdf_BYTES_MIN / crypto_kdf_BYTES_MAX: derived keys are 16 to 64 bytes long.
SUBKEY_BYTES_MIN = 16
SUBKEY_BYTES_MAX = 64
# pgsodium's default key context, b"pgsodium" = '\x7067736f6469756d'.
DEFAULT_CONTEXT = b"pgsodium"

# A SQL bigint key id is handed to libsodium as uint64_t (two's complement).
_UINT64_MASK = 0xFFFF_FFFF_FFFF_FFFF
# BLAKE2b salt and personal are 16 bytes; libsodium zero-fills their second halves.
_ZERO_HALF = bytes(8)

# Derived keys kept per Env (one Env serves one statement execution).
_DERIVED_CACHE_SIZE = 4096

# The C helper every key-id function goes through; its name prefixes its errors.
DERIVE_HELPER = "pgsodium_derive_helper"


def kdf_derive(master: bytes, subkey_id: int, size: int, context: bytes) -> bytes:
    """libsodium's crypto_kdf_derive_from_key(size, subkey_id, context, master).

    `subkey_id` may be a signed SQL bigint: it is reinterpreted as uint64. Sizes
    outside 16..64, a context that is not 8 bytes or a master key that is not 32
    bytes raise ValueError (callers check first and raise pgsodium's errors).
    """
    if len(master) != ROOT_KEY_BYTES:
        raise ValueError("crypto_kdf master key must be 32 bytes")
    if not SUBKEY_BYTES_MIN <= size <= SUBKEY_BYTES_MAX:
        raise ValueError("crypto_kdf subkey size must be 16..64 bytes")
    if len(context) != CONTEXT_BYTES:
        raise ValueError("crypto_kdf context must be 8 bytes")

    salt = struct.pack("<Q", subkey_id & _UINT64_MASK) + _ZERO_HALF
    return hashlib.blake2b(
        b"",
        digest_size=size,
        key=master,
        salt=salt,
        person=bytes(context) + _ZERO_HALF,
    ).digest()


class Env:
    """What the implementations may use of the server: the root key, by derivation only.

    `Env(None)` is a server whose root key is not loaded (pgsodium not preloaded):
    every derivation fails the way pgsodium fails.
    """

    __slots__ = ("_root_key", "_derived")

    def __init__(self, root_key: bytes | None) -> None:
        if root_key is not None and len(root_key) != ROOT_KEY_BYTES:
            raise RootKeyError(f"the root key must be {ROOT_KEY_BYTES} bytes")
        self._root_key = None if root_key is None else bytes(root_key)
        # Derived keys by (key id, size, context): rows under one key repeat it.
        self._derived: dict[tuple[int, int, bytes], bytes] = {}

    @property
    def has_root_key(self) -> bool:
        return self._root_key is not None

    def derive(self, key_id: int, size: int, context: bytes) -> bytes:
        """pgsodium_derive_helper: derive(key_id, size, context) from the root key.

        Check order and texts follow pgsodium: root key present, then size, then
        context length; each failure is SQLSTATE 22000 `pgsodium_derive_helper: ...`.
        """
        if self._root_key is None:
            raise data_exception(
                DERIVE_HELPER, "pgsodium_derive: no server secret key defined."
            )
        if not SUBKEY_BYTES_MIN <= size <= SUBKEY_BYTES_MAX:
            raise data_exception(
                DERIVE_HELPER, "crypto_kdf_derive_from_key: invalid key size requested"
            )
        if len(context) != CONTEXT_BYTES:
            raise data_exception(
                DERIVE_HELPER, "crypto_kdf_derive_from_key: context must be 8 bytes"
            )
        cache_key = (key_id, size, bytes(context))
        derived = self._derived.get(cache_key)
        if derived is None:
            if len(self._derived) >= _DERIVED_CACHE_SIZE:
                self._derived.clear()
            derived = kdf_derive(self._root_key, key_id, size, context)
            self._derived[cache_key] = derived
        return derived

    def __repr__(self) -> str:
        # SECURITY: never show key bytes, not even a fingerprint of them.
        state = "loaded" if self._root_key is not None else "absent"
        return f"Env(root_key=<{state}, redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[Any, ...]:
        # SECURITY: an Env must not be pickled (that would serialise the root key).
        raise TypeError("Env holds the root key and cannot be pickled")
