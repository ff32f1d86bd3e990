"""Ed25519 and pgsodium's multi-part Ed25519ph: raw state layout, chaining, errors."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keystore.derive import Env
from keystore.errors import PgsodiumError
from keystore.primitives import sign

ENV = Env(None)  # no function here uses the root key
IMPL = sign.IMPLEMENTATIONS
INIT = IMPL["pgsodium_crypto_sign_init"]
UPDATE = IMPL["pgsodium_crypto_sign_update"]
CREATE = IMPL["pgsodium_crypto_sign_final_create"]
VERIFY = IMPL["pgsodium_crypto_sign_final_verify"]
PUBLIC, SECRET = IMPL["pgsodium_crypto_sign_seed_keypair"](ENV, b"\x42" * 32)

# RFC 8032 section 7.3, test vector "TEST abc" for Ed25519ph (empty context).
RFC_SEED = bytes.fromhex(
    "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42"
)
RFC_PUBLIC = bytes.fromhex(
    "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf"
)
RFC_SIGNATURE = bytes.fromhex(
    "98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae41"
    "31f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406"
)


def error_of(call: Callable[[], Any]) -> tuple[str, str]:
    with pytest.raises(PgsodiumError) as info:
        call()
    return info.value.sqlstate, info.value.message


def absorb(*parts: bytes) -> bytes:
    state = INIT(ENV)
    for part in parts:
        state = UPDATE(ENV, state, part)
    return state


def test_multi_part_signature_is_rfc_8032_ed25519ph() -> None:
    secret = RFC_SEED + RFC_PUBLIC
    state = absorb(b"abc")

    assert CREATE(ENV, state, secret) == RFC_SIGNATURE
    assert VERIFY(ENV, state, RFC_SIGNATURE, RFC_PUBLIC) is True


def test_init_state_is_the_sha512_iv_little_endian_then_zeros() -> None:
    state = INIT(ENV)

    assert len(state) == sign.STATE_BYTES == 208
    assert struct.unpack("<Q", state[:8])[0] == 0x6A09E667F3BCC908
    assert state[64:] == bytes(144)


@settings(max_examples=60)
@given(parts=st.lists(st.binary(max_size=300), max_size=5))
def test_state_depends_only_on_the_concatenated_message(parts: list[bytes]) -> None:
    assert absorb(*parts) == absorb(b"".join(parts))


@given(message=st.binary(max_size=400))
def test_state_count_is_the_bit_length_low_word_second(message: bytes) -> None:
    state = absorb(message)

    assert struct.unpack("<QQ", state[64:80]) == (0, len(message) * 8)


def test_state_buffer_keeps_bytes_of_the_previous_block_like_libsodium() -> None:
    message = bytes(range(130))
    buffer = absorb(message)[80:]

    assert buffer[:2] == message[128:130]
    assert buffer[2:] == message[2:128]


@given(parts=st.lists(st.binary(max_size=200), min_size=1, max_size=4))
def test_signature_over_parts_verifies_and_fails_for_another_message(
    parts: list[bytes],
) -> None:
    state = absorb(*parts)
    signature = CREATE(ENV, state, SECRET)

    assert VERIFY(ENV, absorb(b"".join(parts)), signature, PUBLIC) is True
    assert VERIFY(ENV, absorb(b"".join(parts) + b"!"), signature, PUBLIC) is False
    tampered = bytes([signature[0] ^ 1]) + signature[1:]
    assert VERIFY(ENV, state, tampered, PUBLIC) is False


def test_prehashed_signature_differs_from_the_plain_detached_one() -> None:
    detached = IMPL["pgsodium_crypto_sign_detached"](ENV, b"m", SECRET)

    assert CREATE(ENV, absorb(b"m"), SECRET) != detached


def test_update_of_a_longer_state_updates_208_bytes_and_keeps_the_rest() -> None:
    tail = b"extra bytes"

    assert UPDATE(ENV, INIT(ENV) + tail, b"m") == absorb(b"m") + tail


def test_states_and_keys_shorter_than_libsodium_reads_are_refused_or_false() -> None:
    short_state = INIT(ENV)[:207]

    assert error_of(lambda: UPDATE(ENV, short_state, b"m"))[0] == "0A000"
    assert error_of(lambda: CREATE(ENV, short_state, SECRET))[0] == "0A000"
    assert error_of(lambda: CREATE(ENV, INIT(ENV), SECRET[:63]))[0] == "0A000"
    signature = CREATE(ENV, INIT(ENV), SECRET)
    assert VERIFY(ENV, short_state, signature, PUBLIC) is False
    assert VERIFY(ENV, INIT(ENV), signature[:63], PUBLIC) is False
    assert VERIFY(ENV, INIT(ENV), signature, PUBLIC[:31]) is False


def test_longer_state_key_and_signature_count_by_their_prefixes() -> None:
    state = absorb(b"m")
    signature = CREATE(ENV, state + b"x", SECRET + b"x")

    assert signature == CREATE(ENV, state, SECRET)
    assert VERIFY(ENV, state + b"x", signature + b"x", PUBLIC + b"x") is True


@pytest.mark.parametrize(
    ("symbol", "args", "reason"),
    [
        ("sign_update", (None, b"m"), "state cannot be NULL"),
        ("sign_update", (b"s", None), "message part cannot be NULL"),
        ("sign_final_create", (None, None), "state cannot be NULL"),
        ("sign_final_create", (b"s", None), "key cannot be NULL"),
        ("sign_final_verify", (None, None, None), "state cannot be NULL"),
        ("sign_final_verify", (b"s", None, None), "signature cannot be NULL"),
        ("sign_final_verify", (b"s", b"g", None), "key cannot be NULL"),
        ("sign", (None, None), "message cannot be NULL"),
        ("sign", (b"m", None), "secretkey cannot be NULL"),
        ("sign_detached", (None, None), "message cannot be NULL"),
        ("sign_detached", (b"m", None), "secretkey cannot be NULL"),
        ("sign_open", (None, None), "message cannot be NULL"),
        ("sign_open", (b"m", None), "publickey cannot be NULL"),
        ("sign_verify_detached", (None, None, None), "signature cannot be NULL"),
        ("sign_verify_detached", (b"s", None, None), "message cannot be NULL"),
        ("sign_verify_detached", (b"s", b"m", None), "publickey cannot be NULL"),
        ("sign_seed_keypair", (None,), "seed cannot be NULL"),
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


@given(message=st.binary(max_size=300))
def test_combined_signature_opens_to_the_message(message: bytes) -> None:
    signed = IMPL["pgsodium_crypto_sign"](ENV, message, SECRET)

    assert len(signed) == len(message) + 64
    assert signed[:64] == IMPL["pgsodium_crypto_sign_detached"](ENV, message, SECRET)
    if message:
        assert IMPL["pgsodium_crypto_sign_open"](ENV, signed, PUBLIC) == message


def test_open_refuses_tampering_and_inputs_of_64_bytes_or_less() -> None:
    signed = IMPL["pgsodium_crypto_sign"](ENV, b"message", SECRET)
    tampered = signed[:-1] + bytes([signed[-1] ^ 1])
    sign_open = IMPL["pgsodium_crypto_sign_open"]

    for bad in (tampered, signed[:64]):
        assert error_of(lambda: sign_open(ENV, bad, PUBLIC)) == (  # noqa: B023
            "22000",
            "pgsodium_crypto_sign_open: invalid message",
        )
    assert error_of(lambda: sign_open(ENV, b"", b"short")) == (
        "22000",
        "pgsodium_crypto_sign_open: invalid public key",
    )


@given(key=st.binary(max_size=100).filter(lambda k: len(k) != 64))
def test_sign_refuses_secret_keys_that_are_not_64_bytes(key: bytes) -> None:
    for symbol in ("pgsodium_crypto_sign", "pgsodium_crypto_sign_detached"):
        assert error_of(lambda: IMPL[symbol](ENV, b"m", key)) == (  # noqa: B023
            "22000",
            f"{symbol}: invalid secret key",
        )


def test_verify_detached_judges_the_first_64_signature_bytes_like_pgsodium() -> None:
    verify = IMPL["pgsodium_crypto_sign_verify_detached"]
    signature = IMPL["pgsodium_crypto_sign_detached"](ENV, b"m", SECRET)

    assert verify(ENV, signature, b"m", PUBLIC) is True
    assert verify(ENV, signature + b"junk", b"m", PUBLIC) is True
    assert verify(ENV, signature[:63], b"m", PUBLIC) is False
    assert verify(ENV, signature, b"M", PUBLIC) is False
    assert error_of(lambda: verify(ENV, signature, b"m", PUBLIC[:31])) == (
        "22000",
        "pgsodium_crypto_sign_verify_detached: invalid public key",
    )


@given(seed=st.binary(max_size=64).filter(lambda s: len(s) != 32))
def test_seed_keypair_refuses_seeds_that_are_not_32_bytes(seed: bytes) -> None:
    assert error_of(lambda: IMPL["pgsodium_crypto_sign_seed_keypair"](ENV, seed)) == (
        "22000",
        "pgsodium_crypto_sign_seed_keypair: invalid seed",
    )


def test_secret_key_is_seed_then_public_and_fresh_keypairs_differ() -> None:
    public, secret = IMPL["pgsodium_crypto_sign_keypair"](ENV)

    assert SECRET == b"\x42" * 32 + PUBLIC
    assert (len(public), len(secret)) == (32, 64)
    assert secret[32:] == public
    assert IMPL["pgsodium_crypto_sign_keypair"](ENV) != (public, secret)
    assert len(IMPL["pgsodium_crypto_sign_new_seed"](ENV)) == 32
