"""Every crypto signature of pgsodium 3.1.11 called through the proxy, all protocols.

Each case is one SELECT with bind parameters; it runs through the simple protocol
(client-side binding), the extended protocol with text parameters and the extended
protocol with binary parameters. Its answer is checked against an independent
computation (hashlib, hmac, PyNaCl) or a round trip; key id variants are held to the
raw-key variant under derive_key(), and key uuid variants to the key id (derived
key) or raw-key (external key) variant. A last test holds the case table to the
catalogue, so no signature goes uncalled.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import struct
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import nacl.bindings as sodium
import psycopg
import pytest

from keystore import catalogue
from keystore.primitives.signcrypt import new_keypair

from .conftest import ROOT_KEY, RunningProxy, make_database

M = b"bob is your uncle"
AD = b"associated"
RAW32 = bytes(range(0x40, 0x60))
RAW16 = bytes(range(0x40, 0x50))
N12 = bytes(range(0x70, 0x7C))
N16 = bytes(range(0x70, 0x80))
N24 = bytes(range(0x70, 0x88))
SEED = bytes(range(0xA0, 0xC0))
CONTEXT = b"pgsodium"
TYPO_CONTEXT = b"pgosdium"  # crypto_stream_xchacha20_xor's default (§3 quirk)
KEY_TYPES = (
    "aead-det",
    "aead-ietf",
    "auth",
    "hmacsha256",
    "hmacsha512",
    "generichash",
    "shorthash",
    "secretbox",
    "kdf",
    "ipcrypt-det",
    "ipcrypt-pfx",
    "ipcrypt-nd",
    "ipcrypt-ndx",
)
RAW_LENGTH = {"shorthash": 16, "ipcrypt-det": 16, "ipcrypt-nd": 16}
# The aggregates run over rows (test_sign_update_agg_*).
AGGREGATE_COVERS = (
    "pgsodium.crypto_sign_update_agg(bytea)",
    "pgsodium.crypto_sign_update_agg(bytea,bytea)",
)


def derive(key_id: int, size: int = 32, context: bytes = CONTEXT) -> bytes:
    """pgsodium's derive_key, computed here independently of the keystore."""
    return hashlib.blake2b(
        b"",
        digest_size=size,
        key=ROOT_KEY.secret,
        salt=struct.pack("<Q", key_id & (2**64 - 1)) + bytes(8),
        person=context + bytes(8),
    ).digest()


def kdf(size: int, subkey_id: int, context: bytes, primary: bytes) -> bytes:
    return hashlib.blake2b(
        b"",
        digest_size=size,
        key=primary,
        salt=struct.pack("<Q", subkey_id) + bytes(8),
        person=context + bytes(8),
    ).digest()


@dataclass(frozen=True)
class Keys:
    """Keys of every type: derived (uuid, key id, context) and external (uuid)."""

    derived: dict[str, tuple[uuid.UUID, int, bytes]]
    raw: dict[str, uuid.UUID]


@dataclass(frozen=True)
class Case:
    name: str
    covers: tuple[str, ...]
    sql: str
    params: Callable[[Keys], list[Any]]
    expect: Callable[[Keys, tuple[Any, ...]], bool]


CASES: list[Case] = []


def case(
    name: str,
    covers: str,
    sql: str,
    params: Callable[[Keys], list[Any]] | list[Any] = (),  # type: ignore[assignment]
    expect: Any = True,
) -> None:
    """Register one statement. `covers` lists signatures as `name(type,...)`;
    `expect` is the single value expected, or a check of (keys, row)."""
    given = params if callable(params) else (lambda _k, p=list(params): p)
    if callable(expect):
        check = expect
    else:

        def check(_k: Keys, row: tuple[Any, ...], e: Any = expect) -> bool:
            return len(row) == 1 and _plain(row[0]) == e

    covered = tuple("pgsodium." + c.strip() for c in covers.split(";") if c.strip())
    CASES.append(Case(name, covered, sql, given, check))


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview) else value


def _id(k: Keys, key_type: str) -> int:
    return k.derived[key_type][1]


def _uuid(k: Keys, key_type: str) -> uuid.UUID:
    return k.derived[key_type][0]


def lengths(*sizes: int) -> Callable[[Keys, tuple[Any, ...]], bool]:
    return lambda _k, row: [len(_plain(v)) for v in row] == list(sizes)


# -- aead-det -----------------------------------------------------------------------

case(
    "det raw round trip, default nonce",
    "crypto_aead_det_encrypt(bytea,bytea,bytea,bytea);"
    "crypto_aead_det_decrypt(bytea,bytea,bytea,bytea)",
    "select pgsodium.crypto_aead_det_decrypt("
    "pgsodium.crypto_aead_det_encrypt(%s, %s, %s), %s, %s)",
    [M, AD, RAW32, AD, RAW32],
    M,
)
case(
    "det raw round trip with a nonce",
    "crypto_aead_det_encrypt(bytea,bytea,bytea,bytea);"
    "crypto_aead_det_decrypt(bytea,bytea,bytea,bytea)",
    "select pgsodium.crypto_aead_det_decrypt("
    "pgsodium.crypto_aead_det_encrypt(%s, %s, %s, %s), %s, %s, %s)",
    [M, AD, RAW32, N16, AD, RAW32, N16],
    M,
)
case(
    "det key id equals raw key derive_key(id)",
    "crypto_aead_det_encrypt(bytea,bytea,bigint,bytea,bytea);derive_key(bigint,integer,bytea)",
    "select pgsodium.crypto_aead_det_encrypt(%s, %s, %s::bigint) = "
    "pgsodium.crypto_aead_det_encrypt(%s, %s, pgsodium.derive_key(%s))",
    lambda k: [M, AD, _id(k, "aead-det"), M, AD, _id(k, "aead-det")],
)
case(
    "det key id round trip, context and nonce",
    "crypto_aead_det_encrypt(bytea,bytea,bigint,bytea,bytea);"
    "crypto_aead_det_decrypt(bytea,bytea,bigint,bytea,bytea)",
    "select pgsodium.crypto_aead_det_decrypt(pgsodium.crypto_aead_det_encrypt("
    "%s, %s, %s::bigint, %s, %s), %s, %s::bigint, %s, %s)",
    lambda k: [M, AD, 7, b"context1", N16, AD, 7, b"context1", N16],
    M,
)
case(
    "det key uuid equals its key id",
    "crypto_aead_det_encrypt(bytea,bytea,uuid);crypto_aead_det_decrypt(bytea,bytea,uuid)",
    "select pgsodium.crypto_aead_det_encrypt(%s, %s, %s) = "
    "pgsodium.crypto_aead_det_encrypt(%s, %s, %s::bigint, %s), "
    "pgsodium.crypto_aead_det_decrypt(pgsodium.crypto_aead_det_encrypt(%s, %s, %s), "
    "%s, %s)",
    lambda k: [
        M,
        AD,
        _uuid(k, "aead-det"),
        M,
        AD,
        _id(k, "aead-det"),
        CONTEXT,
        M,
        AD,
        _uuid(k, "aead-det"),
        AD,
        _uuid(k, "aead-det"),
    ],
    lambda _k, row: row[0] is True and bytes(row[1]) == M,
)
case(
    "det key uuid with a nonce",
    "crypto_aead_det_encrypt(bytea,bytea,uuid,bytea);"
    "crypto_aead_det_decrypt(bytea,bytea,uuid,bytea)",
    "select pgsodium.crypto_aead_det_decrypt(pgsodium.crypto_aead_det_encrypt("
    "%s, %s, %s, %s), %s, %s, %s), pgsodium.crypto_aead_det_encrypt(%s, %s, %s, %s)"
    " = pgsodium.crypto_aead_det_encrypt(%s, %s, %s::bytea, %s)",
    lambda k: [
        M,
        AD,
        _uuid(k, "aead-det"),
        N16,
        AD,
        _uuid(k, "aead-det"),
        N16,
        M,
        AD,
        k.raw["aead-det"],
        N16,
        M,
        AD,
        RAW32,
        N16,
    ],
    lambda _k, row: bytes(row[0]) == M and row[1] is True,
)
case(
    "det external key uuid equals its raw key",
    "crypto_aead_det_encrypt(bytea,bytea,uuid)",
    "select pgsodium.crypto_aead_det_encrypt(%s, %s, %s) = "
    "pgsodium.crypto_aead_det_encrypt(%s, %s, %s::bytea)",
    lambda k: [M, AD, k.raw["aead-det"], M, AD, RAW32],
)
case(
    "det keygen and noncegen",
    "crypto_aead_det_keygen();crypto_aead_det_noncegen()",
    "select pgsodium.crypto_aead_det_keygen(), pgsodium.crypto_aead_det_noncegen()",
    [],
    lengths(32, 16),
)

