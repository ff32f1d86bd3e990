"""pgsodium 3.1.11's SQL functions: every signature in schema pgsodium, typed.

The single source of truth for declaring the functions upstream (keystore.schema) and
for resolving overloads in the rewriter. The table below is pgsodium's own catalogue
(argument text as pg_get_function_arguments prints it); tests hold it to the reference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

SCHEMA = "pgsodium"
KEYIDUSER = "pgsodium_keyiduser"
KEYHOLDER = "pgsodium_keyholder"
KEYMAKER = "pgsodium_keymaker"
ROLES = (KEYIDUSER, KEYHOLDER, KEYMAKER)

# Enum labels in pgsodium's sort order (pg_enum.enumsortorder), §7.
KEY_STATUSES = ("default", "valid", "invalid", "expired")
KEY_TYPES = (
    "aead-ietf",
    "aead-det",
    "hmacsha512",
    "hmacsha256",
    "auth",
    "shorthash",
    "generichash",
    "kdf",
    "secretbox",
    "secretstream",
    "stream_xchacha20",
    "ipcrypt-det",
    "ipcrypt-pfx",
    "ipcrypt-nd",
    "ipcrypt-ndx",
)

_PAIR = (("public", "bytea"), ("secret", "bytea"))
COMPOSITE_TYPES: Mapping[str, tuple[tuple[str, str], ...]] = MappingProxyType(
    {
        "pgsodium._key_id_context": (("key_id", "bigint"), ("key_context", "bytea")),
        "pgsodium.crypto_box_keypair": _PAIR,
        "pgsodium.crypto_kx_keypair": _PAIR,
        "pgsodium.crypto_kx_session": (("rx", "bytea"), ("tx", "bytea")),
        "pgsodium.crypto_sign_keypair": _PAIR,
        "pgsodium.crypto_signcrypt_keypair": _PAIR,
        "pgsodium.crypto_signcrypt_state_key": (
            ("state", "bytea"),
            ("shared_key", "bytea"),
        ),
    }
)


@dataclass(frozen=True, slots=True)
class Param:
    """One input parameter; `type` and `default` as pg_get_function_arguments prints."""

    name: str | None
    type: str
    default: str | None = None

    @property
    def text(self) -> str:
        head = self.type if self.name is None else f"{self.name} {self.type}"
        return head if self.default is None else f"{head} DEFAULT {self.default}"


@dataclass(frozen=True, slots=True)
class Signature:
    """One overload of a pgsodium SQL function, with pgsodium's flags and grants.

    `returns` is the result type without SETOF (`returns_set` says whether it is a
    set), or the whole `TABLE(...)` text. `execute` lists the roles holding EXECUTE
    besides the owner; `owner` None means the installing role. `key_variant` is "id"
    (bigint key id + context), "uuid" (a pgsodium.key row of `key_type`, evaluated
    with `uuid_raw_symbol` for a raw key or `uuid_id_symbol` for a derived one), "raw"
    (the bytea-key overload of a function that has id or uuid overloads) or None.
    """

    name: str
    params: tuple[Param, ...]
    returns: str
    returns_set: bool
    volatility: str
    strict: bool
    security_definer: bool
    language: str
    c_symbol: str | None
    owner: str | None
    execute: tuple[str, ...]
    key_variant: str | None = None
    key_type: str | None = None
    uuid_raw_symbol: str | None = None
    uuid_id_symbol: str | None = None
    kind: str = field(default="crypto")

    @property
    def regprocedure(self) -> str:
        """`pgsodium.name(type,type)`: identity argument types, for ::regprocedure."""
        return f"{SCHEMA}.{self.name}({','.join(p.type for p in self.params)})"

    @property
    def arguments(self) -> str:
        """The argument list exactly as pg_get_function_arguments prints it."""
        return ", ".join(p.text for p in self.params)

    @property
    def result(self) -> str:
        """The result exactly as pg_get_function_result prints it."""
        if self.returns_set and not self.returns.startswith("TABLE("):
            return f"SETOF {self.returns}"
        return self.returns


# Every function of pgsodium 3.1.11 (reference §11), one entry per overload in
# pgsodium's order, wrapped onto indented lines:
#     name(arguments) -> result | flags | implementation | EXECUTE
# flags: IMM/STABLE/VOL, then STRICT and SECDEF when set. implementation: `C <symbol>`,
# `plpgsql`, `sql` or `aggregate`, plus `, owner keymaker` when pgsodium_keymaker owns
# it. EXECUTE: roles holding it besides the owner (PUBLIC = left at the default ACL).
_TABLE = r"""
create_key(key_type pgsodium.key_type DEFAULT 'aead-det'::pgsodium.key_type,
    name text DEFAULT NULL::text, raw_key bytea DEFAULT NULL::bytea,
    raw_key_nonce bytea DEFAULT NULL::bytea, parent_key uuid DEFAULT NULL::uuid,
    key_context bytea DEFAULT '\x7067736f6469756d'::bytea,
    expires timestamp with time zone DEFAULT NULL::timestamp with time zone,
    associated_data text DEFAULT ''::text)
    -> pgsodium.valid_key | VOL SECDEF | plpgsql, owner keymaker | PUBLIC,keyiduser

create_mask_view(relid oid, debug boolean DEFAULT false)
    -> void | VOL | plpgsql | PUBLIC
create_mask_view(relid oid, subid integer, debug boolean DEFAULT false)
    -> void | VOL | plpgsql | PUBLIC

