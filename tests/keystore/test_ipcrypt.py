"""crypto_ipcrypt_*: pgsodium's recorded vectors, the draft-denis-ipcrypt vectors,
libsodium's address text rules, and pgsodium's checks with their exact errors."""

from __future__ import annotations

import hashlib
import ipaddress
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keystore.errors import PgsodiumError, data_exception
from keystore.primitives import ipcrypt
from keystore.primitives.ipcrypt import IMPLEMENTATIONS

ROOT_KEY = bytes(range(32))
PGSODIUM_CONTEXT = b"pgsodium"
KEY16 = bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaabacadaeaf")
KEY32 = bytes.fromhex(
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
)
IP = ipcrypt.ip_to_bin("192.0.2.1")
P = "pgsodium_crypto_ipcrypt"
FEW = settings(max_examples=25, deadline=None)


class StandInEnv:
    """libsodium's crypto_kdf_derive_from_key, with pgsodium_derive_helper's errors."""

    def __init__(self, root_key: bytes) -> None:
        self._root_key = root_key

    def derive(self, key_id: int, size: int, context: bytes) -> bytes:
        helper = "pgsodium_derive_helper"
        if not 16 <= size <= 64:
            reason = "crypto_kdf_derive_from_key: invalid key size requested"
            raise data_exception(helper, reason)
        if len(context) != 8:
            reason = "crypto_kdf_derive_from_key: context must be 8 bytes"
            raise data_exception(helper, reason)
        salt = struct.pack("<Q", key_id & 0xFFFFFFFFFFFFFFFF) + bytes(8)
        return hashlib.blake2b(
            b"",
            digest_size=size,
            key=self._root_key,
            salt=salt,
            person=context + bytes(8),
        ).digest()


def make_env() -> Any:
    try:
        from keystore.derive import Env
    except ImportError:
        return StandInEnv(ROOT_KEY)
    return Env(ROOT_KEY)


ENV = make_env()


def call(symbol: str, *args: Any) -> Any:
    return IMPLEMENTATIONS[symbol](ENV, *args)


def raises(symbol: str, reason: str) -> Any:
    return pytest.raises(PgsodiumError, match=f"^{symbol}: {reason}$")


# --- pgsodium 3.1.11's recorded vectors --------------------------------------------

SQL_VECTORS: dict[str, Callable[[], Any]] = {
    "SELECT pgsodium.crypto_ipcrypt_ip2bin('192.0.2.1')": lambda: call(
        f"{P}_ip2bin", "192.0.2.1"
    ),
    "SELECT pgsodium.crypto_ipcrypt_bin2ip(pgsodium.crypto_ipcrypt_encrypt("
    "pgsodium.crypto_ipcrypt_ip2bin('192.0.2.1'), "
    "'\\xa0a1a2a3a4a5a6a7a8a9aaabacadaeaf'::bytea))": lambda: call(
        f"{P}_bin2ip", call(f"{P}_encrypt", IP, KEY16)
    ),
    "SELECT pgsodium.crypto_ipcrypt_encrypt(pgsodium.crypto_ipcrypt_ip2bin("
    "'192.0.2.1'), 1::bigint)": lambda: call(
        f"{P}_encrypt_by_id", IP, 1, PGSODIUM_CONTEXT
    ),
    # The inet overload is the SQL wrapper bin2ip(enc(ip2bin(host(ip))))::inet.
    "SELECT pgsodium.crypto_ipcrypt_pfx_encrypt('192.0.2.1'::inet, "
    "'\\xa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf'::bytea)": (
        lambda: ipcrypt.bin_to_ip(call(f"{P}_pfx_encrypt", IP, KEY32)) + "/32"
    ),
    "SELECT pgsodium.crypto_ipcrypt_nd_encrypt(pgsodium.crypto_ipcrypt_ip2bin("
    "'192.0.2.1'), '\\x0001020304050607'::bytea, "
    "'\\xa0a1a2a3a4a5a6a7a8a9aaabacadaeaf'::bytea)": lambda: call(
        f"{P}_nd_encrypt", IP, bytes(range(8)), KEY16
    ),
    "SELECT pgsodium.crypto_ipcrypt_ndx_encrypt(pgsodium.crypto_ipcrypt_ip2bin("
    "'192.0.2.1'), '\\x000102030405060708090a0b0c0d0e0f'::bytea, "
    "'\\xa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf'::bytea)": (
        lambda: call(f"{P}_ndx_encrypt", IP, bytes(range(16)), KEY32)
    ),
}