# -- aead-ietf ----------------------------------------------------------------------

case(
    "ietf raw known answer and round trip",
    "crypto_aead_ietf_encrypt(bytea,bytea,bytea,bytea);"
    "crypto_aead_ietf_decrypt(bytea,bytea,bytea,bytea)",
    "select pgsodium.crypto_aead_ietf_encrypt(%s, %s, %s, %s), "
    "pgsodium.crypto_aead_ietf_decrypt("
    "pgsodium.crypto_aead_ietf_encrypt(%s, %s, %s, %s), %s, %s, %s)",
    [M, AD, N12, RAW32, M, AD, N12, RAW32, AD, N12, RAW32],
    lambda _k, row: (
        bytes(row[0])
        == sodium.crypto_aead_chacha20poly1305_ietf_encrypt(M, AD, N12, RAW32)
        and bytes(row[1]) == M
    ),
)
case(
    "ietf key id equals raw derive_key(id), round trip",
    "crypto_aead_ietf_encrypt(bytea,bytea,bytea,bigint,bytea);"
    "crypto_aead_ietf_decrypt(bytea,bytea,bytea,bigint,bytea)",
    "select pgsodium.crypto_aead_ietf_encrypt(%s, %s, %s, %s::bigint), "
    "pgsodium.crypto_aead_ietf_decrypt(pgsodium.crypto_aead_ietf_encrypt("
    "%s, %s, %s, %s::bigint, %s), %s, %s, %s::bigint, %s)",
    [M, AD, N12, 3, M, AD, N12, 3, b"context2", AD, N12, 3, b"context2"],
    lambda _k, row: (
        bytes(row[0])
        == sodium.crypto_aead_chacha20poly1305_ietf_encrypt(M, AD, N12, derive(3))
        and bytes(row[1]) == M
    ),
)
case(
    "ietf key uuid equals its key id, round trip",
    "crypto_aead_ietf_encrypt(bytea,bytea,bytea,uuid);"
    "crypto_aead_ietf_decrypt(bytea,bytea,bytea,uuid)",
    "select pgsodium.crypto_aead_ietf_encrypt(%s, %s, %s, %s), "
    "pgsodium.crypto_aead_ietf_decrypt("
    "pgsodium.crypto_aead_ietf_encrypt(%s, %s, %s, %s), %s, %s, %s)",
    lambda k: (
        [M, AD, N12, _uuid(k, "aead-ietf")]
        + [M, AD, N12, k.raw["aead-ietf"], AD, N12, k.raw["aead-ietf"]]
    ),
    lambda k, row: (
        bytes(row[0])
        == sodium.crypto_aead_chacha20poly1305_ietf_encrypt(
            M, AD, N12, derive(_id(k, "aead-ietf"))
        )
        and bytes(row[1]) == M
    ),
)
case(
    "ietf keygen and noncegen",
    "crypto_aead_ietf_keygen();crypto_aead_ietf_noncegen()",
    "select pgsodium.crypto_aead_ietf_keygen(), pgsodium.crypto_aead_ietf_noncegen()",
    [],
    lengths(32, 12),
)

# -- auth, hmacsha256, hmacsha512 ---------------------------------------------------


def _hmac(family: str, key: bytes) -> bytes:
    if family == "auth":
        return hmac.new(key, M, "sha512").digest()[:32]
    return hmac.new(key, M, family.removeprefix("hmac")).digest()


for fam, fn, verify, mac_name in (
    ("auth", "crypto_auth", "crypto_auth_verify", "mac"),
    ("hmacsha256", "crypto_auth_hmacsha256", "crypto_auth_hmacsha256_verify", "hash"),
    ("hmacsha512", "crypto_auth_hmacsha512", "crypto_auth_hmacsha512_verify", "hash"),
):
    case(
        f"{fn} raw known answer and verify",
        f"{fn}(bytea,bytea);{verify}(bytea,bytea,bytea)",
        f"select pgsodium.{fn}(%s, %s), pgsodium.{verify}(pgsodium.{fn}(%s, %s), "
        f"%s, %s), pgsodium.{verify}(%s, %s, %s)",
        [M, RAW32, M, RAW32, M, RAW32, _hmac(fam, RAW32), b"other", RAW32],
        lambda _k, row, fam=fam: (
            bytes(row[0]) == _hmac(fam, RAW32) and row[1] is True and row[2] is False
        ),
    )
    case(
        f"{fn} key id known answer and verify",
        f"{fn}(bytea,bigint,bytea);{verify}(bytea,bytea,bigint,bytea)",
        f"select pgsodium.{fn}(%s, %s::bigint), pgsodium.{fn}(%s, %s::bigint, %s), "
        f"pgsodium.{verify}({mac_name} => %s, message => %s, key_id => %s::bigint)",
        [M, 11, M, 11, b"othercxt", _hmac(fam, derive(11)), M, 11],
        lambda _k, row, fam=fam: (
            bytes(row[0]) == _hmac(fam, derive(11))
            and bytes(row[1]) == _hmac(fam, derive(11, 32, b"othercxt"))
            and row[2] is True
        ),
    )
    case(
        f"{fn} key uuid (derived and external) and verify",
        f"{fn}(bytea,uuid);{verify}(bytea,bytea,uuid)",
        f"select pgsodium.{fn}(%s, %s), pgsodium.{fn}(%s, %s), "
        f"pgsodium.{verify}(pgsodium.{fn}(%s, %s), %s, %s)",
        lambda k, fam=fam, fn=fn: [
            M,
            _uuid(k, fam),
            M,
            k.raw[fam],
            M,
            _uuid(k, fam),
            M,
            _uuid(k, fam),
        ],
        lambda k, row, fam=fam: (
            bytes(row[0]) == _hmac(fam, derive(_id(k, fam)))
            and bytes(row[1]) == _hmac(fam, RAW32)
            and row[2] is True
        ),
    )