crypto_aead_det_decrypt(ciphertext bytea, additional bytea, key bytea,
    nonce bytea DEFAULT NULL::bytea)
    -> bytea | IMM | C pgsodium_crypto_aead_det_decrypt | keyholder
crypto_aead_det_decrypt(message bytea, additional bytea, key_id bigint,
    context bytea DEFAULT '\x7067736f6469756d'::bytea, nonce bytea DEFAULT NULL::bytea)
    -> bytea | IMM | C pgsodium_crypto_aead_det_decrypt_by_id | keyiduser
crypto_aead_det_decrypt(message bytea, additional bytea, key_uuid uuid)
    -> bytea | STABLE SECDEF | plpgsql, owner keymaker | keyiduser
crypto_aead_det_decrypt(message bytea, additional bytea, key_uuid uuid, nonce bytea)
    -> bytea | STABLE SECDEF | plpgsql, owner keymaker | keyiduser

crypto_aead_det_encrypt(message bytea, additional bytea, key bytea,
    nonce bytea DEFAULT NULL::bytea)
    -> bytea | IMM | C pgsodium_crypto_aead_det_encrypt | keyholder
crypto_aead_det_encrypt(message bytea, additional bytea, key_id bigint,
    context bytea DEFAULT '\x7067736f6469756d'::bytea, nonce bytea DEFAULT NULL::bytea)
    -> bytea | IMM | C pgsodium_crypto_aead_det_encrypt_by_id | keyiduser
crypto_aead_det_encrypt(message bytea, additional bytea, key_uuid uuid)
    -> bytea | STABLE SECDEF | plpgsql, owner keymaker | keyiduser
crypto_aead_det_encrypt(message bytea, additional bytea, key_uuid uuid, nonce bytea)
    -> bytea | STABLE SECDEF | plpgsql, owner keymaker | keyiduser

crypto_aead_det_keygen()
    -> bytea | VOL | C pgsodium_crypto_aead_det_keygen | keymaker

crypto_aead_det_noncegen()
    -> bytea | VOL | C pgsodium_crypto_aead_det_noncegen | PUBLIC,keyiduser

crypto_aead_ietf_decrypt(message bytea, additional bytea, nonce bytea, key bytea)
    -> bytea | IMM | C pgsodium_crypto_aead_ietf_decrypt | keyholder
crypto_aead_ietf_decrypt(message bytea, additional bytea, nonce bytea, key_id bigint,
    context bytea DEFAULT '\x7067736f6469756d'::bytea)
    -> bytea | IMM | C pgsodium_crypto_aead_ietf_decrypt_by_id | keyiduser
crypto_aead_ietf_decrypt(message bytea, additional bytea, nonce bytea, key_uuid uuid)
    -> bytea | STABLE SECDEF | plpgsql, owner keymaker | keyiduser

crypto_aead_ietf_encrypt(message bytea, additional bytea, nonce bytea, key bytea)
    -> bytea | IMM | C pgsodium_crypto_aead_ietf_encrypt | keyholder
crypto_aead_ietf_encrypt(message bytea, additional bytea, nonce bytea, key_id bigint,
    context bytea DEFAULT '\x7067736f6469756d'::bytea)
    -> bytea | IMM | C pgsodium_crypto_aead_ietf_encrypt_by_id | keyiduser
crypto_aead_ietf_encrypt(message bytea, additional bytea, nonce bytea, key_uuid uuid)
    -> bytea | STABLE SECDEF | plpgsql, owner keymaker | keyiduser

crypto_aead_ietf_keygen()
    -> bytea | VOL | C pgsodium_crypto_aead_ietf_keygen | keymaker

crypto_aead_ietf_noncegen()
    -> bytea | VOL | C pgsodium_crypto_aead_ietf_noncegen | keyiduser

crypto_auth(message bytea, key bytea)
    -> bytea | IMM | C pgsodium_crypto_auth | keyholder
crypto_auth(message bytea, key_id bigint,
    context bytea DEFAULT '\x7067736f6469756d'::bytea)
    -> bytea | IMM | C pgsodium_crypto_auth_by_id | keyiduser
crypto_auth(message bytea, key_uuid uuid)
    -> bytea | STABLE SECDEF | plpgsql, owner keymaker | keyiduser

crypto_auth_hmacsha256(message bytea, key_id bigint,
    context bytea DEFAULT '\x7067736f6469756d'::bytea)
    -> bytea | IMM | C pgsodium_crypto_auth_hmacsha256_by_id | keyiduser
crypto_auth_hmacsha256(message bytea, key_uuid uuid)
    -> bytea | STABLE SECDEF | plpgsql, owner keymaker | keyiduser
crypto_auth_hmacsha256(message bytea, secret bytea)
    -> bytea | IMM | C pgsodium_crypto_auth_hmacsha256 | keyholder

crypto_auth_hmacsha256_keygen()
    -> bytea | VOL | C pgsodium_crypto_auth_hmacsha256_keygen | keymaker

crypto_auth_hmacsha256_verify(hash bytea, message bytea, key_id bigint,
    context bytea DEFAULT '\x7067736f6469756d'::bytea)
    -> boolean | IMM | C pgsodium_crypto_auth_hmacsha256_verify_by_id | keyiduser
crypto_auth_hmacsha256_verify(hash bytea, message bytea, secret bytea)
    -> boolean | IMM | C pgsodium_crypto_auth_hmacsha256_verify | keyholder
