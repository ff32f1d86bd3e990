"""pgsodium 3.1.11 known answers, reproduced through the C-symbol implementations.

Each case names a vector of tests/data/pgsodium-3.1.11.json by index, a fragment of its
SQL (to catch a reordered file), the C symbol pgsodium runs and its arguments. Key
uuids resolve through the `create_key` rows recorded in the same file: a derived key
is (key_id, key_context) for the `_by_id` symbol, a raw key is decrypted from its
stored `raw_key` with its parent key (reference §7) and used with the raw symbol.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from keystore.derive import Env
from keystore.primitives import (
    aead,
    box,
    derivation,
    kx,
    mac,
    misc,
    pwhash,
    secretbox,
    sign,
    stream,
)

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parents[1] / "data" / "pgsodium-3.1.11.json").read_text("utf-8")
)
ROOT_KEY = bytes.fromhex(VECTORS[0]["result"]["root_key_hex"])
ENV = Env(ROOT_KEY)

IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {}
for _module in (aead, box, derivation, kx, mac, misc, pwhash, secretbox, sign, stream):
    IMPLEMENTATIONS.update(_module.IMPLEMENTATIONS)

M = b"bob is your uncle"
AD = b"and also your friend"
K32 = bytes(range(0xA0, 0xC0))
K16 = K32[:16]
N12 = bytes(range(12))
N16 = bytes(range(16))
N24 = bytes(range(24))
CTX = b"pgsodium"
SEED42 = b"\x42" * 32
SIGN_SK42 = SEED42 + bytes.fromhex(
    "2152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db12"
)
PASSWORD = b"Correct Horse Battery Staple"
FOX = b" ".join([b"the quick brown fox jumps over the lazy dog"] * 2)

ROWS: dict[str, dict[str, Any]] = {
    entry["result"]["pgsodium.key row"]["id"]: entry["result"]["pgsodium.key row"]
    for entry in VECTORS
    if isinstance(entry.get("result"), dict) and "pgsodium.key row" in entry["result"]
}


def _key_of(uuid: str) -> tuple[Any, ...]:
    """What pgsodium's PL/pgSQL uuid wrappers pass on: (raw key,) or (key_id, ctx)."""
    row = ROWS[uuid]
    if row["raw_key_hex"] is None:
        return (row["key_id"], bytes.fromhex(row["key_context_hex"]))
    parent = _key_of(row["parent_key"])
    assert len(parent) == 2, "these vectors only nest one level"
    associated = (row["id"] + row["associated_data"]).encode()
    stored = bytes.fromhex(row["raw_key_hex"])
    nonce = bytes.fromhex(row["raw_key_nonce_hex"])
    det_decrypt = IMPLEMENTATIONS["pgsodium_crypto_aead_det_decrypt_by_id"]
    return (det_decrypt(ENV, stored, associated, *parent, nonce),)


KEY = object()  # where the key goes in a uuid call's argument list


def uu(base: str, uuid: str, *args: Any) -> tuple[str, tuple[Any, ...]]:
    """A uuid (UU) call as its PL/pgSQL body runs it: raw or `_by_id` symbol."""
    key = _key_of(uuid)
    symbol = base if len(key) == 1 else f"{base}_by_id"
    i = args.index(KEY)
    return symbol, (*args[:i], *key, *args[i + 1 :])


def pg_base64(data: bytes) -> str:
    """PostgreSQL's encode(bytes, 'base64'): a newline after every 76 characters."""
    return base64.encodebytes(data).decode().rstrip("\n")


@dataclass(frozen=True)
class Case:
    index: int
    sql_fragment: str
    symbol: str
    args: tuple[Any, ...]
    post: Callable[[Any], Any] = field(default=lambda value: value)
    expected: Any = None  # None: take the vector's own result


def c(index: int, fragment: str, symbol: str, *args: Any, **kw: Any) -> Case:
    return Case(index, fragment, f"pgsodium_{symbol}", args, **kw)


def cu(index: int, fragment: str, call: tuple[str, tuple[Any, ...]], **kw: Any) -> Case:
    symbol, args = call
    return Case(index, fragment, f"pgsodium_{symbol}", args, **kw)


