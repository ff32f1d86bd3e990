"""XChaCha20 stream functions: libsodium agreement (counter wraps too), sizes, NULLs."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keystore.derive import Env
from keystore.errors import PgsodiumError
from keystore.primitives import stream
from keystore.primitives.derivation import MAX_ALLOC_SIZE

ENV = Env(bytes(range(32)))
KEY = bytes(range(0xA0, 0xC0))
NONCE = bytes(range(24))
CTX = b"pgsodium"
IMPL = stream.IMPLEMENTATIONS


def error_of(call: Callable[[], Any]) -> tuple[str, str]:
    with pytest.raises(PgsodiumError) as info:
        call()
    return info.value.sqlstate, info.value.message


def _system_libsodium() -> Any:
    name = ctypes.util.find_library("sodium")
    if name is None:
        return None
    lib = ctypes.CDLL(name)
    if lib.sodium_init() < 0:  # pragma: no cover
        return None
    return lib


SODIUM = _system_libsodium()
needs_libsodium = pytest.mark.skipif(
    SODIUM is None, reason="a system libsodium is the oracle for these checks"
)


def sodium_xor_ic(data: bytes, nonce: bytes, ic: int, key: bytes) -> bytes:
    out = ctypes.create_string_buffer(len(data))
    rc = SODIUM.crypto_stream_xchacha20_xor_ic(
        out,
        data,
        ctypes.c_ulonglong(len(data)),
        nonce,
        ctypes.c_uint64(ic),
        key,
    )
    assert rc == 0
    return out.raw


@needs_libsodium
@given(
    key=st.binary(min_size=32, max_size=32), nonce=st.binary(min_size=16, max_size=16)
)
def test_hchacha20_equals_libsodium(key: bytes, nonce: bytes) -> None:
    out = ctypes.create_string_buffer(32)
    assert SODIUM.crypto_core_hchacha20(out, nonce, key, None) == 0

    assert stream.hchacha20(key, nonce) == out.raw


@needs_libsodium
@settings(max_examples=50)
@given(
    data=st.binary(max_size=700),
    nonce=st.binary(min_size=24, max_size=24),
    ic=st.one_of(
        st.integers(0, 2**64 - 1),
        # block counters next to the 32-bit and 64-bit wrap points
        st.integers(2**32 - 12, 2**32 + 2),
        st.integers(2**64 - 12, 2**64 - 1),
    ),
)
def test_xor_ic_equals_libsodium_across_counter_wraps(
    data: bytes, nonce: bytes, ic: int
) -> None:
    expected = sodium_xor_ic(data, nonce, ic, KEY)
    assert stream.xchacha20_xor(data, nonce, KEY, ic) == expected
    # The code used when PyNaCl's library does not export libsodium's stream.
    assert stream._xchacha20_xor_portable(data, nonce, KEY, ic) == expected


@needs_libsodium
@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 70_000])
def test_xor_of_any_size_equals_libsodium_and_leaves_no_state(size: int) -> None:
    # Around the reused buffer's size; a long message after a short one and back.
    data = bytes(range(256)) * (size // 256 + 1)
    for length in (size, 3, size):
        assert stream.xchacha20_xor(data[:length], NONCE, KEY) == sodium_xor_ic(
            data[:length], NONCE, 0, KEY
        )


def test_xor_ic_takes_a_negative_bigint_as_uint64_counter() -> None:
    data = bytes(300)

    assert IMPL["pgsodium_crypto_stream_xchacha20_xor_ic"](
        ENV, data, NONCE, -1, KEY
    ) == stream.xchacha20_xor(data, NONCE, KEY, 2**64 - 1)


def test_xor_is_its_own_inverse_and_the_keystream_is_xor_of_zeros() -> None:
    xor = IMPL["pgsodium_crypto_stream_xchacha20_xor"]
    sealed = xor(ENV, b"attack at dawn", NONCE, KEY)

    assert xor(ENV, sealed, NONCE, KEY) == b"attack at dawn"
    assert IMPL["pgsodium_crypto_stream_xchacha20"](ENV, 14, NONCE, KEY) == xor(
        ENV, bytes(14), NONCE, KEY
    )


def test_xor_ic_1_skips_exactly_one_block_of_keystream() -> None:
    keystream = IMPL["pgsodium_crypto_stream_xchacha20"](ENV, 128, NONCE, KEY)

    assert (
        IMPL["pgsodium_crypto_stream_xchacha20_xor_ic"](ENV, bytes(64), NONCE, 1, KEY)
        == keystream[64:]
    )


def test_key_id_variants_equal_raw_ones_with_the_derived_key() -> None:
    key = ENV.derive(4, 32, b"pgosdium")

    assert IMPL["pgsodium_crypto_stream_xchacha20_xor_by_id"](
        ENV, b"m", NONCE, 4, b"pgosdium"
    ) == stream.xchacha20_xor(b"m", NONCE, key)
    assert IMPL["pgsodium_crypto_stream_xchacha20_xor_ic_by_id"](
        ENV, b"m", NONCE, 3, 4, b"pgosdium"
    ) == stream.xchacha20_xor(b"m", NONCE, key, 3)
    assert IMPL["pgsodium_crypto_stream_xchacha20_by_id"](
        ENV, 5, NONCE, 4, b"pgosdium"
    ) == stream.xchacha20_stream(5, NONCE, key)


def test_empty_data_and_zero_size_give_empty_results() -> None:
    assert IMPL["pgsodium_crypto_stream_xchacha20"](ENV, 0, NONCE, KEY) == b""
    assert IMPL["pgsodium_crypto_stream_xchacha20_xor"](ENV, b"", NONCE, KEY) == b""


@given(
    nonce=st.binary(max_size=40).filter(lambda n: len(n) != 24),
    key=st.binary(max_size=60).filter(lambda k: len(k) != 32),
)
def test_wrong_nonce_size_then_wrong_key_size(nonce: bytes, key: bytes) -> None:
    for name, args in [
        ("xchacha20", (8, nonce, key)),
        ("xchacha20_xor", (b"d", nonce, key)),
        ("xchacha20_xor_ic", (b"d", nonce, 0, key)),
    ]:
        symbol = f"pgsodium_crypto_stream_{name}"
        assert error_of(lambda: IMPL[symbol](ENV, *args)) == (  # noqa: B023
            "22000",
            f"{symbol}: invalid nonce",
        )
    assert error_of(
        lambda: IMPL["pgsodium_crypto_stream_xchacha20_xor"](ENV, b"d", NONCE, key)
    ) == ("22000", "pgsodium_crypto_stream_xchacha20_xor: invalid key")


def test_key_id_variant_derives_before_checking_the_nonce() -> None:
    assert error_of(
        lambda: IMPL["pgsodium_crypto_stream_xchacha20_by_id"](
            Env(None), 8, b"n", 1, CTX
        )
    ) == (
        "22000",
        "pgsodium_derive_helper: pgsodium_derive: no server secret key defined.",
    )


def test_size_beyond_palloc_limit_fails_like_postgresql_before_other_checks() -> None:
    too_big = MAX_ALLOC_SIZE  # + 4 header bytes: one past what palloc allows

    assert error_of(
        lambda: IMPL["pgsodium_crypto_stream_xchacha20"](ENV, too_big, b"n", b"k")
    ) == ("XX000", f"invalid memory alloc request size {too_big + 4}")
    assert error_of(
        lambda: IMPL["pgsodium_crypto_stream_xchacha20"](ENV, -5, NONCE, KEY)
    ) == ("XX000", f"invalid memory alloc request size {2**64 - 1}")


@pytest.mark.parametrize("size", [-4, -3, -1])
def test_small_negative_size_has_no_defined_result_and_is_refused(size: int) -> None:
    sqlstate, message = error_of(
        lambda: IMPL["pgsodium_crypto_stream_xchacha20"](ENV, size, NONCE, KEY)
    )

    assert sqlstate == "0A000"
    assert message.startswith("pgsodium_crypto_stream_xchacha20: negative size")


@pytest.mark.parametrize(
    ("symbol", "args", "reason"),
    [
        ("xchacha20", (None, NONCE, KEY), "size cannot be NULL"),
        ("xchacha20", (8, None, KEY), "nonce cannot be NULL"),
        ("xchacha20", (8, NONCE, None), "key cannot be NULL"),
        ("xchacha20_by_id", (8, NONCE, None, CTX), "key id cannot be NULL"),
        ("xchacha20_by_id", (8, NONCE, 1, None), "key context cannot be NULL"),
        ("xchacha20_xor", (None, NONCE, KEY), "data cannot be NULL"),
        ("xchacha20_xor_by_id", (b"d", NONCE, None, CTX), "key id cannot be NULL"),
        ("xchacha20_xor_ic", (b"d", NONCE, None, KEY), "ic cannot be NULL"),
        ("xchacha20_xor_ic", (b"d", NONCE, 0, None), "key cannot be NULL"),
        # pgsodium's own wording for this one
        (
            "xchacha20_xor_ic_by_id",
            (b"d", NONCE, 0, None, CTX),
            "key id context cannot be NULL",
        ),
        (
            "xchacha20_xor_ic_by_id",
            (b"d", NONCE, 0, 1, None),
            "key context cannot be NULL",
        ),
    ],
)
def test_null_argument_is_refused_with_pgsodiums_text(
    symbol: str, args: tuple[Any, ...], reason: str
) -> None:
    c_symbol = f"pgsodium_crypto_stream_{symbol}"

    assert error_of(lambda: IMPL[c_symbol](ENV, *args)) == (
        "22000",
        f"{c_symbol}: {reason}",
    )


def test_keygen_and_noncegen_sizes() -> None:
    assert len(IMPL["pgsodium_crypto_stream_xchacha20_keygen"](ENV)) == 32
    assert len(IMPL["pgsodium_crypto_stream_xchacha20_noncegen"](ENV)) == 24