crypto_auth_hmacsha256_verify(signature bytea, message bytea, key_uuid uuid)
    -> boolean | STABLE SECDEF | plpgsql, owner keymaker | keyiduser

crypto_auth_hmacsha512(message bytea, key_id bigint,
    context bytea DEFAULT '\x7067736f6469756d'::bytea)
    -> bytea | IMM | C pgsodium_crypto_auth_hmacsha512_by_id | keyiduser
crypto_auth_hmacsha512(message bytea, key_uuid uuid)
    -> bytea | STABLE SECDEF | plpgsql, owner keymaker | keyiduser
crypto_auth_hmacsha512(message bytea, secret bytea)
    -> bytea | IMM | C pgsodium_crypto_auth_hmacsha512 | keyholder

crypto_auth_hmacsha512_keygen()
    -> bytea | VOL | C pgsodium_crypto_auth_hmacsha512_keygen | PUBLIC

crypto_auth_hmacsha512_verify(hash bytea, message bytea, key_id bigint,
    context bytea DEFAULT '\x7067736f6469756d'::bytea)
    -> boolean | IMM | C pgsodium_crypto_auth_hmacsha512_verify_by_id | keyiduser
crypto_auth_hmacsha512_verify(hash bytea, message bytea, secret bytea)
    -> boolean | IMM | C pgsodium_crypto_auth_hmacsha512_verify | keyholder
crypto_auth_hmacsha512_verify(signature bytea, message bytea, key_uuid uuid)
    -> boolean | STABLE SECDEF | plpgsql, owner keymaker | keyiduser

crypto_auth_keygen()
    -> bytea | VOL | C pgsodium_crypto_auth_keygen | keymaker

crypto_auth_verify(mac bytea, message bytea, key bytea)
    -> boolean | IMM | C pgsodium_crypto_auth_verify | keyholder
crypto_auth_verify(mac bytea, message bytea, key_id bigint,
    context bytea DEFAULT '\x7067736f6469756d'::bytea)
    -> boolean | IMM | C pgsodium_crypto_auth_verify_by_id | keyiduser
crypto_auth_verify(mac bytea, message bytea, key_uuid uuid)
    -> boolean | STABLE SECDEF | plpgsql, owner keymaker | keyiduser

crypto_box(message bytea, nonce bytea, public bytea, secret bytea)
    -> bytea | IMM | C pgsodium_crypto_box | keyholder

crypto_box_new_keypair()
    -> pgsodium.crypto_box_keypair | VOL | C pgsodium_crypto_box_keypair | keymaker

crypto_box_new_seed()
    -> bytea | VOL | C pgsodium_crypto_box_new_seed | PUBLIC

crypto_box_noncegen()
    -> bytea | VOL | C pgsodium_crypto_box_noncegen | keymaker

crypto_box_open(ciphertext bytea, nonce bytea, public bytea, secret bytea)
    -> bytea | IMM | C pgsodium_crypto_box_open | keyholder

crypto_box_seal(message bytea, public_key bytea)
    -> bytea | IMM | C pgsodium_crypto_box_seal | PUBLIC

crypto_box_seal_open(ciphertext bytea, public_key bytea, secret_key bytea)
    -> bytea | IMM | C pgsodium_crypto_box_seal_open | PUBLIC

crypto_box_seed_new_keypair(seed bytea)
    -> pgsodium.crypto_box_keypair | IMM | C pgsodium_crypto_box_seed_keypair | keymaker

crypto_cmp(text, text)
    -> boolean | IMM STRICT | C pgsodium_cmp | PUBLIC

crypto_generichash(message bytea, key bigint,
    context bytea DEFAULT '\x7067736f6469756d'::bytea)
    -> bytea | IMM | C pgsodium_crypto_generichash_by_id | PUBLIC
crypto_generichash(message bytea, key bytea DEFAULT NULL::bytea)
    -> bytea | IMM | C pgsodium_crypto_generichash | keyiduser
crypto_generichash(message bytea, key_uuid uuid)
    -> bytea | STABLE SECDEF | plpgsql, owner keymaker | keyiduser

crypto_generichash_keygen()
    -> bytea | VOL | C pgsodium_crypto_generichash_keygen | keymaker

crypto_hash_sha256(message bytea)
    -> bytea | IMM | C pgsodium_crypto_hash_sha256 | PUBLIC

crypto_hash_sha512(message bytea)
    -> bytea | IMM | C pgsodium_crypto_hash_sha512 | PUBLIC

crypto_ipcrypt_bin2ip(bin bytea)
    -> text | IMM STRICT | C pgsodium_crypto_ipcrypt_bin2ip | PUBLIC

crypto_ipcrypt_decrypt(ip bytea, key bytea)
    -> bytea | IMM STRICT | C pgsodium_crypto_ipcrypt_decrypt | PUBLIC
crypto_ipcrypt_decrypt(ip bytea, key_id bigint,
    context bytea DEFAULT '\x7067736f6469756d'::bytea)
    -> bytea | IMM STRICT | C pgsodium_crypto_ipcrypt_decrypt_by_id | keyiduser
crypto_ipcrypt_decrypt(ip bytea, key_uuid uuid)
    -> bytea | STABLE STRICT SECDEF | plpgsql, owner keymaker | keyiduser
crypto_ipcrypt_decrypt(ip inet, key bytea)
    -> inet | IMM STRICT | sql | PUBLIC
crypto_ipcrypt_decrypt(ip inet, key_uuid uuid)
    -> inet | STABLE STRICT | sql | keyiduser

