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


# -- key uuid columns: Evaluator.bind over the key uuid ------------------------------

KEY_A, KEY_B, UNKNOWN = (
    "11111111-1111-1111-1111-111111111111",
    "22222222-2222-2222-2222-222222222222",
    "33333333-3333-3333-3333-333333333333",
)


def _uuid_decrypt(params: int):  # type: ignore[no-untyped-def]
    from keystore.catalogue import FUNCTIONS

    return next(
        s
        for s in FUNCTIONS
        if s.name == "crypto_aead_det_decrypt"
        and s.key_variant == "uuid"
        and len(s.params) == params
    )


def _evaluator():  # type: ignore[no-untyped-def]
    from keystore.calls import Evaluator

    materials = {
        (KEY_A, "aead-det"): "d,aead-det,1,7067736f6469756d",  # key id 1, 'pgsodium'
        (KEY_B, "aead-det"): "d,aead-det,2,7067736f6469756d",
    }
    return Evaluator(ENV, materials, lambda default: None)


UNDER_B = aead.pgsodium_crypto_aead_det_encrypt_by_id(
    ENV, b"bob", b"ad", 2, CONTEXT, None
)
ROWS = [
    (CIPHERTEXT, b"ad", KEY_A),
    (UNDER_B, b"ad", KEY_B),
    (CIPHERTEXT, b"ad", KEY_A),  # a key seen before: the bound call
    (UNDER_B, b"ad", KEY_A),  # the wrong key: invalid ciphertext
    (CIPHERTEXT, b"other", KEY_A),
    (None, b"ad", KEY_A),
    (CIPHERTEXT, None, KEY_A),
    (b"x" * 32, b"ad", KEY_A),
    (CIPHERTEXT, b"ad", UNKNOWN),  # no key row: P0002
    (CIPHERTEXT, b"ad", None),
]


@pytest.mark.parametrize("params", [3, 4])
@pytest.mark.parametrize("fixed_ad", [False, True])
def test_a_key_uuid_column_bound_gives_every_rows_unbound_outcome(
    params: int, fixed_ad: bool
) -> None:
    sig = _uuid_decrypt(params)
    bound_evaluator, plain = _evaluator(), _evaluator()
    constants = {3: None} if params == 4 else {}
    if fixed_ad:
        constants[1] = b"ad"
    bound = bound_evaluator.bind(sig, constants)
    assert bound is not None
    for _ in range(2):  # the second pass finds every key bound
        for message, additional, key in ROWS:
            if fixed_ad:
                additional = b"ad"
            args = [message, additional, key, *([None] * (params - 3))]
            got = _outcome(bound, *([message, key] if fixed_ad else args[:3]))
            assert got == _outcome(plain, sig, args)


def test_a_key_uuid_call_with_a_varying_nonce_is_not_bound() -> None:
    assert _evaluator().bind(_uuid_decrypt(4), {}) is None
    assert _evaluator().bind(_uuid_decrypt(4), {3: bytes(16)}) is None
    assert _evaluator().bind(_uuid_decrypt(3), {2: KEY_A}) is None