def test_every_recorded_ipcrypt_vector_is_covered(
    vectors: list[dict[str, Any]],
) -> None:
    recorded = {v["sql"] for v in vectors if "crypto_ipcrypt" in v["sql"]}
    assert recorded == set(SQL_VECTORS)


@pytest.mark.parametrize("sql", SQL_VECTORS)
def test_recorded_vector_is_reproduced(vectors: list[dict[str, Any]], sql: str) -> None:
    (vector,) = [v for v in vectors if v["sql"] == sql]
    result = SQL_VECTORS[sql]()
    if "result_hex" in vector:
        assert result.hex() == vector["result_hex"]
    else:
        assert result == vector["result"]


# --- draft-denis-ipcrypt (-13), appendix A --------------------------------------------

K1 = "0123456789abcdeffedcba9876543210"
K2 = "1032547698badcfeefcdab8967452301"
K3 = "2b7e151628aed2a6abf7158809cf4f3c"
PFX_K1 = K1 + K2
PFX_K2 = K3 + "a9f5ba40db214c3798f2e1c23456789a"

DETERMINISTIC = [  # A.1: key, address, encrypted address
    (K1, "0.0.0.0", "bde9:6789:d353:824c:d7c6:f58a:6bd2:26eb"),
    (K2, "255.255.255.255", "aed2:92f6:ea23:58c3:48fd:8b8:74e8:45d8"),
    (K3, "192.0.2.1", "1dbd:c1b9:fff1:7586:7d0b:67b4:e76e:4777"),
]
PFX = [  # A.2.1 and A.2.2
    (PFX_K1, "0.0.0.0", "151.82.155.134"),
    (PFX_K1, "255.255.255.255", "94.185.169.89"),
    (PFX_K1, "192.0.2.1", "100.115.72.131"),
    (PFX_K1, "2001:db8::1", "c180:5dd4:2587:3524:30ab:fa65:6ab6:f88"),
    (PFX_K2, "10.0.0.47", "19.214.210.244"),
    (PFX_K2, "10.0.0.129", "19.214.210.80"),
    (PFX_K2, "10.0.0.234", "19.214.210.30"),
    (PFX_K2, "172.16.5.193", "210.78.229.136"),
    (PFX_K2, "172.16.97.42", "210.78.179.241"),
    (PFX_K2, "172.16.248.177", "210.78.121.215"),
    (PFX_K2, "2001:db8::a5c9:4e2f:bb91:5a7d", "7cec:702c:1243:f70:1956:125:b9bd:1aba"),
    (PFX_K2, "2001:db8::7234:d8f1:3c6e:9a52", "7cec:702c:1243:f70:a3ef:c8e:95c1:cd0d"),
    (PFX_K2, "2001:db8::f1e0:937b:26d4:8c1a", "7cec:702c:1243:f70:443c:c8e:6a62:b64d"),
    (
        PFX_K2,
        "2001:db8:3a5c:0:e7d1:4b9f:2c8a:f673",
        "7cec:702c:3503:bef:e616:96bd:be33:a9b9",
    ),
    (
        PFX_K2,
        "2001:db8:9f27:0:b4e2:7a3d:5f91:c8e6",
        "7cec:702c:a504:b74e:194a:3d90:b047:2d1a",
    ),
    (
        PFX_K2,
        "2001:db8:d8b4:0:193c:a5e7:8b2f:46d1",
        "7cec:702c:f840:aa67:1b8:e84f:ac9d:77fb",
    ),
]
ND = [  # A.3: key, address, tweak, output
    (K1, "0.0.0.0", "08e0c289bff23b7c", "b349aadfe3bcef56221c384c7c217b16"),
    (K2, "192.0.2.1", "21bd1834bc088cd2", "e5e1fe55f95876e639faae2594a0caad"),
    (K3, "2001:db8::1", "b4ecbe30b70898d7", "553ac8974d1b4250eafc4b0aa1f80c96"),
]
NDX = [  # A.4
    (
        K1 + K2,
        "0.0.0.0",
        "21bd1834bc088cd2b4ecbe30b70898d7",
        "82db0d4125fdace61db35b8339f20ee5",
    ),
    (
        K2 + K1,
        "192.0.2.1",
        "08e0c289bff23b7cb4ecbe30b70898d7",
        "766a533392a69edf1ad0d3ce362ba98a",
    ),
    (
        K3 + "3c4fcf098815f7aba6d2ae2816157e2b",
        "2001:db8::1",
        "21bd1834bc088cd2b4ecbe30b70898d7",
        "6089c7e05ae30c2d10ca149870a263e4",
    ),
]


