"""crypto_kx: X25519 key-exchange keypairs and client/server session keys.

Session keys come back as pgsodium's composite crypto_kx_session, (rx, tx);
sizes are checked in pgsodium's order with its `bad ... key` texts.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from nacl.bindings import (
    crypto_kx_client_session_keys,
    crypto_kx_keypair,
    crypto_kx_seed_keypair,
    crypto_kx_server_session_keys,
)
from nacl.exceptions import CryptoError

from keystore.derive import Env
from keystore.errors import data_exception

from .derivation import need

# crypto_kx_PUBLICKEYBYTES / _SECRETKEYBYTES / _SEEDBYTES / _SESSIONKEYBYTES
PUBLIC_KEY_BYTES = 32
SECRET_KEY_BYTES = 32
SEED_BYTES = 32
SESSION_KEY_BYTES = 32

_Session = Callable[[bytes, bytes, bytes], tuple[bytes, bytes]]


def _session(
    symbol: str,
    compute: _Session,
    own: tuple[str, bytes | None, bytes | None],
    peer: tuple[str, bytes | None],
) -> tuple[bytes, bytes]:
    """Both directions check alike: own public, own secret, peer public."""
    own_role, own_pk, own_sk = own
    peer_role, peer_pk = peer
    own_pk = need(symbol, own_pk, f"{own_role} publickey")
    own_sk = need(symbol, own_sk, f"{own_role} secretkey")
    peer_pk = need(symbol, peer_pk, f"{peer_role} publickey")

    if len(own_pk) != PUBLIC_KEY_BYTES:
        raise data_exception(symbol, f"bad {own_role} public key")
    if len(own_sk) != SECRET_KEY_BYTES:
        raise data_exception(symbol, f"bad {own_role} secret key")
    if len(peer_pk) != PUBLIC_KEY_BYTES:
        raise data_exception(symbol, f"bad {peer_role} public key")
    try:
        return compute(bytes(own_pk), bytes(own_sk), bytes(peer_pk))
    except CryptoError:
        # libsodium refuses a peer public key of small order.
        raise data_exception(symbol, "invalid message") from None


def pgsodium_crypto_kx_client_session_keys(
    env: Env,
    client_pk: bytes | None,
    client_sk: bytes | None,
    server_pk: bytes | None,
) -> tuple[bytes, bytes]:
    return _session(
        "pgsodium_crypto_kx_client_session_keys",
        crypto_kx_client_session_keys,
        ("client", client_pk, client_sk),
        ("server", server_pk),
    )


def pgsodium_crypto_kx_server_session_keys(
    env: Env,
    server_pk: bytes | None,
    server_sk: bytes | None,
    client_pk: bytes | None,
) -> tuple[bytes, bytes]:
    return _session(
        "pgsodium_crypto_kx_server_session_keys",
        crypto_kx_server_session_keys,
        ("server", server_pk, server_sk),
        ("client", client_pk),
    )


def pgsodium_crypto_kx_seed_keypair(env: Env, seed: bytes) -> tuple[bytes, bytes]:
    """STRICT in SQL, so never called with NULL. (public, secret = BLAKE2b(seed))."""
    if len(seed) != SEED_BYTES:
        raise data_exception("pgsodium_crypto_kx_seed_keypair", "invalid seed")
    return crypto_kx_seed_keypair(bytes(seed))


def pgsodium_crypto_kx_keypair(env: Env) -> tuple[bytes, bytes]:
    return crypto_kx_keypair()


def pgsodium_crypto_kx_new_seed(env: Env) -> bytes:
    return secrets.token_bytes(SEED_BYTES)


IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {
    "pgsodium_crypto_kx_client_session_keys": pgsodium_crypto_kx_client_session_keys,
    "pgsodium_crypto_kx_server_session_keys": pgsodium_crypto_kx_server_session_keys,
    "pgsodium_crypto_kx_seed_keypair": pgsodium_crypto_kx_seed_keypair,
    "pgsodium_crypto_kx_keypair": pgsodium_crypto_kx_keypair,
    "pgsodium_crypto_kx_new_seed": pgsodium_crypto_kx_new_seed,
}