case(
    "auth and hmac keygens",
    "crypto_auth_keygen();crypto_auth_hmacsha256_keygen();"
    "crypto_auth_hmacsha512_keygen()",
    "select pgsodium.crypto_auth_keygen(), pgsodium.crypto_auth_hmacsha256_keygen(),"
    " pgsodium.crypto_auth_hmacsha512_keygen()",
    [],
    lengths(32, 32, 32),
)

# -- generichash, shorthash, sha2 ---------------------------------------------------

case(
    "generichash raw: default key NULL and a key",
    "crypto_generichash(bytea,bytea)",
    "select pgsodium.crypto_generichash(%s), pgsodium.crypto_generichash(%s, %s)",
    [M, M, RAW32],
    lambda _k, row: (
        bytes(row[0]) == hashlib.blake2b(M, digest_size=32).digest()
        and bytes(row[1]) == hashlib.blake2b(M, digest_size=32, key=RAW32).digest()
    ),
)
case(
    "generichash key id",
    "crypto_generichash(bytea,bigint,bytea)",
    "select pgsodium.crypto_generichash(%s, %s::bigint)",
    [M, 5],
    hashlib.blake2b(M, digest_size=32, key=derive(5)).digest(),
)
case(
    "generichash key uuid, derived and external",
    "crypto_generichash(bytea,uuid)",
    "select pgsodium.crypto_generichash(%s, %s), pgsodium.crypto_generichash(%s, %s)",
    lambda k: [M, _uuid(k, "generichash"), M, k.raw["generichash"]],
    lambda k, row: (
        bytes(row[0])
        == hashlib.blake2b(
            M, digest_size=32, key=derive(_id(k, "generichash"))
        ).digest()
        and bytes(row[1]) == hashlib.blake2b(M, digest_size=32, key=RAW32).digest()
    ),
)
case(
    "shorthash raw, key id (16-byte derived key), uuid",
    "crypto_shorthash(bytea,bytea);crypto_shorthash(bytea,bigint,bytea);"
    "crypto_shorthash(bytea,uuid)",
    "select pgsodium.crypto_shorthash(%s, %s), pgsodium.crypto_shorthash(%s, "
    "%s::bigint), pgsodium.crypto_shorthash(%s, %s), pgsodium.crypto_shorthash(%s, %s)",
    lambda k: [M, RAW16, M, 5, M, _uuid(k, "shorthash"), M, k.raw["shorthash"]],
    lambda k, row: (
        [bytes(v) for v in row]
        == [
            sodium.crypto_shorthash_siphash24(M, RAW16),
            sodium.crypto_shorthash_siphash24(M, derive(5, 16)),
            sodium.crypto_shorthash_siphash24(M, derive(_id(k, "shorthash"), 16)),
            sodium.crypto_shorthash_siphash24(M, RAW16),
        ]
    ),
)
case(
    "generichash and shorthash keygens",
    "crypto_generichash_keygen();crypto_shorthash_keygen()",
    "select pgsodium.crypto_generichash_keygen(), pgsodium.crypto_shorthash_keygen()",
    [],
    lengths(32, 16),
)
case(
    "sha256 and sha512 known answers",
    "crypto_hash_sha256(bytea);crypto_hash_sha512(bytea)",
    "select pgsodium.crypto_hash_sha256(%s), pgsodium.crypto_hash_sha512(%s)",
    [M, M],
    lambda _k, row: (
        bytes(row[0]) == hashlib.sha256(M).digest()
        and bytes(row[1]) == hashlib.sha512(M).digest()
    ),
)

# -- secretbox ----------------------------------------------------------------------


def _secretbox(key: bytes) -> bytes:
    return sodium.crypto_secretbox_easy(M, N24, key)


case(
    "secretbox raw known answer and open",
    "crypto_secretbox(bytea,bytea,bytea);crypto_secretbox_open(bytea,bytea,bytea)",
    "select pgsodium.crypto_secretbox(%s, %s, %s), pgsodium.crypto_secretbox_open("
    "pgsodium.crypto_secretbox(%s, %s, %s), %s, %s)",
    [M, N24, RAW32, M, N24, RAW32, N24, RAW32],
    lambda _k, row: bytes(row[0]) == _secretbox(RAW32) and bytes(row[1]) == M,
)
case(
    "secretbox key id known answer and open",
    "crypto_secretbox(bytea,bytea,bigint,bytea);"
    "crypto_secretbox_open(bytea,bytea,bigint,bytea)",
    "select pgsodium.crypto_secretbox(%s, %s, %s::bigint), "
    "pgsodium.crypto_secretbox_open(%s, %s, %s::bigint)",
    [M, N24, 9, _secretbox(derive(9)), N24, 9],
    lambda _k, row: bytes(row[0]) == _secretbox(derive(9)) and bytes(row[1]) == M,
)
case(
    "secretbox key uuid, derived and external, and open",
    "crypto_secretbox(bytea,bytea,uuid);crypto_secretbox_open(bytea,bytea,uuid)",
    "select pgsodium.crypto_secretbox(%s, %s, %s), pgsodium.crypto_secretbox(%s, %s, "
    "%s), pgsodium.crypto_secretbox_open(%s, %s, %s)",
    lambda k: (
        [M, N24, _uuid(k, "secretbox"), M, N24, k.raw["secretbox"]]
        + [_secretbox(RAW32), N24, k.raw["secretbox"]]
    ),
    lambda k, row: (
        bytes(row[0]) == _secretbox(derive(_id(k, "secretbox")))
        and bytes(row[1]) == _secretbox(RAW32)
        and bytes(row[2]) == M
    ),
)
case(
    "secretbox keygen and noncegen",
    "crypto_secretbox_keygen();crypto_secretbox_noncegen()",
    "select pgsodium.crypto_secretbox_keygen(), pgsodium.crypto_secretbox_noncegen()",
    [],
    lengths(32, 24),
)

# -- stream_xchacha20 ---------------------------------------------------------------


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


case(
    "xchacha20 raw: keystream, xor, xor_ic agree",
    "crypto_stream_xchacha20(bigint,bytea,bytea);"
    "crypto_stream_xchacha20_xor(bytea,bytea,bytea);"
    "crypto_stream_xchacha20_xor_ic(bytea,bytea,bigint,bytea)",
    "select pgsodium.crypto_stream_xchacha20(%s, %s, %s), "
    "pgsodium.crypto_stream_xchacha20_xor(%s, %s, %s), "
    "pgsodium.crypto_stream_xchacha20_xor_ic(%s, %s, %s, %s)",
    [64 + len(M), N24, RAW32, M, N24, RAW32, M, N24, 1, RAW32],
    lambda _k, row: (
        len(row[0]) == 64 + len(M)
        and bytes(row[1]) == _xor(M, bytes(row[0])[: len(M)])
        and bytes(row[2]) == _xor(M, bytes(row[0])[64:])
    ),
)
case(
    "xchacha20 key id: pgsodium context, xor's pgosdium default",
    "crypto_stream_xchacha20(bigint,bytea,bigint,bytea);"
    "crypto_stream_xchacha20_xor(bytea,bytea,bigint,bytea);"
    "crypto_stream_xchacha20_xor_ic(bytea,bytea,bigint,bigint,bytea)",
    # Keystreams are secret: compared here, not in SQL (the proxy never sends them).
    "select pgsodium.crypto_stream_xchacha20(%s, %s, %s::bigint), "
    "pgsodium.crypto_stream_xchacha20(%s, %s, pgsodium.derive_key(%s)), "
    "pgsodium.crypto_stream_xchacha20_xor(%s, %s, %s::bigint), "
    "pgsodium.crypto_stream_xchacha20_xor(%s, %s, pgsodium.derive_key(%s, 32, %s)), "
    "pgsodium.crypto_stream_xchacha20_xor_ic(%s, %s, %s, %s::bigint), "
    "pgsodium.crypto_stream_xchacha20_xor_ic(%s, %s, %s, pgsodium.derive_key(%s))",
    [40, N24, 4, 40, N24, 4]
    + [M, N24, 4, M, N24, 4, TYPO_CONTEXT]
    + [M, N24, 2, 4, M, N24, 2, 4],
    lambda _k, row: (
        len(row[0]) == 40
        and row[0] == row[1]
        and len(row[2]) == len(M)
        and row[2] == row[3]
        and row[4] == row[5]
    ),
)
case(
    "xchacha20 keygen and noncegen",
    "crypto_stream_xchacha20_keygen();crypto_stream_xchacha20_noncegen()",
    "select pgsodium.crypto_stream_xchacha20_keygen(), "
    "pgsodium.crypto_stream_xchacha20_noncegen()",
    [],
    lengths(32, 24),
)
case(
    "secretstream keygen",
    "crypto_secretstream_keygen()",
    "select pgsodium.crypto_secretstream_keygen()",
    [],
    lengths(32),
)