@pytest.mark.parametrize(("key", "ip", "expected"), DETERMINISTIC)
def test_deterministic_spec_vector(key: str, ip: str, expected: str) -> None:
    key_bytes, binary = bytes.fromhex(key), ipcrypt.ip_to_bin(ip)
    encrypted = call(f"{P}_encrypt", binary, key_bytes)
    assert ipcrypt.bin_to_ip(encrypted) == expected
    assert call(f"{P}_decrypt", encrypted, key_bytes) == binary


@pytest.mark.parametrize(("key", "ip", "expected"), PFX)
def test_pfx_spec_vector(key: str, ip: str, expected: str) -> None:
    key_bytes, binary = bytes.fromhex(key), ipcrypt.ip_to_bin(ip)
    encrypted = call(f"{P}_pfx_encrypt", binary, key_bytes)
    assert ipcrypt.bin_to_ip(encrypted) == expected
    assert call(f"{P}_pfx_decrypt", encrypted, key_bytes) == binary


@pytest.mark.parametrize(("key", "ip", "tweak", "ciphertext"), ND)
def test_nd_spec_vector(key: str, ip: str, tweak: str, ciphertext: str) -> None:
    key_bytes, binary = bytes.fromhex(key), ipcrypt.ip_to_bin(ip)
    output = call(f"{P}_nd_encrypt", binary, bytes.fromhex(tweak), key_bytes)
    assert output.hex() == tweak + ciphertext
    assert call(f"{P}_nd_decrypt", output, key_bytes) == binary


@pytest.mark.parametrize(("key", "ip", "tweak", "ciphertext"), NDX)
def test_ndx_spec_vector(key: str, ip: str, tweak: str, ciphertext: str) -> None:
    key_bytes, binary = bytes.fromhex(key), ipcrypt.ip_to_bin(ip)
    output = call(f"{P}_ndx_encrypt", binary, bytes.fromhex(tweak), key_bytes)
    assert output.hex() == tweak + ciphertext
    assert call(f"{P}_ndx_decrypt", output, key_bytes) == binary


# --- properties ---------------------------------------------------------------------

addresses = st.binary(min_size=16, max_size=16)


@FEW
@given(
    addresses, st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16)
)
def test_round_trips(ip: bytes, key16: bytes, tweak16: bytes) -> None:
    key32 = key16 + tweak16
    assert ipcrypt.decrypt(ipcrypt.encrypt(ip, key16), key16) == ip
    assert ipcrypt.pfx_decrypt(ipcrypt.pfx_encrypt(ip, key32), key32) == ip
    assert ipcrypt.nd_decrypt(ipcrypt.nd_encrypt(ip, tweak16[:8], key16), key16) == ip
    assert ipcrypt.ndx_decrypt(ipcrypt.ndx_encrypt(ip, tweak16, key32), key32) == ip


@FEW
@given(addresses, st.binary(min_size=16, max_size=16))
def test_kiasu_with_an_all_zero_tweak_is_plain_aes(ip: bytes, key: bytes) -> None:
    assert ipcrypt.nd_encrypt(ip, bytes(8), key)[8:] == ipcrypt.encrypt(ip, key)


@FEW
@given(addresses, st.binary(min_size=16, max_size=16))
def test_equal_key_halves_use_the_first_half_xor_5a(ip: bytes, half: bytes) -> None:
    # libsodium 1.0.22 (ipcrypt_soft.c): pfx and ndx never run two equal AES keys.
    substitute = half + bytes(b ^ 0x5A for b in half)
    assert ipcrypt.pfx_encrypt(ip, half + half) == ipcrypt.pfx_encrypt(ip, substitute)
    tweak = bytes(range(16))
    data_key = bytes(b ^ 0x5A for b in half)
    expected = ipcrypt.ndx_encrypt(ip, tweak, data_key + half)
    assert ipcrypt.ndx_encrypt(ip, tweak, half + half) == expected