DET = "crypto_aead_det_encrypt"
DET_D = "crypto_aead_det_decrypt"
U1 = "d81b4f89-e5ad-41e1-885a-e4fe19a59fe4"  # aead-det, key_id 1
U_EXT_HMAC = "739efb95-75d9-4537-a3b8-820c871bc88d"  # raw hmacsha256 key, parent U1
U_EXT_DET = "9ba9ea4c-065c-4648-b1e1-3299c5ffbe38"  # raw aead-det key, parent id 11
U_TCE = "71f5cc2f-f037-4b77-b388-bfc3757f7f3d"
U_KDF = "dbe0dce8-b56a-4dd0-8f20-11ec33e508b8"

CASES = [
    c(1, "derive_key(1)", "derive", 1, 32, CTX),
    c(2, "derive_key(1, 32", "derive", 1, 32, CTX),
    c(3, "derive_key(2, 32)", "derive", 2, 32, CTX),
    c(4, "derive_key(42, 64", "derive", 42, 64, b"foozbarz"),
    c(5, "derive_key(0, 16)", "derive", 0, 16, CTX),
    c(6, "derive_key(-1, 32)", "derive", -1, 32, CTX),
    c(7, "derive_key(9223372036854775807", "derive", 2**63 - 1, 32, CTX),
    c(8, "derive_key(5, 24", "derive", 5, 24, bytes(range(8))),
    c(9, "pgsodium_derive(3)", "derive", 3, 32, CTX),
    c(
        10,
        "kdf_derive_from_key(32, 1",
        "crypto_kdf_derive_from_key",
        32,
        1,
        CTX,
        ROOT_KEY,
    ),
    c(
        11,
        "kdf_derive_from_key(16, 7",
        "crypto_kdf_derive_from_key",
        16,
        7,
        b"context_",
        K32,
    ),
    c(
        12,
        "kdf_derive_from_key(64, 123456789",
        "crypto_kdf_derive_from_key",
        64,
        123456789,
        b"__auth__",
        K32,
    ),
    c(13, DET, f"{DET}_by_id", M, AD, 1, CTX, None),
    c(14, DET, f"{DET}_by_id", M, AD, 1, b"foozbarz", None),
    c(15, DET, f"{DET}_by_id", M, None, 1, CTX, None),
    c(16, DET, f"{DET}_by_id", M, b"", 1, CTX, None),
    c(17, DET, f"{DET}_by_id", M, AD, 1, CTX, N16),
    c(18, DET, DET, M, AD, K32, None),
    c(19, DET, DET, M, AD, K32, N16),
    c(20, DET, DET, M, None, K32, N16),
    c(21, DET, DET, b"", None, K32, None),
    c(22, "repeat('11', 31)", DET, b"\x11" * 31, AD, K32, None),
    c(23, "repeat('22', 32)", DET, b"\x22" * 32, AD, K32, None),
    c(24, "repeat('33', 33)", DET, b"\x33" * 33, AD, K32, None),
    c(25, "repeat('44', 100)", DET, b"\x44" * 100, None, K32, N16),
    c(
        26,
        DET_D,
        f"{DET_D}_by_id",
        bytes.fromhex(VECTORS[13]["result_hex"]),
        AD,
        1,
        CTX,
        None,
    ),
    c(27, DET_D, DET_D, bytes.fromhex(VECTORS[19]["result_hex"]), AD, K32, N16),
    c(28, "ietf_encrypt", "crypto_aead_ietf_encrypt_by_id", M, AD, N12, 1, CTX),
    c(29, "ietf_encrypt", "crypto_aead_ietf_encrypt_by_id", M, AD, N12, 1, b"foozbarz"),
    c(30, "ietf_encrypt", "crypto_aead_ietf_encrypt_by_id", M, None, N12, 1, CTX),
    c(31, "ietf_encrypt", "crypto_aead_ietf_encrypt", M, AD, N12, K32),
    c(32, "hmacsha256(", "crypto_auth_hmacsha256_by_id", M, 1, CTX),
    c(33, "hmacsha256(", "crypto_auth_hmacsha256_by_id", M, 1, b"foozbarz"),
    c(34, "hmacsha512(", "crypto_auth_hmacsha512_by_id", M, 1, CTX),
    c(35, "hmacsha256(", "crypto_auth_hmacsha256", M, K32),
    c(36, "hmacsha512(", "crypto_auth_hmacsha512", M, K32),
    c(37, "crypto_auth(", "crypto_auth_by_id", M, 1, CTX),
    c(38, "crypto_auth(", "crypto_auth", M, K32),
    c(
        39,
        "hmacsha256_verify",
        "crypto_auth_hmacsha256_verify_by_id",
        bytes.fromhex(VECTORS[32]["result_hex"]),
        M,
        1,
        CTX,
    ),
    c(40, "generichash(", "crypto_generichash", M, None),
    c(41, "generichash(", "crypto_generichash", M, K32),
    c(42, "generichash(", "crypto_generichash", M, K16),
    c(43, "generichash(", "crypto_generichash_by_id", M, 1, CTX),
    c(44, "shorthash(", "crypto_shorthash", M, K16),
    c(45, "shorthash(", "crypto_shorthash_by_id", M, 1, CTX),
    c(46, "sha256", "crypto_hash_sha256", M),
    c(47, "sha512", "crypto_hash_sha512", M),
    c(48, "secretbox(", "crypto_secretbox_by_id", M, N24, 1, CTX),
    c(49, "secretbox(", "crypto_secretbox_by_id", M, N24, 1, b"foozbarz"),
    c(50, "secretbox(", "crypto_secretbox", M, N24, K32),
    c(
        51,
        "secretbox_open",
        "crypto_secretbox_open_by_id",
        bytes.fromhex(VECTORS[48]["result_hex"]),
        N24,
        1,
        CTX,
    ),
    c(52, "xchacha20(64", "crypto_stream_xchacha20", 64, N24, K32),
    c(53, "xchacha20_xor(", "crypto_stream_xchacha20_xor", M, N24, K32),
    c(54, "xchacha20_xor_ic(", "crypto_stream_xchacha20_xor_ic", M, N24, 1, K32),
    c(55, "xchacha20(32", "crypto_stream_xchacha20_by_id", 32, N24, 1, CTX),
    # The SQL default context of this overload is the typo 'pgosdium'.
    c(
        56,
        "xchacha20_xor(",
        "crypto_stream_xchacha20_xor_by_id",
        M,
        N24,
        1,
        b"pgosdium",
    ),
    c(57, "xchacha20_xor(", "crypto_stream_xchacha20_xor_by_id", M, N24, 1, CTX),
    c(58, "sign_seed_new_keypair", "crypto_sign_seed_keypair", SEED42),
    c(59, "sign_detached", "crypto_sign_detached", M, SIGN_SK42),
    c(60, "crypto_sign(", "crypto_sign", M, SIGN_SK42),
    c(61, "box_seed_new_keypair", "crypto_box_seed_keypair", SEED42),
    c(62, "box_seed_new_keypair", "crypto_box_seed_keypair", b"\x43" * 32),
    c(
        63,
        "crypto_box(",
        "crypto_box",
        M,
        N24,
        bytes.fromhex(VECTORS[62]["result"]["public_hex"]),
        bytes.fromhex(VECTORS[61]["result"]["secret_hex"]),
    ),
    c(64, "kx_seed_new_keypair", "crypto_kx_seed_keypair", SEED42),
    c(65, "kx_seed_new_keypair", "crypto_kx_seed_keypair", b"\x43" * 32),
    c(
        66,
        "kx_client_session_keys",
        "crypto_kx_client_session_keys",
        bytes.fromhex(VECTORS[64]["result"]["public_hex"]),
        bytes.fromhex(VECTORS[64]["result"]["secret_hex"]),
        bytes.fromhex(VECTORS[65]["result"]["public_hex"]),
    ),
    c(
        67,
        "kx_server_session_keys",
        "crypto_kx_server_session_keys",
        bytes.fromhex(VECTORS[65]["result"]["public_hex"]),
        bytes.fromhex(VECTORS[65]["result"]["secret_hex"]),
        bytes.fromhex(VECTORS[64]["result"]["public_hex"]),
    ),
    c(68, "crypto_pwhash(", "crypto_pwhash", PASSWORD, N16),
    c(69, "bin2base64", "sodium_bin2base64", M),
    c(70, "bin2base64", "sodium_bin2base64", b"\xfb\xff"),
    c(71, "base642bin", "sodium_base642bin", "Ym9iIGlzIHlvdXIgdW5jbGU"),
    c(72, "buf_deterministic", "randombytes_buf_deterministic", 32, SEED42),
    c(73, "pwhash_str(", "crypto_pwhash_str", PASSWORD, post=lambda v: str(len(v))),
    c(
        74,
        "pwhash_str_verify",
        "crypto_pwhash_str_verify",
        bytes.fromhex(VECTORS[74]["sql"].split("'\\x")[1].split("'")[0]),
        PASSWORD,
    ),
    c(
        76,
        "verify_detached",
        "crypto_sign_verify_detached",
        bytes.fromhex(VECTORS[59]["result_hex"]),
        M,
        bytes.fromhex(VECTORS[58]["result"]["public_hex"]),
    ),
    c(
        77,
        "final_create",
        "crypto_sign_final_create",
        bytes.fromhex(VECTORS[79]["result_hex"]),
        SIGN_SK42,
    ),
    c(78, "sign_init()", "crypto_sign_init"),
    c(
        79,
        "sign_update(",
        "crypto_sign_update",
        bytes.fromhex(VECTORS[78]["result_hex"]),
        M,
    ),
    c(
        80,
        "length(pgsodium.crypto_sign_init",
        "crypto_sign_init",
        post=lambda v: str(len(v)),
    ),
    cu(91, DET, uu(DET, U1, M, AD, KEY, None)),
    cu(92, DET, uu(DET, U1, M, AD, KEY, N16)),
    cu(
        93,
        DET_D,
        uu(DET_D, U1, bytes.fromhex(VECTORS[13]["result_hex"]), AD, KEY, None),
    ),
    cu(95, DET, uu(DET, "a8867df5-db2d-4ed5-8d1c-a41116631bb2", M, AD, KEY, None)),
    cu(
        97,
        "ietf_encrypt",
        uu(
            "crypto_aead_ietf_encrypt",
            "092d00e3-ccc4-4b1b-9953-8e69add7f032",
            M,
            AD,
            N12,
            KEY,
        ),
    ),
    cu(
        99,
        "hmacsha256(",
        uu("crypto_auth_hmacsha256", "35ec08a9-4406-4a13-8b97-0b5395653956", M, KEY),
    ),
    # UU kdf of a derived key runs derive_key(key_id, size, key_context): the
    # subkey_id (99) and context ('whatever') arguments are ignored.
    c(
        101,
        "kdf_derive_from_key(32, 99",
        "derive",
        ROWS[U_KDF]["key_id"],
        32,
        bytes.fromhex(ROWS[U_KDF]["key_context_hex"]),
    ),
    c(102, "derive_key(5, 32", "derive", 5, 32, CTX),
    cu(
        104,
        "secretbox(",
        uu("crypto_secretbox", "3aa8ea6b-16a8-4b6e-bcd8-e1a2942fb801", M, N24, KEY),
    ),
    cu(
        106,
        "shorthash(",
        uu("crypto_shorthash", "a92a4746-e67f-4fe6-be32-743b464f13b8", M, KEY),
    ),
    cu(
        108,
        "generichash(",
        uu("crypto_generichash", "5cb789ce-a6bb-4fcc-95ab-2bb3bcdae4ab", M, KEY),
    ),
    cu(
        110,
        "crypto_auth(",
        uu("crypto_auth", "fc98c2df-7474-4577-9aff-598fa2069d0d", M, KEY),
    ),
    cu(113, DET, uu(DET, "b03a8758-e3b9-4e29-9303-6a466a025e74", M, AD, KEY, None)),
    # The stored raw_key of an external key: det under the parent, AD = id || assoc.
    cu(
        115,
        "create_key('hmacsha256', 'ext hmac'",
        uu(DET, U1, K32, f"{U_EXT_HMAC}assoc".encode(), KEY, N16),
        expected=bytes.fromhex(ROWS[U_EXT_HMAC]["raw_key_hex"]),
    ),
    c(116, DET, f"{DET}_by_id", K32, f"{U_EXT_HMAC}assoc".encode(), 1, CTX, N16),
    cu(
        117,
        "decrypted_raw_key",
        uu(
            DET_D,
            U1,
            bytes.fromhex(ROWS[U_EXT_HMAC]["raw_key_hex"]),
            f"{U_EXT_HMAC}assoc".encode(),
            KEY,
            N16,
        ),
    ),
    cu(118, "hmacsha256(", uu("crypto_auth_hmacsha256", U_EXT_HMAC, M, KEY)),
    cu(
        119,
        "create_key('aead-det', raw_key",
        uu(DET, ROWS[U_EXT_DET]["parent_key"], K32, U_EXT_DET.encode(), KEY, N16),
        expected=bytes.fromhex(ROWS[U_EXT_DET]["raw_key_hex"]),
    ),
    cu(121, DET, uu(DET, U_EXT_DET, M, AD, KEY, None)),
    # TCE: the stored text is PostgreSQL base64 of det(plaintext, AD '1ctx', nonce).
    cu(
        126,
        "INSERT INTO public.tce_demo VALUES (1",
        uu(DET, U_TCE, FOX, b"1ctx", KEY, N16),
        post=pg_base64,
    ),
    cu(127, DET, uu(DET, U_TCE, FOX, b"1ctx", KEY, N16)),
    cu(128, "SELECT secretb", uu(DET, U_TCE, b"s3kr3t", b"ctx", KEY, None)),
    cu(
        129,
        "decrypted_secret",
        uu(DET_D, U_TCE, bytes.fromhex(VECTORS[127]["result_hex"]), b"1ctx", KEY, N16),
        post=lambda v: v.decode(),
    ),
    cu(
        130,
        "VALUES (2, 'null assoc col'",
        uu(DET, U_TCE, b"null assoc col", None, KEY, None),
        post=pg_base64,
    ),
    cu(
        131,
        "encode(pgsodium.crypto_aead_det_encrypt",
        uu(DET, U_TCE, b"null assoc col", None, KEY, None),
        post=pg_base64,
    ),
]


