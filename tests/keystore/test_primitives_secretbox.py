"""crypto_secretbox: round trips, tampering, sizes, NULLs, unchecked key-id nonce."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keystore.derive import Env
from keystore.errors import PgsodiumError
from keystore.primitives import secretbox

ENV = Env(bytes(range(32)))
KEY = bytes(range(0xA0, 0xC0))
NONCE = bytes(range(24))
CTX = b"pgsodium"
IMPL = secretbox.IMPLEMENTATIONS
SEAL = IMPL["pgsodium_crypto_secretbox"]
OPEN = IMPL["pgsodium_crypto_secretbox_open"]
SEAL_ID = IMPL["pgsodium_crypto_secretbox_by_id"]
OPEN_ID = IMPL["pgsodium_crypto_secretbox_open_by_id"]


def error_of(call: Callable[[], Any]) -> tuple[str, str]:
    with pytest.raises(PgsodiumError) as info:
        call()
    return info.value.sqlstate, info.value.message


@given(message=st.binary(min_size=1, max_size=300))
def test_round_trip_puts_the_16_byte_mac_first(message: bytes) -> None:
    sealed = SEAL(ENV, message, NONCE, KEY)

    assert len(sealed) == len(message) + 16
    assert OPEN(ENV, sealed, NONCE, KEY) == message


def test_key_id_round_trip_equals_raw_key_with_the_derived_key() -> None:
    sealed = SEAL_ID(ENV, b"m", NONCE, 6, CTX)

    assert sealed == SEAL(ENV, b"m", NONCE, ENV.derive(6, 32, CTX))
    assert OPEN_ID(ENV, sealed, NONCE, 6, CTX) == b"m"


@given(data=st.data())
def test_tampered_box_or_nonce_is_invalid_message(data: st.DataObject) -> None:
    sealed = SEAL(ENV, b"secret stuff", NONCE, KEY)
    index = data.draw(st.integers(0, len(sealed) - 1))
    tampered = sealed[:index] + bytes([sealed[index] ^ 0x80]) + sealed[index + 1 :]

    assert error_of(lambda: OPEN(ENV, tampered, NONCE, KEY)) == (
        "22000",
        "pgsodium_crypto_secretbox_open: invalid message",
    )
    assert error_of(lambda: OPEN_ID(ENV, sealed, bytes(24), 1, CTX)) == (
        "22000",
        "pgsodium_crypto_secretbox_open_by_id: invalid message",
    )


def test_empty_message_box_cannot_be_opened() -> None:
    sealed = SEAL(ENV, b"", NONCE, KEY)

    assert error_of(lambda: OPEN(ENV, sealed, NONCE, KEY)) == (
        "22000",
        "pgsodium_crypto_secretbox_open: invalid message",
    )


@given(
    nonce=st.binary(max_size=40).filter(lambda n: len(n) != 24),
    key=st.binary(max_size=60).filter(lambda k: len(k) != 32),
)
def test_raw_key_checks_nonce_size_then_key_size(nonce: bytes, key: bytes) -> None:
    assert error_of(lambda: SEAL(ENV, b"m", nonce, key)) == (
        "22000",
        "pgsodium_crypto_secretbox: invalid nonce",
    )
    assert error_of(lambda: SEAL(ENV, b"m", NONCE, key)) == (
        "22000",
        "pgsodium_crypto_secretbox: invalid key",
    )
    assert error_of(lambda: OPEN(ENV, bytes(16), nonce, key)) == (
        "22000",
        "pgsodium_crypto_secretbox_open: invalid message",
    )
    assert error_of(lambda: OPEN(ENV, bytes(17), nonce, key)) == (
        "22000",
        "pgsodium_crypto_secretbox_open: invalid nonce",
    )


def test_key_id_open_derives_then_checks_length_then_nonce() -> None:
    assert error_of(lambda: OPEN_ID(Env(None), b"", b"", 1, CTX)) == (
        "22000",
        "pgsodium_derive_helper: pgsodium_derive: no server secret key defined.",
    )
    assert error_of(lambda: OPEN_ID(ENV, bytes(16), b"", 1, CTX)) == (
        "22000",
        "pgsodium_crypto_secretbox_open_by_id: invalid message",
    )
    assert error_of(lambda: OPEN_ID(ENV, bytes(17), b"", 1, CTX)) == (
        "22000",
        "pgsodium_crypto_secretbox_open_by_id: invalid nonce",
    )


def test_key_id_seal_with_a_long_nonce_uses_its_first_24_bytes_like_pgsodium() -> None:
    long_nonce = NONCE + b"ignored"

    assert SEAL_ID(ENV, b"m", long_nonce, 1, CTX) == SEAL_ID(ENV, b"m", NONCE, 1, CTX)


def test_key_id_seal_with_a_short_nonce_is_refused_as_undefined() -> None:
    sqlstate, message = error_of(lambda: SEAL_ID(ENV, b"m", NONCE[:23], 1, CTX))

    assert sqlstate == "0A000"
    assert message.startswith("pgsodium_crypto_secretbox_by_id: nonce shorter")


@pytest.mark.parametrize(
    ("symbol", "args", "reason"),
    [
        ("secretbox", (None, NONCE, KEY), "message cannot be NULL"),
        ("secretbox", (b"m", None, KEY), "nonce cannot be NULL"),
        ("secretbox", (b"m", NONCE, None), "key cannot be NULL"),
        ("secretbox_by_id", (b"m", NONCE, None, CTX), "key id cannot be NULL"),
        ("secretbox_by_id", (b"m", NONCE, 1, None), "key context cannot be NULL"),
        ("secretbox_open", (None, NONCE, KEY), "message cannot be NULL"),
        ("secretbox_open", (b"c", None, KEY), "nonce cannot be NULL"),
        ("secretbox_open_by_id", (None, NONCE, 1, CTX), "message cannot be NULL"),
        ("secretbox_open_by_id", (b"c", NONCE, 1, None), "key context cannot be NULL"),
    ],
)
def test_null_argument_is_refused_with_pgsodiums_text(
    symbol: str, args: tuple[Any, ...], reason: str
) -> None:
    c_symbol = f"pgsodium_crypto_{symbol}"

    assert error_of(lambda: IMPL[c_symbol](ENV, *args)) == (
        "22000",
        f"{c_symbol}: {reason}",
    )


def test_keygen_and_noncegen_sizes() -> None:
    assert len(IMPL["pgsodium_crypto_secretbox_keygen"](ENV)) == 32
    assert len(IMPL["pgsodium_crypto_secretbox_noncegen"](ENV)) == 24