# -- box ----------------------------------------------------------------------------

ALICE = sodium.crypto_box_seed_keypair(bytes(32))
BOB = sodium.crypto_box_seed_keypair(bytes([1]) * 32)

case(
    "box known answer and open",
    "crypto_box(bytea,bytea,bytea,bytea);crypto_box_open(bytea,bytea,bytea,bytea)",
    "select pgsodium.crypto_box(%s, %s, %s, %s), pgsodium.crypto_box_open("
    "pgsodium.crypto_box(%s, %s, %s, %s), %s, %s, %s)",
    [M, N24, BOB[0], ALICE[1], M, N24, BOB[0], ALICE[1], N24, ALICE[0], BOB[1]],
    lambda _k, row: (
        bytes(row[0]) == sodium.crypto_box(M, N24, BOB[0], ALICE[1])
        and bytes(row[1]) == M
    ),
)
case(
    "box seal and seal_open",
    "crypto_box_seal(bytea,bytea);crypto_box_seal_open(bytea,bytea,bytea)",
    "select pgsodium.crypto_box_seal_open(pgsodium.crypto_box_seal(%s, %s), %s, %s),"
    " length(pgsodium.crypto_box_seal(%s, %s))",
    [M, BOB[0], BOB[0], BOB[1], M, BOB[0]],
    lambda _k, row: bytes(row[0]) == M and row[1] == 48 + len(M),
)
case(
    "box seed keypair known answer",
    "crypto_box_seed_new_keypair(bytea)",
    "select * from pgsodium.crypto_box_seed_new_keypair(%s)",
    [SEED],
    lambda _k, row: (
        tuple(bytes(v) for v in row) == sodium.crypto_box_seed_keypair(SEED)
    ),
)
case(
    "box new keypair: two named columns",
    "crypto_box_new_keypair()",
    "select * from pgsodium.crypto_box_new_keypair()",
    [],
    lengths(32, 32),
)
case(
    "box new seed and noncegen",
    "crypto_box_new_seed();crypto_box_noncegen()",
    "select pgsodium.crypto_box_new_seed(), pgsodium.crypto_box_noncegen()",
    [],
    lengths(32, 24),
)

# -- sign ---------------------------------------------------------------------------

SIGNER = sodium.crypto_sign_seed_keypair(SEED)


def _ed25519ph(message: bytes) -> bytes:
    state = sodium.crypto_sign_ed25519ph_state()
    sodium.crypto_sign_ed25519ph_update(state, message)
    return sodium.crypto_sign_ed25519ph_final_create(state, SIGNER[1])


case(
    "sign combined known answer and open",
    "crypto_sign(bytea,bytea);crypto_sign_open(bytea,bytea)",
    "select pgsodium.crypto_sign(%s, %s), "
    "pgsodium.crypto_sign_open(pgsodium.crypto_sign(%s, %s), %s)",
    [M, SIGNER[1], M, SIGNER[1], SIGNER[0]],
    lambda _k, row: (
        bytes(row[0]) == sodium.crypto_sign(M, SIGNER[1]) and bytes(row[1]) == M
    ),
)
case(
    "sign detached known answer and verify",
    "crypto_sign_detached(bytea,bytea);crypto_sign_verify_detached(bytea,bytea,bytea)",
    "select pgsodium.crypto_sign_detached(%s, %s), "
    "pgsodium.crypto_sign_verify_detached("
    "pgsodium.crypto_sign_detached(%s, %s), %s, %s)",
    [M, SIGNER[1], M, SIGNER[1], M, SIGNER[0]],
    lambda _k, row: (
        bytes(row[0]) == sodium.crypto_sign(M, SIGNER[1])[:64] and row[1] is True
    ),
)
case(
    "sign multi-part (Ed25519ph) known answer and verify",
    "crypto_sign_init();crypto_sign_update(bytea,bytea);"
    "crypto_sign_final_create(bytea,bytea);crypto_sign_final_verify(bytea,bytea,bytea)",
    "select pgsodium.crypto_sign_final_create(pgsodium.crypto_sign_update("
    "pgsodium.crypto_sign_update(pgsodium.crypto_sign_init(), %s), %s), %s), "
    "pgsodium.crypto_sign_final_verify(pgsodium.crypto_sign_update("
    "pgsodium.crypto_sign_init(), %s), %s, %s)",
    [M[:5], M[5:], SIGNER[1], M, _ed25519ph(M), SIGNER[0]],
    lambda _k, row: bytes(row[0]) == _ed25519ph(M) and row[1] is True,
)
case(
    "sign update_agg1 and update_agg2 (the aggregates' state functions)",
    "crypto_sign_update_agg1(bytea,bytea);crypto_sign_update_agg2(bytea,bytea,bytea)",
    "select pgsodium.crypto_sign_update_agg1(NULL, %s) = "
    "pgsodium.crypto_sign_update(pgsodium.crypto_sign_init(), %s), "
    "pgsodium.crypto_sign_update_agg2(NULL, pgsodium.crypto_sign_update("
    "pgsodium.crypto_sign_init(), %s), %s) = pgsodium.crypto_sign_update("
    "pgsodium.crypto_sign_init(), %s)",
    [M, M, M[:5], M[5:], M],
    lambda _k, row: list(row) == [True, True],
)
case(
    "sign seed keypair known answer, new keypair, new seed",
    "crypto_sign_seed_new_keypair(bytea)",
    "select * from pgsodium.crypto_sign_seed_new_keypair(%s)",
    [SEED],
    lambda _k, row: tuple(bytes(v) for v in row) == SIGNER,
)
case(
    "sign new keypair",
    "crypto_sign_new_keypair()",
    "select * from pgsodium.crypto_sign_new_keypair()",
    [],
    lengths(32, 64),
)
case(
    "sign new seed",
    "crypto_sign_new_seed()",
    "select pgsodium.crypto_sign_new_seed()",
    [],
    lengths(32),
)

# -- kx -----------------------------------------------------------------------------

