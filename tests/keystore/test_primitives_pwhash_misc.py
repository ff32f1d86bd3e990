"""pwhash (few calls: each costs ~0.5 s and 256 MiB), random bytes, base64, raw KDF,
crypto_cmp."""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keystore.derive import Env, kdf_derive
from keystore.errors import PgsodiumError
from keystore.primitives import misc, pwhash
from keystore.primitives.derivation import MAX_ALLOC_SIZE

ENV = Env(None)
IMPL = {**pwhash.IMPLEMENTATIONS, **misc.IMPLEMENTATIONS}
# The text of a hash pgsodium's crypto_pwhash_str made (vector 75), unpadded.
STORED = (
    b"$argon2id$v=19$m=262144,t=3,p=1$uYyVzHD/o/X6fWdckl3aLA"
    b"$VSrDPN5TXR4BYXOi/A9KxCgIFzB5mXVEuiwdSF0KYAg"
)
PASSWORD = b"Correct Horse Battery Staple"


def error_of(call: Callable[[], Any]) -> tuple[str, str]:
    with pytest.raises(PgsodiumError) as info:
        call()
    return info.value.sqlstate, info.value.message


def test_pwhash_str_verify_reads_the_hash_up_to_its_first_nul_or_its_end() -> None:
    verify = IMPL["pgsodium_crypto_pwhash_str_verify"]

    assert verify(ENV, STORED, PASSWORD) is True  # no NUL at all
    assert verify(ENV, STORED + b"\0garbage", b"wrong password") is False


def test_pwhash_str_verify_of_a_string_that_is_no_hash_is_false() -> None:
    verify = IMPL["pgsodium_crypto_pwhash_str_verify"]

    assert verify(ENV, b"", PASSWORD) is False
    assert verify(ENV, b"$2y$10$not-an-argon2-string", PASSWORD) is False
    assert verify(ENV, b"x" * 300, PASSWORD) is False


@given(salt=st.binary(max_size=40).filter(lambda s: len(s) != 16))
def test_pwhash_refuses_salts_that_are_not_16_bytes(salt: bytes) -> None:
    assert error_of(lambda: IMPL["pgsodium_crypto_pwhash"](ENV, b"pw", salt)) == (
        "22000",
        "pgsodium_crypto_pwhash: invalid salt",
    )


@pytest.mark.parametrize(
    ("symbol", "args", "reason"),
    [
        ("crypto_pwhash", (None, None), "data cannot be NULL"),
        ("crypto_pwhash", (b"pw", None), "salt cannot be NULL"),
        ("crypto_pwhash_str", (None,), "password cannot be NULL"),
        ("crypto_pwhash_str_verify", (None, None), "hashed password cannot be NULL"),
        ("crypto_pwhash_str_verify", (STORED, None), "password cannot be NULL"),
        ("randombytes_uniform", (None,), "upper bound cannot be NULL"),
        ("randombytes_buf", (None,), "buffer size cannot be NULL"),
        ("randombytes_buf_deterministic", (None, None), "buffer size cannot be NULL"),
        ("randombytes_buf_deterministic", (8, None), "seed cannot be NULL"),
        ("sodium_bin2base64", (None,), "bin cannot be NULL"),
        ("sodium_base642bin", (None,), "base64 cannot be NULL"),
        ("crypto_kdf_derive_from_key", (None,) * 4, "subkey size cannot be NULL"),
        (
            "crypto_kdf_derive_from_key",
            (32, None, None, None),
            "subkey id cannot be NULL",
        ),
        (
            "crypto_kdf_derive_from_key",
            (32, 1, None, None),
            "subkey context cannot be NULL",
        ),
        (
            "crypto_kdf_derive_from_key",
            (32, 1, b"c", None),
            "primary key cannot be NULL",
        ),
    ],
)
def test_null_argument_is_refused_with_pgsodiums_text(
    symbol: str, args: tuple[Any, ...], reason: str
) -> None:
    c_symbol = f"pgsodium_{symbol}"

    assert error_of(lambda: IMPL[c_symbol](ENV, *args)) == (
        "22000",
        f"{c_symbol}: {reason}",
    )


def test_saltgen_makes_16_bytes() -> None:
    assert len(IMPL["pgsodium_crypto_pwhash_saltgen"](ENV)) == 16


def test_randombytes_random_is_a_uint32_seen_as_an_integer() -> None:
    values = {IMPL["pgsodium_randombytes_random"](ENV) for _ in range(200)}

    assert all(-(2**31) <= v < 2**31 for v in values)
    assert any(v < 0 for v in values)


@pytest.mark.parametrize(("bound", "low", "high"), [(0, 0, 0), (1, 0, 0), (10, 0, 9)])
def test_randombytes_uniform_stays_below_its_bound(
    bound: int, low: int, high: int
) -> None:
    values = {IMPL["pgsodium_randombytes_uniform"](ENV, bound) for _ in range(200)}

    assert min(values) >= low
    assert max(values) <= high


def test_randombytes_uniform_reads_a_negative_bound_as_uint32() -> None:
    values = {IMPL["pgsodium_randombytes_uniform"](ENV, -1) for _ in range(200)}

    assert any(v < 0 for v in values)  # results above 2**31 - 1 wrap negative


def test_randombytes_buf_sizes_and_palloc_limit() -> None:
    buf = IMPL["pgsodium_randombytes_buf"]

    assert buf(ENV, 0) == b""
    assert len(buf(ENV, 33)) == 33
    assert error_of(lambda: buf(ENV, -1)) == (
        "XX000",
        f"invalid memory alloc request size {2**32 - 1 + 4}",
    )
    assert error_of(lambda: buf(ENV, MAX_ALLOC_SIZE))[0] == "XX000"