crypto_ipcrypt_encrypt(ip bytea, key bytea)
    -> bytea | IMM STRICT | C pgsodium_crypto_ipcrypt_encrypt | PUBLIC
crypto_ipcrypt_encrypt(ip bytea, key_id bigint,
    context bytea DEFAULT '\x7067736f6469756d'::bytea)
    -> bytea | IMM STRICT | C pgsodium_crypto_ipcrypt_encrypt_by_id | keyiduser
crypto_ipcrypt_encrypt(ip bytea, key_uuid uuid)
    -> bytea | STABLE STRICT SECDEF | plpgsql, owner keymaker | keyiduser
crypto_ipcrypt_encrypt(ip inet, key bytea)
    -> inet | IMM STRICT | sql | PUBLIC
crypto_ipcrypt_encrypt(ip inet, key_uuid uuid)
    -> inet | STABLE STRICT | sql | keyiduser

crypto_ipcrypt_ip2bin(ip text)
    -> bytea | IMM STRICT | C pgsodium_crypto_ipcrypt_ip2bin | PUBLIC

crypto_ipcrypt_keygen()
    -> bytea | VOL | C pgsodium_crypto_ipcrypt_keygen | PUBLIC

crypto_ipcrypt_nd_decrypt(ciphertext bytea, key bytea)
    -> bytea | IMM STRICT | C pgsodium_crypto_ipcrypt_nd_decrypt | PUBLIC
crypto_ipcrypt_nd_decrypt(ciphertext bytea, key_id bigint,
    context bytea DEFAULT '\x7067736f6469756d'::bytea)
    -> bytea | IMM STRICT | C pgsodium_crypto_ipcrypt_nd_decrypt_by_id | keyiduser
crypto_ipcrypt_nd_decrypt(ciphertext bytea, key_uuid uuid)
    -> bytea | STABLE STRICT SECDEF | plpgsql, owner keymaker | keyiduser

crypto_ipcrypt_nd_encrypt(ip bytea, tweak bytea, key bytea)
    -> bytea | IMM STRICT | C pgsodium_crypto_ipcrypt_nd_encrypt | PUBLIC
crypto_ipcrypt_nd_encrypt(ip bytea, tweak bytea, key_id bigint,
    context bytea DEFAULT '\x7067736f6469756d'::bytea)
    -> bytea | IMM STRICT | C pgsodium_crypto_ipcrypt_nd_encrypt_by_id | keyiduser
crypto_ipcrypt_nd_encrypt(ip bytea, tweak bytea, key_uuid uuid)
    -> bytea | STABLE STRICT SECDEF | plpgsql, owner keymaker | keyiduser

crypto_ipcrypt_nd_keygen()
    -> bytea | VOL | C pgsodium_crypto_ipcrypt_nd_keygen | PUBLIC

crypto_ipcrypt_nd_tweakgen()
    -> bytea | VOL | C pgsodium_crypto_ipcrypt_nd_tweakgen | PUBLIC

crypto_ipcrypt_ndx_decrypt(ciphertext bytea, key bytea)
    -> bytea | IMM STRICT | C pgsodium_crypto_ipcrypt_ndx_decrypt | PUBLIC
crypto_ipcrypt_ndx_decrypt(ciphertext bytea, key_id bigint,
    context bytea DEFAULT '\x7067736f6469756d'::bytea)
    -> bytea | IMM STRICT | C pgsodium_crypto_ipcrypt_ndx_decrypt_by_id | keyiduser
crypto_ipcrypt_ndx_decrypt(ciphertext bytea, key_uuid uuid)
    -> bytea | STABLE STRICT SECDEF | plpgsql, owner keymaker | keyiduser

crypto_ipcrypt_ndx_encrypt(ip bytea, tweak bytea, key bytea)
    -> bytea | IMM STRICT | C pgsodium_crypto_ipcrypt_ndx_encrypt | PUBLIC
crypto_ipcrypt_ndx_encrypt(ip bytea, tweak bytea, key_id bigint,
    context bytea DEFAULT '\x7067736f6469756d'::bytea)
    -> bytea | IMM STRICT | C pgsodium_crypto_ipcrypt_ndx_encrypt_by_id | keyiduser
crypto_ipcrypt_ndx_encrypt(ip bytea, tweak bytea, key_uuid uuid)
    -> bytea | STABLE STRICT SECDEF | plpgsql, owner keymaker | keyiduser

crypto_ipcrypt_ndx_keygen()
    -> bytea | VOL | C pgsodium_crypto_ipcrypt_ndx_keygen | PUBLIC

crypto_ipcrypt_ndx_tweakgen()
    -> bytea | VOL | C pgsodium_crypto_ipcrypt_ndx_tweakgen | PUBLIC

crypto_ipcrypt_pfx_decrypt(ip bytea, key bytea)
    -> bytea | IMM STRICT | C pgsodium_crypto_ipcrypt_pfx_decrypt | PUBLIC
crypto_ipcrypt_pfx_decrypt(ip bytea, key_id bigint,
    context bytea DEFAULT '\x7067736f6469756d'::bytea)
    -> bytea | IMM STRICT | C pgsodium_crypto_ipcrypt_pfx_decrypt_by_id | keyiduser
crypto_ipcrypt_pfx_decrypt(ip bytea, key_uuid uuid)
    -> bytea | STABLE STRICT SECDEF | plpgsql, owner keymaker | keyiduser
crypto_ipcrypt_pfx_decrypt(ip inet, key bytea)
    -> inet | IMM STRICT | sql | PUBLIC