@FEW
@given(addresses, st.binary(min_size=32, max_size=32))
def test_pfx_keeps_the_address_family(ip: bytes, key: bytes) -> None:
    mapped = ip[:12] == bytes(10) + b"\xff\xff"
    assert (ipcrypt.pfx_encrypt(ip, key)[:12] == bytes(10) + b"\xff\xff") == mapped
    v4 = bytes(10) + b"\xff\xff" + ip[12:]
    assert ipcrypt.pfx_encrypt(v4, key)[:12] == v4[:12]


# --- sodium_ip2bin / sodium_bin2ip ----------------------------------------------------

IP2BIN = [
    ("192.0.2.1", "00000000000000000000ffffc0000201"),
    ("010.001.000.255", "00000000000000000000ffff0a0100ff"),
    ("::", "00" * 16),
    ("::1", "00" * 15 + "01"),
    ("1::", "0001" + "00" * 14),
    ("2001:DB8::1", "20010db8" + "00" * 11 + "01"),
    ("::ffff:1.2.3.4", "00000000000000000000ffff01020304"),
    ("::1.2.3.4", "00" * 12 + "01020304"),
    ("1:2:3:4:5:6:1.2.3.4", "000100020003000400050006" + "01020304"),
    ("fe80::1%eth0", "fe80" + "00" * 13 + "01"),
    ("fe80::1%a-b_c.9", "fe80" + "00" * 13 + "01"),
    ("1:2:3:4:5:6:7:8", "00010002000300040005000600070008"),
]
NOT_AN_ADDRESS = [
    "",
    "not-an-ip",
    "1.2.3",
    "1.2.3.4.",
    "1.2.3.256",
    "1.2.3.0004",
    "1..2.3",
    " 1.2.3.4",
    "1.2.3.4%eth0",
    ":",
    ":1",
    "1:",
    "1:2",
    ":::",
    "1::2::3",
    "12345::",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7::8",
    "::1.2.3",
    "::1.2.3.4:5",
    "1:2:3:4:5:6:7:1.2.3.4",
    "fe80::1%",
    "fe80::1%et h0",
    "fe80::1%a%b",
    "::g",
    "١.٢.٣.٤",
]
BIN2IP = [
    ("00" * 16, "::"),
    ("00" * 15 + "01", "::1"),
    ("20010db8" + "00" * 11 + "01", "2001:db8::1"),
    ("00010000000200000000000000030000", "1:0:2::3:0"),  # the longest run wins
    ("00010000000000020000000000030004", "1::2:0:0:3:4"),  # first of equal runs
    ("00010002000300040005000600000008", "1:2:3:4:5:6:0:8"),  # one zero word stays
    ("00000000000000000000ffff00000000", "0.0.0.0"),
    ("00" * 12 + "01020304", "::102:304"),  # IPv4-compatible: plain IPv6 text
    ("abcd" * 8, "abcd:abcd:abcd:abcd:abcd:abcd:abcd:abcd"),
]


@pytest.mark.parametrize(("text", "expected"), IP2BIN)
def test_ip2bin_accepts(text: str, expected: str) -> None:
    assert call(f"{P}_ip2bin", text).hex() == expected


@pytest.mark.parametrize("text", NOT_AN_ADDRESS)
def test_ip2bin_rejects(text: str) -> None:
    with raises(f"{P}_ip2bin", "invalid IP address"):
        call(f"{P}_ip2bin", text)


@pytest.mark.parametrize(("binary", "expected"), BIN2IP)
def test_bin2ip_prints_as_libsodium(binary: str, expected: str) -> None:
    assert call(f"{P}_bin2ip", bytes.fromhex(binary)) == expected


@given(addresses)
def test_bin2ip_matches_rfc5952_and_round_trips(binary: bytes) -> None:
    text = ipcrypt.bin_to_ip(binary)
    if binary[:12] != bytes(10) + b"\xff\xff":
        assert text == str(ipaddress.IPv6Address(binary))
    assert ipcrypt.ip_to_bin(text) == binary


