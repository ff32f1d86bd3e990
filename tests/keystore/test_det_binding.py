"""Per-row binding of the det _by_id functions gives the unbound results and
errors, in pgsodium's order, for every kind of input."""

from __future__ import annotations

import pytest

from keystore.derive import Env
from keystore.errors import PgsodiumError
from keystore.primitives import aead

ENV = Env(bytes(range(32)))
CONTEXT = b"pgsodium"


def _outcome(function, *args):  # type: ignore[no-untyped-def]
    try:
        return function(*args)
    except PgsodiumError as exc:
        return (exc.sqlstate, exc.message)


CIPHERTEXT = aead.pgsodium_crypto_aead_det_encrypt_by_id(
    ENV, b"alice", b"ad", 1, CONTEXT, None
)
MESSAGES = [None, b"", b"x" * 32, b"x" * 33, CIPHERTEXT, b"alice"]
CONSTANTS = [
    (1, CONTEXT, None),
    (1, CONTEXT, bytes(16)),
    (None, CONTEXT, None),
    (1, None, None),
    (1, CONTEXT, b"short"),
    (1, b"bad", None),
    (-1, CONTEXT, None),
]


@pytest.mark.parametrize("key_id, context, nonce", CONSTANTS)
@pytest.mark.parametrize(
    "unbound, binder",
    [
        (aead.pgsodium_crypto_aead_det_decrypt_by_id, aead.bind_det_decrypt_by_id),
        (aead.pgsodium_crypto_aead_det_encrypt_by_id, aead.bind_det_encrypt_by_id),
    ],
)
def test_bound_call_equals_the_unbound_one(  # type: ignore[no-untyped-def]
    unbound, binder, key_id, context, nonce
) -> None:
    bound = binder(ENV, {2: key_id, 3: context, 4: nonce})
    assert bound is not None
    for message in MESSAGES:
        for additional in (None, b"", b"ad"):
            assert _outcome(bound, message, additional) == _outcome(
                unbound, ENV, message, additional, key_id, context, nonce
            )


def test_no_binding_without_constant_key_arguments() -> None:
    assert aead.bind_det_decrypt_by_id(ENV, {3: CONTEXT, 4: None}) is None