CLIENT = sodium.crypto_kx_seed_keypair(bytes(32))
SERVER = sodium.crypto_kx_seed_keypair(bytes([2]) * 32)

case(
    "kx client session keys known answer",
    "crypto_kx_client_session_keys(bytea,bytea,bytea)",
    "select * from pgsodium.crypto_kx_client_session_keys(%s, %s, %s)",
    [CLIENT[0], CLIENT[1], SERVER[0]],
    lambda _k, row: (
        tuple(bytes(v) for v in row)
        == sodium.crypto_kx_client_session_keys(CLIENT[0], CLIENT[1], SERVER[0])
    ),
)
case(
    "kx server session keys known answer",
    "crypto_kx_server_session_keys(bytea,bytea,bytea)",
    "select rx, tx from pgsodium.crypto_kx_server_session_keys(%s, %s, %s)",
    [SERVER[0], SERVER[1], CLIENT[0]],
    lambda _k, row: (
        tuple(bytes(v) for v in row)
        == sodium.crypto_kx_server_session_keys(SERVER[0], SERVER[1], CLIENT[0])
    ),
)
case(
    "kx seed keypair known answer",
    "crypto_kx_seed_new_keypair(bytea)",
    "select * from pgsodium.crypto_kx_seed_new_keypair(%s)",
    [bytes(32)],
    lambda _k, row: tuple(bytes(v) for v in row) == CLIENT,
)
case(
    "kx new keypair",
    "crypto_kx_new_keypair()",
    "select * from pgsodium.crypto_kx_new_keypair()",
    [],
    lengths(32, 32),
)
case(
    "kx new seed",
    "crypto_kx_new_seed()",
    "select pgsodium.crypto_kx_new_seed()",
    [],
    lengths(32),
)

# -- pwhash -------------------------------------------------------------------------

SALT = bytes(range(16))
case(
    "pwhash known answer (Argon2id, MODERATE)",
    "crypto_pwhash(bytea,bytea)",
    "select pgsodium.crypto_pwhash(%s, %s)",
    [b"Correct Horse Battery Staple", SALT],
    sodium.crypto_pwhash_alg(
        32,
        b"Correct Horse Battery Staple",
        SALT,
        3,
        256 * 1024 * 1024,
        sodium.crypto_pwhash_ALG_ARGON2ID13,
    ),
)
case(
    "pwhash_str verifies, saltgen",
    "crypto_pwhash_str(bytea);crypto_pwhash_str_verify(bytea,bytea);"
    "crypto_pwhash_saltgen()",
    "select pgsodium.crypto_pwhash_str_verify(pgsodium.crypto_pwhash_str(%s), %s), "
    "pgsodium.crypto_pwhash_str_verify(%s, %s), "
    "length(pgsodium.crypto_pwhash_saltgen())",
    [
        b"Correct Horse",
        b"Correct Horse",
        sodium.crypto_pwhash_str_alg(
            b"pw", 1, 8 * 1024 * 1024, sodium.crypto_pwhash_ALG_ARGON2ID13
        ),
        b"not pw",
    ],
    lambda _k, row: list(row) == [True, False, 16],
)

# -- kdf and derivation -------------------------------------------------------------

case(
    "kdf raw known answer",
    "crypto_kdf_derive_from_key(bigint,bigint,bytea,bytea)",
    "select pgsodium.crypto_kdf_derive_from_key(%s, %s, %s, %s)",
    [24, 42, b"context8", RAW32],
    kdf(24, 42, b"context8", RAW32),
)
case(
    "kdf key uuid: derived ignores subkey id and context, external does not",
    "crypto_kdf_derive_from_key(integer,bigint,bytea,uuid)",
    "select pgsodium.crypto_kdf_derive_from_key(%s, %s, %s, %s), "
    "pgsodium.crypto_kdf_derive_from_key(%s, %s, %s, %s)",
    lambda k: [24, 42, b"context8", _uuid(k, "kdf"), 24, 42, b"context8", k.raw["kdf"]],
    lambda k, row: (
        bytes(row[0]) == derive(_id(k, "kdf"), 24)
        and bytes(row[1]) == kdf(24, 42, b"context8", RAW32)
    ),
)
case(
    "kdf keygen",
    "crypto_kdf_keygen()",
    "select pgsodium.crypto_kdf_keygen()",
    [],
    lengths(32),
)
case(
    "derive_key and pgsodium_derive known answers, defaults",
    "derive_key(bigint,integer,bytea);pgsodium_derive(bigint,integer,bytea)",
    "select pgsodium.derive_key(%s), pgsodium.derive_key(%s, %s, %s), "
    "pgsodium.pgsodium_derive(%s), pgsodium.derive_key(%s::bigint)",
    [1, 2, 64, b"context3", 1, -1],
    lambda _k, row: (
        [bytes(v) for v in row]
        == [derive(1), derive(2, 64, b"context3"), derive(1), derive(-1)]
    ),
)

# -- signcrypt ----------------------------------------------------------------------

case(
    "signcrypt new keypair",
    "crypto_signcrypt_new_keypair()",
    "select * from pgsodium.crypto_signcrypt_new_keypair()",
    [],
    lengths(32, 32),
)

# The rest of signcrypt is a protocol across statements: see test_signcrypt_flow.
SIGNCRYPT_COVERS = tuple(
    "pgsodium." + s
    for s in (
        "crypto_signcrypt_sign_before(bytea,bytea,bytea,bytea,bytea)",
        "crypto_signcrypt_sign_after(bytea,bytea,bytea)",
        "crypto_signcrypt_verify_before(bytea,bytea,bytea,bytea,bytea,bytea)",
        "crypto_signcrypt_verify_after(bytea,bytea,bytea,bytea)",
        "crypto_signcrypt_verify_public(bytea,bytea,bytea,bytea,bytea,bytea)",
    )
)

# -- random, helpers ----------------------------------------------------------------

case(
    "randombytes buf, random, uniform, new seed",
    "randombytes_buf(integer);randombytes_random();randombytes_uniform(integer);"
    "randombytes_new_seed()",
    "select length(pgsodium.randombytes_buf(%s)), pgsodium.randombytes_random(), "
    "pgsodium.randombytes_uniform(%s), length(pgsodium.randombytes_new_seed())",
    [10, 7],
    lambda _k, row: (
        row[0] == 10
        and isinstance(row[1], int)
        and -(2**31) <= row[1] < 2**31
        and 0 <= row[2] < 7
        and row[3] == 32
    ),
)
case(
    "randombytes_buf_deterministic known answer",
    "randombytes_buf_deterministic(integer,bytea)",
    "select pgsodium.randombytes_buf_deterministic(%s, %s)",
    [40, SEED],
    sodium.randombytes_buf_deterministic(40, SEED),
)
case(
    "base64 helpers (URL-safe, no padding)",
    "sodium_bin2base64(bytea);sodium_base642bin(text)",
    "select pgsodium.sodium_bin2base64(%s), pgsodium.sodium_base642bin(%s)",
    [b"\xfb\xff\xfe", "-__-"],
    lambda _k, row: row[0] == "-__-" and bytes(row[1]) == b"\xfb\xff\xfe",
)
case(
    "crypto_cmp",
    "crypto_cmp(text,text)",
    "select pgsodium.crypto_cmp(%s, %s), pgsodium.crypto_cmp(%s, %s)",
    ["abc", "abc", "abc", "abd"],
    lambda _k, row: list(row) == [True, False],
)