crypto_ipcrypt_pfx_decrypt(ip inet, key_uuid uuid)
    -> inet | STABLE STRICT | sql | keyiduser

crypto_ipcrypt_pfx_encrypt(ip bytea, key bytea)
    -> bytea | IMM STRICT | C pgsodium_crypto_ipcrypt_pfx_encrypt | PUBLIC
crypto_ipcrypt_pfx_encrypt(ip bytea, key_id bigint,
    context bytea DEFAULT '\x7067736f6469756d'::bytea)
    -> bytea | IMM STRICT | C pgsodium_crypto_ipcrypt_pfx_encrypt_by_id | keyiduser
crypto_ipcrypt_pfx_encrypt(ip bytea, key_uuid uuid)
    -> bytea | STABLE STRICT SECDEF | plpgsql, owner keymaker | keyiduser
crypto_ipcrypt_pfx_encrypt(ip inet, key bytea)
    -> inet | IMM STRICT | sql | PUBLIC
crypto_ipcrypt_pfx_encrypt(ip inet, key_uuid uuid)
    -> inet | STABLE STRICT | sql | keyiduser

crypto_ipcrypt_pfx_keygen()
    -> bytea | VOL | C pgsodium_crypto_ipcrypt_pfx_keygen | PUBLIC

crypto_kdf_derive_from_key(subkey_size bigint, subkey_id bigint, context bytea,
    primary_key bytea)
    -> bytea | IMM | C pgsodium_crypto_kdf_derive_from_key | keymaker
crypto_kdf_derive_from_key(subkey_size integer, subkey_id bigint, context bytea,
    primary_key uuid)
    -> bytea | STABLE STRICT SECDEF | plpgsql, owner keymaker | keyiduser

crypto_kdf_keygen()
    -> bytea | VOL | C pgsodium_crypto_kdf_keygen | keymaker

crypto_kx_client_session_keys(client_pk bytea, client_sk bytea, server_pk bytea)
    -> pgsodium.crypto_kx_session | VOL | C pgsodium_crypto_kx_client_session_keys
        | PUBLIC

crypto_kx_new_keypair()
    -> pgsodium.crypto_kx_keypair | VOL | C pgsodium_crypto_kx_keypair | keymaker

crypto_kx_new_seed()
    -> bytea | VOL | C pgsodium_crypto_kx_new_seed | keymaker

crypto_kx_seed_new_keypair(seed bytea)
    -> pgsodium.crypto_kx_keypair | IMM STRICT | C pgsodium_crypto_kx_seed_keypair
        | keymaker

crypto_kx_server_session_keys(server_pk bytea, server_sk bytea, client_pk bytea)
    -> pgsodium.crypto_kx_session | VOL | C pgsodium_crypto_kx_server_session_keys
        | PUBLIC

crypto_pwhash(password bytea, salt bytea)
    -> bytea | IMM | C pgsodium_crypto_pwhash | PUBLIC

crypto_pwhash_saltgen()
    -> bytea | VOL | C pgsodium_crypto_pwhash_saltgen | PUBLIC

crypto_pwhash_str(password bytea)
    -> bytea | VOL | C pgsodium_crypto_pwhash_str | PUBLIC

crypto_pwhash_str_verify(hashed_password bytea, password bytea)
    -> boolean | IMM | C pgsodium_crypto_pwhash_str_verify | PUBLIC

crypto_secretbox(message bytea, nonce bytea, key bytea)
    -> bytea | IMM | C pgsodium_crypto_secretbox | keyholder
crypto_secretbox(message bytea, nonce bytea, key_id bigint,
    context bytea DEFAULT '\x7067736f6469756d'::bytea)
    -> bytea | IMM | C pgsodium_crypto_secretbox_by_id | keyiduser
crypto_secretbox(message bytea, nonce bytea, key_uuid uuid)
    -> bytea | STABLE SECDEF | plpgsql, owner keymaker | keyiduser

crypto_secretbox_keygen()
    -> bytea | VOL | C pgsodium_crypto_secretbox_keygen | keymaker

crypto_secretbox_noncegen()
    -> bytea | VOL | C pgsodium_crypto_secretbox_noncegen | keyiduser

crypto_secretbox_open(ciphertext bytea, nonce bytea, key bytea)
    -> bytea | IMM | C pgsodium_crypto_secretbox_open | keyholder
crypto_secretbox_open(message bytea, nonce bytea, key_id bigint,
    context bytea DEFAULT '\x7067736f6469756d'::bytea)
    -> bytea | IMM | C pgsodium_crypto_secretbox_open_by_id | keyiduser
crypto_secretbox_open(message bytea, nonce bytea, key_uuid uuid)
    -> bytea | STABLE SECDEF | plpgsql, owner keymaker | keyiduser

crypto_secretstream_keygen()
    -> bytea | VOL | C pgsodium_crypto_secretstream_xchacha20poly1305_keygen | PUBLIC

crypto_shorthash(message bytea, key bigint,
    context bytea DEFAULT '\x7067736f6469756d'::bytea)
    -> bytea | IMM | C pgsodium_crypto_shorthash_by_id | PUBLIC
crypto_shorthash(message bytea, key bytea)
    -> bytea | IMM | C pgsodium_crypto_shorthash | keyiduser
crypto_shorthash(message bytea, key_uuid uuid)
    -> bytea | STABLE SECDEF | plpgsql, owner keymaker | keyiduser