@pytest.mark.parametrize("size", [0, 4, 15, 17])
def test_bin2ip_needs_16_bytes(size: int) -> None:
    with raises(f"{P}_bin2ip", "input must be 16 bytes"):
        call(f"{P}_bin2ip", bytes(size))


# --- pgsodium's checks: order and exact errors ----------------------------------------

TWEAK8, TWEAK16 = bytes(8), bytes(16)
RAW_ENCRYPT = [  # symbol, tweak (None: no tweak argument), key size
    (f"{P}_encrypt", None, 16),
    (f"{P}_pfx_encrypt", None, 32),
    (f"{P}_nd_encrypt", TWEAK8, 16),
    (f"{P}_ndx_encrypt", TWEAK16, 32),
]
RAW_DECRYPT = [  # symbol, input size, name of the input in the error, key size
    (f"{P}_decrypt", 16, "input", 16),
    (f"{P}_pfx_decrypt", 16, "input", 32),
    (f"{P}_nd_decrypt", 24, "ciphertext", 16),
    (f"{P}_ndx_decrypt", 32, "ciphertext", 32),
]
wrong_16 = st.binary(max_size=40).filter(lambda b: len(b) != 16)


def _encrypt_args(tweak: bytes | None, *rest: Any) -> tuple[Any, ...]:
    return rest[:1] + (() if tweak is None else (tweak,)) + rest[1:]


@pytest.mark.parametrize(("symbol", "tweak", "key_size"), RAW_ENCRYPT)
@FEW
@given(ip=wrong_16)
def test_encrypt_rejects_a_wrong_sized_input_first(
    symbol: str, tweak: bytes | None, key_size: int, ip: bytes
) -> None:
    with raises(symbol, "invalid input"):
        call(symbol, *_encrypt_args(tweak, ip, b"bad"))
    with raises(f"{symbol}_by_id", "invalid input"):
        call(f"{symbol}_by_id", *_encrypt_args(tweak, ip, 1, b"bad"))


@pytest.mark.parametrize(("symbol", "tweak", "key_size"), RAW_ENCRYPT)
@FEW
@given(key=st.binary(max_size=40))
def test_encrypt_rejects_a_wrong_sized_key(
    symbol: str, tweak: bytes | None, key_size: int, key: bytes
) -> None:
    if len(key) == key_size:
        return
    with raises(symbol, "invalid key"):
        call(symbol, *_encrypt_args(tweak, IP, key))


@pytest.mark.parametrize("symbol", [f"{P}_nd_encrypt", f"{P}_ndx_encrypt"])
@pytest.mark.parametrize("tweak", [b"", b"bad", bytes(9), bytes(15), bytes(17)])
def test_encrypt_rejects_a_wrong_sized_tweak_before_the_key(
    symbol: str, tweak: bytes
) -> None:
    if len(tweak) == (8 if symbol.endswith("_nd_encrypt") else 16):
        return
    with raises(symbol, "invalid tweak"):
        call(symbol, IP, tweak, b"bad")
    with raises(f"{symbol}_by_id", "invalid tweak"):
        call(f"{symbol}_by_id", IP, tweak, 1, b"bad")


@pytest.mark.parametrize(("symbol", "size", "name", "key_size"), RAW_DECRYPT)
@FEW
@given(data=st.binary(max_size=40))
def test_decrypt_rejects_a_wrong_sized_input_first(
    symbol: str, size: int, name: str, key_size: int, data: bytes
) -> None:
    if len(data) == size:
        return
    with raises(symbol, f"invalid {name}"):
        call(symbol, data, b"bad")
    with raises(f"{symbol}_by_id", f"invalid {name}"):
        call(f"{symbol}_by_id", data, 1, b"bad")


@pytest.mark.parametrize(("symbol", "size", "name", "key_size"), RAW_DECRYPT)
@pytest.mark.parametrize("delta", [-1, 1])
def test_decrypt_rejects_a_wrong_sized_key(
    symbol: str, size: int, name: str, key_size: int, delta: int
) -> None:
    with raises(symbol, "invalid key"):
        call(symbol, bytes(size), bytes(key_size + delta))