# -- ipcrypt ------------------------------------------------------------------------

IP = "192.0.2.1"
IP_BIN = bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 1])
case(
    "ipcrypt ip2bin and bin2ip",
    "crypto_ipcrypt_ip2bin(text);crypto_ipcrypt_bin2ip(bytea)",
    "select pgsodium.crypto_ipcrypt_ip2bin(%s), "
    "pgsodium.crypto_ipcrypt_bin2ip(pgsodium.crypto_ipcrypt_ip2bin(%s))",
    [IP, IP],
    lambda _k, row: bytes(row[0]) == IP_BIN and row[1] == IP,
)
for kind, prefix, klen in (
    ("det", "crypto_ipcrypt", 16),
    ("pfx", "crypto_ipcrypt_pfx", 32),
):
    key_type = f"ipcrypt-{kind}"
    raw = RAW16 if klen == 16 else RAW32
    enc, dec = f"pgsodium.{prefix}_encrypt", f"pgsodium.{prefix}_decrypt"
    case(
        f"ipcrypt {kind} raw round trip, bytea and inet",
        f"{prefix}_encrypt(bytea,bytea);{prefix}_decrypt(bytea,bytea);"
        f"{prefix}_encrypt(inet,bytea);{prefix}_decrypt(inet,bytea)",
        f"select {dec}({enc}(%s, %s), %s), {dec}({enc}(%s::inet, %s), %s)::text, "
        f"{enc}(%s::inet, %s) = pgsodium.crypto_ipcrypt_bin2ip({enc}(%s, %s))::inet",
        [IP_BIN, raw, raw, IP, raw, raw, IP, raw, IP_BIN, raw],
        # text(inet) shows the mask, /32 included, as the server's cast does.
        lambda _k, row: (
            bytes(row[0]) == IP_BIN and row[1] == IP + "/32" and row[2] is True
        ),
    )
    case(
        f"ipcrypt {kind} key id equals raw derive_key(id, {klen})",
        f"{prefix}_encrypt(bytea,bigint,bytea);{prefix}_decrypt(bytea,bigint,bytea)",
        f"select {enc}(%s, %s::bigint) = {enc}(%s, pgsodium.derive_key(%s, {klen})), "
        f"{dec}({enc}(%s, %s::bigint, %s), %s::bigint, %s)",
        [IP_BIN, 6, IP_BIN, 6, IP_BIN, 6, b"context5", 6, b"context5"],
        lambda _k, row: row[0] is True and bytes(row[1]) == IP_BIN,
    )
    case(
        f"ipcrypt {kind} key uuid, bytea and inet",
        f"{prefix}_encrypt(bytea,uuid);{prefix}_decrypt(bytea,uuid);"
        f"{prefix}_encrypt(inet,uuid);{prefix}_decrypt(inet,uuid)",
        f"select {enc}(%s, %s) = {enc}(%s, %s::bigint, %s), "
        f"{dec}({enc}(%s, %s), %s), {dec}({enc}(%s::inet, %s), %s)::text, "
        f"{enc}(%s, %s) = {enc}(%s, %s::bytea)",
        lambda k, t=key_type, raw=raw: [
            IP_BIN,
            _uuid(k, t),
            IP_BIN,
            _id(k, t),
            CONTEXT,
            IP_BIN,
            _uuid(k, t),
            _uuid(k, t),
            IP,
            _uuid(k, t),
            _uuid(k, t),
            IP_BIN,
            k.raw[t],
            IP_BIN,
            raw,
        ],
        lambda _k, row: (
            row[0] is True
            and bytes(row[1]) == IP_BIN
            and row[2] == IP + "/32"  # text(inet)
            and row[3] is True
        ),
    )
for kind, klen, tlen in (("nd", 16, 8), ("ndx", 32, 16)):
    key_type = f"ipcrypt-{kind}"
    raw = RAW16 if klen == 16 else RAW32
    tweak = N16[:tlen]
    enc = f"pgsodium.crypto_ipcrypt_{kind}_encrypt"
    dec = f"pgsodium.crypto_ipcrypt_{kind}_decrypt"
    sig = f"crypto_ipcrypt_{kind}"
    case(
        f"ipcrypt {kind} raw round trip",
        f"{sig}_encrypt(bytea,bytea,bytea);{sig}_decrypt(bytea,bytea)",
        f"select {enc}(%s, %s, %s), {dec}({enc}(%s, %s, %s), %s)",
        [IP_BIN, tweak, raw, IP_BIN, tweak, raw, raw],
        lambda _k, row, tweak=tweak, tlen=tlen: (
            bytes(row[0])[:tlen] == tweak
            and len(row[0]) == tlen + 16
            and bytes(row[1]) == IP_BIN
        ),
    )
    case(
        f"ipcrypt {kind} key id equals raw derive_key(id, {klen})",
        f"{sig}_encrypt(bytea,bytea,bigint,bytea);{sig}_decrypt(bytea,bigint,bytea)",
        f"select {enc}(%s, %s, %s::bigint) = {enc}(%s, %s, pgsodium.derive_key(%s, "
        f"{klen})), {dec}({enc}(%s, %s, %s::bigint, %s), %s::bigint, %s)",
        [IP_BIN, tweak, 6, IP_BIN, tweak, 6, IP_BIN, tweak, 6, b"context5", 6]
        + [b"context5"],
        lambda _k, row: row[0] is True and bytes(row[1]) == IP_BIN,
    )
    case(
        f"ipcrypt {kind} key uuid, derived and external",
        f"{sig}_encrypt(bytea,bytea,uuid);{sig}_decrypt(bytea,uuid)",
        f"select {enc}(%s, %s, %s) = {enc}(%s, %s, %s::bigint, %s), "
        f"{dec}({enc}(%s, %s, %s), %s), {enc}(%s, %s, %s) = {enc}(%s, %s, %s::bytea)",
        lambda k, t=key_type, raw=raw, tweak=tweak: [
            IP_BIN,
            tweak,
            _uuid(k, t),
            IP_BIN,
            tweak,
            _id(k, t),
            CONTEXT,
            IP_BIN,
            tweak,
            k.raw[t],
            k.raw[t],
            IP_BIN,
            tweak,
            k.raw[t],
            IP_BIN,
            tweak,
            raw,
        ],
        lambda _k, row: row[0] is True and bytes(row[1]) == IP_BIN and row[2] is True,
    )
case(
    "ipcrypt keygens and tweakgens",
    "crypto_ipcrypt_keygen();crypto_ipcrypt_pfx_keygen();crypto_ipcrypt_nd_keygen();"
    "crypto_ipcrypt_ndx_keygen();crypto_ipcrypt_nd_tweakgen();"
    "crypto_ipcrypt_ndx_tweakgen()",
    "select pgsodium.crypto_ipcrypt_keygen(), pgsodium.crypto_ipcrypt_pfx_keygen(), "
    "pgsodium.crypto_ipcrypt_nd_keygen(), pgsodium.crypto_ipcrypt_ndx_keygen(), "
    "pgsodium.crypto_ipcrypt_nd_tweakgen(), pgsodium.crypto_ipcrypt_ndx_tweakgen()",
    [],
    lengths(16, 32, 16, 32, 8, 16),
)


# -- running them -------------------------------------------------------------------

PROTOCOLS = ("simple", "extended-text", "extended-binary")