crypto_shorthash_keygen()
    -> bytea | VOL | C pgsodium_crypto_shorthash_keygen | keymaker

crypto_sign(message bytea, key bytea)
    -> bytea | IMM | C pgsodium_crypto_sign | PUBLIC

crypto_sign_detached(message bytea, key bytea)
    -> bytea | IMM | C pgsodium_crypto_sign_detached | PUBLIC

crypto_sign_final_create(state bytea, key bytea)
    -> bytea | IMM | C pgsodium_crypto_sign_final_create | keyholder

crypto_sign_final_verify(state bytea, signature bytea, key bytea)
    -> boolean | IMM | C pgsodium_crypto_sign_final_verify | keyholder

crypto_sign_init()
    -> bytea | IMM STRICT | C pgsodium_crypto_sign_init | keyholder

crypto_sign_new_keypair()
    -> pgsodium.crypto_sign_keypair | VOL | C pgsodium_crypto_sign_keypair | keymaker

crypto_sign_new_seed()
    -> bytea | VOL | C pgsodium_crypto_sign_new_seed | PUBLIC

crypto_sign_open(signed_message bytea, key bytea)
    -> bytea | IMM | C pgsodium_crypto_sign_open | PUBLIC

crypto_sign_seed_new_keypair(seed bytea)
    -> pgsodium.crypto_sign_keypair | IMM | C pgsodium_crypto_sign_seed_keypair | PUBLIC

crypto_sign_update(state bytea, message bytea)
    -> bytea | IMM | C pgsodium_crypto_sign_update | keyholder

crypto_sign_update_agg(message bytea)
    -> bytea | IMM | aggregate | PUBLIC
crypto_sign_update_agg(state bytea, message bytea)
    -> bytea | IMM | aggregate | PUBLIC

crypto_sign_update_agg1(state bytea, message bytea)
    -> bytea | IMM | sql | keyholder

crypto_sign_update_agg2(cur_state bytea, initial_state bytea, message bytea)
    -> bytea | IMM | sql | keyholder

crypto_sign_verify_detached(sig bytea, message bytea, key bytea)
    -> boolean | IMM | C pgsodium_crypto_sign_verify_detached | PUBLIC

crypto_signcrypt_new_keypair()
    -> pgsodium.crypto_signcrypt_keypair | VOL | C pgsodium_crypto_signcrypt_keypair
        | keymaker

crypto_signcrypt_sign_after(state bytea, sender_sk bytea, ciphertext bytea)
    -> bytea | VOL | C pgsodium_crypto_signcrypt_sign_after | keyholder

crypto_signcrypt_sign_before(sender bytea, recipient bytea, sender_sk bytea,
    recipient_pk bytea, additional bytea)
    -> pgsodium.crypto_signcrypt_state_key | VOL
        | C pgsodium_crypto_signcrypt_sign_before | keyholder

crypto_signcrypt_verify_after(state bytea, signature bytea, sender_pk bytea,
    ciphertext bytea)
    -> boolean | VOL | C pgsodium_crypto_signcrypt_verify_after | keyholder

crypto_signcrypt_verify_before(signature bytea, sender bytea, recipient bytea,
    additional bytea, sender_pk bytea, recipient_sk bytea)
    -> pgsodium.crypto_signcrypt_state_key | VOL
        | C pgsodium_crypto_signcrypt_verify_before | keyholder

crypto_signcrypt_verify_public(signature bytea, sender bytea, recipient bytea,
    additional bytea, sender_pk bytea, ciphertext bytea)
    -> boolean | VOL | C pgsodium_crypto_signcrypt_verify_public | keyholder

crypto_stream_xchacha20(bigint, bytea, bigint,
    context bytea DEFAULT '\x7067736f6469756d'::bytea)
    -> bytea | IMM | C pgsodium_crypto_stream_xchacha20_by_id | PUBLIC
crypto_stream_xchacha20(bigint, bytea, bytea)
    -> bytea | IMM | C pgsodium_crypto_stream_xchacha20 | PUBLIC

crypto_stream_xchacha20_keygen()
    -> bytea | VOL | C pgsodium_crypto_stream_xchacha20_keygen | PUBLIC

crypto_stream_xchacha20_noncegen()
    -> bytea | VOL | C pgsodium_crypto_stream_xchacha20_noncegen | PUBLIC

crypto_stream_xchacha20_xor(bytea, bytea, bigint,
    context bytea DEFAULT '\x70676f736469756d'::bytea)
    -> bytea | IMM | C pgsodium_crypto_stream_xchacha20_xor_by_id | PUBLIC
crypto_stream_xchacha20_xor(bytea, bytea, bytea)
    -> bytea | IMM | C pgsodium_crypto_stream_xchacha20_xor | PUBLIC

crypto_stream_xchacha20_xor_ic(bytea, bytea, bigint, bigint,
    context bytea DEFAULT '\x7067736f6469756d'::bytea)
    -> bytea | IMM | C pgsodium_crypto_stream_xchacha20_xor_ic_by_id | PUBLIC
crypto_stream_xchacha20_xor_ic(bytea, bytea, bigint, bytea)
    -> bytea | IMM | C pgsodium_crypto_stream_xchacha20_xor_ic | PUBLIC

decrypted_columns(relid oid)
    -> text | VOL | plpgsql | PUBLIC

derive_key(key_id bigint, key_len integer DEFAULT 32,
    context bytea DEFAULT '\x7067736f6469756d'::bytea)
    -> bytea | VOL | C pgsodium_derive | keymaker