CTX = PGSODIUM_CONTEXT
VALID_ARGS: dict[str, list[Any]] = {  # SQL arguments, in declaration order
    f"{P}_ip2bin": ["192.0.2.1"],
    f"{P}_bin2ip": [IP],
    f"{P}_encrypt": [IP, KEY16],
    f"{P}_decrypt": [IP, KEY16],
    f"{P}_encrypt_by_id": [IP, 1, CTX],
    f"{P}_decrypt_by_id": [IP, 1, CTX],
    f"{P}_pfx_encrypt": [IP, KEY32],
    f"{P}_pfx_decrypt": [IP, KEY32],
    f"{P}_pfx_encrypt_by_id": [IP, 1, CTX],
    f"{P}_pfx_decrypt_by_id": [IP, 1, CTX],
    f"{P}_nd_encrypt": [IP, TWEAK8, KEY16],
    f"{P}_nd_decrypt": [bytes(24), KEY16],
    f"{P}_nd_encrypt_by_id": [IP, TWEAK8, 1, CTX],
    f"{P}_nd_decrypt_by_id": [bytes(24), 1, CTX],
    f"{P}_ndx_encrypt": [IP, TWEAK16, KEY32],
    f"{P}_ndx_decrypt": [bytes(32), KEY32],
    f"{P}_ndx_encrypt_by_id": [IP, TWEAK16, 1, CTX],
    f"{P}_ndx_decrypt_by_id": [bytes(32), 1, CTX],
}
BY_ID = [symbol for symbol in VALID_ARGS if symbol.endswith("_by_id")]


@pytest.mark.parametrize("symbol", BY_ID)
def test_by_id_passes_derivation_errors_through(symbol: str) -> None:
    *args, _context = VALID_ARGS[symbol]
    reason = "crypto_kdf_derive_from_key: context must be 8 bytes"
    with raises("pgsodium_derive_helper", reason):
        call(symbol, *args, b"short")


@pytest.mark.parametrize(
    ("mode", "size", "tweak"),
    [("", 16, ()), ("_pfx", 32, ()), ("_nd", 16, (TWEAK8,)), ("_ndx", 32, (TWEAK16,))],
)
@pytest.mark.parametrize("key_id", [1, -1, 2**63 - 1])
def test_by_id_equals_the_raw_function_with_the_derived_key(
    mode: str, size: int, tweak: tuple[bytes, ...], key_id: int
) -> None:
    context = b"ipcrypt!"
    key = ENV.derive(key_id, size, context)
    encrypted = call(f"{P}{mode}_encrypt_by_id", IP, *tweak, key_id, context)
    assert encrypted == call(f"{P}{mode}_encrypt", IP, *tweak, key)
    assert call(f"{P}{mode}_decrypt_by_id", encrypted, key_id, context) == IP
    assert call(f"{P}{mode}_decrypt", encrypted, key) == IP


@pytest.mark.parametrize("symbol", VALID_ARGS)
def test_sql_null_gives_null_as_the_strict_functions_do(symbol: str) -> None:
    args = VALID_ARGS[symbol]
    assert call(symbol, *args) is not None
    for position in range(len(args)):
        with_null = [None if i == position else a for i, a in enumerate(args)]
        assert call(symbol, *with_null) is None


@pytest.mark.parametrize(
    ("symbol", "size"),
    [
        (f"{P}_keygen", 16),
        (f"{P}_pfx_keygen", 32),
        (f"{P}_nd_keygen", 16),
        (f"{P}_ndx_keygen", 32),
        (f"{P}_nd_tweakgen", 8),
        (f"{P}_ndx_tweakgen", 16),
    ],
)
def test_generators_return_fresh_random_bytes(symbol: str, size: int) -> None:
    first, second = call(symbol), call(symbol)
    assert len(first) == len(second) == size
    assert first != second


def test_the_table_holds_every_c_symbol_of_the_family() -> None:
    modes = ["", "_pfx", "_nd", "_ndx"]
    ops = ["_encrypt", "_decrypt", "_encrypt_by_id", "_decrypt_by_id", "_keygen"]
    expected = {f"{P}{m}{op}" for m in modes for op in ops}
    expected |= {f"{P}_nd_tweakgen", f"{P}_ndx_tweakgen", f"{P}_ip2bin", f"{P}_bin2ip"}
    assert set(IMPLEMENTATIONS) == expected
