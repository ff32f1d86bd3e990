"""Key rows as the proxy receives them from pgsodium._proxy_key_material.

The text names a key and its parent chain: `d,<key_type>,<key_id>,<hex context>` for
a derived key, `r,<key_type>,<id>,<hex raw_key>,<hex nonce>,<hex ad or ->,<parent>`
for a raw key stored encrypted under its parent. Nothing in it is secret without the
root key; a malformed text is an internal error, never guessed around.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .errors import KeystoreError

MAX_CHAIN = 16


@dataclass(frozen=True, slots=True)
class DerivedKey:
    key_type: str
    key_id: int
    context: bytes


@dataclass(frozen=True, slots=True)
class RawKey:
    key_type: str
    id: str
    encrypted: bytes | None
    nonce: bytes | None
    associated_data: bytes | None
    parent: str | None

    def __repr__(self) -> str:
        return (
            f"RawKey(id={self.id!r}, key_type={self.key_type!r}, "
            f"parent={self.parent!r})"
        )


@dataclass(frozen=True, slots=True)
class KeyChain:
    entries: tuple[DerivedKey | RawKey, ...]

    @property
    def head(self) -> DerivedKey | RawKey:
        return self.entries[0]


class MaterialError(KeystoreError):
    """pgsodium._proxy_key_material returned text the proxy does not understand."""


def _hex(field: str) -> bytes | None:
    return bytes.fromhex(field) if field else None


def _entry(text: str) -> DerivedKey | RawKey:
    fields = text.split(",")
    if fields[0] == "d" and len(fields) == 4:
        return DerivedKey(fields[1], int(fields[2]), bytes.fromhex(fields[3]))
    if fields[0] == "r" and len(fields) == 7:
        kind, key_type, key_id, raw, nonce, ad, parent = fields
        return RawKey(
            key_type,
            key_id,
            _hex(raw),
            _hex(nonce),
            None if ad == "-" else bytes.fromhex(ad),
            parent or None,
        )
    raise MaterialError("malformed key material entry")


@functools.lru_cache(maxsize=4096)
def parse_material(text: str) -> KeyChain:
    """The key chain in _proxy_key_material's text. Cached: per-row lookups see
    the same few texts again and again (the chain is immutable)."""
    return _parse_material(text)


def _parse_material(text: str) -> KeyChain:
    parts = text.split(";")
    if not text or len(parts) > MAX_CHAIN:
        raise MaterialError("malformed key material")
    try:
        return KeyChain(tuple(_entry(part) for part in parts))
    except ValueError:
        raise MaterialError("malformed key material") from None
