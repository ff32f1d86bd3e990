"""crypto_auth, HMACs, generichash, shorthash, SHA-2: verify, sizes, NULLs, order."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keystore.derive import Env
from keystore.errors import PgsodiumError
from keystore.primitives import mac

ENV = Env(bytes(range(32)))
NO_ROOT = Env(None)
KEY = bytes(range(0xA0, 0xC0))
CTX = b"pgsodium"
IMPL = mac.IMPLEMENTATIONS
NO_ROOT_TEXT = "pgsodium_derive_helper: pgsodium_derive: no server secret key defined."

# (C symbol of the raw-key MAC, tag length, word for a wrong tag, word for a NULL tag)
FAMILIES = [
    ("pgsodium_crypto_auth", 32, "mac", "signature"),
    ("pgsodium_crypto_auth_hmacsha256", 32, "hash", "hash"),
    ("pgsodium_crypto_auth_hmacsha512", 64, "hash", "hash"),
]


def error_of(call: Callable[[], Any]) -> tuple[str, str]:
    with pytest.raises(PgsodiumError) as info:
        call()
    return info.value.sqlstate, info.value.message


@pytest.mark.parametrize(("symbol", "size", "word", "null_word"), FAMILIES)
def test_mac_verifies_and_a_changed_mac_or_message_does_not(
    symbol: str, size: int, word: str, null_word: str
) -> None:
    tag = IMPL[symbol](ENV, b"message", KEY)
    verify = IMPL[f"{symbol}_verify"]

    assert len(tag) == size
    assert verify(ENV, tag, b"message", KEY) is True
    assert verify(ENV, tag, b"messagE", KEY) is False
    assert verify(ENV, bytes([tag[0] ^ 1]) + tag[1:], b"message", KEY) is False


@pytest.mark.parametrize(("symbol", "size", "word", "null_word"), FAMILIES)
def test_key_id_mac_equals_raw_mac_with_the_derived_key(
    symbol: str, size: int, word: str, null_word: str
) -> None:
    tag = IMPL[f"{symbol}_by_id"](ENV, b"m", 9, b"abcdefgh")

    assert tag == IMPL[symbol](ENV, b"m", ENV.derive(9, 32, b"abcdefgh"))
    assert IMPL[f"{symbol}_verify_by_id"](ENV, tag, b"m", 9, b"abcdefgh") is True
    assert IMPL[f"{symbol}_verify_by_id"](ENV, tag, b"m", 10, b"abcdefgh") is False


@pytest.mark.parametrize(("symbol", "size", "word", "null_word"), FAMILIES)
@given(key=st.binary(max_size=80).filter(lambda k: len(k) != 32))
def test_wrong_key_size_is_invalid_key(
    symbol: str, size: int, word: str, null_word: str, key: bytes
) -> None:
    assert error_of(lambda: IMPL[symbol](ENV, b"m", key)) == (
        "22000",
        f"{symbol}: invalid key",
    )


@pytest.mark.parametrize(("symbol", "size", "word", "null_word"), FAMILIES)
@given(data=st.data())
def test_wrong_tag_size_is_an_error_checked_before_the_key(
    symbol: str, size: int, word: str, null_word: str, data: st.DataObject
) -> None:
    tag = data.draw(st.binary(max_size=100).filter(lambda t: len(t) != size))

    assert error_of(lambda: IMPL[f"{symbol}_verify"](ENV, tag, b"m", b"short key")) == (
        "22000",
        f"{symbol}_verify: invalid {word}",
    )


@pytest.mark.parametrize(("symbol", "size", "word", "null_word"), FAMILIES)
def test_key_id_verify_derives_before_checking_the_tag_size(
    symbol: str, size: int, word: str, null_word: str
) -> None:
    verify = IMPL[f"{symbol}_verify_by_id"]

    assert error_of(lambda: verify(NO_ROOT, b"x", b"m", 1, CTX)) == (
        "22000",
        NO_ROOT_TEXT,
    )
    assert error_of(lambda: verify(ENV, b"x", b"m", 1, CTX)) == (
        "22000",
        f"{symbol}_verify_by_id: invalid {word}",
    )


@pytest.mark.parametrize(("symbol", "size", "word", "null_word"), FAMILIES)
def test_null_arguments_are_refused_in_pgsodiums_order(
    symbol: str, size: int, word: str, null_word: str
) -> None:
    cases = [
        (symbol, (None, None), "message cannot be NULL"),
        (symbol, (b"m", None), "key cannot be NULL"),
        (f"{symbol}_by_id", (b"m", None, None), "key id cannot be NULL"),
        (f"{symbol}_by_id", (b"m", 1, None), "key context cannot be NULL"),
        (f"{symbol}_verify", (None, None, None), f"{null_word} cannot be NULL"),
        (f"{symbol}_verify", (b"t", None, None), "message cannot be NULL"),
        (f"{symbol}_verify", (b"t", b"m", None), "key cannot be NULL"),
        (f"{symbol}_verify_by_id", (b"t", b"m", None, CTX), "key id cannot be NULL"),
        (f"{symbol}_verify_by_id", (b"t", b"m", 1, None), "key context cannot be NULL"),
    ]
    for c_symbol, args, reason in cases:
        assert error_of(lambda: IMPL[c_symbol](ENV, *args)) == (  # noqa: B023
            "22000",
            f"{c_symbol}: {reason}",
        )


def test_crypto_auth_is_hmac_sha512_truncated_to_32_bytes() -> None:
    full = IMPL["pgsodium_crypto_auth_hmacsha512"](ENV, b"m", KEY)

    assert IMPL["pgsodium_crypto_auth"](ENV, b"m", KEY) == full[:32]


@given(key=st.binary(min_size=16, max_size=64), message=st.binary(max_size=200))
def test_generichash_accepts_keys_of_16_to_64_bytes(key: bytes, message: bytes) -> None:
    expected = hashlib.blake2b(message, digest_size=32, key=key).digest()

    assert IMPL["pgsodium_crypto_generichash"](ENV, message, key) == expected


@pytest.mark.parametrize("size", [0, 1, 15, 65, 100])
def test_generichash_refuses_other_key_sizes(size: int) -> None:
    assert error_of(
        lambda: IMPL["pgsodium_crypto_generichash"](ENV, b"m", bytes(size))
    ) == (
        "22000",
        "pgsodium_crypto_generichash: invalid key",
    )


def test_generichash_by_id_with_null_key_id_is_the_unkeyed_hash() -> None:
    unkeyed = IMPL["pgsodium_crypto_generichash"](ENV, b"m", None)

    assert (
        IMPL["pgsodium_crypto_generichash_by_id"](NO_ROOT, b"m", None, None) == unkeyed
    )


def test_generichash_by_id_null_context_has_pgsodiums_text() -> None:
    assert error_of(
        lambda: IMPL["pgsodium_crypto_generichash_by_id"](ENV, b"m", 1, None)
    ) == ("22000", "pgsodium_crypto_generichash_by_id: key context be NULL")


@pytest.mark.parametrize(
    ("symbol", "args", "reason"),
    [
        ("generichash", (None, None), "data cannot be NULL"),
        ("generichash_by_id", (None, 1, CTX), "data cannot be NULL"),
        ("shorthash", (None, None), "data cannot be NULL"),
        ("shorthash", (b"m", None), "key cannot be NULL"),
        ("shorthash_by_id", (b"m", None, CTX), "key id cannot be NULL"),
        ("shorthash_by_id", (b"m", 1, None), "key context cannot be NULL"),
        ("hash_sha256", (None,), "message cannot be NULL"),
        ("hash_sha512", (None,), "message cannot be NULL"),
    ],
)
def test_hash_null_argument_is_refused_with_pgsodiums_text(
    symbol: str, args: tuple[Any, ...], reason: str
) -> None:
    c_symbol = f"pgsodium_crypto_{symbol}"

    assert error_of(lambda: IMPL[c_symbol](ENV, *args)) == (
        "22000",
        f"{c_symbol}: {reason}",
    )


@given(key=st.binary(max_size=40).filter(lambda k: len(k) != 16))
def test_shorthash_refuses_keys_that_are_not_16_bytes(key: bytes) -> None:
    assert error_of(lambda: IMPL["pgsodium_crypto_shorthash"](ENV, b"m", key)) == (
        "22000",
        "pgsodium_crypto_shorthash: invalid key",
    )


def test_shorthash_by_id_uses_a_16_byte_derived_key() -> None:
    key = ENV.derive(7, 16, CTX)

    assert IMPL["pgsodium_crypto_shorthash_by_id"](ENV, b"m", 7, CTX) == IMPL[
        "pgsodium_crypto_shorthash"
    ](ENV, b"m", key)


def test_sha2_of_empty_message() -> None:
    assert IMPL["pgsodium_crypto_hash_sha256"](ENV, b"") == hashlib.sha256().digest()
    assert IMPL["pgsodium_crypto_hash_sha512"](ENV, b"") == hashlib.sha512().digest()


@pytest.mark.parametrize(
    ("symbol", "size"),
    [
        ("auth", 32),
        ("auth_hmacsha256", 32),
        ("auth_hmacsha512", 32),
        ("generichash", 32),
        ("shorthash", 16),
    ],
)
def test_keygen_sizes(symbol: str, size: int) -> None:
    assert len(IMPL[f"pgsodium_crypto_{symbol}_keygen"](ENV)) == size
