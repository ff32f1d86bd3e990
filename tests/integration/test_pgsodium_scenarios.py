"""The scenarios of pgsodium 3.1.11's own test suite, asked through the proxy.

One family per pgsodium test file (random, secretbox, stream, aead, auth, hash,
box, sign, pwhash, kdf, kx, sha2, hmac, derive, signcrypt, helpers, ipcrypt,
keys): the same checks — error SQLSTATEs and texts, round trips, known answers,
role denials — written here as pytest cases. Unqualified names, as pgsodium's
tests use them, resolve through `search_path`. Each case runs in the simple and
the extended protocol.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from .conftest import RunningProxy, make_database

BOB = b"bob is your uncle"
NIL = "00000000-0000-0000-0000-000000000000"

# (family, statement, SQLSTATE, message): pgsodium's throws_ok cases.
ERRORS = [
    ("random", "select randombytes_uniform(NULL)", "22000",
     "pgsodium_randombytes_uniform: upper bound cannot be NULL"),
    ("random", "select randombytes_buf(NULL)", "22000",
     "pgsodium_randombytes_buf: buffer size cannot be NULL"),
    ("random", "select randombytes_buf_deterministic(NULL, 'x')", "22000",
     "pgsodium_randombytes_buf_deterministic: buffer size cannot be NULL"),
    ("random", "select randombytes_buf_deterministic(10, NULL)", "22000",
     "pgsodium_randombytes_buf_deterministic: seed cannot be NULL"),
    ("secretbox", "select crypto_secretbox('m', 'short nonce', "
     "crypto_secretbox_keygen())", "22000", "pgsodium_crypto_secretbox: invalid nonce"),
    ("secretbox", "select crypto_secretbox('m', crypto_secretbox_noncegen(), "
     "'short key'::bytea)", "22000", "pgsodium_crypto_secretbox: invalid key"),
    ("secretbox", "select crypto_secretbox(NULL, 'n', 'k'::bytea)", "22000",
     "pgsodium_crypto_secretbox: message cannot be NULL"),
    ("secretbox", "select crypto_secretbox('m', NULL, 'k'::bytea)", "22000",
     "pgsodium_crypto_secretbox: nonce cannot be NULL"),
    ("secretbox", "select crypto_secretbox('m', 'n', NULL::bytea)", "22000",
     "pgsodium_crypto_secretbox: key cannot be NULL"),
    ("secretbox", "select crypto_secretbox('m', 'n', NULL::bigint)", "22000",
     "pgsodium_crypto_secretbox_by_id: key id cannot be NULL"),
    ("secretbox", "select crypto_secretbox('m', 'n', 1, NULL)", "22000",
     "pgsodium_crypto_secretbox_by_id: key context cannot be NULL"),
    ("secretbox", "select crypto_secretbox_open('x', crypto_secretbox_noncegen(), "
     "crypto_secretbox_keygen())", "22000",
     "pgsodium_crypto_secretbox_open: invalid message"),
    ("secretbox", "select crypto_secretbox_open('m', 'n', NULL::bigint)", "22000",
     "pgsodium_crypto_secretbox_open_by_id: key id cannot be NULL"),
    ("stream", "select crypto_stream_xchacha20_xor('m', 'short nonce', "
     "crypto_stream_xchacha20_keygen())", "22000",
     "pgsodium_crypto_stream_xchacha20_xor: invalid nonce"),
    ("stream", "select crypto_stream_xchacha20_xor('m', "
     "crypto_stream_xchacha20_noncegen(), 'short key'::bytea)", "22000",
     "pgsodium_crypto_stream_xchacha20_xor: invalid key"),
    ("stream", "select crypto_stream_xchacha20_xor_ic('m', 'short nonce', 42, "
     "crypto_stream_xchacha20_keygen())", "22000",
     "pgsodium_crypto_stream_xchacha20_xor_ic: invalid nonce"),
    ("stream", "select crypto_stream_xchacha20_xor('m', 'short nonce', 42)", "22000",
     "pgsodium_crypto_stream_xchacha20_xor_by_id: invalid nonce"),
    ("stream", "select crypto_stream_xchacha20_xor_ic('m', 'short nonce', 42, 42)",
     "22000", "pgsodium_crypto_stream_xchacha20_xor_ic_by_id: invalid nonce"),
    ("aead", "select crypto_aead_ietf_encrypt('m', 'a', 'short nonce', "
     "crypto_aead_ietf_keygen())", "22000",
     "pgsodium_crypto_aead_ietf_encrypt: invalid nonce"),
    ("aead", "select crypto_aead_ietf_encrypt('m', 'a', crypto_aead_ietf_noncegen(), "
     "'short key'::bytea)", "22000", "pgsodium_crypto_aead_ietf_encrypt: invalid key"),
    ("aead", "select crypto_aead_ietf_encrypt(NULL, 'a', crypto_aead_ietf_noncegen(), "
     "crypto_aead_ietf_keygen())", "22000",
     "pgsodium_crypto_aead_ietf_encrypt: message cannot be NULL"),
    ("aead", "select crypto_aead_ietf_decrypt('x', 'a', crypto_aead_ietf_noncegen(), "
     "crypto_aead_ietf_keygen())", "22000",
     "pgsodium_crypto_aead_ietf_decrypt: invalid message"),
    ("aead", "select crypto_aead_ietf_decrypt(NULL::bytea, 'a', "
     "crypto_aead_ietf_noncegen(), crypto_aead_ietf_keygen())", "22000",
     "pgsodium_crypto_aead_ietf_decrypt: ciphertext cannot be NULL"),
    ("aead", f"select crypto_aead_det_encrypt('m', 'a', '{NIL}'::uuid)", "P0002",
     "query returned no rows"),
    ("aead", f"select crypto_aead_det_decrypt('m', 'a', '{NIL}'::uuid)", "P0002",
     "query returned no rows"),
    ("aead", "select crypto_aead_ietf_encrypt('m', 'a', crypto_aead_ietf_noncegen(), "
     f"'{NIL}'::uuid)", "P0002", "query returned no rows"),
    ("auth", "select crypto_auth('m', 'short key'::bytea)", "22000",
     "pgsodium_crypto_auth: invalid key"),
    ("auth", "select crypto_auth(NULL, 'k'::bytea)", "22000",
     "pgsodium_crypto_auth: message cannot be NULL"),
    ("auth", "select crypto_auth('m', NULL::bytea)", "22000",
     "pgsodium_crypto_auth: key cannot be NULL"),
    ("auth", "select crypto_auth_verify('bad mac', 'm', crypto_auth_keygen())",
     "22000", "pgsodium_crypto_auth_verify: invalid mac"),
    ("auth", "select crypto_auth_verify(NULL, 'm', 'k'::bytea)", "22000",
     "pgsodium_crypto_auth_verify: signature cannot be NULL"),
    ("auth", "select crypto_auth(NULL, 1::bigint)", "22000",
     "pgsodium_crypto_auth_by_id: message cannot be NULL"),
    ("auth", "select crypto_auth('m', NULL::bigint)", "22000",
     "pgsodium_crypto_auth_by_id: key id cannot be NULL"),
    ("auth", "select crypto_auth('m', 1, NULL::bytea)", "22000",
     "pgsodium_crypto_auth_by_id: key context cannot be NULL"),
    ("hash", "select crypto_shorthash('m', 's'::bytea)", "22000",
     "pgsodium_crypto_shorthash: invalid key"),
    ("box", "select crypto_box_seed_new_keypair(NULL)", "22000",
     "pgsodium_crypto_box_seed_keypair: seed cannot be NULL"),
    ("box", "select crypto_box(NULL, 'n', 'p', 's')", "22000",
     "pgsodium_crypto_box: message cannot be NULL"),
    ("box", "select crypto_box('m', 'n', NULL, 's')", "22000",
     "pgsodium_crypto_box: publickey cannot be NULL"),
    ("box", "select crypto_box_open('m', 'n', 'p', NULL)", "22000",
     "pgsodium_crypto_box_open: secretkey cannot be NULL"),
    ("box", "select crypto_box_open('m', 'short nonce', crypto_box_new_seed(), "
     "crypto_box_new_seed())", "22000", "pgsodium_crypto_box_open: invalid nonce"),
    ("box", "select crypto_box_seal_open('m', 'short key', crypto_box_new_seed())",
     "22000", "pgsodium_crypto_box_seal_open: invalid public key"),
    ("sign", "select crypto_sign_seed_new_keypair('bogus')", "22000",
     "pgsodium_crypto_sign_seed_keypair: invalid seed"),
    ("sign", "select crypto_sign('m', 's')", "22000",
     "pgsodium_crypto_sign: invalid secret key"),
    ("sign", "select crypto_sign(NULL, 's')", "22000",
     "pgsodium_crypto_sign: message cannot be NULL"),
    ("sign", "select crypto_sign_open('x', 'short key')", "22000",
     "pgsodium_crypto_sign_open: invalid public key"),
    ("sign", "select crypto_sign_open(NULL, 'k')", "22000",
     "pgsodium_crypto_sign_open: message cannot be NULL"),
    ("sign", "select crypto_sign_detached('foo', 'bar')", "22000",
     "pgsodium_crypto_sign_detached: invalid secret key"),
    ("sign", "select crypto_sign_verify_detached('foo', 'bar', 'bork')", "22000",
     "pgsodium_crypto_sign_verify_detached: invalid public key"),
    ("pwhash", "select crypto_pwhash(NULL, 's')", "22000",
     "pgsodium_crypto_pwhash: data cannot be NULL"),
    ("pwhash", "select crypto_pwhash('p', NULL)", "22000",
     "pgsodium_crypto_pwhash: salt cannot be NULL"),
    ("pwhash", "select crypto_pwhash_str(NULL)", "22000",
     "pgsodium_crypto_pwhash_str: password cannot be NULL"),
    ("pwhash", "select crypto_pwhash_str_verify(NULL, 'p')", "22000",
     "pgsodium_crypto_pwhash_str_verify: hashed password cannot be NULL"),
    ("kdf", "select crypto_kdf_derive_from_key(NULL, 2, 'context8', 'k'::bytea)",
     "22000", "pgsodium_crypto_kdf_derive_from_key: subkey size cannot be NULL"),
    ("kdf", "select crypto_kdf_derive_from_key(32, NULL, 'context8', 'k'::bytea)",
     "22000", "pgsodium_crypto_kdf_derive_from_key: subkey id cannot be NULL"),
    ("kdf", "select crypto_kdf_derive_from_key(32, 1, NULL, 'k'::bytea)", "22000",
     "pgsodium_crypto_kdf_derive_from_key: subkey context cannot be NULL"),
    ("kdf", "select crypto_kdf_derive_from_key(32, 1, 'context8', NULL::bytea)",
     "22000", "pgsodium_crypto_kdf_derive_from_key: primary key cannot be NULL"),
    ("kx", "select crypto_kx_client_session_keys(NULL, 's', 'p')", "22000",
     "pgsodium_crypto_kx_client_session_keys: client publickey cannot be NULL"),
    ("kx", "select crypto_kx_server_session_keys('p', 's', NULL)", "22000",
     "pgsodium_crypto_kx_server_session_keys: client publickey cannot be NULL"),
    ("sha2", "select crypto_hash_sha256(NULL)", "22000",
     "pgsodium_crypto_hash_sha256: message cannot be NULL"),
    ("sha2", "select crypto_hash_sha512(NULL)", "22000",
     "pgsodium_crypto_hash_sha512: message cannot be NULL"),
    ("hmac", "select crypto_auth_hmacsha512(NULL::bytea, 'k')", "22000",
     "pgsodium_crypto_auth_hmacsha512: message cannot be NULL"),
    ("hmac", "select crypto_auth_hmacsha256('m', NULL::bytea)", "22000",
     "pgsodium_crypto_auth_hmacsha256: key cannot be NULL"),
    ("hmac", "select crypto_auth_hmacsha512_verify(NULL::bytea, 'm', 'k')", "22000",
     "pgsodium_crypto_auth_hmacsha512_verify: hash cannot be NULL"),
    ("hmac", "select crypto_auth_hmacsha256('m', NULL::bigint)", "22000",
     "pgsodium_crypto_auth_hmacsha256_by_id: key id cannot be NULL"),
    ("hmac", "select crypto_auth_hmacsha512_verify('h', 'm', NULL::bigint)", "22000",
     "pgsodium_crypto_auth_hmacsha512_verify_by_id: key id cannot be NULL"),
    ("derive", "select derive_key(NULL)", "22000",
     "pgsodium_derive: key id cannot be NULL"),
    ("derive", "select derive_key(1, NULL)", "22000",
     "pgsodium_derive: key size cannot be NULL"),
    ("derive", "select derive_key(1, 64, NULL)", "22000",
     "pgsodium_derive: key context cannot be NULL"),
    ("helpers", "select sodium_bin2base64(NULL)", "22000",
     "pgsodium_sodium_bin2base64: bin cannot be NULL"),
    ("helpers", "select sodium_base642bin(NULL)", "22000",
     "pgsodium_sodium_base642bin: base64 cannot be NULL"),
    ("ipcrypt", "select crypto_ipcrypt_ip2bin('not-an-ip')", "22000",
     "pgsodium_crypto_ipcrypt_ip2bin: invalid IP address"),
    ("ipcrypt", "select crypto_ipcrypt_bin2ip('short'::bytea)", "22000",
     "pgsodium_crypto_ipcrypt_bin2ip: input must be 16 bytes"),
    ("ipcrypt", "select crypto_ipcrypt_encrypt('\\x" + "00" * 16 + "'::bytea, "
     "'short'::bytea)", "22000", "pgsodium_crypto_ipcrypt_encrypt: invalid key"),
]  # fmt: skip

# (family, statement, expected first column): pgsodium's is()/ok() cases.
VALUES = [
    ("hash", "select crypto_generichash('bob is your uncle')", bytes.fromhex(
        "6c80c5f772572423c3910a9561710313e4b6e74abc0d65f577a8ac1583673657")),
    ("sha2", "select crypto_hash_sha256('bob is your uncle')", bytes.fromhex(
        "5eff82dc2ca0cfbc0d0eaa95b13b7fbec11540e217b0fe2a6f3c7d12f657630d")),
    ("sha2", "select crypto_hash_sha512('bob is your uncle')", bytes.fromhex(
        "d8adbd01462f1aad1b91a4557d5c865b63dab1b9181cb02f2123f50d210b74a5"
        "3754a18b09d9f75e38101ce6de04879b35eca91992fade0bb6842f4ea556e952")),
    ("pwhash", "select crypto_pwhash('Correct Horse Battery Staple', "
     "'\\xccfe2b51d426f88f6f8f18c24635616b')", bytes.fromhex(
        "77d029a9b3035c88f186ed0f69f58386ad0bd5252851b4e89f0d7057b5081342")),
    ("pwhash", "select crypto_pwhash_str_verify(crypto_pwhash_str("
     "'Correct Horse Battery Staple'), 'Correct Horse Battery Staple')", True),
    ("random", "select length(randombytes_buf_deterministic(10, "
     "randombytes_new_seed()))", 10),
    ("kdf", "select length(crypto_kdf_derive_from_key(64, 1, '__auth__', "
     "crypto_kdf_keygen()))", 64),
    ("derive", "select length(derive_key(2, 64))", 64),
    ("helpers", "select sodium_base642bin(sodium_bin2base64('bob is your uncle'))",
     BOB),
    ("ipcrypt", "select crypto_ipcrypt_bin2ip(crypto_ipcrypt_ip2bin('2001:db8::1'))",
     "2001:db8::1"),
    ("ipcrypt", "select octet_length(crypto_ipcrypt_ip2bin('192.0.2.1'))", 16),
    # ipcrypt-std known answers, as pgsodium's test checks them.
    ("ipcrypt", "select crypto_ipcrypt_encrypt('192.0.2.1'::inet, "
     "'\\x2b7e151628aed2a6abf7158809cf4f3c'::bytea)",
     ipaddress.ip_address("1dbd:c1b9:fff1:7586:7d0b:67b4:e76e:4777")),
    ("ipcrypt", "select crypto_ipcrypt_encrypt('0.0.0.0'::inet, "
     "'\\x0123456789abcdeffedcba9876543210'::bytea)",
     ipaddress.ip_address("bde9:6789:d353:824c:d7c6:f58a:6bd2:26eb")),
    ("ipcrypt", "select crypto_ipcrypt_pfx_encrypt('192.0.2.1'::inet, '\\x0123456789"
     "abcdeffedcba98765432101032547698badcfeefcdab8967452301'::bytea)",
     ipaddress.ip_address("100.115.72.131")),
    ("ipcrypt", "select crypto_ipcrypt_pfx_encrypt('10.0.0.47'::inet, '\\x2b7e151628"
     "aed2a6abf7158809cf4f3ca9f5ba40db214c3798f2e1c23456789a'::bytea)",
     ipaddress.ip_address("19.214.210.244")),
]  # fmt: skip

PROTOCOLS = ("simple", "extended")


@pytest.fixture(scope="module")
def db(proxy: RunningProxy) -> str:
    return make_database(proxy, "scenarios")


@pytest.fixture(scope="module", params=PROTOCOLS)
def conn(
    request: pytest.FixtureRequest, proxy: RunningProxy, db: str
) -> Iterator[psycopg.Connection[Any]]:
    factory = psycopg.ClientCursor if request.param == "simple" else psycopg.Cursor
    with psycopg.connect(
        proxy.dsn(dbname=db), autocommit=True, cursor_factory=factory
    ) as connection:
        connection.execute("set search_path to pgsodium, public")
        yield connection


def value(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return bytes(row[0]) if isinstance(row[0], memoryview) else row[0]


def row(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> list[Any]:
    found = conn.execute(sql, params).fetchone()
    assert found is not None
    return [bytes(v) if isinstance(v, memoryview) else v for v in found]


@pytest.mark.parametrize(
    "family, sql, sqlstate, message", ERRORS, ids=[f"{e[0]}:{e[1]}" for e in ERRORS]
)
def test_error(
    conn: psycopg.Connection[Any], family: str, sql: str, sqlstate: str, message: str
) -> None:
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(sql)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        sqlstate,
        message,
    )


@pytest.mark.parametrize(
    "family, sql, expected", VALUES, ids=[f"{v[0]}:{v[1]}" for v in VALUES]
)
def test_value(
    conn: psycopg.Connection[Any], family: str, sql: str, expected: Any
) -> None:
    assert value(conn, sql) == expected


# -- round trips, one per family ----------------------------------------------------


def test_random(conn: psycopg.Connection[Any]) -> None:
    assert 0 <= value(conn, "select randombytes_uniform(10)") < 10
    assert len(value(conn, "select randombytes_buf(10)")) == 10
    assert isinstance(value(conn, "select randombytes_random()"), int)


def test_secretbox(conn: psycopg.Connection[Any]) -> None:
    key, nonce = row(
        conn, "select crypto_secretbox_keygen(), crypto_secretbox_noncegen()"
    )
    box = value(conn, "select crypto_secretbox(%s, %s, %s)", [BOB, nonce, key])
    assert (
        value(conn, "select crypto_secretbox_open(%s, %s, %s)", [box, nonce, key])
        == BOB
    )
    conn.execute("set role pgsodium_keyiduser")
    try:
        by_id = value(conn, "select crypto_secretbox(%s, %s, 1)", [BOB, nonce])
        assert (
            value(conn, "select crypto_secretbox_open(%s, %s, 1)", [by_id, nonce])
            == BOB
        )
        for fn in ("crypto_secretbox", "crypto_secretbox_open"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
                conn.execute(f"select {fn}('m', 'n', 'whatever'::bytea)")
            assert caught.value.diag.message_primary == (
                f"permission denied for function {fn}"
            )
    finally:
        conn.execute("reset role")
    key_uuid = value(conn, "select id from create_key('secretbox')")
    conn.execute("set role pgsodium_keyiduser")
    try:
        box = value(
            conn, "select crypto_secretbox(%s, %s, %s::uuid)", [BOB, nonce, key_uuid]
        )
        assert (
            value(
                conn,
                "select crypto_secretbox_open(%s, %s, %s::uuid)",
                [box, nonce, key_uuid],
            )
            == BOB
        )
    finally:
        conn.execute("reset role")


def test_stream(conn: psycopg.Connection[Any]) -> None:
    nonce, key = row(
        conn,
        "select crypto_stream_xchacha20_noncegen(), crypto_stream_xchacha20_keygen()",
    )
    for sql, args in (
        ("select crypto_stream_xchacha20_xor(crypto_stream_xchacha20_xor(%s, %s, %s),"
         " %s, %s)", [BOB, nonce, key, nonce, key]),
        ("select crypto_stream_xchacha20_xor_ic(crypto_stream_xchacha20_xor_ic(%s, %s,"
         " 42, %s), %s, 42, %s)", [BOB, nonce, key, nonce, key]),
        ("select crypto_stream_xchacha20_xor(crypto_stream_xchacha20_xor(%s, %s, 42),"
         " %s, 42)", [BOB, nonce, nonce]),
        ("select crypto_stream_xchacha20_xor_ic(crypto_stream_xchacha20_xor_ic(%s, %s,"
         " 42, 42), %s, 42, 42)", [BOB, nonce, nonce]),
    ):  # fmt: skip
        assert value(conn, sql, args) == BOB


def test_aead(conn: psycopg.Connection[Any]) -> None:
    key, nonce = row(
        conn, "select crypto_aead_ietf_keygen(), crypto_aead_ietf_noncegen()"
    )
    ad = b"and also your friend"
    ct = value(
        conn, "select crypto_aead_ietf_encrypt(%s, %s, %s, %s)", [BOB, ad, nonce, key]
    )
    assert (
        value(
            conn,
            "select crypto_aead_ietf_decrypt(%s, %s, %s, %s)",
            [ct, ad, nonce, key],
        )
        == BOB
    )
    det_key = value(conn, "select crypto_aead_det_keygen()")
    for additional in (ad, None):
        det = value(
            conn,
            "select crypto_aead_det_encrypt(%s, %s::bytea, %s)",
            [BOB, additional, det_key],
        )
        assert (
            value(
                conn,
                "select crypto_aead_det_decrypt(%s, %s::bytea, %s)",
                [det, additional, det_key],
            )
            == BOB
        )
    tag = uuid.uuid4().hex
    det_uuid = value(conn, "select id from create_key('aead-det', %s)", [f"det {tag}"])
    ietf_uuid = value(
        conn, "select id from create_key('aead-ietf', %s)", [f"ietf {tag}"]
    )
    conn.execute("set role pgsodium_keyiduser")
    try:
        ct = value(
            conn, "select crypto_aead_ietf_encrypt(%s, %s, %s, 1)", [BOB, ad, nonce]
        )
        assert (
            value(
                conn, "select crypto_aead_ietf_decrypt(%s, %s, %s, 1)", [ct, ad, nonce]
            )
            == BOB
        )
        det = value(conn, "select crypto_aead_det_encrypt(%s, %s, 32)", [BOB, ad])
        assert (
            value(conn, "select crypto_aead_det_decrypt(%s, %s, 32)", [det, ad]) == BOB
        )
        det = value(
            conn,
            "select crypto_aead_det_encrypt(%s, %s, %s::uuid)",
            [BOB, ad, det_uuid],
        )
        assert (
            value(
                conn,
                "select crypto_aead_det_decrypt(%s, %s, %s::uuid)",
                [det, ad, det_uuid],
            )
            == BOB
        )
        ct = value(
            conn,
            "select crypto_aead_ietf_encrypt(%s, %s, %s, %s::uuid)",
            [BOB, ad, nonce, ietf_uuid],
        )
        assert (
            value(
                conn,
                "select crypto_aead_ietf_decrypt(%s, %s, %s, %s::uuid)",
                [ct, ad, nonce, ietf_uuid],
            )
            == BOB
        )
        for fn in ("crypto_aead_ietf_encrypt", "crypto_aead_ietf_decrypt"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"select {fn}('m', 'a', 'n', 'whatever'::bytea)")
    finally:
        conn.execute("reset role")


def test_auth(conn: psycopg.Connection[Any]) -> None:
    key = value(conn, "select crypto_auth_keygen()")
    mac = value(conn, "select crypto_auth(%s, %s)", [BOB, key])
    assert value(conn, "select crypto_auth_verify(%s, %s, %s)", [mac, BOB, key]) is True
    mac = value(conn, "select crypto_auth(%s, 1)", [BOB])
    assert value(conn, "select crypto_auth_verify(%s, %s, 1)", [mac, BOB]) is True
    key_uuid = value(conn, "select id from create_key('auth')")
    mac = value(conn, "select crypto_auth('bobo is your monkey', %s::uuid)", [key_uuid])
    assert (
        value(
            conn,
            "select crypto_auth_verify(%s, 'bobo is your monkey', %s::uuid)",
            [mac, key_uuid],
        )
        is True
    )


def test_hash(conn: psycopg.Connection[Any]) -> None:
    assert (
        len(value(conn, "select crypto_generichash('m', crypto_generichash_keygen())"))
        == 32
    )
    assert (
        len(value(conn, "select crypto_shorthash('m', crypto_shorthash_keygen())")) == 8
    )
    assert len(value(conn, "select crypto_shorthash('m', 42)")) == 8
    assert len(value(conn, "select crypto_shorthash('m', 42, '12345678')")) == 8
    for key_type, fn in (
        ("shorthash", "crypto_shorthash"),
        ("generichash", "crypto_generichash"),
    ):
        key_uuid = value(conn, "select id from create_key(%s)", [key_type])
        assert value(conn, f"select {fn}('m', %s::uuid)", [key_uuid]) is not None


def test_box(conn: psycopg.Connection[Any]) -> None:
    nonce, seed = row(conn, "select crypto_box_noncegen(), crypto_box_new_seed()")
    bob = row(conn, "select public, secret from crypto_box_new_keypair()")
    alice = row(
        conn, "select public, secret from crypto_box_seed_new_keypair(%s)", [seed]
    )
    box = value(
        conn, "select crypto_box(%s, %s, %s, %s)", [BOB, nonce, bob[0], alice[1]]
    )
    assert (
        value(
            conn,
            "select crypto_box_open(%s, %s, %s, %s)",
            [box, nonce, alice[0], bob[1]],
        )
        == BOB
    )
    sealed = value(conn, "select crypto_box_seal(%s, %s)", [BOB, bob[0]])
    assert (
        value(conn, "select crypto_box_seal_open(%s, %s, %s)", [sealed, bob[0], bob[1]])
        == BOB
    )
    with pytest.raises(psycopg.errors.DataException) as caught:
        conn.execute(
            "select crypto_box_open('foo', %s, %s, %s)", [nonce, alice[0], bob[1]]
        )
    assert (
        caught.value.diag.message_primary == "pgsodium_crypto_box_open: invalid message"
    )


def test_sign(conn: psycopg.Connection[Any]) -> None:
    assert value(conn, "select crypto_sign_seed_new_keypair(crypto_sign_new_seed())")
    public, secret = row(conn, "select public, secret from crypto_sign_new_keypair()")
    signed = value(conn, "select crypto_sign(%s, %s)", [BOB, secret])
    assert value(conn, "select crypto_sign_open(%s, %s)", [signed, public]) == BOB
    detached = value(
        conn, "select crypto_sign_detached('sealed message', %s)", [secret]
    )
    assert (
        value(
            conn,
            "select crypto_sign_verify_detached(%s, 'sealed message', %s)",
            [detached, public],
        )
        is True
    )
    assert (
        value(
            conn,
            "select crypto_sign_verify_detached(%s, 'xyzzy', %s)",
            [detached, public],
        )
        is False
    )
    # Multi-part: pgsodium's test folds the parts with crypto_sign_update_agg over
    # rows; the same state part by part.
    parts = [b"Hello Alice", b"Hello Bob", b"Hello Carol"]
    state = value(conn, "select crypto_sign_init()")
    for part in parts:
        state = value(conn, "select crypto_sign_update(%s, %s)", [state, part])
    aggregated = value(
        conn,
        "select crypto_sign_update_agg(m order by n) "
        "from (values (1, %s::bytea), (2, %s), (3, %s)) v(n, m)",
        parts,
    )
    assert aggregated == state
    signature = value(
        conn,
        "select crypto_sign_final_create(crypto_sign_update_agg(m order by n), %s) "
        "from (values (1, %s::bytea), (2, %s), (3, %s)) v(n, m)",
        [secret, *parts],
    )
    assert (
        value(
            conn,
            "select crypto_sign_final_verify(%s, %s, %s)",
            [state, signature, public],
        )
        is True
    )
    tampered = value(conn, "select crypto_sign_init()")
    for part in [b"Hello Alice", b"Hello Bob", b"Hello CaRol"]:
        tampered = value(conn, "select crypto_sign_update(%s, %s)", [tampered, part])
    assert (
        value(
            conn,
            "select crypto_sign_final_verify(%s, %s, %s)",
            [tampered, signature, public],
        )
        is False
    )


def test_kdf(conn: psycopg.Connection[Any]) -> None:
    key = value(conn, "select crypto_kdf_keygen()")
    first, second = row(
        conn,
        "select crypto_kdf_derive_from_key(32, 2, '__auth__', %s), "
        "crypto_kdf_derive_from_key(32, 2, '__auth__', %s)",
        [key, key],
    )
    assert first == second and len(first) == 32
    key_uuid = value(conn, "select id from create_key('kdf')")
    assert (
        len(
            value(
                conn,
                "select crypto_kdf_derive_from_key(32, 42, 'pgsodium', %s::uuid)",
                [key_uuid],
            )
        )
        == 32
    )


def test_kx(conn: psycopg.Connection[Any]) -> None:
    seed = value(conn, "select crypto_kx_new_seed()")
    bob = row(conn, "select public, secret from crypto_kx_seed_new_keypair(%s)", [seed])
    alice = row(conn, "select public, secret from crypto_kx_new_keypair()")
    bob_tx, bob_rx = row(
        conn,
        "select tx, rx from crypto_kx_client_session_keys(%s, %s, %s)",
        [*bob, alice[0]],
    )
    alice_tx, alice_rx = row(
        conn,
        "select tx, rx from crypto_kx_server_session_keys(%s, %s, %s)",
        [*alice, bob[0]],
    )
    nonce = value(conn, "select crypto_secretbox_noncegen()")
    to_alice = value(
        conn, "select crypto_secretbox('hello alice', %s, %s)", [nonce, bob_tx]
    )
    assert (
        value(
            conn,
            "select crypto_secretbox_open(%s, %s, %s)",
            [to_alice, nonce, alice_rx],
        )
        == b"hello alice"
    )
    to_bob = value(
        conn, "select crypto_secretbox('hello bob', %s, %s)", [nonce, alice_tx]
    )
    assert (
        value(conn, "select crypto_secretbox_open(%s, %s, %s)", [to_bob, nonce, bob_rx])
        == b"hello bob"
    )


def test_hmac(conn: psycopg.Connection[Any]) -> None:
    for bits in ("256", "512"):
        fn = f"crypto_auth_hmacsha{bits}"
        key = value(conn, f"select {fn}_keygen()")
        mac = value(conn, f"select {fn}('food', %s::bytea)", [key])
        assert (
            value(conn, f"select {fn}_verify(%s, 'food', %s::bytea)", [mac, key])
            is True
        )
        assert (
            value(conn, f"select {fn}_verify(%s, 'fo0d', %s::bytea)", [mac, key])
            is False
        )
        mac = value(conn, f"select {fn}('food', 42)")
        assert value(conn, f"select {fn}_verify(%s, 'food', 42)", [mac]) is True
        assert value(conn, f"select {fn}_verify(%s, 'fo0d', 42)", [mac]) is False
        key_uuid = value(conn, "select id from create_key(%s)", [f"hmacsha{bits}"])
        mac = value(conn, f"select {fn}('food', %s::uuid)", [key_uuid])
        assert (
            value(conn, f"select {fn}_verify(%s, 'food', %s::uuid)", [mac, key_uuid])
            is True
        )


def test_derive(conn: psycopg.Connection[Any]) -> None:
    one, again, two, other_context = row(
        conn,
        "select derive_key(1), derive_key(1), derive_key(2), "
        "derive_key(2, 32, 'foozball')",
    )
    assert one == again and one != two and two != other_context


def test_signcrypt(conn: psycopg.Connection[Any]) -> None:
    nonce = value(conn, "select crypto_secretbox_noncegen()")
    bob = row(conn, "select public, secret from crypto_signcrypt_new_keypair()")
    alice = row(conn, "select public, secret from crypto_signcrypt_new_keypair()")
    state, shared = row(
        conn,
        "select state, shared_key from crypto_signcrypt_sign_before('bob', 'alice', "
        "%s, %s, 'additional data')",
        [bob[1], alice[0]],
    )
    box = value(
        conn, "select crypto_secretbox(%s, %s, %s::bytea)", [BOB, nonce, shared]
    )
    signature = value(
        conn, "select crypto_signcrypt_sign_after(%s, %s, %s)", [state, bob[1], box]
    )
    vstate, vkey = row(
        conn,
        "select state, shared_key from crypto_signcrypt_verify_before(%s, 'bob', "
        "'alice', 'additional data', %s, %s)",
        [signature, bob[0], alice[1]],
    )
    assert vkey == shared
    assert (
        value(
            conn, "select crypto_secretbox_open(%s, %s, %s::bytea)", [box, nonce, vkey]
        )
        == BOB
    )
    assert (
        value(
            conn,
            "select crypto_signcrypt_verify_after(%s, %s, %s, %s)",
            [vstate, signature, bob[0], box],
        )
        is True
    )
    assert (
        value(
            conn,
            "select crypto_signcrypt_verify_public(%s, 'bob', 'alice', "
            "'additional data', %s, %s)",
            [signature, bob[0], box],
        )
        is True
    )


def test_ipcrypt(conn: psycopg.Connection[Any]) -> None:
    key = value(conn, "select crypto_ipcrypt_keygen()")
    assert len(key) == 16
    ip = value(conn, "select crypto_ipcrypt_ip2bin('203.0.113.5')")
    ct, again = row(
        conn,
        "select crypto_ipcrypt_encrypt(%s::bytea, %s::bytea), "
        "crypto_ipcrypt_encrypt(%s::bytea, %s::bytea)",
        [ip, key, ip, key],
    )
    assert ct == again and len(ct) == 16
    assert (
        value(conn, "select crypto_ipcrypt_decrypt(%s::bytea, %s::bytea)", [ct, key])
        == ip
    )
    assert value(
        conn,
        "select crypto_ipcrypt_decrypt("
        "crypto_ipcrypt_encrypt('203.0.113.5'::inet, %s), %s)",
        [key, key],
    ) == ipaddress.ip_address("203.0.113.5")
    pfx = value(conn, "select crypto_ipcrypt_pfx_keygen()")
    assert len(pfx) == 32
    for kind, tweak_len in (("nd", 8), ("ndx", 16)):
        k = value(conn, f"select crypto_ipcrypt_{kind}_keygen()")
        tweak = value(conn, f"select crypto_ipcrypt_{kind}_tweakgen()")
        assert len(tweak) == tweak_len
        ct = value(
            conn, f"select crypto_ipcrypt_{kind}_encrypt(%s, %s, %s)", [ip, tweak, k]
        )
        assert (
            value(conn, f"select crypto_ipcrypt_{kind}_decrypt(%s, %s)", [ct, k]) == ip
        )
    for kind in ("det", "pfx", "nd", "ndx"):
        key_uuid = value(conn, "select id from create_key(%s)", [f"ipcrypt-{kind}"])
        prefix = "crypto_ipcrypt" if kind == "det" else f"crypto_ipcrypt_{kind}"
        tweak = "" if kind in ("det", "pfx") else f"crypto_ipcrypt_{kind}_tweakgen(), "
        assert (
            value(
                conn,
                f"select {prefix}_decrypt("
                f"{prefix}_encrypt(%s::bytea, {tweak}%s::uuid), "
                "%s::uuid)",
                [ip, key_uuid, key_uuid],
            )
            == ip
        )


def test_keys(conn: psycopg.Connection[Any], proxy: RunningProxy, db: str) -> None:
    anonymous = value(conn, "select id from create_key()")
    tag = uuid.uuid4().hex
    foo, stripe_name, stripe2_name = f"foo {tag}", f"stripe {tag}", f"stripe2 {tag}"
    named = value(conn, "select id from create_key('aead-det', %s)", [foo])
    external = value(conn, "select crypto_auth_hmacsha256_keygen()")
    stripe = value(
        conn,
        "select id from create_key('hmacsha256', %s, raw_key := %s)",
        [stripe_name, external],
    )
    stripe2 = value(
        conn,
        "select id from create_key('hmacsha256', %s, parent_key := %s, raw_key := %s)",
        [stripe2_name, anonymous, external],
    )
    shape = (
        "select key_id is not null, key_context is not null, raw_key is null, "
        "parent_key is null, raw_key_nonce is null, key_type::text, name "
        "from pgsodium.key where id = %s"
    )
    assert row(conn, shape, [anonymous]) == [
        True,
        True,
        True,
        True,
        True,
        "aead-det",
        None,
    ]
    assert row(conn, shape, [named])[:6] == [True, True, True, True, True, "aead-det"]
    assert row(conn, shape, [stripe]) == [
        False,
        False,
        False,
        False,
        False,
        "hmacsha256",
        stripe_name,
    ]
    assert (
        value(conn, "select parent_key from pgsodium.key where id = %s", [stripe2])
        == anonymous
    )
    # Both external keys hold the same raw key: same HMAC by uuid.
    assert (
        value(
            conn,
            "select crypto_auth_hmacsha256('m', %s::uuid) = "
            "crypto_auth_hmacsha256('m', %s::uuid)",
            [stripe, stripe2],
        )
        is True
    )
    assert value(conn, "select (get_key_by_name(%s)).id", [stripe_name]) == stripe
    assert (
        value(conn, "select count(*) from get_named_keys(%s)", [f"stripe%{tag}"]) == 2
    )
    assert value(conn, "select (get_key_by_id(%s)).name", [named]) == foo
