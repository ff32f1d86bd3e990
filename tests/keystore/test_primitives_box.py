"""crypto_box, sealed boxes and crypto_kx: round trips, tampering, sizes, NULLs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keystore.derive import Env
from keystore.errors import PgsodiumError
from keystore.primitives import box, kx

ENV = Env(None)
IMPL = {**box.IMPLEMENTATIONS, **kx.IMPLEMENTATIONS}
NONCE = bytes(range(24))
A_PUBLIC, A_SECRET = IMPL["pgsodium_crypto_box_seed_keypair"](ENV, b"\x42" * 32)
B_PUBLIC, B_SECRET = IMPL["pgsodium_crypto_box_seed_keypair"](ENV, b"\x43" * 32)
# The identity point: a public key of small order that libsodium refuses.
SMALL_ORDER = bytes(32)


def error_of(call: Callable[[], Any]) -> tuple[str, str]:
    with pytest.raises(PgsodiumError) as info:
        call()
    return info.value.sqlstate, info.value.message


@given(message=st.binary(min_size=1, max_size=300))
def test_box_round_trips_between_two_keypairs(message: bytes) -> None:
    sealed = IMPL["pgsodium_crypto_box"](ENV, message, NONCE, B_PUBLIC, A_SECRET)

    assert len(sealed) == len(message) + 16
    assert IMPL["pgsodium_crypto_box_open"](ENV, sealed, NONCE, A_PUBLIC, B_SECRET) == (
        message
    )


@given(data=st.data())
def test_box_open_refuses_tampering_with_invalid_message(data: st.DataObject) -> None:
    sealed = IMPL["pgsodium_crypto_box"](ENV, b"hello there", NONCE, B_PUBLIC, A_SECRET)
    index = data.draw(st.integers(0, len(sealed) - 1))
    tampered = sealed[:index] + bytes([sealed[index] ^ 4]) + sealed[index + 1 :]

    assert error_of(
        lambda: IMPL["pgsodium_crypto_box_open"](
            ENV, tampered, NONCE, A_PUBLIC, B_SECRET
        )
    ) == ("22000", "pgsodium_crypto_box_open: invalid message")


def test_box_checks_nonce_then_public_then_secret_then_length() -> None:
    box_open = IMPL["pgsodium_crypto_box_open"]

    assert error_of(lambda: box_open(ENV, b"", b"n", b"p", b"s"))[1].endswith(
        "invalid nonce"
    )
    assert error_of(lambda: box_open(ENV, b"", NONCE, b"p", b"s"))[1].endswith(
        "invalid public key"
    )
    assert error_of(lambda: box_open(ENV, b"", NONCE, A_PUBLIC, b"s"))[1].endswith(
        "invalid secret key"
    )
    assert error_of(lambda: box_open(ENV, bytes(16), NONCE, A_PUBLIC, B_SECRET)) == (
        "22000",
        "pgsodium_crypto_box_open: invalid message",
    )


def test_box_to_a_small_order_public_key_is_invalid_message() -> None:
    assert error_of(
        lambda: IMPL["pgsodium_crypto_box"](ENV, b"m", NONCE, SMALL_ORDER, A_SECRET)
    ) == ("22000", "pgsodium_crypto_box: invalid message")


@given(message=st.binary(min_size=1, max_size=200))
def test_sealed_box_round_trips_and_is_randomised(message: bytes) -> None:
    seal = IMPL["pgsodium_crypto_box_seal"]
    sealed = seal(ENV, message, B_PUBLIC)

    assert len(sealed) == len(message) + box.SEAL_BYTES
    assert sealed != seal(ENV, message, B_PUBLIC)
    assert IMPL["pgsodium_crypto_box_seal_open"](ENV, sealed, B_PUBLIC, B_SECRET) == (
        message
    )


def test_seal_open_checks_keys_then_length_then_authenticity() -> None:
    seal_open = IMPL["pgsodium_crypto_box_seal_open"]
    sealed = IMPL["pgsodium_crypto_box_seal"](ENV, b"m", B_PUBLIC)

    assert error_of(lambda: seal_open(ENV, b"", b"p", b"s"))[1].endswith(
        "invalid public key"
    )
    assert error_of(lambda: seal_open(ENV, b"", B_PUBLIC, b"s"))[1].endswith(
        "invalid secret key"
    )
    assert error_of(lambda: seal_open(ENV, bytes(48), B_PUBLIC, B_SECRET))[1].endswith(
        "invalid message"
    )
    assert error_of(lambda: seal_open(ENV, sealed, A_PUBLIC, A_SECRET)) == (
        "22000",
        "pgsodium_crypto_box_seal_open: invalid message",
    )


def test_seal_to_a_small_order_public_key_has_no_defined_result() -> None:
    assert (
        error_of(lambda: IMPL["pgsodium_crypto_box_seal"](ENV, b"m", SMALL_ORDER))[0]
        == "0A000"
    )


@pytest.mark.parametrize(
    ("symbol", "args", "reason"),
    [
        ("box", (None, None, None, None), "message cannot be NULL"),
        ("box", (b"m", None, None, None), "nonce cannot be NULL"),
        ("box", (b"m", NONCE, None, None), "publickey cannot be NULL"),
        ("box", (b"m", NONCE, A_PUBLIC, None), "secretkey cannot be NULL"),
        ("box_open", (None, None, None, None), "message cannot be NULL"),
        ("box_open", (b"c", NONCE, A_PUBLIC, None), "secretkey cannot be NULL"),
        ("box_seal", (None, None), "message cannot be NULL"),
        ("box_seal", (b"m", None), "publickey cannot be NULL"),
        ("box_seal_open", (None, None, None), "ciphertext cannot be NULL"),
        ("box_seal_open", (b"c", None, None), "public_key cannot be NULL"),
        ("box_seal_open", (b"c", B_PUBLIC, None), "secret_key cannot be NULL"),
        ("box_seed_keypair", (None,), "seed cannot be NULL"),
        (
            "kx_client_session_keys",
            (None, None, None),
            "client publickey cannot be NULL",
        ),
        (
            "kx_client_session_keys",
            (b"p", None, None),
            "client secretkey cannot be NULL",
        ),
        (
            "kx_client_session_keys",
            (b"p", b"s", None),
            "server publickey cannot be NULL",
        ),
        (
            "kx_server_session_keys",
            (None, None, None),
            "server publickey cannot be NULL",
        ),
        (
            "kx_server_session_keys",
            (b"p", None, None),
            "server secretkey cannot be NULL",
        ),
        (
            "kx_server_session_keys",
            (b"p", b"s", None),
            "client publickey cannot be NULL",
        ),
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


@given(seed=st.binary(max_size=64).filter(lambda s: len(s) != 32))
def test_seed_keypairs_refuse_seeds_that_are_not_32_bytes(seed: bytes) -> None:
    for symbol in (
        "pgsodium_crypto_box_seed_keypair",
        "pgsodium_crypto_kx_seed_keypair",
    ):
        assert error_of(lambda: IMPL[symbol](ENV, seed)) == (  # noqa: B023
            "22000",
            f"{symbol}: invalid seed",
        )


def test_kx_client_and_server_agree_crosswise() -> None:
    c_public, c_secret = IMPL["pgsodium_crypto_kx_keypair"](ENV)
    s_public, s_secret = IMPL["pgsodium_crypto_kx_keypair"](ENV)

    c_rx, c_tx = IMPL["pgsodium_crypto_kx_client_session_keys"](
        ENV, c_public, c_secret, s_public
    )
    s_rx, s_tx = IMPL["pgsodium_crypto_kx_server_session_keys"](
        ENV, s_public, s_secret, c_public
    )

    assert (c_rx, c_tx) == (s_tx, s_rx)
    assert len(c_rx) == len(c_tx) == 32


def test_kx_checks_sizes_in_pgsodiums_order_and_words() -> None:
    client = IMPL["pgsodium_crypto_kx_client_session_keys"]
    server = IMPL["pgsodium_crypto_kx_server_session_keys"]
    pk, sk = IMPL["pgsodium_crypto_kx_keypair"](ENV)

    assert error_of(lambda: client(ENV, b"p", b"s", b"q"))[1].endswith(
        "bad client public key"
    )
    assert error_of(lambda: client(ENV, pk, b"s", b"q"))[1].endswith(
        "bad client secret key"
    )
    assert error_of(lambda: client(ENV, pk, sk, b"q"))[1].endswith(
        "bad server public key"
    )
    assert error_of(lambda: server(ENV, pk, sk, b"q")) == (
        "22000",
        "pgsodium_crypto_kx_server_session_keys: bad client public key",
    )


def test_kx_with_a_small_order_peer_is_invalid_message() -> None:
    pk, sk = IMPL["pgsodium_crypto_kx_keypair"](ENV)

    assert error_of(
        lambda: IMPL["pgsodium_crypto_kx_client_session_keys"](ENV, pk, sk, SMALL_ORDER)
    ) == ("22000", "pgsodium_crypto_kx_client_session_keys: invalid message")


def test_generators_sizes() -> None:
    assert [len(k) for k in IMPL["pgsodium_crypto_box_keypair"](ENV)] == [32, 32]
    assert len(IMPL["pgsodium_crypto_box_new_seed"](ENV)) == 32
    assert len(IMPL["pgsodium_crypto_box_noncegen"](ENV)) == 24
    assert len(IMPL["pgsodium_crypto_kx_new_seed"](ENV)) == 32