@pytest.fixture(scope="module")
def db(proxy: RunningProxy) -> str:
    return make_database(proxy, "catalogue_calls")


@pytest.fixture(scope="module")
def keys(proxy: RunningProxy, db: str) -> Keys:
    derived: dict[str, tuple[uuid.UUID, int, bytes]] = {}
    raw: dict[str, uuid.UUID] = {}
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        for key_type in KEY_TYPES:
            row = conn.execute(
                "select id, key_id, key_context from pgsodium.create_key(%s)",
                [key_type],
            ).fetchone()
            assert row is not None
            derived[key_type] = (row[0], row[1], bytes(row[2]))
            material = RAW32[: RAW_LENGTH.get(key_type, 32)]
            row = conn.execute(
                "select id from pgsodium.create_key(%s, raw_key := %s)",
                [key_type, material],
            ).fetchone()
            assert row is not None
            raw[key_type] = row[0]
    return Keys(derived, raw)


def connect(proxy: RunningProxy, db: str, protocol: str) -> psycopg.Connection[Any]:
    factory = psycopg.ClientCursor if protocol == "simple" else psycopg.Cursor
    return psycopg.connect(
        proxy.dsn(dbname=db), autocommit=True, cursor_factory=factory
    )


def run(conn: psycopg.Connection[Any], protocol: str, sql: str, params: list[Any]):
    if protocol == "extended-binary":
        sql = sql.replace("%s", "%b")
    return conn.execute(sql, params)


@pytest.fixture(scope="module", params=PROTOCOLS)
def session(
    request: pytest.FixtureRequest, proxy: RunningProxy, db: str
) -> Iterator[tuple[psycopg.Connection[Any], str]]:
    with connect(proxy, db, request.param) as conn:
        yield conn, request.param


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c.name for c in CASES])
def test_signature_answers_through_the_proxy(
    index: int, session: tuple[psycopg.Connection[Any], str], keys: Keys
) -> None:
    conn, protocol = session
    item = CASES[index]
    rows = run(conn, protocol, item.sql, item.params(keys)).fetchall()
    assert len(rows) == 1
    assert item.expect(keys, rows[0]), rows[0]


def test_signcrypt_flow(session: tuple[psycopg.Connection[Any], str]) -> None:
    """sign_before → sign_after → verify_public / verify_before → verify_after."""
    conn, protocol = session
    sender = run(
        conn, protocol, "select * from pgsodium.crypto_signcrypt_new_keypair()", []
    ).fetchone()
    recipient = run(
        conn, protocol, "select * from pgsodium.crypto_signcrypt_new_keypair()", []
    ).fetchone()
    assert sender is not None and recipient is not None
    s_pk, s_sk, r_pk, r_sk = (bytes(v) for v in (*sender, *recipient))
    state, shared = run(
        conn,
        protocol,
        "select state, shared_key from pgsodium.crypto_signcrypt_sign_before("
        "%s, %s, %s, %s, %s)",
        [b"alice", b"bob", s_sk, r_pk, AD],
    ).fetchone()
    ciphertext = sodium.crypto_aead_chacha20poly1305_ietf_encrypt(
        M, None, N12, bytes(shared)
    )
    signature = run(
        conn,
        protocol,
        "select pgsodium.crypto_signcrypt_sign_after(%s, %s, %s)",
        [bytes(state), s_sk, ciphertext],
    ).fetchone()[0]
    assert len(signature) == 64
    public_ok = run(
        conn,
        protocol,
        "select pgsodium.crypto_signcrypt_verify_public(%s, %s, %s, %s, %s, %s)",
        [bytes(signature), b"alice", b"bob", AD, s_pk, ciphertext],
    ).fetchone()[0]
    assert public_ok is True
    row = run(
        conn,
        protocol,
        "select * from pgsodium.crypto_signcrypt_verify_before(%s, %s, %s, %s, %s, %s)",
        [bytes(signature), b"alice", b"bob", AD, s_pk, r_sk],
    ).fetchone()
    assert bytes(row[1]) == bytes(shared)
    after = run(
        conn,
        protocol,
        "select pgsodium.crypto_signcrypt_verify_after(%s, %s, %s, %s)",
        [bytes(row[0]), bytes(signature), s_pk, ciphertext],
    ).fetchone()[0]
    assert after is True
    # pgsodium's verify_after never returns false: a bad signature is an error.
    with pytest.raises(psycopg.errors.DataException) as caught:
        run(
            conn,
            protocol,
            "select pgsodium.crypto_signcrypt_verify_after(%s, %s, %s, %s)",
            [bytes(row[0]), bytes(signature), s_pk, ciphertext + b"x"],
        )
    assert caught.value.diag.message_primary == (
        "pgsodium_crypto_signcrypt_verify_after: verify_after failed"
    )


PARTS = [b"Hello Alice", b"Hello Bob", b"Hello Carol", b"Hello Dave"]


def _state(conn: psycopg.Connection[Any], parts: list[bytes], start: Any = None):
    """crypto_sign_update part by part, the aggregates' expected value."""
    state = start
    if state is None:
        state = conn.execute("select pgsodium.crypto_sign_init()").fetchone()[0]
    for part in parts:
        state = conn.execute(
            "select pgsodium.crypto_sign_update(%s, %s)", [state, part]
        ).fetchone()[0]
    return bytes(state)


@pytest.fixture(scope="module")
def parts_table(proxy: RunningProxy, db: str) -> str:
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        conn.execute("create table sign_parts(i int, g int, m bytea)")
        for i, part in enumerate(PARTS):
            conn.execute("insert into sign_parts values (%s, %s, %s)", [i, i % 2, part])
    return "sign_parts"


def test_sign_update_agg_folds_the_rows_in_the_servers_order(
    session: tuple[psycopg.Connection[Any], str], parts_table: str
) -> None:
    conn, protocol = session
    whole = _state(conn, PARTS)
    got = run(
        conn,
        protocol,
        f"select pgsodium.crypto_sign_update_agg(m order by i) from {parts_table}",
        [],
    ).fetchone()[0]
    assert bytes(got) == whole
    backwards = run(
        conn,
        protocol,
        f"select pgsodium.crypto_sign_update_agg(m order by i desc) from {parts_table}",
        [],
    ).fetchone()[0]
    assert bytes(backwards) == _state(conn, PARTS[::-1])
    groups = run(
        conn,
        protocol,
        f"select g, pgsodium.crypto_sign_update_agg(m order by i) as s "
        f"from {parts_table} "
        "group by g order by g",
        [],
    ).fetchall()
    assert [(g, bytes(s)) for g, s in groups] == [
        (0, _state(conn, PARTS[0::2])),
        (1, _state(conn, PARTS[1::2])),
    ]
    filtered = run(
        conn,
        protocol,
        f"select pgsodium.crypto_sign_update_agg(m order by i) filter (where i > %s)"
        f" from {parts_table}",
        [1],
    ).fetchone()[0]
    assert bytes(filtered) == _state(conn, PARTS[2:])
    # No rows: NULL, as an aggregate without an initial state.
    assert (
        run(
            conn,
            protocol,
            f"select pgsodium.crypto_sign_update_agg(m) from {parts_table} where false",
            [],
        ).fetchone()[0]
        is None
    )