def _expected(case: Case) -> Any:
    if case.expected is not None:
        return case.expected
    entry = VECTORS[case.index]
    if "result_hex" in entry:
        return bytes.fromhex(entry["result_hex"])
    result = entry["result"]
    if isinstance(result, dict):
        if "public_hex" in result:
            return (
                bytes.fromhex(result["public_hex"]),
                bytes.fromhex(result["secret_hex"]),
            )
        return (bytes.fromhex(result["rx_hex"]), bytes.fromhex(result["tx_hex"]))
    return result


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"v{case.index}")
def test_vector_is_reproduced_exactly(case: Case) -> None:
    assert case.sql_fragment in VECTORS[case.index]["sql"]
    impl = IMPLEMENTATIONS[case.symbol]

    assert case.post(impl(ENV, *case.args)) == _expected(case)


# Vectors that are not about a C function of these modules: metadata, ipcrypt and
# signcrypt (another module), create_key rows whose only crypto is checked above,
# plain SQL over constants, DDL, and the P0002 of a uuid lookup (the key-table layer).
NOT_THIS_LAYER = {
    0,
    75,
    *range(81, 90),
    90,
    94,
    96,
    98,
    100,
    103,
    105,
    107,
    109,
    111,
    112,
    114,
    120,
    122,
    123,
    124,
    125,
}


def test_every_vector_is_either_covered_or_named_as_another_layers() -> None:
    covered = {case.index for case in CASES}

    assert covered.isdisjoint(NOT_THIS_LAYER)
    assert covered | NOT_THIS_LAYER == set(range(len(VECTORS)))