disable_security_label_trigger()
    -> void | VOL SECDEF | sql | PUBLIC

enable_security_label_trigger()
    -> void | VOL SECDEF | sql | PUBLIC

encrypted_column(relid oid, m record)
    -> text | VOL | plpgsql | PUBLIC

encrypted_columns(relid oid)
    -> text | VOL | plpgsql | PUBLIC

get_key_by_id(uuid)
    -> pgsodium.valid_key | VOL SECDEF | sql | PUBLIC

get_key_by_name(text)
    -> pgsodium.valid_key | VOL SECDEF | sql | PUBLIC

get_named_keys(filter text DEFAULT '%'::text)
    -> SETOF pgsodium.valid_key | VOL SECDEF | sql | PUBLIC

has_mask(role regrole, source_name text)
    -> boolean | VOL | sql | PUBLIC

key_encrypt_secret_raw_key()
    -> trigger | VOL | plpgsql | PUBLIC

mask_columns(source_relid oid)
    -> TABLE(attname name, key_id text, key_id_column text, associated_column text,
        nonce_column text, format_type text) | VOL | sql | PUBLIC

mask_role(masked_role regrole, source_name text, view_name text)
    -> void | VOL SECDEF | plpgsql | PUBLIC

pgsodium_derive(key_id bigint, key_len integer DEFAULT 32,
    context bytea DEFAULT decode('pgsodium'::text, 'escape'::text))
    -> bytea | VOL | C pgsodium_derive | keymaker

quote_assoc(text, boolean DEFAULT false)
    -> text | VOL | sql | PUBLIC

randombytes_buf(size integer)
    -> bytea | VOL | C pgsodium_randombytes_buf | keyiduser

randombytes_buf_deterministic(size integer, seed bytea)
    -> bytea | IMM | C pgsodium_randombytes_buf_deterministic | keymaker,keyiduser

randombytes_new_seed()
    -> bytea | VOL | C pgsodium_randombytes_new_seed | keymaker

randombytes_random()
    -> integer | VOL | C pgsodium_randombytes_random | keyiduser

randombytes_uniform(upper_bound integer)
    -> integer | VOL | C pgsodium_randombytes_uniform | keyiduser

sodium_base642bin(base64 text)
    -> bytea | IMM | C pgsodium_sodium_base642bin | PUBLIC

sodium_bin2base64(bin bytea)
    -> text | IMM | C pgsodium_sodium_bin2base64 | PUBLIC

trg_mask_update()
    -> event_trigger | VOL | plpgsql | PUBLIC

update_mask(target oid, debug boolean DEFAULT false)
    -> void | VOL SECDEF | plpgsql | PUBLIC

update_masks(debug boolean DEFAULT false)
    -> void | VOL | plpgsql | PUBLIC

version()
    -> text | VOL | sql | PUBLIC
"""

_KEYS_KIND = frozenset(
    {"create_key", "get_key_by_id", "get_key_by_name", "get_named_keys", "version"}
)
# pgsodium's TCE functions: declared by keystore/sql/tce.sql with the TCE machinery.
_TCE_KIND = frozenset(
    {
        "create_mask_view",
        "decrypted_columns",
        "disable_security_label_trigger",
        "enable_security_label_trigger",
        "encrypted_column",
        "encrypted_columns",
        "has_mask",
        "key_encrypt_secret_raw_key",
        "mask_columns",
        "mask_role",
        "quote_assoc",
        "trg_mask_update",
        "update_mask",
        "update_masks",
    }
)

# Key type a key uuid must have for each uuid variant (§6: `WHERE key_type = ...`).
_UUID_KEY_TYPES = {
    "crypto_aead_det_decrypt": "aead-det",
    "crypto_aead_det_encrypt": "aead-det",
    "crypto_aead_ietf_decrypt": "aead-ietf",
    "crypto_aead_ietf_encrypt": "aead-ietf",
    "crypto_auth": "auth",
    "crypto_auth_verify": "auth",
    "crypto_auth_hmacsha256": "hmacsha256",
    "crypto_auth_hmacsha256_verify": "hmacsha256",
    "crypto_auth_hmacsha512": "hmacsha512",
    "crypto_auth_hmacsha512_verify": "hmacsha512",
    "crypto_generichash": "generichash",
    "crypto_shorthash": "shorthash",
    "crypto_secretbox": "secretbox",
    "crypto_secretbox_open": "secretbox",
    "crypto_kdf_derive_from_key": "kdf",
    "crypto_ipcrypt_decrypt": "ipcrypt-det",
    "crypto_ipcrypt_encrypt": "ipcrypt-det",
    "crypto_ipcrypt_pfx_decrypt": "ipcrypt-pfx",
    "crypto_ipcrypt_pfx_encrypt": "ipcrypt-pfx",
    "crypto_ipcrypt_nd_decrypt": "ipcrypt-nd",
    "crypto_ipcrypt_nd_encrypt": "ipcrypt-nd",
    "crypto_ipcrypt_ndx_decrypt": "ipcrypt-ndx",
    "crypto_ipcrypt_ndx_encrypt": "ipcrypt-ndx",
}
# pgsodium's uuid kdf calls derive_key(key_id, subkey_size, key_context) for a derived
# key, ignoring its own subkey_id and context arguments (§6, a pgsodium bug we mirror).
_UUID_ID_OVERRIDES = {"crypto_kdf_derive_from_key": "pgsodium_derive"}

_TYPES = frozenset(
    {
        "bigint",
        "boolean",
        "bytea",
        "inet",
        "integer",
        "oid",
        "record",
        "regrole",
        "text",
        "uuid",
        "pgsodium.key_type",
        "timestamp with time zone",
    }
)
_VOLATILITY = {"IMM": "i", "STABLE": "s", "VOL": "v"}
_ROLE_NAMES = {
    "PUBLIC": "PUBLIC",
    "keyiduser": KEYIDUSER,
    "keyholder": KEYHOLDER,
    "keymaker": KEYMAKER,
}
_LANGUAGES = frozenset({"c", "plpgsql", "sql", "aggregate"})
_ENTRY = re.compile(r"(?P<name>\w+)\((?P<args>.*)\) -> (?P<rest>.+)")


def _entries(table: str) -> list[str]:
    """Join each entry's indented continuation lines onto its first line."""
    entries: list[str] = []
    for line in table.splitlines():
        if not line.strip():
            continue
        if line[0].isspace():
            entries[-1] += " " + line.strip()
        else:
            entries.append(line.strip())
    return entries


