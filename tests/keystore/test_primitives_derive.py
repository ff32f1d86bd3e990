"""Root-key derivation: kdf_derive, Env.derive (the derive helper), pgsodium_derive."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.bindings import crypto_generichash_blake2b_salt_personal

from keystore.derive import Env, kdf_derive
from keystore.errors import PgsodiumError, RootKeyError
from keystore.primitives.derivation import IMPLEMENTATIONS

ROOT = bytes(range(32))
ENV = Env(ROOT)
DERIVE = IMPLEMENTATIONS["pgsodium_derive"]
HELPER = "pgsodium_derive_helper"


def error_of(call: Callable[[], Any]) -> tuple[str, str]:
    with pytest.raises(PgsodiumError) as info:
        call()
    return info.value.sqlstate, info.value.message


@given(
    master=st.binary(min_size=32, max_size=32),
    subkey_id=st.integers(0, 2**64 - 1),
    size=st.integers(16, 64),
    context=st.binary(min_size=8, max_size=8),
)
def test_kdf_derive_equals_libsodiums_keyed_blake2b_with_salt_and_personal(
    master: bytes, subkey_id: int, size: int, context: bytes
) -> None:
    expected = crypto_generichash_blake2b_salt_personal(
        b"",
        digest_size=size,
        key=master,
        salt=subkey_id.to_bytes(8, "little") + bytes(8),
        person=context + bytes(8),
    )

    assert kdf_derive(master, subkey_id, size, context) == expected


def test_negative_key_id_is_its_uint64_twos_complement() -> None:
    assert ENV.derive(-1, 32, b"pgsodium") == ENV.derive(2**64 - 1, 32, b"pgsodium")


def test_derived_keys_of_different_lengths_are_unrelated() -> None:
    assert not ENV.derive(1, 32, b"pgsodium").startswith(ENV.derive(1, 16, b"pgsodium"))


@pytest.mark.parametrize(
    ("master", "size", "context"),
    [
        (bytes(31), 32, b"pgsodium"),
        (ROOT, 15, b"pgsodium"),
        (ROOT, 65, b"pgsodium"),
        (ROOT, 32, b"pgsodiu"),
    ],
)
def test_kdf_derive_refuses_out_of_range_inputs(
    master: bytes, size: int, context: bytes
) -> None:
    with pytest.raises(ValueError):
        kdf_derive(master, 1, size, context)


@given(size=st.integers(-(2**40), 2**40).filter(lambda n: not 16 <= n <= 64))
def test_env_derive_refuses_sizes_outside_16_to_64(size: int) -> None:
    assert error_of(lambda: ENV.derive(1, size, b"pgsodium")) == (
        "22000",
        f"{HELPER}: crypto_kdf_derive_from_key: invalid key size requested",
    )


@given(context=st.binary(max_size=20).filter(lambda c: len(c) != 8))
def test_env_derive_refuses_contexts_that_are_not_8_bytes(context: bytes) -> None:
    assert error_of(lambda: ENV.derive(1, 32, context)) == (
        "22000",
        f"{HELPER}: crypto_kdf_derive_from_key: context must be 8 bytes",
    )


def test_without_a_root_key_every_derivation_fails_first_with_pgsodiums_text() -> None:
    no_root = Env(None)

    assert not no_root.has_root_key
    assert error_of(lambda: no_root.derive(1, 99, b"bad")) == (
        "22000",
        f"{HELPER}: pgsodium_derive: no server secret key defined.",
    )


def test_env_checks_size_before_context() -> None:
    assert error_of(lambda: ENV.derive(1, 8, b"bad"))[1].endswith(
        "invalid key size requested"
    )


def test_env_refuses_a_root_key_that_is_not_32_bytes() -> None:
    with pytest.raises(RootKeyError):
        Env(bytes(16))


def test_env_repr_and_str_never_show_key_bytes() -> None:
    for text in (repr(ENV), str(ENV), f"{ENV!r}", repr(Env(None))):
        assert ROOT.hex() not in text
        assert ROOT.hex()[:8] not in text
        assert "redacted" in text


def test_env_cannot_be_pickled_or_copied() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(ENV)
    with pytest.raises(TypeError):
        copy.copy(ENV)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ((None, None, None), "key id cannot be NULL"),
        ((1, None, None), "key size cannot be NULL"),
        ((1, 32, None), "key context cannot be NULL"),
    ],
)
def test_pgsodium_derive_refuses_null_arguments_in_order(
    args: tuple[Any, ...], reason: str
) -> None:
    assert error_of(lambda: DERIVE(ENV, *args)) == (
        "22000",
        f"pgsodium_derive: {reason}",
    )


def test_pgsodium_derive_reads_the_key_size_as_uint32() -> None:
    # key_len is an SQL integer read as uint32: -1 is 4294967295, an invalid size.
    assert error_of(lambda: DERIVE(ENV, 1, -1, b"pgsodium"))[1].endswith(
        "invalid key size requested"
    )


def test_pgsodium_derive_without_root_key_names_the_helper() -> None:
    assert error_of(lambda: DERIVE(Env(None), 1, 32, b"pgsodium")) == (
        "22000",
        f"{HELPER}: pgsodium_derive: no server secret key defined.",
    )