def test_sign_update_agg_with_a_state_and_constant_arguments(
    session: tuple[psycopg.Connection[Any], str], parts_table: str
) -> None:
    conn, protocol = session
    start = _state(conn, [b"prefix"])
    got = run(
        conn,
        protocol,
        "select pgsodium.crypto_sign_update_agg(%s::bytea, m order by i) "
        f"from {parts_table}",
        [start],
    ).fetchone()[0]
    assert bytes(got) == _state(conn, PARTS, start)
    # A state computed by a pgsodium call: the proxy's, never sent upstream.
    got = run(
        conn,
        protocol,
        "select pgsodium.crypto_sign_update_agg(pgsodium.crypto_sign_init(), m "
        f"order by i) from {parts_table}",
        [],
    ).fetchone()[0]
    assert bytes(got) == _state(conn, PARTS)
    # No column at all: the message once for each row (a bind parameter, and
    # an untyped literal taken as bytea).
    got = run(
        conn,
        protocol,
        f"select pgsodium.crypto_sign_update_agg(%s::bytea) from {parts_table}",
        [M],
    ).fetchone()[0]
    assert bytes(got) == _state(conn, [M] * len(PARTS))
    got = run(
        conn, protocol, "select pgsodium.crypto_sign_update_agg('abc')", []
    ).fetchone()[0]
    assert bytes(got) == _state(conn, [b"abc"])


def test_sign_update_agg_signs_and_verifies(
    session: tuple[psycopg.Connection[Any], str], parts_table: str
) -> None:
    conn, protocol = session
    public, secret = conn.execute(
        "select public, secret from pgsodium.crypto_sign_new_keypair()"
    ).fetchone()
    signature = run(
        conn,
        protocol,
        "select pgsodium.crypto_sign_final_create("
        f"pgsodium.crypto_sign_update_agg(m order by i), %s) from {parts_table}",
        [secret],
    ).fetchone()[0]
    verified = run(
        conn,
        protocol,
        "select pgsodium.crypto_sign_final_verify("
        f"pgsodium.crypto_sign_update_agg(m order by i), %s, %s) from {parts_table}",
        [signature, public],
    ).fetchone()[0]
    assert verified is True
    state = _state(conn, PARTS)
    assert (
        conn.execute(
            "select pgsodium.crypto_sign_final_verify(%s, %s, %s)",
            [state, signature, public],
        ).fetchone()[0]
        is True
    )


def test_sign_update_agg_errors_are_the_servers(
    session: tuple[psycopg.Connection[Any], str], parts_table: str
) -> None:
    conn, protocol = session
    # pgsodium's crypto_sign_update is not STRICT: a NULL part is its error.
    with pytest.raises(psycopg.errors.DataException) as caught:
        run(
            conn,
            protocol,
            "select pgsodium.crypto_sign_update_agg(m) "
            "from (values (%s::bytea), (NULL)) v(m)",
            [M],
        )
    assert caught.value.diag.message_primary == (
        "pgsodium_crypto_sign_update: message part cannot be NULL"
    )
    # Not bytea: no such function (the server's own resolution says so).
    with pytest.raises(psycopg.errors.UndefinedFunction):
        run(
            conn,
            protocol,
            f"select pgsodium.crypto_sign_update_agg(i::text) from {parts_table}",
            [],
        )
    for sql in (
        f"select pgsodium.crypto_sign_update_agg(m) over () from {parts_table}",
        f"select pgsodium.crypto_sign_update_agg(m) from {parts_table} order by 1",
        f"select 1 from {parts_table} having "
        "pgsodium.crypto_sign_update_agg(m) is not null",
        "select pgsodium.crypto_sign_update_agg(pgsodium.crypto_sign_update("
        f"pgsodium.crypto_sign_init(), m)) from {parts_table}",
    ):
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            run(conn, protocol, sql, [])
    assert conn.execute("select 1").fetchone() == (1,)


def test_every_crypto_signature_is_called() -> None:
    signatures = {s.regprocedure for s in catalogue.FUNCTIONS if s.kind == "crypto"}
    covered = {c for item in CASES for c in item.covers}
    covered |= set(SIGNCRYPT_COVERS) | set(AGGREGATE_COVERS)
    assert covered <= signatures, covered - signatures
    assert signatures == covered, signatures - covered


def _numbered(sql: str) -> str:
    parts = sql.split("%s")
    return parts[0] + "".join(f"${i}{p}" for i, p in enumerate(parts[1:], 1))


async def _described(url: str, sql: str) -> list[int] | tuple[str, str, str | None]:
    """The OIDs of a ParameterDescription (asyncpg: Parse, Describe, Sync), or the
    error's SQLSTATE, message and hint.

    Not psycopg's pgconn.describe_prepared: it blocks in libpq holding the GIL,
    which would stall the proxy's own thread in this process.
    """
    conn = await asyncpg.connect(url)
    try:
        try:
            statement = await conn.prepare(sql)
        except asyncpg.PostgresError as exc:
            return (exc.sqlstate, exc.args[0], exc.hint)
        return [t.oid for t in statement.get_parameters()]
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "index",
    [i for i, c in enumerate(CASES) if "%s" in c.sql],
    ids=[c.name for c in CASES if "%s" in c.sql],
)
def test_parameter_description_is_the_upstreams_own(
    index: int, proxy: RunningProxy, db: str
) -> None:
    """Untyped $n parameters: the proxy's ParameterDescription equals what the
    upstream, which declares pgsodium's functions, describes for the same text."""
    sql = _numbered(CASES[index].sql)
    direct = f"postgresql://postgres@127.0.0.1:{proxy.upstream.port}/{db}"

    async def both() -> tuple[list[int], list[int]]:
        return await asyncio.wait_for(
            asyncio.gather(
                _described(proxy.url(dbname=db), sql), _described(direct, sql)
            ),
            30,
        )

    through_proxy, upstream = asyncio.run(both())
    assert through_proxy == upstream


SIGNCRYPT = new_keypair()  # (public, secret) on ristretto255


@pytest.mark.parametrize(
    "sql, columns",
    [
        ("select * from pgsodium.crypto_box_new_keypair()", ["public", "secret"]),
        ("select * from pgsodium.crypto_sign_new_keypair()", ["public", "secret"]),
        ("select * from pgsodium.crypto_kx_new_keypair()", ["public", "secret"]),
        ("select * from pgsodium.crypto_signcrypt_new_keypair()", ["public", "secret"]),
        ("select * from pgsodium.crypto_box_new_keypair() k(p, s)", ["p", "s"]),
        ("select secret from pgsodium.crypto_box_new_keypair()", ["secret"]),
        (
            "select * from pgsodium.crypto_kx_client_session_keys("
            f"'\\x{CLIENT[0].hex()}', '\\x{CLIENT[1].hex()}', '\\x{SERVER[0].hex()}')",
            ["rx", "tx"],
        ),
        (
            "select * from pgsodium.crypto_signcrypt_sign_before('a', 'b', "
            f"'\\x{SIGNCRYPT[1].hex()}', '\\x{SIGNCRYPT[0].hex()}', 'ad')",
            ["state", "shared_key"],
        ),
    ],
)
def test_composite_results_give_their_named_columns(
    session: tuple[psycopg.Connection[Any], str], sql: str, columns: list[str]
) -> None:
    conn, protocol = session
    cur = run(conn, protocol, sql, [])
    assert [d.name for d in cur.description] == columns
    assert all(d.type_code == 17 for d in cur.description)  # bytea
    assert len(cur.fetchall()) == 1