def _split_arguments(text: str) -> list[str]:
    """Split an argument list at the commas outside quotes and parentheses."""
    parts: list[str] = []
    depth, quoted, start = 0, False, 0
    for i, ch in enumerate(text):
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch in "()":
            depth += 1 if ch == "(" else -1
        elif not quoted and depth == 0 and ch == ",":
            parts.append(text[start:i].strip())
            start = i + 1
    if text[start:].strip():
        parts.append(text[start:].strip())
    return parts


def _param(text: str) -> Param:
    head, _, default = text.partition(" DEFAULT ")
    name, type_ = (None, head) if head in _TYPES else head.split(" ", 1)
    if type_ not in _TYPES:
        raise ValueError(f"unknown parameter type in {text!r}")
    return Param(name, type_, default or None)


def _kind(name: str) -> str:
    if name in _KEYS_KIND:
        return "keys"
    return "tce" if name in _TCE_KIND else "crypto"


def _parse(entry: str) -> Signature:
    match = _ENTRY.fullmatch(entry)
    if match is None:
        raise ValueError(f"malformed catalogue entry {entry!r}")
    result, flags, implementation, grants = match["rest"].split(" | ")
    words = flags.split()
    language, _, owner = implementation.partition(", owner ")
    c_symbol = None
    if language.startswith("C "):
        language, c_symbol = "c", language[2:]
    if language not in _LANGUAGES or not set(words[1:]) <= {"STRICT", "SECDEF"}:
        raise ValueError(f"malformed catalogue entry {entry!r}")

    return Signature(
        name=match["name"],
        params=tuple(_param(p) for p in _split_arguments(match["args"])),
        returns=result.removeprefix("SETOF "),
        returns_set=result.startswith(("SETOF ", "TABLE(")),
        volatility=_VOLATILITY[words[0]],
        strict="STRICT" in words,
        security_definer="SECDEF" in words,
        language=language,
        c_symbol=c_symbol,
        owner=_ROLE_NAMES[owner] if owner else None,
        execute=tuple(_ROLE_NAMES[role] for role in grants.split(",")),
        kind=_kind(match["name"]),
    )


def _own_variant(sig: Signature) -> str | None:
    """The variant ("uuid", "id") a signature shows alone; "raw" needs siblings."""
    if sig.kind != "crypto":
        return None
    if any(p.type == "uuid" for p in sig.params):
        return "uuid"
    symbol = sig.c_symbol or ""
    return "id" if symbol.endswith("_by_id") or symbol == "pgsodium_derive" else None


def _one_symbol(siblings: list[Signature], variant: str) -> str:
    symbols = [s.c_symbol for s in siblings if s.key_variant == variant and s.c_symbol]
    if len(symbols) != 1:
        raise ValueError(f"{siblings[0].name}: expected one C {variant} overload")
    return symbols[0]


def _with_key_variants(sigs: list[Signature]) -> tuple[Signature, ...]:
    groups: dict[str, list[Signature]] = {}
    for sig in sigs:
        groups.setdefault(sig.name, []).append(sig)
    for name, group in groups.items():
        keyed = any(_own_variant(s) for s in group)
        groups[name] = [
            replace(s, key_variant=_own_variant(s) or ("raw" if keyed else None))
            for s in group
        ]

    out: list[Signature] = []
    for name, group in groups.items():
        for sig in group:
            if sig.key_variant == "uuid":
                sig = replace(
                    sig,
                    key_type=_UUID_KEY_TYPES[name],
                    uuid_raw_symbol=_one_symbol(group, "raw"),
                    uuid_id_symbol=_UUID_ID_OVERRIDES.get(name)
                    or _one_symbol(group, "id"),
                )
            out.append(sig)
    return tuple(out)


FUNCTIONS: tuple[Signature, ...] = _with_key_variants(
    [_parse(entry) for entry in _entries(_TABLE)]
)
BY_REGPROCEDURE: Mapping[str, Signature] = MappingProxyType(
    {sig.regprocedure: sig for sig in FUNCTIONS}
)
_BY_NAME: dict[str, tuple[Signature, ...]] = {}
for _sig in FUNCTIONS:
    _BY_NAME[_sig.name] = (*_BY_NAME.get(_sig.name, ()), _sig)


def overloads(name: str) -> tuple[Signature, ...]:
    """Every overload of `name` (bare or `pgsodium.`-qualified), in catalogue order."""
    return _BY_NAME.get(name.removeprefix(f"{SCHEMA}."), ())