def test_deterministic_random_bytes_use_the_first_32_seed_bytes() -> None:
    det = IMPL["pgsodium_randombytes_buf_deterministic"]
    seed = b"\x42" * 32

    assert det(ENV, 64, seed)[:32] == det(ENV, 32, seed)
    assert det(ENV, 16, seed + b"more") == det(ENV, 16, seed)
    assert error_of(lambda: det(ENV, 16, seed[:31]))[0] == "0A000"


@given(data=st.binary(max_size=200))
def test_bin2base64_is_url_safe_without_padding(data: bytes) -> None:
    text = IMPL["pgsodium_sodium_bin2base64"](ENV, data)

    assert "=" not in text and "+" not in text and "/" not in text
    assert base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)) == data


@given(data=st.binary(max_size=200))
def test_base642bin_decodes_what_bin2base64_made_except_when_pgsodium_cannot(
    data: bytes,
) -> None:
    text = IMPL["pgsodium_sodium_bin2base64"](ENV, data)
    decode = IMPL["pgsodium_sodium_base642bin"]

    if len(data) % 3 == 1:
        # pgsodium's buffer of ((len + 1) / 4) * 3 bytes is one byte short here.
        assert error_of(lambda: decode(ENV, text)) == (
            "22000",
            "pgsodium_sodium_base642bin: sodium_base642bin() failed",
        )
    else:
        assert decode(ENV, text) == data


@pytest.mark.parametrize(
    "text",
    ["Ym9i+", "Ym9i/w", "Ym9iIA==", "Ym9iIA=", "Ym9 i", "Y", "Ym9iI", "-_9", "é"],
)
def test_base642bin_refuses_other_alphabets_padding_stray_bits_and_bad_lengths(
    text: str,
) -> None:
    assert error_of(lambda: IMPL["pgsodium_sodium_base642bin"](ENV, text))[1] == (
        "pgsodium_sodium_base642bin: sodium_base642bin() failed"
    )


def _system_libsodium() -> Any:
    name = ctypes.util.find_library("sodium")
    if name is None:
        return None
    lib = ctypes.CDLL(name)
    return lib if lib.sodium_init() >= 0 else None


SODIUM = _system_libsodium()
URLSAFE_NO_PADDING = 7  # sodium_base64_VARIANT_URLSAFE_NO_PADDING


def sodium_base642bin_as_pgsodium_calls_it(text: str) -> bytes | None:
    raw = text.encode()
    capacity = ((len(raw) + 1) // 4) * 3  # pgsodium's output buffer
    out = ctypes.create_string_buffer(max(capacity, 1))
    size = ctypes.c_size_t(0)
    rc = SODIUM.sodium_base642bin(
        out,
        ctypes.c_size_t(capacity),
        raw,
        ctypes.c_size_t(len(raw)),
        b"",
        ctypes.byref(size),
        None,
        URLSAFE_NO_PADDING,
    )
    return out.raw[: size.value] if rc == 0 else None


@pytest.mark.skipif(SODIUM is None, reason="a system libsodium is the oracle")
# ASCII only: libsodium before 1.0.22 (this oracle may be older) decodes some bytes
# >= 0x80 as digits; 1.0.22, which pgsodium 3.1.11 requires, refuses them, as we do.
@given(text=st.text(alphabet="AQIDBw-_=+/ 9z\n", max_size=24))
def test_base642bin_accepts_and_refuses_exactly_what_libsodium_does(text: str) -> None:
    expected = sodium_base642bin_as_pgsodium_calls_it(text)
    decode = IMPL["pgsodium_sodium_base642bin"]

    if expected is None:
        assert error_of(lambda: decode(ENV, text))[0] == "22000"
    else:
        assert decode(ENV, text) == expected


def test_base642bin_of_empty_text_is_empty() -> None:
    assert IMPL["pgsodium_sodium_base642bin"](ENV, "") == b""


def test_raw_kdf_checks_primary_key_then_size_then_context() -> None:
    kdf = IMPL["pgsodium_crypto_kdf_derive_from_key"]
    symbol = "pgsodium_crypto_kdf_derive_from_key"

    assert error_of(lambda: kdf(ENV, 8, 1, b"c", bytes(31))) == (
        "22000",
        f"{symbol}: invalid derivation key",
    )
    assert error_of(lambda: kdf(ENV, 8, 1, b"c", bytes(32))) == (
        "22000",
        f"{symbol}: invalid key size requested",
    )
    assert error_of(lambda: kdf(ENV, 32, 1, b"c", bytes(32))) == (
        "22000",
        f"{symbol}: context must be 8 bytes",
    )


def test_raw_kdf_reads_its_bigint_size_as_uint32_and_its_id_as_uint64() -> None:
    kdf = IMPL["pgsodium_crypto_kdf_derive_from_key"]
    key = bytes(range(32))

    assert kdf(ENV, 2**32 + 32, -1, b"pgsodium", key) == kdf_derive(
        key, 2**64 - 1, 32, b"pgsodium"
    )


def test_crypto_cmp_is_plain_equality_of_the_texts() -> None:
    cmp = IMPL["pgsodium_cmp"]

    assert cmp(ENV, "abc", "abc") is True
    assert cmp(ENV, "abc", "abd") is False
    assert cmp(ENV, "abc", "abcd") is False
    assert cmp(ENV, "", "") is True
    assert cmp(ENV, "é", "é") is True


def test_other_keygens_make_32_bytes() -> None:
    for symbol in (
        "pgsodium_crypto_kdf_keygen",
        "pgsodium_crypto_secretstream_xchacha20poly1305_keygen",
        "pgsodium_randombytes_new_seed",
    ):
        assert len(IMPL[symbol](ENV)) == 32
