"""pgsodium calls over rows: computed by the proxy in the result stream.

Every case runs through both protocols and compares with the value folded from
literals for the same inputs (what pgsodium would return for each row).
"""

from __future__ import annotations

import psycopg
import pytest

from .conftest import RunningProxy, make_database


@pytest.fixture(scope="module")
def db(proxy: RunningProxy) -> str:
    name = make_database(proxy, "rows")
    with psycopg.connect(proxy.dsn(dbname=name), autocommit=True) as conn:
        key = conn.execute(
            "select id from pgsodium.create_key(name => 'rows')"
        ).fetchone()[0]
        other = conn.execute(
            "select id from pgsodium.create_key('hmacsha256', 'rows mac')"
        ).fetchone()[0]
        conn.execute(
            "create table accounts (id int primary key, secret bytea, key_id uuid, "
            "note text, kid bigint)"
        )
        for i, text in enumerate(["alice", "bob", "", None, "émilie 🔐"], start=1):
            if text is None:
                conn.execute(
                    "insert into accounts values (%s, null, %s, %s, 1)",
                    [i, key, f"n{i}"],
                )
                continue
            conn.execute(
                "insert into accounts values (%s, "
                "pgsodium.crypto_aead_det_encrypt(convert_to(%s, 'utf8'), "
                "convert_to(%s, 'utf8'), %s), %s, %s, 1)",
                [i, text, str(i), key, key, f"n{i}"],
            )
        conn.execute(
            "insert into accounts values (6, null, %s, 'no secret', 1)", [other]
        )
    return name


def test_decrypt_column_with_key_uuid_column(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        "select id, convert_from(pgsodium.crypto_aead_det_decrypt(secret, "
        "convert_to(id::text, 'utf8'), key_id), 'utf8') as plain "
        "from accounts where id in (1, 2, 5) order by id"
    ).fetchall()
    assert rows == [(1, "alice"), (2, "bob"), (5, "émilie 🔐")]
    # pgsodium's uuid function passes a NULL message to the C function, which refuses.
    with pytest.raises(psycopg.errors.DataException, match="message cannot be NULL"):
        conn.execute(
            "select pgsodium.crypto_aead_det_decrypt(secret, '', key_id) "
            "from accounts where id = 4"
        )
    assert [
        d.name
        for d in conn.execute(
            "select convert_from(pgsodium.crypto_aead_det_decrypt(secret, "
            "convert_to(id::text, 'utf8'), key_id), 'utf8') as plain from accounts "
            "limit 0"
        ).description
    ] == ["plain"]


def test_bind_parameters_among_the_arguments_over_rows(
    conn: psycopg.Connection,
) -> None:
    """A bind parameter next to row inputs stays in the proxy (extended protocol:
    the proxy decodes it although the upstream statement no longer names it)."""
    rows = conn.execute(
        "select id, convert_from(pgsodium.crypto_aead_det_decrypt(secret, "
        "convert_to(%s || id::text, 'utf8'), key_id), %s) as plain "
        "from accounts where id in (1, 2) order by id",
        ["", "utf8"],
    ).fetchall()
    assert rows == [(1, "alice"), (2, "bob")]
    rows = conn.execute(
        "select id, length(pgsodium.crypto_aead_det_encrypt(convert_to(note, "
        "'utf8'), %s::bytea, kid)) from accounts where id = %s",
        [b"ad", 1],
    ).fetchall()
    assert rows == [(1, 2 + 32)]


def test_empty_plaintext_cannot_be_decrypted_as_in_pgsodium(
    conn: psycopg.Connection,
) -> None:
    with pytest.raises(psycopg.errors.DataException) as caught:
        conn.execute(
            "select pgsodium.crypto_aead_det_decrypt(secret, convert_to(id::text, "
            "'utf8'), key_id) from accounts where id = 3"
        )
    assert "invalid message" in caught.value.diag.message_primary
    assert conn.execute("select 1").fetchone() == (1,)


def test_length_and_key_id_variant(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        "select id, length(pgsodium.crypto_aead_det_encrypt(convert_to(note, 'utf8'), "
        "'', kid)) from accounts order by id"
    ).fetchall()
    assert rows == [(i, 2 + 32) for i in range(1, 6)] + [(6, 9 + 32)]


def test_wrong_key_type_per_row_is_p0002(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.NoDataFound):
        conn.execute(
            "select pgsodium.crypto_aead_det_encrypt('x'::bytea, '', key_id) "
            "from accounts order by id"
        ).fetchall()


def test_row_results_equal_folded_results(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        "select note, kid, pgsodium.crypto_auth_hmacsha256(convert_to(note, 'utf8'), "
        "kid) "
        "from accounts order by id"
    ).fetchall()
    for note, kid, mac in rows:
        folded = conn.execute(
            "select pgsodium.crypto_auth_hmacsha256(convert_to(%s, 'utf8'), "
            "%s::bigint)",
            [note, kid],
        ).fetchone()[0]
        assert mac == folded


def test_function_over_a_text_column_is_42883_like_the_server(
    conn: psycopg.Connection,
) -> None:
    with pytest.raises(psycopg.errors.UndefinedFunction):
        conn.execute("select pgsodium.crypto_hash_sha256(note) from accounts")


def test_binary_results(proxy: RunningProxy, db: str) -> None:
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        rows = conn.execute(
            "select id, pgsodium.crypto_hash_sha256(secret) from accounts "
            "where secret is not null order by id",
            binary=True,
        ).fetchall()
        expected = conn.execute(
            "select id, sha256(secret) from accounts where secret is not null order "
            "by id"
        ).fetchall()
        assert rows == expected


def test_keyless_role_is_refused_before_any_row(proxy: RunningProxy, db: str) -> None:
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as admin:
        admin.execute("drop role if exists rows_reader")
        admin.execute("create role rows_reader login")
        admin.execute("grant select on accounts to rows_reader")
    with psycopg.connect(
        proxy.dsn(user="rows_reader", dbname=db), autocommit=True
    ) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "select pgsodium.crypto_aead_det_decrypt(secret, '', kid) from accounts"
            ).fetchall()
        assert conn.execute("select count(*) from accounts").fetchone() == (6,)
