"""aead-det and ChaCha20-Poly1305-IETF: round trips, tampering, sizes, NULLs, order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keystore.derive import Env
from keystore.errors import PgsodiumError
from keystore.primitives import aead

ENV = Env(bytes(range(32)))
NO_ROOT = Env(None)
KEY = bytes(range(0xA0, 0xC0))
NONCE16 = bytes(range(16))
NONCE12 = bytes(range(12))
CTX = b"pgsodium"
IMPL = aead.IMPLEMENTATIONS


def error_of(call: Callable[[], Any]) -> tuple[str, str]:
    with pytest.raises(PgsodiumError) as info:
        call()
    return info.value.sqlstate, info.value.message


def det(symbol: str) -> Callable[..., Any]:
    return IMPL[f"pgsodium_crypto_aead_det_{symbol}"]


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


optional = st.one_of(st.none(), st.binary(max_size=40))
nonces = st.one_of(st.none(), st.binary(min_size=16, max_size=16))


@given(message=st.binary(min_size=1, max_size=300), ad=optional, nonce=nonces)
def test_det_raw_key_round_trips(
    message: bytes, ad: bytes | None, nonce: bytes | None
) -> None:
    sealed = det("encrypt")(ENV, message, ad, KEY, nonce)

    assert len(sealed) == len(message) + aead.DET_TAG_BYTES
    assert det("decrypt")(ENV, sealed, ad, KEY, nonce) == message


@given(
    message=st.binary(min_size=1, max_size=100), key_id=st.integers(-(2**63), 2**63 - 1)
)
def test_det_key_id_round_trips_for_any_bigint(message: bytes, key_id: int) -> None:
    sealed = det("encrypt_by_id")(ENV, message, b"ad", key_id, CTX, None)

    assert det("decrypt_by_id")(ENV, sealed, b"ad", key_id, CTX, None) == message


def test_det_is_deterministic_without_nonce_and_varies_with_it() -> None:
    first = det("encrypt")(ENV, b"same", b"ad", KEY, None)
    again = det("encrypt")(ENV, b"same", b"ad", KEY, None)
    with_nonce = det("encrypt")(ENV, b"same", b"ad", KEY, NONCE16)

    assert first == again
    assert with_nonce != first


def test_det_key_id_equals_raw_key_with_the_derived_key() -> None:
    derived = ENV.derive(7, 32, b"abcdefgh")

    by_id = det("encrypt_by_id")(ENV, b"m", b"a", 7, b"abcdefgh", NONCE16)
    raw = det("encrypt")(ENV, b"m", b"a", derived, NONCE16)

    assert by_id == raw


@given(message=st.binary(min_size=1, max_size=80), data=st.data())
def test_det_tampered_ciphertext_or_tag_is_invalid_ciphertext(
    message: bytes, data: st.DataObject
) -> None:
    sealed = det("encrypt")(ENV, message, b"ad", KEY, NONCE16)
    index = data.draw(st.integers(0, len(sealed) - 1))

    assert error_of(
        lambda: det("decrypt")(ENV, flip(sealed, index), b"ad", KEY, NONCE16)
    ) == ("22000", "pgsodium_crypto_aead_det_decrypt: invalid ciphertext")


@pytest.mark.parametrize(
    ("ad", "nonce"),
    [
        (b"other", NONCE16),  # wrong AD
        (None, NONCE16),  # AD dropped
        (b"ad", None),  # nonce dropped
        (b"ad", flip(NONCE16, 0)),  # wrong nonce
    ],
)
def test_det_wrong_ad_or_nonce_is_invalid_ciphertext(
    ad: bytes | None, nonce: bytes | None
) -> None:
    sealed = det("encrypt_by_id")(ENV, b"secret", b"ad", 1, CTX, NONCE16)

    assert error_of(lambda: det("decrypt_by_id")(ENV, sealed, ad, 1, CTX, nonce)) == (
        "22000",
        "pgsodium_crypto_aead_det_decrypt_by_id: invalid ciphertext",
    )


def test_det_empty_and_null_ad_are_the_same() -> None:
    assert det("encrypt")(ENV, b"m", b"", KEY, None) == det("encrypt")(
        ENV, b"m", None, KEY, None
    )


def test_det_empty_message_encrypts_but_its_ciphertext_is_refused() -> None:
    sealed = det("encrypt")(ENV, b"", None, KEY, None)

    assert len(sealed) == aead.DET_TAG_BYTES
    assert error_of(lambda: det("decrypt")(ENV, sealed, None, KEY, None)) == (
        "22000",
        "pgsodium_crypto_aead_det_decrypt: invalid message",
    )


def test_det_decrypt_core_returns_nothing_when_the_tag_is_wrong() -> None:
    sealed = aead.det_encrypt(b"plaintext", None, KEY, None)

    assert aead.det_decrypt(flip(sealed, 0), None, KEY, None) is None
    assert aead.det_decrypt(sealed[:10], None, KEY, None) is None


@given(key=st.binary(max_size=80).filter(lambda k: len(k) != 32))
def test_det_wrong_key_size_is_invalid_key(key: bytes) -> None:
    assert error_of(lambda: det("encrypt")(ENV, b"m", None, key, None)) == (
        "22000",
        "pgsodium_crypto_aead_det_encrypt: invalid key",
    )
    assert error_of(lambda: det("decrypt")(ENV, bytes(40), None, key, None)) == (
        "22000",
        "pgsodium_crypto_aead_det_decrypt: invalid key",
    )


@given(nonce=st.binary(max_size=40).filter(lambda n: len(n) != 16))
def test_det_wrong_nonce_size_is_invalid_nonce(nonce: bytes) -> None:
    for symbol, args in [
        ("encrypt", (b"m", None, KEY, nonce)),
        ("decrypt", (bytes(40), None, KEY, nonce)),
        ("encrypt_by_id", (b"m", None, 1, CTX, nonce)),
        ("decrypt_by_id", (bytes(40), None, 1, CTX, nonce)),
    ]:
        impl = det(symbol)
        assert error_of(lambda: impl(ENV, *args)) == (  # noqa: B023 (called at once)
            "22000",
            f"pgsodium_crypto_aead_det_{symbol}: invalid nonce",
        )


def test_det_raw_decrypt_checks_length_then_key_then_nonce() -> None:
    assert error_of(lambda: det("decrypt")(ENV, bytes(32), None, b"k", b"n")) == (
        "22000",
        "pgsodium_crypto_aead_det_decrypt: invalid message",
    )
    assert error_of(lambda: det("decrypt")(ENV, bytes(33), None, b"k", b"n")) == (
        "22000",
        "pgsodium_crypto_aead_det_decrypt: invalid key",
    )


def test_det_key_id_decrypt_checks_nonce_then_length_then_root_key() -> None:
    assert error_of(
        lambda: det("decrypt_by_id")(NO_ROOT, bytes(32), None, 1, CTX, b"n")
    ) == ("22000", "pgsodium_crypto_aead_det_decrypt_by_id: invalid nonce")
    assert error_of(
        lambda: det("decrypt_by_id")(NO_ROOT, bytes(32), None, 1, CTX, None)
    ) == ("22000", "pgsodium_crypto_aead_det_decrypt_by_id: invalid message")
    assert error_of(
        lambda: det("decrypt_by_id")(NO_ROOT, bytes(33), None, 1, CTX, None)
    ) == (
        "22000",
        "pgsodium_derive_helper: pgsodium_derive: no server secret key defined.",
    )


def test_det_key_id_encrypt_checks_nonce_before_the_context() -> None:
    assert error_of(
        lambda: det("encrypt_by_id")(ENV, b"m", None, 1, b"short", b"n")
    ) == ("22000", "pgsodium_crypto_aead_det_encrypt_by_id: invalid nonce")
    assert error_of(
        lambda: det("encrypt_by_id")(ENV, b"m", None, 1, b"short", None)
    ) == (
        "22000",
        "pgsodium_derive_helper: crypto_kdf_derive_from_key: context must be 8 bytes",
    )


@pytest.mark.parametrize(
    ("symbol", "args", "reason"),
    [
        ("det_encrypt", (None, None, None, None), "message cannot be NULL"),
        ("det_encrypt", (b"m", None, None, None), "key cannot be NULL"),
        ("det_decrypt", (None, None, None, None), "ciphertext cannot be NULL"),
        ("det_decrypt", (b"c", None, None, None), "key cannot be NULL"),
        ("det_encrypt_by_id", (None,) * 5, "message cannot be NULL"),
        ("det_encrypt_by_id", (b"m", None, None, None, None), "key id cannot be NULL"),
        (
            "det_encrypt_by_id",
            (b"m", None, 1, None, None),
            "key context cannot be NULL",
        ),
        ("det_decrypt_by_id", (None,) * 5, "message cannot be NULL"),
        ("det_decrypt_by_id", (b"c", None, None, CTX, None), "key id cannot be NULL"),
        (
            "det_decrypt_by_id",
            (b"c", None, 1, None, None),
            "key context cannot be NULL",
        ),
        ("ietf_encrypt", (None, b"a", NONCE12, KEY), "message cannot be NULL"),
        ("ietf_encrypt", (b"m", b"a", None, KEY), "nonce cannot be NULL"),
        ("ietf_encrypt", (b"m", b"a", NONCE12, None), "key cannot be NULL"),
        ("ietf_decrypt", (None, b"a", NONCE12, KEY), "ciphertext cannot be NULL"),
        ("ietf_decrypt", (b"c", b"a", None, KEY), "nonce cannot be NULL"),
        ("ietf_decrypt", (b"c", b"a", NONCE12, None), "key cannot be NULL"),
        (
            "ietf_encrypt_by_id",
            (b"m", None, NONCE12, None, CTX),
            "key id cannot be NULL",
        ),
        (
            "ietf_encrypt_by_id",
            (b"m", None, NONCE12, 1, None),
            "key context cannot be NULL",
        ),
        (
            "ietf_decrypt_by_id",
            (None, None, None, None, None),
            "ciphertext cannot be NULL",
        ),
        ("ietf_decrypt_by_id", (b"c", None, None, 1, CTX), "nonce cannot be NULL"),
    ],
)
def test_null_argument_is_refused_with_pgsodiums_text(
    symbol: str, args: tuple[Any, ...], reason: str
) -> None:
    c_symbol = f"pgsodium_crypto_aead_{symbol}"

    assert error_of(lambda: IMPL[c_symbol](ENV, *args)) == (
        "22000",
        f"{c_symbol}: {reason}",
    )


def ietf(symbol: str) -> Callable[..., Any]:
    return IMPL[f"pgsodium_crypto_aead_ietf_{symbol}"]


@given(message=st.binary(min_size=1, max_size=300), ad=optional)
def test_ietf_round_trips_with_a_16_byte_tag(message: bytes, ad: bytes | None) -> None:
    sealed = ietf("encrypt")(ENV, message, ad, NONCE12, KEY)

    assert len(sealed) == len(message) + aead.IETF_TAG_BYTES
    assert ietf("decrypt")(ENV, sealed, ad, NONCE12, KEY) == message


def test_ietf_key_id_round_trips_and_equals_the_derived_raw_key() -> None:
    sealed = ietf("encrypt_by_id")(ENV, b"msg", b"ad", NONCE12, 3, CTX)

    assert sealed == ietf("encrypt")(
        ENV, b"msg", b"ad", NONCE12, ENV.derive(3, 32, CTX)
    )
    assert ietf("decrypt_by_id")(ENV, sealed, b"ad", NONCE12, 3, CTX) == b"msg"


@given(data=st.data())
def test_ietf_tampering_is_invalid_ciphertext(data: st.DataObject) -> None:
    sealed = ietf("encrypt")(ENV, b"some plaintext", b"ad", NONCE12, KEY)
    index = data.draw(st.integers(0, len(sealed) - 1))

    assert error_of(
        lambda: ietf("decrypt")(ENV, flip(sealed, index), b"ad", NONCE12, KEY)
    ) == ("22000", "pgsodium_crypto_aead_ietf_decrypt: invalid ciphertext")
    assert error_of(
        lambda: ietf("decrypt")(ENV, sealed, b"ad", flip(NONCE12, 0), KEY)
    ) == ("22000", "pgsodium_crypto_aead_ietf_decrypt: invalid ciphertext")


def test_ietf_empty_message_ciphertext_is_refused_as_invalid_message() -> None:
    sealed = ietf("encrypt")(ENV, b"", None, NONCE12, KEY)

    assert len(sealed) == aead.IETF_TAG_BYTES
    assert error_of(lambda: ietf("decrypt")(ENV, sealed, None, NONCE12, KEY)) == (
        "22000",
        "pgsodium_crypto_aead_ietf_decrypt: invalid message",
    )


@given(
    nonce=st.binary(max_size=30).filter(lambda n: len(n) != 12),
    key=st.binary(max_size=60).filter(lambda k: len(k) != 32),
)
def test_ietf_checks_nonce_size_then_key_size(nonce: bytes, key: bytes) -> None:
    assert error_of(lambda: ietf("encrypt")(ENV, b"m", None, nonce, key)) == (
        "22000",
        "pgsodium_crypto_aead_ietf_encrypt: invalid nonce",
    )
    assert error_of(lambda: ietf("encrypt")(ENV, b"m", None, NONCE12, key)) == (
        "22000",
        "pgsodium_crypto_aead_ietf_encrypt: invalid key",
    )
    assert error_of(lambda: ietf("decrypt")(ENV, bytes(17), None, nonce, key)) == (
        "22000",
        "pgsodium_crypto_aead_ietf_decrypt: invalid nonce",
    )
    assert error_of(
        lambda: ietf("decrypt_by_id")(ENV, bytes(17), None, nonce, 1, CTX)
    ) == (
        "22000",
        "pgsodium_crypto_aead_ietf_decrypt_by_id: invalid nonce",
    )


def test_keygen_and_noncegen_sizes() -> None:
    assert len(det("keygen")(ENV)) == 32
    assert len(det("noncegen")(ENV)) == 16
    assert len(ietf("keygen")(ENV)) == 32
    assert len(ietf("noncegen")(ENV)) == 12
    assert det("keygen")(ENV) != det("keygen")(ENV)
