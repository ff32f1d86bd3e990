"""Transparent Column Encryption through the proxy (pgsodium's tce.sql, re-expressed).

Labels are recorded upstream, writes are encrypted by the proxy in pgsodium's stored
format, reads of the decrypting views are decrypted by the proxy, and a write that
would put plaintext into a labelled column is refused with nothing stored.
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from typing import Any

import psycopg
import pytest

from .conftest import PROTOCOLS, RunningProxy, make_database, server_log


def pg_base64(data: bytes) -> str:
    """PostgreSQL's encode(data, 'base64'): a newline after every 76 characters."""
    text = base64.b64encode(data).decode()
    return "\n".join(text[i : i + 76] for i in range(0, len(text), 76))


@pytest.fixture(scope="module")
def db(proxy: RunningProxy) -> str:
    return make_database(proxy, "tce")


def new_key(conn: psycopg.Connection[Any], key_type: str = "aead-det") -> str:
    row = conn.execute(
        "select id::text from pgsodium.create_key(%s::pgsodium.key_type)", [key_type]
    ).fetchone()
    assert row is not None
    return str(row[0])


def fresh_table(conn: psycopg.Connection[Any], name: str, columns: str) -> None:
    conn.execute(f"drop table if exists {name} cascade")
    conn.execute(f"create table {name} ({columns})")


def test_key_id_label_insert_select_update(conn: psycopg.Connection[Any]) -> None:
    key = new_key(conn)
    fresh_table(conn, "t_keyid", "id int primary key, secret text, raw bytea")
    conn.execute(
        f"security label for pgsodium on column t_keyid.secret "
        f"is 'ENCRYPT WITH KEY ID {key}'"
    )
    conn.execute(
        f"security label for pgsodium on column t_keyid.raw "
        f"is 'ENCRYPT WITH KEY ID {key}'"
    )
    conn.execute(
        "insert into t_keyid (id, secret, raw) values (1, %s, %s), (2, null, null)",
        ["s3cret", b"\x00\x01binary"],
    )
    stored = conn.execute("select secret, raw from t_keyid where id = 1").fetchone()
    assert stored is not None
    expected = conn.execute(
        "select pgsodium.crypto_aead_det_encrypt(convert_to(%s, 'utf8'), "
        "convert_to('', 'utf8'), %s::uuid)",
        ["s3cret", key],
    ).fetchone()
    assert expected is not None
    assert stored[0] == pg_base64(bytes(expected[0]))
    assert len(bytes(stored[1])) == len(b"\x00\x01binary") + 32
    rows = conn.execute(
        "select id, decrypted_secret, decrypted_raw from decrypted_t_keyid order by id"
    ).fetchall()
    assert rows == [(1, "s3cret", b"\x00\x01binary"), (2, None, None)]
    conn.execute("update t_keyid set secret = %s where id = 2", ["later"])
    assert conn.execute(
        "select decrypted_secret from decrypted_t_keyid where id = 2"
    ).fetchone() == ("later",)
    star = conn.execute("select * from decrypted_t_keyid where id = 2").fetchone()
    assert star is not None and star[2] == "later"


def decrypt_expected(
    conn: psycopg.Connection[Any], stored: str, ad: str, key: str, nonce: bytes | None
) -> str:
    row = conn.execute(
        "select convert_from(pgsodium.crypto_aead_det_decrypt(decode(%s, 'base64'), "
        "convert_to(%s, 'utf8'), %s::uuid, %s::bytea), 'utf8')",
        [stored, ad, key, nonce],
    ).fetchone()
    assert row is not None
    return str(row[0])


def test_key_column_associated_and_nonce(conn: psycopg.Connection[Any]) -> None:
    key = new_key(conn)
    other = new_key(conn)
    fresh_table(
        conn,
        "t_keycol",
        "id bigint primary key, secret text, key_id uuid, ctx text, nonce bytea",
    )
    conn.execute(
        "security label for pgsodium on column t_keycol.secret is "
        "'ENCRYPT WITH KEY COLUMN key_id ASSOCIATED (id, ctx) NONCE nonce'"
    )
    nonce = bytes(range(16))
    conn.execute(
        "insert into t_keycol (id, secret, key_id, ctx, nonce) values "
        "(1, %s, %s, %s, %s), (2, %s, %s, 'b', null), (3, 'x', null, 'c', null),"
        " (4, %s, %s, null, null)",
        ["alice", key, "ctx", nonce, "bob", other, "carol", key],
    )
    stored = dict(conn.execute("select id, secret from t_keycol").fetchall())
    # AD = id::text || ctx::text; a NULL AD column means no AD (pgsodium's rule).
    assert decrypt_expected(conn, stored[1], "1ctx", key, nonce) == "alice"
    assert decrypt_expected(conn, stored[2], "2b", other, None) == "bob"
    assert stored[3] is None  # NULL key column: stored NULL, as pgsodium does
    assert decrypt_expected(conn, stored[4], "", key, None) == "carol"
    rows = conn.execute(
        "select id, decrypted_secret from decrypted_t_keycol order by id"
    ).fetchall()
    assert rows == [(1, "alice"), (2, "bob"), (3, None), (4, "carol")]
    # The row's associated data and nonce are not in the statement: refused.
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="in the same row"):
        conn.execute(
            "update t_keycol set secret = %s, key_id = %s where id = 2", ["bob2", key]
        )
    assert dict(conn.execute("select id, secret from t_keycol").fetchall()) == stored
    # Key rotation: the new value with its new key, AD and nonce in one statement.
    conn.execute(
        "update t_keycol set secret = %s, key_id = %s, id = 2, ctx = 'b', "
        "nonce = null where id = 2",
        ["bob2", key],
    )
    assert conn.execute(
        "select decrypted_secret from decrypted_t_keycol where id = 2"
    ).fetchone() == ("bob2",)


def test_copy_into_a_key_column_label_uses_each_rows_key(
    proxy: RunningProxy, conn: psycopg.Connection[Any]
) -> None:
    """COPY rows name their own keys (the proxy reads every aead-det key first):
    stored bytes equal INSERT's, a NULL key stores NULL, an unknown key fails the
    whole COPY with pgsodium's P0002, and a data dump restores through the proxy
    unchanged."""
    key, other = new_key(conn), new_key(conn)
    fresh_table(
        conn,
        "t_copykey",
        "id bigint primary key, secret text, key_id uuid, nonce bytea",
    )
    conn.execute(
        "security label for pgsodium on column t_copykey.secret is "
        "'ENCRYPT WITH KEY COLUMN key_id ASSOCIATED (id) NONCE nonce'"
    )
    nonce = bytes(range(16))
    rows = [(1, "alice", key, nonce), (2, "bob", other, None), (3, "x", None, None)]
    with conn.cursor().copy("copy t_copykey from stdin") as copy:
        for row in rows:
            copy.write_row(row)
    copied = conn.execute("select * from t_copykey order by id").fetchall()
    assert copied[2][1] is None  # NULL key: NULL, as INSERT stores it
    assert conn.execute(
        "select id, decrypted_secret from decrypted_t_copykey order by id"
    ).fetchall() == [(1, "alice"), (2, "bob"), (3, None)]
    conn.execute("delete from t_copykey")
    conn.execute(
        "insert into t_copykey values (%s, %s, %s, %s), (%s, %s, %s, %s), "
        "(%s, %s, %s, %s)",  # the NULL key bound too: NULL stored
        [v for row in rows for v in row],
    )
    assert conn.execute("select * from t_copykey order by id").fetchall() == copied

    unknown = "00000000-0000-4000-8000-000000000001"
    with pytest.raises(psycopg.errors.QueryCanceled) as caught:
        with conn.cursor().copy("copy t_copykey from stdin") as copy:
            copy.write_row((7, "TOPSECRET", unknown, None))
    assert "P0002: query returned no rows (COPY line 1, column secret)" in str(
        caught.value
    )
    assert "TOPSECRET" not in str(caught.value)
    assert conn.execute("select * from t_copykey order by id").fetchall() == copied

    dumped = subprocess.run(
        [str(proxy.upstream.bindir / "pg_dump"), "--data-only", "--table=t_copykey",
         proxy.upstream_url(dbname=conn.info.dbname)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    conn.execute("delete from t_copykey")
    restored = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
         proxy.url(dbname=conn.info.dbname)],
        input=dumped, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    assert conn.execute("select * from t_copykey order by id").fetchall() == copied


def test_masking_views_list_the_rules(conn: psycopg.Connection[Any]) -> None:
    key = new_key(conn)
    fresh_table(conn, "t_rules", "id int, secret text, kid uuid, n bytea")
    conn.execute(
        f"security label for pgsodium on column t_rules.secret is "
        f"'ENCRYPT WITH KEY ID {key} ASSOCIATED (id) NONCE n SECURITY INVOKER'"
    )
    conn.execute(
        "security label for pgsodium on table t_rules is "
        "'DECRYPT WITH VIEW public.t_rules_plain'"
    )
    rule = conn.execute(
        "select relname, attname, format_type, key_id, key_id_column, "
        "associated_columns, nonce_column, view_name, priority, security_invoker "
        "from pgsodium.masking_rule where relname = 't_rules'"
    ).fetchone()
    assert rule == (
        "t_rules",
        "secret",
        "text",
        key,
        None,
        "id",
        "n",
        "public.t_rules_plain",
        100,
        True,
    )
    assert conn.execute(
        "select attname, key_id from pgsodium.mask_columns "
        "where attrelid = 't_rules'::regclass"
    ).fetchall() == [("id", None), ("secret", key), ("kid", None), ("n", None)]
    assert conn.execute(
        "select nspname, relname, attname from pgsodium.seclabel "
        "where relname = 't_rules'"
    ).fetchall() == [("public", "t_rules", "secret")]
    columns = conn.execute("select * from t_rules_plain limit 0").description
    assert [c.name for c in columns] == ["id", "secret", "decrypted_secret", "kid", "n"]
    conn.execute(
        "insert into t_rules (id, secret, n) values (7, 'seven', %s)", [bytes(16)]
    )
    assert conn.execute(
        "select id, decrypted_secret from t_rules_plain"
    ).fetchall() == [(7, "seven")]
    conn.execute("security label for pgsodium on column t_rules.secret is null")
    assert conn.execute(
        "select count(*) from pgsodium.masking_rule where relname = 't_rules'"
    ).fetchone() == (0,)


@pytest.mark.parametrize(
    ("target", "label", "sqlstate", "message"),
    [
        ("column t_bad.secret", "ENCRYPT WITH KEY ID {bad}", "22023", "no valid key"),
        ("column t_bad.secret", "ENCRYPT WITH KEY ID {mac}", "22023", "not aead-det"),
        ("column t_bad.other", "ENCRYPT WITH KEY ID {key}", "0A000", "character"),
        ("column t_bad.secret", "ENCRYPT WITH KEY", "22023", "KEY COLUMN"),
        (
            "column t_bad.secret",
            "ENCRYPT WITH KEY ID {key} ASSOCIATED id",
            "22023",
            "cannot parse",
        ),
        ("column t_bad.secret", "ENCRYPT WITH KEY COLUMN nope", "42703", "nope"),
        (
            "column t_bad.secret",
            "ENCRYPT WITH KEY ID {key} ASSOCIATED (id, secret)",
            "0A000",
            "encrypted column secret as associated data or nonce of secret",
        ),
        ("column t_bad.secret", "DECRYPT WITH VIEW x.y", "42602", "for a column"),
        ("table t_bad", "ENCRYPT WITH KEY ID {key}", "42602", "for a table"),
        ("table t_bad", "DECRYPT WITH VIEW y", "22023", "DECRYPT WITH VIEW"),
        ("role postgres", "DECRYPT", "42602", "for a role"),
        ("schema public", "ACCESS x", "0A000", "does not support labels"),
    ],
)
def test_bad_labels_are_refused_and_not_recorded(
    conn: psycopg.Connection[Any],
    target: str,
    label: str,
    sqlstate: str,
    message: str,
) -> None:
    key = new_key(conn)
    mac = new_key(conn, "hmacsha256")
    fresh_table(conn, "t_bad", "id int, secret text, other varchar(20)")
    text = label.format(key=key, mac=mac, bad="00000000-0000-0000-0000-000000000000")
    with pytest.raises(psycopg.Error) as info:
        conn.execute(f"security label for pgsodium on {target} is '{text}'")
    assert info.value.sqlstate == sqlstate
    assert message in str(info.value)
    assert conn.execute(
        "select count(*) from pgsodium._proxy_label l join pg_class c "
        "on c.oid = l.objoid where c.relname = 't_bad'"
    ).fetchone() == (0,)
    assert conn.execute("select to_regclass('decrypted_t_bad')").fetchone() == (None,)
    conn.execute("insert into t_bad values (1, 'plain', 'plain')")  # still plain


def test_an_encrypted_column_cannot_be_associated_data_of_another(
    conn: psycopg.Connection[Any],
) -> None:
    """Either order: labelling a column whose associated data is encrypted, or
    encrypting a column that another's label names as associated data or nonce."""
    key = new_key(conn)
    fresh_table(conn, "t_dep", "id int, email text, ssn text, n bytea")
    label = (
        "security label for pgsodium on column t_dep.{} is 'ENCRYPT WITH KEY ID {}{}'"
    )
    conn.execute(label.format("email", key, ""))
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="column email as"):
        conn.execute(label.format("ssn", key, " ASSOCIATED (id, email)"))
    conn.execute(label.format("ssn", key, " ASSOCIATED (id) NONCE n"))
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="column n as"):
        conn.execute(label.format("n", key, ""))
    assert conn.execute(
        "select attname, associated_columns from pgsodium.masking_rule "
        "where relname = 't_dep' order by attname"
    ).fetchall() == [("email", None), ("ssn", "id")]


def test_a_varchar_with_a_length_modifier_is_associated_data_of_every_write(
    conn: psycopg.Connection[Any],
) -> None:
    """`varchar(n)` associated data is the stored value's text, as for `varchar`:
    INSERT, UPDATE, COPY and re-encryption store what pgsodium's trigger would,
    the excess spaces PostgreSQL cuts off an over-long value included."""
    key = new_key(conn)
    fresh_table(
        conn, "t_vcn", "id int primary key, v varchar(5), secret text, raw bytea"
    )
    for column in ("secret", "raw"):
        conn.execute(
            f"security label for pgsodium on column t_vcn.{column} "
            f"is 'ENCRYPT WITH KEY ID {key} ASSOCIATED (id, v)'"
        )
    conn.execute(
        "insert into t_vcn values (1, 'ab', 'one', 'r1'), (2, %s, %s, %s)",
        ["\u00e9d" + " " * 6, "two", b"r2"],  # 8 characters, stored as 5
    )
    assert conn.execute("select v from t_vcn order by id").fetchall() == [
        ("ab",),
        ("\u00e9d   ",),
    ]
    stored = dict(conn.execute("select id, secret from t_vcn").fetchall())
    assert decrypt_expected(conn, stored[1], "1ab", key, None) == "one"
    assert decrypt_expected(conn, stored[2], "2\u00e9d   ", key, None) == "two"

    conn.execute(
        "update t_vcn set secret = %s, id = 1, v = 'ef      ' where id = 1", ["uno"]
    )
    conn.execute("update t_vcn set v = 'gh    ' where id = 2")  # re-encrypts both
    with conn.cursor().copy("copy t_vcn from stdin") as copy:
        copy.write_row([3, "ij      ", "three", b"r3"])
    rows = [
        (1, "ef   ", "uno", b"r1"),
        (2, "gh   ", "two", b"r2"),
        (3, "ij   ", "three", b"r3"),
    ]
    read = "select id, v, decrypted_secret, decrypted_raw from decrypted_t_vcn"
    assert conn.execute(read + " order by id").fetchall() == rows
    copied = conn.execute("select * from t_vcn order by id").fetchall()
    conn.execute("delete from t_vcn")
    conn.execute(
        "insert into t_vcn values (1, 'ef   ', 'uno', 'r1'), "
        "(2, 'gh   ', 'two', 'r2'), (3, 'ij   ', 'three', 'r3')"
    )
    assert conn.execute("select * from t_vcn order by id").fetchall() == copied
    with pytest.raises(psycopg.errors.StringDataRightTruncation):
        conn.execute("insert into t_vcn values (4, 'toolong', 'four', 'r4')")


def test_an_associated_column_of_another_type_is_refused_by_name(
    conn: psycopg.Connection[Any],
) -> None:
    key = new_key(conn)
    fresh_table(conn, "t_adtype", "id int, secret text, amount numeric(8, 2)")
    with pytest.raises(psycopg.errors.FeatureNotSupported) as caught:
        conn.execute(
            "security label for pgsodium on column t_adtype.secret "
            f"is 'ENCRYPT WITH KEY ID {key} ASSOCIATED (id, amount)'"
        )
    assert str(caught.value).startswith(
        "pgsodium-proxy does not support an associated data column of type numeric(8,2)"
    )


GENERATED_COLUMNS = (
    "id int, secret text, "
    "g_id int generated always as (id * 2) stored, "
    "g_nonce bytea generated always as (decode(md5(id::text), 'hex')) stored, "
    "g_key uuid generated always as (md5(id::text)::uuid) stored, "
    "g_secret text generated always as ('s' || id) stored"
)


@pytest.mark.parametrize(
    ("column", "label", "message"),
    [
        (
            "secret",
            "ENCRYPT WITH KEY ID {key} ASSOCIATED (g_id)",
            "generated column g_id as the associated data column",
        ),
        (
            "secret",
            "ENCRYPT WITH KEY ID {key} ASSOCIATED (id, g_id)",
            "generated column g_id as the associated data column",
        ),
        (
            "secret",
            "ENCRYPT WITH KEY ID {key} NONCE g_nonce",
            "generated column g_nonce as the nonce column",
        ),
        (
            "secret",
            "ENCRYPT WITH KEY COLUMN g_key",
            "generated column g_key as the key column",
        ),
        (
            "g_secret",
            "ENCRYPT WITH KEY ID {key}",
            "cannot encrypt generated column g_secret",
        ),
    ],
)
def test_a_generated_column_in_a_label_is_refused_and_not_recorded(
    conn: psycopg.Connection[Any], column: str, label: str, message: str
) -> None:
    """The database computes a generated column: the proxy never sees its value
    in an INSERT, and an UPDATE of what it is computed from would change it
    unseen (the ciphertext then no longer decrypts)."""
    key = new_key(conn)
    fresh_table(conn, "t_genlabel", GENERATED_COLUMNS)
    with pytest.raises(psycopg.errors.FeatureNotSupported) as caught:
        conn.execute(
            f"security label for pgsodium on column t_genlabel.{column} "
            f"is '{label.format(key=key)}'"
        )
    assert message in str(caught.value)
    assert conn.execute(
        "select count(*) from pgsodium._proxy_label l join pg_class c "
        "on c.oid = l.objoid where c.relname = 't_genlabel'"
    ).fetchone() == (0,)
    assert conn.execute("select to_regclass('decrypted_t_genlabel')").fetchone() == (
        None,
    )


def test_copy_without_a_column_list_skips_generated_columns(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any]
) -> None:
    """COPY's default column list leaves generated columns out, as PostgreSQL
    does; the rows store the bytes an INSERT stores."""
    key = new_key(conn)
    for table in ("t_gencopy", "t_gencopy_twin"):
        fresh_table(
            conn,
            table,
            "id int, secret text, doubled int generated always as (id * 2) stored, "
            "note text",
        )
        conn.execute(
            f"security label for pgsodium on column {table}.secret "
            f"is 'ENCRYPT WITH KEY ID {key} ASSOCIATED (id)'"
        )
    with conn.cursor().copy("copy t_gencopy from stdin") as copy:
        copy.write_row([1, "one", "n1"])
        copy.write_row([2, None, "n2"])
    conn.execute(
        "insert into t_gencopy_twin (id, secret, note) values (1, 'one', 'n1')"
    )
    conn.execute("insert into t_gencopy_twin values (2, null, default, 'n2')")
    assert conn.execute(
        "select id, decrypted_secret, doubled, note from decrypted_t_gencopy "
        "order by id"
    ).fetchall() == [(1, "one", 2, "n1"), (2, None, 4, "n2")]
    assert (
        direct.execute("select * from t_gencopy order by id").fetchall()
        == direct.execute("select * from t_gencopy_twin order by id").fetchall()
    )
    # VALUES without a column list may leave the generated column out, as
    # PostgreSQL allows for trailing columns.
    fresh_table(
        conn,
        "t_genlast",
        "id int, secret text, doubled int generated always as (id * 2) stored",
    )
    conn.execute(
        "security label for pgsodium on column t_genlast.secret "
        f"is 'ENCRYPT WITH KEY ID {key} ASSOCIATED (id)'"
    )
    conn.execute("insert into t_genlast values (3, %s)", ["three"])
    assert conn.execute(
        "select id, decrypted_secret, doubled from decrypted_t_genlast"
    ).fetchall() == [(3, "three", 6)]


@pytest.mark.parametrize(
    "column", ["t_bad.nosuch", "public.t_bad.nosuch", '"T bad".nosuch']
)
def test_a_label_on_a_missing_column_gives_postgresqls_error(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any], column: str
) -> None:
    """The message PostgreSQL gives for the same object (COMMENT resolves it as
    SECURITY LABEL does): the relation as written, quoted once."""
    key = new_key(conn)
    fresh_table(conn, "t_bad", "id int")
    fresh_table(conn, '"T bad"', "id int")
    with pytest.raises(psycopg.Error) as expected:
        direct.execute(f"comment on column {column} is 'x'")
    with pytest.raises(psycopg.Error) as info:
        conn.execute(
            f"security label for pgsodium on column {column} "
            f"is 'ENCRYPT WITH KEY ID {key}'"
        )
    assert info.value.sqlstate == expected.value.sqlstate == "42703"
    assert info.value.diag.message_primary == expected.value.diag.message_primary
    assert '""' not in str(info.value)


@pytest.fixture
def labelled(conn: psycopg.Connection[Any]) -> str:
    """Table t_w: id, secret (text, KEY ID, ASSOCIATED (id)), blob (bytea)."""
    key = new_key(conn)
    fresh_table(conn, "t_w", "id int primary key, secret text, blob bytea, note text")
    conn.execute(
        f"security label for pgsodium on column t_w.secret "
        f"is 'ENCRYPT WITH KEY ID {key} ASSOCIATED (id)'"
    )
    conn.execute(
        f"security label for pgsodium on column t_w.blob is 'ENCRYPT WITH KEY ID {key}'"
    )
    conn.execute("insert into t_w values (1, 'one', 'one', 'n1')")
    return key


def stored_rows(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute("select * from t_w order by id").fetchall()


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("insert into t_w (id, secret) select 2, 'two'", "INSERT ... SELECT"),
        ("insert into t_w (id, secret) values (2, upper('two'))", "cannot see"),
        ("insert into t_w (id, secret) values (2, note)", "cannot see"),
        ("insert into t_w (secret) values ('two')", "without id"),
        ("insert into t_w (id, secret) values (2 + 0, 'two')", "not a literal"),
        ("update t_w set secret = 'x' where id = 1", "without id"),
        ("update t_w set secret = note, id = 1 where id = 1", "cannot see"),
        ("update t_w set blob = blob where id = 1", "cannot see"),
        ("update t_w set (blob, note) = ('a', 'b') where id = 1", "SET (a, b)"),
        ("update decrypted_t_w set decrypted_blob = 'x'", "write decrypted_blob"),
        (
            "delete from decrypted_t_w where decrypted_secret = 'one'",
            "read decrypted_secret of the view",
        ),
        (
            "insert into t_w (id, secret) values (1, 'again') on conflict (id) "
            "do update set secret = 'other'",
            "other than to EXCLUDED",
        ),
        (
            "insert into t_w (id, blob) values (1, 'again') on conflict (id) "
            "do update set id = 9",
            "without re-encrypting secret",
        ),
        (
            "with x as (insert into t_w (id, secret) values (2, 'two') returning id) "
            "select * from x",
            "statement of its own",
        ),
        (
            "explain analyze update t_w set secret = 'x', id = 1 where id = 1",
            "statement of its own",
        ),
        (
            "merge into t_w using (select 1 as id) s on t_w.id = s.id "
            "when matched then update set note = 'x'",
            "MERGE",
        ),
    ],
)
def test_writes_the_proxy_cannot_encrypt_are_refused(
    conn: psycopg.Connection[Any], labelled: str, sql: str, message: str
) -> None:
    before = stored_rows(conn)
    with pytest.raises(psycopg.errors.FeatureNotSupported) as info:
        conn.execute(sql)
    assert message in str(info.value)
    assert stored_rows(conn) == before
    assert conn.execute("select 1").fetchone() == (1,)


COPY_VALUES = ["tab\there", "line\nbreak", "back\\slash", "émilie 🔐", "x" * 200]


def test_copy_from_stdin_encrypts_each_row_as_it_streams(
    proxy: RunningProxy, conn: psycopg.Connection[Any], labelled: str
) -> None:
    marker = f"copy-plain-{uuid.uuid4().hex}"
    values = [*COPY_VALUES, marker]
    with conn.cursor().copy("copy t_w (id, secret, blob, note) from stdin") as copy:
        for i, value in enumerate(values, start=10):
            copy.write_row([i, value, value.encode(), f"n{i}"])
        copy.write_row([99, None, None, "nulls"])
    got = conn.execute(
        "select id, decrypted_secret, decrypted_blob, note from decrypted_t_w "
        "where id >= 10 order by id"
    ).fetchall()
    assert got == [
        *[(i, v, v.encode(), f"n{i}") for i, v in enumerate(values, start=10)],
        (99, None, None, "nulls"),
    ]
    # The stored bytes are those INSERT stores (and pgsodium's trigger would).
    copied = conn.execute("select secret, blob from t_w where id = 12").fetchone()
    conn.execute("delete from t_w where id = 12")
    conn.execute(
        "insert into t_w (id, secret, blob) values (12, %s, %s)",
        [values[2], values[2].encode()],
    )
    assert conn.execute("select secret, blob from t_w where id = 12").fetchone() == (
        copied
    )
    log = (proxy.upstream.datadir / "server.log").read_text(errors="replace")
    assert marker not in log
    assert marker.encode().hex() not in log


def test_copy_stores_insert_bytes_when_the_ciphertext_fills_a_base64_line(
    conn: psycopg.Connection[Any], labelled: str
) -> None:
    """57 ciphertext bytes (25 of plaintext) are one full 76-character line, after
    which PostgreSQL's base64 puts a line break: COPY stores it as INSERT does."""
    value = "x" * 25
    with conn.cursor().copy("copy t_w (id, secret, note) from stdin") as copy:
        copy.write_row([40, value, "copied"])
    copied = conn.execute("select secret from t_w where id = 40").fetchone()
    assert copied is not None and copied[0].endswith("\n")
    conn.execute("delete from t_w where id = 40")
    conn.execute("insert into t_w (id, secret) values (40, %s)", [value])
    assert conn.execute("select secret from t_w where id = 40").fetchone() == copied


def test_psql_copy_with_options_and_end_marker(
    proxy: RunningProxy, conn: psycopg.Connection[Any], labelled: str, tmp_path: Any
) -> None:
    data = tmp_path / "rows.txt"
    data.write_text("id|secret\n20|twenty\n21|NULL\n\\.\n")
    done = subprocess.run(
        ["psql", "-X", "-v", "ON_ERROR_STOP=1", proxy.url(dbname=conn.info.dbname),
         "-c", f"\\copy t_w (id, secret) from '{data}' "
         "with (delimiter '|', null 'NULL', header)"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert conn.execute(
        "select id, decrypted_secret from decrypted_t_w where id in (20, 21) "
        "order by id"
    ).fetchall() == [(20, "twenty"), (21, None)]


def test_psql_copy_csv_reads_quoted_values_as_postgresql_does(
    proxy: RunningProxy, conn: psycopg.Connection[Any], labelled: str, tmp_path: Any
) -> None:
    """CSV: a quoted value with commas, quotes and a newline; NULL (unquoted
    empty) and a quoted note; a long value whose stored base64 has line breaks.
    Stored bytes equal INSERT's, and plaintext never reaches the database log."""
    marker = f"csv-plain-{uuid.uuid4().hex}"
    long = marker + "y" * 100
    data = tmp_path / "rows.csv"
    data.write_bytes(
        b"id,secret,note\n"
        b'22,"a, ""quoted""\nvalue",x\n'
        b'23,,"a ""note"", with a comma"\n' + f"24,{long},\n".encode()
    )
    done = subprocess.run(
        ["psql", "-X", "-v", "ON_ERROR_STOP=1", proxy.url(dbname=conn.info.dbname),
         "-c",
         f"\\copy t_w (id, secret, note) from '{data}' with (format csv, header)"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert conn.execute(
        "select id, decrypted_secret, note from decrypted_t_w where id in (22, 23, 24) "
        "order by id"
    ).fetchall() == [
        (22, 'a, "quoted"\nvalue', "x"),
        (23, None, 'a "note", with a comma'),
        (24, long, None),
    ]
    copied = conn.execute("select secret from t_w where id = 24").fetchone()
    conn.execute("delete from t_w where id = 24")
    conn.execute("insert into t_w (id, secret) values (24, %s)", [long])
    assert conn.execute("select secret from t_w where id = 24").fetchone() == copied
    assert "\n" in copied[0]  # pgsodium's base64 line breaks, inside quotes
    log = (proxy.upstream.datadir / "server.log").read_text(errors="replace")
    assert marker not in log


def test_a_data_dump_restored_through_the_proxy_is_not_encrypted_twice(
    proxy: RunningProxy, conn: psycopg.Connection[Any], labelled: str
) -> None:
    """pg_dump's COPY of a labelled table carries ciphertext: restored through
    the proxy, each value that already decrypts under the column's key and row is
    kept as it is (pgsodium's trigger would encrypt it again)."""
    conn.execute(
        "insert into t_w (id, secret, blob) values (40, 'forty', 'b40'), (41, %s, %s)",
        ["x" * 120, b"y" * 100],
    )
    before = stored_rows(conn)
    dumped = subprocess.run(
        [str(proxy.upstream.bindir / "pg_dump"), "--data-only", "--table=t_w",
         proxy.upstream_url(dbname=conn.info.dbname)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "COPY public.t_w" in dumped
    conn.execute("delete from t_w")
    restored = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
         proxy.url(dbname=conn.info.dbname)],
        input=dumped, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    assert stored_rows(conn) == before
    assert conn.execute(
        "select decrypted_secret, decrypted_blob from decrypted_t_w where id = 40"
    ).fetchone() == ("forty", b"b40")


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("copy t_w (id, secret) from stdin (format binary)", "binary format"),
        ("copy t_w (id, secret) from stdin where secret <> 'x'", "WHERE"),
        ("copy t_w (secret) from stdin", "without id"),
        ("copy t_w (id, secret) from '/tmp/plain.txt'", "server file"),
    ],
)
def test_copy_the_proxy_cannot_encrypt_is_refused(
    conn: psycopg.Connection[Any], labelled: str, sql: str, message: str
) -> None:
    before = stored_rows(conn)
    with pytest.raises(psycopg.errors.FeatureNotSupported, match=message):
        with conn.cursor().copy(sql) as copy:
            copy.write_row([3, "three"])
    assert stored_rows(conn) == before
    assert conn.execute("select 1").fetchone() == (1,)


def test_a_row_that_cannot_be_encrypted_fails_the_whole_copy(
    conn: psycopg.Connection[Any], labelled: str
) -> None:
    before = stored_rows(conn)
    with pytest.raises(psycopg.errors.QueryCanceled) as caught:
        with conn.cursor().copy("copy t_w (id, secret) from stdin") as copy:
            for i in range(30, 2030):
                copy.write_row([i, "fine"])
            copy.write_row([5000, ""])
            for i in range(5001, 6000):
                copy.write_row([i, "TOPSECRET"])
    assert "Cannot encrypt empty string." in caught.value.diag.message_primary
    assert "TOPSECRET" not in str(caught.value)
    assert stored_rows(conn) == before
    assert conn.execute("select 1").fetchone() == (1,)


def test_plaintext_written_past_the_proxy_is_rejected_upstream(
    conn: psycopg.Connection[Any], labelled: str, direct: psycopg.Connection[Any]
) -> None:
    before = stored_rows(conn)
    for sql in [
        "insert into t_w (id, secret) values (2, 'plain')",
        "insert into t_w (id, secret) values (2, 'cGxhaW4=')",  # base64, too short
        "insert into t_w (id, blob) values (2, 'plain')",
        "update t_w set secret = 'plain'",
        "update t_w set blob = '\\x00'::bytea",
    ]:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="through the"):
            direct.execute(sql)
    assert stored_rows(conn) == before
    # Reading the decrypted column past the proxy hits the stub.
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="through"):
        direct.execute("select decrypted_secret from decrypted_t_w").fetchall()
    # Columns without a label, and NULLs, are written as usual.
    direct.execute("update t_w set note = 'direct', secret = secret")


def test_empty_values_are_refused_as_pgsodium_does(
    conn: psycopg.Connection[Any], labelled: str
) -> None:
    before = stored_rows(conn)
    with pytest.raises(psycopg.errors.RaiseException, match="empty string"):
        conn.execute("insert into t_w (id, secret) values (2, %s)", [""])
    with pytest.raises(psycopg.errors.RaiseException, match="empty bytes"):
        conn.execute("insert into t_w (id, blob) values (2, %s)", [b""])
    assert stored_rows(conn) == before


def test_insert_returning_default_and_multi_row(
    conn: psycopg.Connection[Any], labelled: str
) -> None:
    rows = conn.execute(
        "insert into t_w (id, secret, blob, note) values "
        "(2, %s, default, 'n2'), (3, null, %s, default) returning id, note",
        ["two", b"three"],
    ).fetchall()
    assert rows == [(2, "n2"), (3, None)]
    assert conn.execute(
        "select id, decrypted_secret, decrypted_blob from decrypted_t_w order by id"
    ).fetchall() == [(1, "one", b"one"), (2, "two", None), (3, None, b"three")]


def test_writes_through_the_decrypting_view(
    conn: psycopg.Connection[Any], labelled: str
) -> None:
    conn.execute(
        "insert into decrypted_t_w (id, secret, blob) values (4, %s, %s)",
        ["four", b"4"],
    )
    conn.execute("update decrypted_t_w set secret = %s, id = 4 where id = 4", ["vier"])
    assert conn.execute(
        "select decrypted_secret, decrypted_blob from decrypted_t_w where id = 4"
    ).fetchone() == ("vier", b"4")
    stored = conn.execute("select secret from t_w where id = 4").fetchone()
    assert stored is not None and stored[0] != "vier"


def test_upsert_encrypts_exactly_once(
    conn: psycopg.Connection[Any], labelled: str
) -> None:
    for value in ["first", "second"]:
        conn.execute(
            "insert into t_w (id, secret, blob) values (5, %s, %s) on conflict (id) "
            "do update set secret = excluded.secret, blob = excluded.blob",
            [value, value.encode()],
        )
    assert conn.execute(
        "select decrypted_secret, decrypted_blob from decrypted_t_w where id = 5"
    ).fetchone() == ("second", b"second")


def test_aliases_joins_and_qualified_view_names(
    conn: psycopg.Connection[Any], labelled: str
) -> None:
    rows = conn.execute(
        "select d.id, d.decrypted_secret from public.decrypted_t_w d where d.id = 1"
    ).fetchall()
    assert rows == [(1, "one")]
    rows = conn.execute(
        "select decrypted_t_w.decrypted_blob from decrypted_t_w where id = 1"
    ).fetchall()
    assert rows == [(b"one",)]
    # A decrypted value where the database would need it: refused, never passed on.
    with pytest.raises(psycopg.errors.FeatureNotSupported):
        conn.execute(
            "select id from decrypted_t_w where decrypted_secret like 'o%'"
        ).fetchall()


def test_regeneration_keeps_grants_and_follows_alter_table(
    conn: psycopg.Connection[Any],
) -> None:
    key = new_key(conn)
    fresh_table(conn, "t_regen", "id int, secret text")
    conn.execute("drop role if exists tce_reader")
    conn.execute("create role tce_reader")
    conn.execute(
        f"security label for pgsodium on column t_regen.secret "
        f"is 'ENCRYPT WITH KEY ID {key}'"
    )
    conn.execute("grant select on decrypted_t_regen to tce_reader")
    conn.execute("alter table t_regen add column extra int")
    columns = conn.execute("select * from decrypted_t_regen limit 0").description
    assert [c.name for c in columns] == ["id", "secret", "decrypted_secret", "extra"]
    assert conn.execute(
        "select has_table_privilege('tce_reader', 'decrypted_t_regen', 'SELECT')"
    ).fetchone() == (True,)
    conn.execute("insert into t_regen (id, secret, extra) values (1, 'x', 2)")
    assert conn.execute(
        "select decrypted_secret, extra from decrypted_t_regen"
    ).fetchone() == ("x", 2)


def test_enable_event_trigger_off_then_update_mask(
    conn: psycopg.Connection[Any],
) -> None:
    key = new_key(conn)
    fresh_table(conn, "t_manual", "id int, secret text")
    conn.execute("set pgsodium.enable_event_trigger = 'off'")
    try:
        conn.execute(
            f"security label for pgsodium on column t_manual.secret "
            f"is 'ENCRYPT WITH KEY ID {key}'"
        )
        assert conn.execute("select to_regclass('decrypted_t_manual')").fetchone() == (
            None,
        )
        conn.execute("alter table t_manual add column other int")
        assert conn.execute("select to_regclass('decrypted_t_manual')").fetchone() == (
            None,
        )
    finally:
        conn.execute("reset pgsodium.enable_event_trigger")
    conn.execute("select pgsodium.update_mask('t_manual'::regclass)")
    conn.execute("insert into t_manual (id, secret) values (1, %s)", ["manual"])
    assert conn.execute(
        "select decrypted_secret from decrypted_t_manual"
    ).fetchone() == ("manual",)
    conn.execute("select pgsodium.update_masks()")
    assert conn.execute(
        "select decrypted_secret from decrypted_t_manual"
    ).fetchone() == ("manual",)


def test_role_access_label_grants_the_view(conn: psycopg.Connection[Any]) -> None:
    key = new_key(conn)
    fresh_table(conn, "t_access", "id int, secret text")
    if conn.execute("select 1 from pg_roles where rolname = 'tce_access'").fetchone():
        conn.execute("drop owned by tce_access")
        conn.execute("drop role tce_access")
    conn.execute("create role tce_access")
    conn.execute(
        "security label for pgsodium on role tce_access is 'ACCESS public.t_access'"
    )
    conn.execute(
        f"security label for pgsodium on column t_access.secret "
        f"is 'ENCRYPT WITH KEY ID {key}'"
    )
    assert conn.execute(
        "select has_table_privilege('tce_access', 'decrypted_t_access', 'SELECT')"
    ).fetchone() == (True,)
    # pgsodium's mask_role: the key roles and the key table too, so the role can
    # decrypt what the view shows.
    assert conn.execute(
        "select pg_has_role('tce_access', 'pgsodium_keyiduser', 'member'), "
        "pg_has_role('tce_access', 'pgsodium_keyholder', 'member'), "
        "has_table_privilege('tce_access', 'pgsodium.key', 'SELECT'), "
        "pgsodium.has_mask('tce_access', 'public.t_access')"
    ).fetchone() == (True, True, True, True)
    conn.execute("security label for pgsodium on role tce_access is null")
    # mask_role grants nothing for a role no ACCESS label names the table for.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(
            "select pgsodium.mask_role('tce_access', 'public.t_access', "
            "'public.decrypted_t_access')"
        )


def test_label_in_a_rolled_back_transaction_leaves_nothing(
    conn: psycopg.Connection[Any],
) -> None:
    key = new_key(conn)
    fresh_table(conn, "t_tx", "id int, secret text")
    conn.execute("begin")
    conn.execute(
        f"security label for pgsodium on column t_tx.secret "
        f"is 'ENCRYPT WITH KEY ID {key}'"
    )
    conn.execute("insert into t_tx values (1, 'inside')")
    assert conn.execute("select decrypted_secret from decrypted_t_tx").fetchone() == (
        "inside",
    )
    conn.execute("rollback")
    assert conn.execute("select to_regclass('decrypted_t_tx')").fetchone() == (None,)
    conn.execute("insert into t_tx values (2, 'plain again')")
    assert conn.execute("select secret from t_tx").fetchall() == [("plain again",)]


def test_removing_the_last_label_leaves_a_plain_view(
    conn: psycopg.Connection[Any],
) -> None:
    """Unlabelled, a column is plain again: the view keeps the table's columns
    (and its grants) but no decrypted_<c> that would fail when read, and no guard
    is left to refuse the plain values now written."""
    key = new_key(conn)
    fresh_table(conn, "t_un", "id int, secret text, other text")
    notices: list[str] = []
    conn.add_notice_handler(lambda notice: notices.append(notice.message_primary))
    for column in ("secret", "other"):
        conn.execute(
            f"security label for pgsodium on column t_un.{column} "
            f"is 'ENCRYPT WITH KEY ID {key}'"
        )
    assert notices == []  # no "… does not exist, skipping" for the proxy's objects
    conn.execute("grant select on decrypted_t_un to public")
    conn.execute("security label for pgsodium on column t_un.other is null")
    names = [d.name for d in conn.execute("select * from decrypted_t_un").description]
    assert names == ["id", "secret", "decrypted_secret", "other"]
    conn.execute("security label for pgsodium on column t_un.secret is null")
    names = [d.name for d in conn.execute("select * from decrypted_t_un").description]
    assert names == ["id", "secret", "other"]
    conn.execute("insert into t_un values (1, 'plain', 'plain too')")
    assert conn.execute("select * from decrypted_t_un").fetchall() == [
        (1, "plain", "plain too")
    ]
    assert conn.execute(
        "select has_table_privilege('public', 'decrypted_t_un', 'select')"
    ).fetchone() == (True,)


def test_quoted_names_and_a_view_name_of_its_own(
    conn: psycopg.Connection[Any],
) -> None:
    key = new_key(conn)
    conn.execute("create schema if not exists tce_s")
    conn.execute('drop table if exists tce_s."Mixed Case" cascade')
    conn.execute('create table tce_s."Mixed Case" (id int, "Secret-1" text)')
    conn.execute(
        f'security label for pgsodium on column tce_s."Mixed Case"."Secret-1" '
        f"is 'ENCRYPT WITH KEY ID {key}'"
    )
    conn.execute(
        'insert into tce_s."Mixed Case" (id, "Secret-1") values (1, %s)', ["q"]
    )
    assert conn.execute(
        'select "decrypted_Secret-1" from tce_s."decrypted_Mixed Case"'
    ).fetchone() == ("q",)
    conn.execute(
        'security label for pgsodium on table tce_s."Mixed Case" '
        "is 'DECRYPT WITH VIEW tce_s.mixed_view'"
    )
    assert conn.execute(
        'select "decrypted_Secret-1" from tce_s.mixed_view'
    ).fetchone() == ("q",)


def test_another_session_never_stores_plaintext(
    proxy: RunningProxy, db: str, conn: psycopg.Connection[Any]
) -> None:
    key = new_key(conn)
    fresh_table(conn, "t_other", "id int, secret text")
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as other:
        other.execute("select 1")  # this session has read the labelled names now
        conn.execute(
            f"security label for pgsodium on column t_other.secret "
            f"is 'ENCRYPT WITH KEY ID {key}'"
        )
        try:
            other.execute("insert into t_other values (1, 'from the other session')")
        except psycopg.errors.FeatureNotSupported as exc:
            assert "through the proxy" in str(exc)  # refused by the guard
        stored = conn.execute("select secret from t_other").fetchall()
        assert ("from the other session",) not in stored
        assert conn.execute(
            "select decrypted_secret from decrypted_t_other"
        ).fetchall() in (
            [],
            [("from the other session",)],
        )


def test_label_and_write_in_one_simple_query(proxy: RunningProxy, db: str) -> None:
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        key = new_key(conn)
        fresh_table(conn, "t_multi", "id int, secret text")
        psycopg.ClientCursor(conn).execute(
            f"security label for pgsodium on column t_multi.secret "
            f"is 'ENCRYPT WITH KEY ID {key}'; select 1"
        )
        conn.execute("insert into t_multi values (1, 'm')")
        assert conn.execute(
            "select decrypted_secret from decrypted_t_multi"
        ).fetchone() == ("m",)


def test_null_key_is_stored_null_as_a_literal_or_a_parameter(
    conn: psycopg.Connection[Any],
) -> None:
    """pgsodium's trigger stores NULL when the key column is NULL: so does the
    proxy, whether the client binds the NULL (extended protocol) or psycopg
    writes it into the text (simple protocol)."""
    key = new_key(conn)
    fresh_table(conn, "t_nullkey", "id int, secret text, k uuid")
    conn.execute(
        "security label for pgsodium on column t_nullkey.secret "
        "is 'ENCRYPT WITH KEY COLUMN k'"
    )
    conn.execute("insert into t_nullkey values (1, %s, %s)", ["one", key])
    conn.execute("insert into t_nullkey values (2, %s, %s)", ["two", None])
    assert conn.execute(
        "select id, secret, k from t_nullkey where id = 2"
    ).fetchone() == (2, None, None)
    assert conn.execute(
        "select id, decrypted_secret from decrypted_t_nullkey order by id"
    ).fetchall() == [(1, "one"), (2, None)]


def test_more_shapes_of_reads_and_writes(
    conn: psycopg.Connection[Any], labelled: str
) -> None:
    conn.execute("insert into public.t_w values (2, %s, %s, 'n2')", ["two", b"2"])
    conn.execute("drop table if exists t_w_other")
    conn.execute("create table t_w_other (id int, tag text)")
    conn.execute("insert into t_w_other values (1, 'a'), (2, 'b')")
    rows = conn.execute(
        "select o.tag, d.decrypted_secret from t_w_other o "
        "join decrypted_t_w d on d.id = o.id order by o.tag"
    ).fetchall()
    assert rows == [("a", "one"), ("b", "two")]
    # The view inside a subquery or a CTE, two query levels down.
    for sql in [
        "select s.decrypted_secret from (select * from decrypted_t_w) s order by s.id",
        "with d as (select * from decrypted_t_w) select decrypted_secret from d "
        "order by id",
    ]:
        assert conn.execute(sql).fetchall() == [("one",), ("two",)]


def test_plaintext_of_writes_never_reaches_the_database(
    proxy: RunningProxy, conn: psycopg.Connection[Any], labelled: str
) -> None:
    marker = f"tce-plain-{uuid.uuid4().hex}-{type(conn.cursor()).__name__}"
    conn.execute(
        "insert into t_w (id, secret, blob) values (6, %s, %s)",
        [marker, marker.encode()],
    )
    conn.execute("update t_w set secret = %s, id = 6 where id = 6", [marker + "u"])
    assert conn.execute(
        "select decrypted_secret, decrypted_blob from decrypted_t_w where id = 6"
    ).fetchone() == (marker + "u", marker.encode())
    log = (proxy.upstream.datadir / "server.log").read_text(errors="replace")
    # It is logged, its table named as it resolved when the proxy rewrote it.
    assert 'insert into "public"."t_w" (id, secret, blob) values (6, ' in log
    assert marker not in log
    assert marker.encode().hex() not in log


def test_null_bind_parameters_store_null(
    proxy: RunningProxy, conn: psycopg.Connection[Any], labelled: str
) -> None:
    """An ORM sends None as a NULL bind parameter: NULL is stored, as a NULL
    literal is (pgsodium's trigger leaves NULL alone); a value beside it in the
    same statement is still encrypted and never reaches the database."""
    marker = f"tce-null-{uuid.uuid4().hex}"
    simple = isinstance(conn.cursor(), psycopg.ClientCursor)
    for binary in (False,) if simple else (False, True):
        cur = conn.cursor(binary=binary)
        cur.execute(
            "insert into t_w (id, secret, blob) values (7, %s, %s)", [None, None]
        )
        cur.execute(
            "insert into t_w (id, secret, blob) values (8, %s, %s)",
            [marker, None],
        )
        assert stored_rows(conn)[1:] == [
            (7, None, None, None),
            (8, stored_rows(conn)[2][1], None, None),
        ]
        cur.execute("update t_w set secret = %s, id = 8 where id = 8", [None])
        cur.execute("update t_w set blob = %s where id = 7", [marker.encode()])
        cur.execute("update t_w set blob = %s::bytea where id = 7", [None])
        assert conn.execute(
            "select id, secret, blob, decrypted_secret, decrypted_blob "
            "from decrypted_t_w where id in (7, 8) order by id"
        ).fetchall() == [(7, None, None, None, None), (8, None, None, None, None)]
        conn.execute("delete from t_w where id in (7, 8)")
    log = (proxy.upstream.datadir / "server.log").read_text(errors="replace")
    assert marker not in log
    assert marker.encode().hex() not in log


def test_long_values_keep_postgresql_base64_line_breaks(
    conn: psycopg.Connection[Any], labelled: str
) -> None:
    long_text = "é" * 300 + " the end"
    conn.execute("insert into t_w (id, secret) values (8, %s)", [long_text])
    stored = conn.execute("select secret from t_w where id = 8").fetchone()
    assert stored is not None and "\n" in stored[0]
    assert all(len(line) <= 76 for line in stored[0].split("\n"))
    assert conn.execute(
        "select decrypted_secret from decrypted_t_w where id = 8"
    ).fetchone() == (long_text,)


def test_labels_cannot_name_views_other_sessions_could_not_read(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any]
) -> None:
    fresh_table(conn, "t_inject", "id int, secret text")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute(
            "security label for pgsodium on table t_inject is "
            "'DECRYPT WITH VIEW public.x\"; drop table t_inject; --'"
        )
    # Written past the proxy, the table's own check refuses it.
    with pytest.raises(psycopg.errors.CheckViolation):
        direct.execute(
            "insert into pgsodium._proxy_label values ('pg_class'::regclass, "
            "'t_inject'::regclass, 0, 'DECRYPT WITH VIEW public.x\"y')"
        )


def test_a_plain_table_owner_labels_writes_and_reads(
    proxy: RunningProxy, db: str, conn: psycopg.Connection[Any]
) -> None:
    key = new_key(conn)
    fresh_table(conn, "t_not_mine", "id int, note text")
    conn.execute("drop schema if exists tce_owned cascade")
    conn.execute("drop role if exists tce_owner")
    conn.execute("create role tce_owner login in role pgsodium_keyiduser")
    conn.execute("create schema tce_owned authorization tce_owner")
    refused = [
        ("column public.t_not_mine.note", f"ENCRYPT WITH KEY ID {key}"),
        ("table public.t_not_mine", "DECRYPT WITH VIEW public.v_not_mine"),
    ]
    messages: list[str | None] = []
    expected_messages: list[str | None] = []
    with psycopg.connect(proxy.dsn(user="tce_owner", dbname=db), autocommit=True) as me:
        me.execute("create table tce_owned.t (id int, secret text)")
        me.execute(
            f"security label for pgsodium on column tce_owned.t.secret "
            f"is 'ENCRYPT WITH KEY ID {key}'"
        )
        me.execute("insert into tce_owned.t values (1, %s)", ["mine"])
        assert me.execute(
            "select decrypted_secret from tce_owned.decrypted_t"
        ).fetchone() == ("mine",)
        # pgsodium's grants on its views hold: masking_rule is for keyholders.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            me.execute("select * from pgsodium.masking_rule")
        # Labels on tables of others are refused, and nothing is recorded.
        for target, label in refused:
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
                me.execute(f"security label for pgsodium on {target} is '{label}'")
            messages.append(info.value.diag.message_primary)
    # PostgreSQL's messages for the same objects (COMMENT checks ownership as
    # SECURITY LABEL does): the bare relation name, "relation" for a column.
    with psycopg.connect(
        proxy.direct_dsn(user="tce_owner", dbname=db), autocommit=True
    ) as direct:
        for target, _ in refused:
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as expected:
                direct.execute(f"comment on {target} is 'x'")
            expected_messages.append(expected.value.diag.message_primary)
    assert messages == expected_messages
    assert messages == [
        "must be owner of relation t_not_mine",
        "must be owner of table t_not_mine",
    ]
    assert conn.execute(
        "select count(*) from pgsodium._proxy_label "
        "where objoid = 't_not_mine'::regclass"
    ).fetchone() == (0,)
    conn.execute("drop schema tce_owned cascade")


def test_a_database_without_the_schema_passes_through(proxy: RunningProxy) -> None:
    proxy.upstream.psql("DROP DATABASE IF EXISTS tce_bare")
    proxy.upstream.psql("CREATE DATABASE tce_bare")
    for factory in PROTOCOLS:
        with psycopg.connect(
            proxy.dsn(dbname="tce_bare"), autocommit=True, cursor_factory=factory
        ) as bare:
            bare.execute("begin")
            bare.execute("create table t (id int)")
            bare.execute("insert into t values (1)")
            assert bare.execute("select * from t").fetchall() == [(1,)]
            bare.execute("rollback")


async def test_asyncpg_binary_writes_and_reads(
    proxy: RunningProxy, db: str, conn: psycopg.Connection[Any]
) -> None:
    import asyncio

    import asyncpg

    key = new_key(conn)
    fresh_table(conn, "t_asyncpg", "id int primary key, secret text, raw bytea")
    for column in ("secret", "raw"):
        conn.execute(
            f"security label for pgsodium on column t_asyncpg.{column} "
            f"is 'ENCRYPT WITH KEY ID {key} ASSOCIATED (id)'"
        )

    async def run() -> None:
        a = await asyncpg.connect(
            host=proxy.host, port=proxy.port, user="postgres", database=db
        )
        try:
            await a.execute(
                "insert into t_asyncpg (id, secret, raw) values ($1, $2, $3)",
                1,
                "via asyncpg",
                b"\x00\xff",
            )
            statement = await a.prepare(
                "update t_asyncpg set secret = $2, raw = $3, id = $1 where id = $1"
            )
            await statement.fetch(1, "updated", b"\x00\xff")
            await statement.fetch(1, "updated", b"\x00\xff")  # prepared, reused
            row = await a.fetchrow(
                "select id, decrypted_secret, decrypted_raw from decrypted_t_asyncpg "
                "where id = $1",
                1,
            )
            assert tuple(row) == (1, "updated", b"\x00\xff")
        finally:
            await a.close()

    await asyncio.wait_for(run(), 30)


def test_security_invoker_view_honours_row_level_security(
    proxy: RunningProxy, db: str, conn: psycopg.Connection[Any]
) -> None:
    version = conn.execute("show server_version_num").fetchone()
    assert version is not None
    if int(version[0]) < 150000:
        pytest.skip("security_invoker views need PostgreSQL 15")
    key = new_key(conn)
    fresh_table(conn, "t_rls", "id int, owner_name text, secret text")
    conn.execute("drop role if exists tce_rls_user")
    conn.execute("create role tce_rls_user login in role pgsodium_keyiduser")
    conn.execute(
        f"security label for pgsodium on column t_rls.secret "
        f"is 'ENCRYPT WITH KEY ID {key} SECURITY INVOKER'"
    )
    conn.execute(
        "insert into t_rls values (1, 'tce_rls_user', %s), (2, 'someone', %s)",
        ["mine", "theirs"],
    )
    conn.execute("alter table t_rls enable row level security")
    conn.execute(
        "create policy own on t_rls for select using (owner_name = current_user)"
    )
    conn.execute("grant select on t_rls, decrypted_t_rls to tce_rls_user")
    with psycopg.connect(
        proxy.dsn(user="tce_rls_user", dbname=db), autocommit=True
    ) as user:
        assert user.execute(
            "select id, decrypted_secret from decrypted_t_rls"
        ).fetchall() == [(1, "mine")]
    assert conn.execute(
        "select id, decrypted_secret from decrypted_t_rls order by id"
    ).fetchall() == [(1, "mine"), (2, "theirs")]
    fresh_table(conn, "t_rls", "id int")
    conn.execute("drop role tce_rls_user")


def test_search_through_the_view_never_sends_the_value(
    proxy: RunningProxy, conn: psycopg.Connection[Any]
) -> None:
    key = new_key(conn)
    fresh_table(conn, "t_search", "id int, email text, blob bytea")
    for column in ("email", "blob"):
        conn.execute(
            f"security label for pgsodium on column t_search.{column} "
            f"is 'ENCRYPT WITH KEY ID {key}'"
        )
    marker = f"search-{uuid.uuid4().hex}@example.org"
    conn.execute(
        "insert into t_search values (1, %s, %s), (2, 'other@example.org', 'b')",
        [marker, marker.encode()],
    )
    assert conn.execute(
        "select id, decrypted_email from decrypted_t_search where decrypted_email = %s",
        [marker],
    ).fetchall() == [(1, marker)]
    if not isinstance(conn.cursor(), psycopg.ClientCursor):
        # (psycopg's client-side binding writes bytes as a cast: not searched)
        assert conn.execute(
            "select s.id from decrypted_t_search s "
            "where %s = s.decrypted_blob or id = 2 order by id",
            [marker.encode()],
        ).fetchall() == [(1,), (2,)]
    assert (
        conn.execute(
            "select id from decrypted_t_search where decrypted_email = 'nobody'"
        ).fetchall()
        == []
    )
    log = (proxy.upstream.datadir / "server.log").read_text(errors="replace")
    assert marker not in log


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("decrypted_email = %s", 5),
        ("%s = decrypted_email", 5),
        ("decrypted_email = %s", 5.5),
        ("decrypted_email = %s", True),
        ("decrypted_email = %s", uuid.UUID(int=5)),
        ("decrypted_email = %s::int", "5"),
        ("decrypted_email = 5", None),
        ("decrypted_email = 5000000000", None),
        ("decrypted_email = 5.0", None),
        ("not decrypted_email = %s or id = 1", 5),
        ("decrypted_blob = %s", 5),
        ("decrypted_blob = %s::text", "5"),
        ("decrypted_note = %s", 5),  # associated data: never searched, still 42883
    ],
)
def test_a_search_with_a_value_of_another_type_is_postgresqls_42883(
    conn: psycopg.Connection[Any],
    direct: psycopg.Connection[Any],
    where: str,
    value: Any,
) -> None:
    """The server resolves `=` before any row is read: text = integer has no
    operator. (The proxy compared the value's text, and found rows.)"""
    key = new_key(conn)
    fresh_table(conn, "t_typed", "id int, email text, blob bytea, note text")
    for column, label in (("email", ""), ("blob", ""), ("note", " ASSOCIATED (id)")):
        conn.execute(
            f"security label for pgsodium on column t_typed.{column} "
            f"is 'ENCRYPT WITH KEY ID {key}{label}'"
        )
    conn.execute("insert into t_typed values (1, '5', '5', '5')")
    sql = f"select id from decrypted_t_typed where {where}"
    params = None if value is None else [value]
    cursor = type(conn.cursor())  # the same binding both ways: same SQL sent

    def error(connection: psycopg.Connection[Any]) -> tuple[Any, ...]:
        with pytest.raises(psycopg.errors.UndefinedFunction) as caught:
            cursor(connection).execute(sql, params)
        diag = caught.value.diag
        return diag.message_primary, diag.message_hint, diag.statement_position

    assert error(conn) == error(direct)
    assert conn.execute("select 1").fetchone() == (1,)


def test_a_search_with_a_string_typed_parameter_still_matches(
    conn: psycopg.Connection[Any],
) -> None:
    """Parameters declared text, varchar or name compare as text."""
    if isinstance(conn.cursor(), psycopg.ClientCursor):
        pytest.skip("declared parameter types are the extended protocol's")
    key = new_key(conn)
    fresh_table(conn, "t_typed_s", "id int, email text")
    conn.execute(
        "security label for pgsodium on column t_typed_s.email "
        f"is 'ENCRYPT WITH KEY ID {key}'"
    )
    conn.execute("insert into t_typed_s values (1, 'ab'), (2, 'cd')")
    sql = b"select id from decrypted_t_typed_s where decrypted_email = $1"
    for oid in (0, 25, 1043, 19):
        prepared = conn.pgconn.prepare(b"", sql, [oid])
        assert prepared.status == psycopg.pq.ExecStatus.COMMAND_OK, (
            oid,
            prepared.error_message,
        )
        result = conn.pgconn.exec_prepared(b"", [b"ab"])
        assert result.status == psycopg.pq.ExecStatus.TUPLES_OK
        assert [result.get_value(i, 0) for i in range(result.ntuples)] == [b"1"]


@pytest.fixture
def undecryptable(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any]
) -> str:
    """t_neg: row 1 'a', row 2 'b', row 3 a ciphertext under another key (it does
    not decrypt under the label's key), row 4 NULL."""
    key, other = new_key(conn), new_key(conn)
    fresh_table(conn, "t_neg", "id int, email text")
    fresh_table(conn, "t_neg_other", "id int, email text")
    for table, k in (("t_neg", key), ("t_neg_other", other)):
        conn.execute(
            f"security label for pgsodium on column {table}.email "
            f"is 'ENCRYPT WITH KEY ID {k}'"
        )
    conn.execute("insert into t_neg values (1, 'a'), (2, 'b'), (4, null)")
    conn.execute("insert into t_neg_other values (3, 'c')")
    direct.execute("insert into t_neg select id, email from t_neg_other")
    return key


NEGATED = [
    ("not (decrypted_email = 'a')", "under NOT"),
    ("not decrypted_email = %s", "under NOT"),
    ("id = 1 or not (id > 0 and decrypted_email = %s)", "under NOT"),
    ("(decrypted_email = %s) is not true", "under IS NOT TRUE"),
    ("(decrypted_email = 'a') is false", "under IS FALSE"),
    ("(decrypted_email = 'a') is unknown", "under IS UNKNOWN"),
    ("case when decrypted_email = %s then false else true end", "inside CASE"),
    ("coalesce(decrypted_email = 'a', true)", "inside COALESCE"),
    ("(decrypted_email = 'a') = false", "as an operand of ="),
]


@pytest.mark.parametrize(("condition", "construct"), NEGATED)
def test_a_search_where_not_matching_would_match_is_refused(
    conn: psycopg.Connection[Any],
    undecryptable: str,
    condition: str,
    construct: str,
) -> None:
    """`NOT (decrypted_email = 'a')` rewritten into `NOT (email = <ciphertext>)`
    would return row 3, which does not decrypt at all: refused, naming where."""
    sql = f"select id from decrypted_t_neg where {condition}"
    params = ["a"] if "%s" in condition else []
    with pytest.raises(psycopg.errors.FeatureNotSupported) as caught:
        conn.execute(sql, params)
    message = caught.value.diag.message_primary or ""
    assert message.startswith(
        f"pgsodium-proxy cannot evaluate a comparison of decrypted_email {construct} "
        "in WHERE"
    )
    assert caught.value.diag.statement_position is not None
    assert conn.execute(
        "select id from decrypted_t_neg where decrypted_email = %s or id = 3 "
        "order by id",
        ["a"],
    ).fetchall() == [(1,), (3,)]


TABLE_DECRYPT = (
    "convert_from(pgsodium.crypto_aead_det_decrypt(decode(email, 'base64'), "
    "convert_to('', 'utf8'), %s::uuid), 'utf8')"
)


@pytest.mark.parametrize(
    ("template", "construct"),
    [
        ("delete from t_neg where not ({d} = 'a')", "under NOT"),
        ("delete from t_neg where ({d} = %s) is not true", "under IS NOT TRUE"),
        (
            "update t_neg set id = -id where case when {d} = 'a' then false "
            "else true end",
            "inside CASE",
        ),
        ("select id from t_neg where not {d} = 'a'", "under NOT"),
        (
            "select id from t_neg where id in (select id from t_neg where {d} = 'a')",
            "in a subquery",
        ),
    ],
)
def test_a_table_search_where_not_matching_would_match_is_refused(
    conn: psycopg.Connection[Any],
    direct: psycopg.Connection[Any],
    undecryptable: str,
    template: str,
    construct: str,
) -> None:
    """The same for `decrypt(c, ad, key) = v` on the table: the DELETE would
    remove row 3, which does not decrypt. Refused, nothing changed."""
    before = direct.execute("select * from t_neg order by id").fetchall()
    sql = template.format(d=TABLE_DECRYPT)
    params = [undecryptable] * sql.count("%s::uuid")
    if "= %s)" in sql:
        params.append("a")
    with pytest.raises(psycopg.errors.FeatureNotSupported) as caught:
        conn.execute(sql, params)
    assert (caught.value.diag.message_primary or "").startswith(
        "pgsodium-proxy cannot evaluate a comparison of "
        f"pgsodium.crypto_aead_det_decrypt() {construct} in WHERE"
    )
    assert direct.execute("select * from t_neg order by id").fetchall() == before
    # As a condition of WHERE it is still a search.
    conn.execute(
        f"update t_neg set id = 10 where {TABLE_DECRYPT} = 'a' or id = 2",
        [undecryptable],
    )
    assert sorted(r[0] for r in direct.execute("select id from t_neg")) == [
        3,
        4,
        10,
        10,
    ]


def _restored_rows(proxy: RunningProxy, dbname: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(proxy.dsn(dbname=dbname), autocommit=True) as conn:
        return conn.execute(
            "select id, decrypted_secret, decrypted_blob from decrypted_t_dump "
            "order by id"
        ).fetchall()


def test_a_dump_restores_labels_and_data_directly_and_through_the_proxy(
    proxy: RunningProxy,
) -> None:
    """pg_dump of a database with labelled tables, restored into new databases
    directly and through the proxy (whole, or its data after the schema): the same
    ciphertext (never encrypted twice),
    the labels on the restored tables' own oids (a dropped column before the
    encrypted one shifts its attnum), and the proxy encrypting new writes."""
    source = make_database(proxy, "tce_dump_src")
    with psycopg.connect(proxy.dsn(dbname=source), autocommit=True) as conn:
        key = new_key(conn)
        conn.execute("create table t_dump (id int, gone text, secret text, blob bytea)")
        conn.execute("alter table t_dump drop column gone")
        conn.execute(
            "security label for pgsodium on column t_dump.secret "
            f"is 'ENCRYPT WITH KEY ID {key} ASSOCIATED (id)'"
        )
        conn.execute(
            "security label for pgsodium on column t_dump.blob is 'ENCRYPT WITH KEY "
            f"ID {key}'"
        )
        conn.execute(
            "insert into t_dump values (1, 'one', 'b1'), (2, %s, %s), (3, null, null)",
            ["two " * 40, b"\x00\xff" * 50],
        )
        expected = conn.execute(
            "select id, decrypted_secret, decrypted_blob from decrypted_t_dump "
            "order by id"
        ).fetchall()
        stored = conn.execute("select * from t_dump order by id").fetchall()

    def dump(*options: str) -> str:
        return subprocess.run(
            [str(proxy.upstream.bindir / "pg_dump"), *options,
             proxy.upstream_url(dbname=source)],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout  # fmt: skip

    def restore(script: str, url: str) -> None:
        done = subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url],
            input=script, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, (url, done.stderr)

    # The whole dump into an empty database, directly and through the proxy (its
    # COPYs the proxy could encrypt a second time; its grants come last, after the
    # proxy's key lookups have run); and its schema directly, then its data
    # section through the proxy.
    whole, schema, data = dump(), dump("--schema-only"), dump("--data-only")
    for target in ("tce_dump_direct", "tce_dump_whole_proxy", "tce_dump_proxy"):
        proxy.upstream.psql(f"DROP DATABASE IF EXISTS {target}")
        proxy.upstream.psql(f"CREATE DATABASE {target}")
        if target == "tce_dump_direct":
            restore(whole, proxy.upstream_url(dbname=target))
        elif target == "tce_dump_whole_proxy":
            restore(whole, proxy.url(dbname=target))
        else:
            restore(schema, proxy.upstream_url(dbname=target))
            restore(data, proxy.url(dbname=target))
        assert _restored_rows(proxy, target) == expected, target
        with psycopg.connect(proxy.dsn(dbname=target), autocommit=True) as conn:
            assert conn.execute("select * from t_dump order by id").fetchall() == (
                stored
            ), target
            assert conn.execute(
                "select attname, key_id from pgsodium.masking_rule order by attname"
            ).fetchall() == [("blob", key), ("secret", key)]
            conn.execute("insert into t_dump values (4, 'four', 'b4')")
            conn.execute(
                "security label for pgsodium on column t_dump.blob is NULL"
            )  # a new label write realigns the restored rows first
            assert conn.execute(
                "select id, decrypted_secret from decrypted_t_dump where id = 4"
            ).fetchone() == (4, "four")
            raw = conn.execute("select secret from t_dump where id = 4").fetchone()
            assert raw is not None and raw[0] != "four"


def test_dropping_a_labelled_table_or_column_drops_its_labels(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any]
) -> None:
    key = new_key(conn)
    fresh_table(conn, "t_drop", "id int, a text, b text")
    for column in ("a", "b"):
        conn.execute(
            f"security label for pgsodium on column t_drop.{column} "
            f"is 'ENCRYPT WITH KEY ID {key}'"
        )
    oid = direct.execute("select 't_drop'::regclass::oid").fetchone()[0]

    def labels() -> list[tuple[Any, ...]]:
        return direct.execute(
            "select objsubid from pgsodium._proxy_label where objoid = %s "
            "order by objsubid",
            [oid],
        ).fetchall()

    assert labels() == [(2,), (3,)]
    conn.execute("alter table t_drop drop column a cascade")
    assert labels() == [(3,)]
    conn.execute("drop table t_drop cascade")
    assert labels() == []


def test_pgsodiums_tce_functions_answer_for_the_proxys_labels(
    conn: psycopg.Connection[Any], labelled: str
) -> None:
    """pgsodium's TCE helpers are declared with its signatures and answer from the
    proxy's labels (mask_columns(oid) works here; pgsodium's own one fails)."""
    assert conn.execute("select pgsodium.quote_assoc('id, note', true)").fetchone() == (
        "new.id::text || new.note::text",
    )
    assert conn.execute("select pgsodium.quote_assoc(null)").fetchone() == ("''",)
    rules = conn.execute(
        "select attname, key_id, associated_column, format_type "
        "from pgsodium.mask_columns('t_w'::regclass)"
    ).fetchall()
    assert rules == [
        ("secret", labelled, "id", "text"),
        ("blob", labelled, None, "bytea"),
    ]
    columns = conn.execute(
        "select pgsodium.decrypted_columns('t_w'::regclass)"
    ).fetchone()[0]
    assert columns.startswith("id, secret, CASE WHEN secret IS NULL")
    assert "AS decrypted_blob" in columns
    body = conn.execute("select pgsodium.encrypted_columns('t_w'::regclass)").fetchone()
    assert "Cannot encrypt empty string." in body[0]
    assert "new.id::text" in body[0]
    conn.execute("select pgsodium.create_mask_view('t_w'::regclass, 2)")
    conn.execute("select pgsodium.disable_security_label_trigger()")
    conn.execute("select pgsodium.enable_security_label_trigger()")
    assert conn.execute(
        "select decrypted_secret from decrypted_t_w where id = 1"
    ).fetchone() == ("one",)


@pytest.mark.parametrize(
    "sql",
    [
        "update t_w set secret = '{m}' wher id = 1",
        "insert into t_w values (70, '{m}', null, 'n') returning",
        "select * from decrypted_t_w where decrypted_secret = '{m}' and note = ",
    ],
)
def test_a_malformed_statement_naming_a_labelled_table_stays_in_the_proxy(
    proxy: RunningProxy,
    conn: psycopg.Connection[Any],
    direct: psycopg.Connection[Any],
    labelled: str,
    sql: str,
) -> None:
    """Its plaintext would reach the database's log with the syntax error: the
    proxy answers the error itself, as PostgreSQL's parser words and places it."""
    marker = f"tce-malformed-{uuid.uuid4().hex}-{len(sql)}"
    with pytest.raises(psycopg.errors.SyntaxError) as through:
        conn.execute(sql.format(m=marker))
    with pytest.raises(psycopg.errors.SyntaxError) as server:
        direct.execute(sql.format(m="x" * len(marker)))
    assert through.value.diag.message_primary == server.value.diag.message_primary
    assert through.value.diag.statement_position == server.value.diag.statement_position
    assert marker not in server_log(proxy)
    assert conn.execute("select 1").fetchone() == (1,)


@pytest.mark.parametrize(
    "sql",
    [
        "insert into t_w (id, secret) values (2, '{m}'), (3)",
        "insert into t_w (id, secret) values (2, '{m}'), (3, 'x', 'y')",
        "insert into t_w (id, secret) values (2, '{m}', 'extra')",
        "insert into t_w (id, secret, note) values (2, '{m}')",
        "insert into t_w (id, secret) values ((2, '{m}'))",
        "insert into t_w values (2, '{m}', 'b', 'n', 'extra')",
        "insert into t_w values (2, '{m}'), (3, 'x', ( 'b'))",
    ],
)
def test_values_rows_that_do_not_fit_get_postgresqls_42601(
    proxy: RunningProxy,
    conn: psycopg.Connection[Any],
    direct: psycopg.Connection[Any],
    labelled: str,
    sql: str,
) -> None:
    """Rows of different lengths, or more or fewer than the target columns: the
    client's mistake, worded and placed as PostgreSQL does, answered by the proxy
    (the plaintext stays out of the server's log), nothing stored."""
    marker = f"tce-rows-{uuid.uuid4().hex}-{len(sql)}"
    before = stored_rows(conn)
    with pytest.raises(psycopg.errors.SyntaxError) as through:
        conn.execute(sql.format(m=marker))
    with pytest.raises(psycopg.errors.SyntaxError) as server:
        direct.execute(sql.format(m="x" * len(marker)))
    for field in ("message_primary", "message_hint", "statement_position"):
        assert getattr(through.value.diag, field) == getattr(server.value.diag, field)
    assert marker not in server_log(proxy)
    assert stored_rows(conn) == before
    assert conn.execute("select 1").fetchone() == (1,)


def test_cursors_over_a_decrypting_view(
    conn: psycopg.Connection[Any], labelled: str
) -> None:
    """DECLARE … CURSOR over the view (psycopg's server-side cursors, psql's
    FETCH_COUNT): the rows FETCH returns are decrypted as a SELECT's are."""
    conn.execute("insert into t_w (id, secret, blob) values (50, 'fifty', 'b50')")
    with conn.transaction():
        with conn.cursor(name="tce_cursor") as cur:
            cur.itersize = 2
            cur.execute(
                "select id, decrypted_secret, decrypted_blob from decrypted_t_w "
                "where id in (1, 50) order by id"
            )
            assert cur.fetchall() == [(1, "one", b"one"), (50, "fifty", b"b50")]
        conn.execute(
            "declare c_tce cursor for select id, decrypted_secret from decrypted_t_w "
            "where decrypted_blob = 'b50'"  # the search: blob has no associated data
        )
        assert conn.execute("fetch all from c_tce").fetchall() == [(50, "fifty")]


def test_a_refusal_in_rewritten_text_points_nowhere_past_the_clients(
    conn: psycopg.Connection[Any], labelled: str
) -> None:
    """A decrypting view is expanded before planning: a refusal found in that text
    has no position rather than one past the end of what the client sent."""
    sql = "select 1 where exists (select decrypted_secret from decrypted_t_w)"
    with pytest.raises(psycopg.errors.FeatureNotSupported) as caught:
        conn.execute(sql)
    position = caught.value.diag.statement_position
    assert position is None or int(position) <= len(sql)


def test_words_of_ddl_in_a_statement_never_skip_its_labels(
    proxy: RunningProxy, conn: psycopg.Connection[Any], direct: psycopg.Connection[Any]
) -> None:
    """A new session's first statement, and the statement after this session's own
    DDL, are planned with the labels as they are now, whatever words they hold
    (a column named created_at, a value 'RENAME1', a Unicode-escaped name)."""
    key = new_key(conn)
    fresh_table(
        conn, "t_words", "id int primary key, email text, created_at text default 'x'"
    )
    conn.execute(
        "security label for pgsodium on column t_words.email is 'ENCRYPT WITH KEY ID "
        f"{key}'"
    )
    statements = [
        ("insert into t_words (id, email, created_at) values (%s, %s, 'now')", 1),
        ("insert into t_words (id, email) values (%s, %s) -- drop, alter", 2),
        ('insert into U&"t_wo\\0072ds" (id, email) values (%s, %s)', 3),
    ]
    for sql, n in statements:
        plain = f"CreateDropRename{n}Plaintext"
        with psycopg.connect(
            proxy.dsn(dbname=conn.info.dbname), autocommit=True
        ) as new:
            new.execute(sql, [n, plain])  # the session's first statement
        stored = direct.execute(
            "select email from t_words where id = %s", [n]
        ).fetchone()
        assert stored is not None and stored[0] != plain
        assert plain not in server_log(proxy)
    # The statement right after DDL in the same session.
    conn.execute("alter table t_words add column other text")
    conn.execute("insert into t_words (id, email) values (4, 'RENAME1 value')")
    assert conn.execute(
        "select id, decrypted_email from decrypted_t_words order by id"
    ).fetchall() == [
        (1, "CreateDropRename1Plaintext"),
        (2, "CreateDropRename2Plaintext"),
        (3, "CreateDropRename3Plaintext"),
        (4, "RENAME1 value"),
    ]
    assert "RENAME1" not in server_log(proxy)


def test_a_table_labelled_and_used_in_one_query_message_is_refused(
    proxy: RunningProxy, direct: psycopg.Connection[Any], db: str
) -> None:
    """The labels are read before a Query message runs: a later statement of the
    same message naming the table it labels is refused, and nothing runs."""
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        key = new_key(conn)
        conn.execute("drop table if exists t_onemsg cascade")
        script = (
            "create table t_onemsg (id int, s text); "
            "security label for pgsodium on column t_onemsg.s is 'ENCRYPT WITH KEY "
            f"ID {key}'; "
            "insert into t_onemsg values (1, 'OneMessagePlaintext')"
        )
        with pytest.raises(
            psycopg.errors.FeatureNotSupported, match="Query of its own"
        ):
            conn.execute(script.encode())  # bytes: a simple Query of three statements
        assert conn.execute("select to_regclass('t_onemsg')").fetchone() == (None,)
    assert "OneMessagePlaintext" not in server_log(proxy)


def test_pg_dump_runs_through_the_proxy(
    proxy: RunningProxy, conn: psycopg.Connection[Any], labelled: str
) -> None:
    """pg_dump sets restrict_nonsystem_relation_kind = 'view'; the proxy's own
    lookups before its statements still read the labels, and so does a session
    that sets it."""
    dumped = subprocess.run(
        [str(proxy.upstream.bindir / "pg_dump"), "--table=t_w",
         proxy.url(dbname=conn.info.dbname)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert dumped.returncode == 0, dumped.stderr
    assert "COPY public.t_w" in dumped.stdout
    with psycopg.connect(proxy.dsn(dbname=conn.info.dbname), autocommit=True) as new:
        new.execute("set restrict_nonsystem_relation_kind = 'view'")
        new.execute("insert into t_w (id, secret) values (60, 'RestrictedPlain')")
    assert conn.execute(
        "select decrypted_secret from decrypted_t_w where id = 60"
    ).fetchone() == ("RestrictedPlain",)
    assert "RestrictedPlain" not in server_log(proxy)


def test_writes_of_a_partition_of_a_labelled_table_are_encrypted(
    proxy: RunningProxy, conn: psycopg.Connection[Any], direct: psycopg.Connection[Any]
) -> None:
    """A partition has its labelled parent's rules, by column name (an attached
    partition may order its columns otherwise)."""
    key = new_key(conn)
    conn.execute("drop table if exists t_part cascade")
    conn.execute("create table t_part (id int, s text) partition by range (id)")
    conn.execute(
        "create table t_part_1 partition of t_part for values from (0) to (100)"
    )
    conn.execute("create table t_part_2 (s text, id int)")
    conn.execute(
        "alter table t_part attach partition t_part_2 for values from (100) to (200)"
    )
    conn.execute(
        f"security label for pgsodium on column t_part.s is 'ENCRYPT WITH KEY ID {key}'"
    )
    conn.execute("insert into t_part_1 (id, s) values (1, 'PartitionPlainOne')")
    conn.execute("insert into t_part_2 values ('PartitionPlainTwo', 101)")
    with conn.cursor().copy("copy t_part_2 from stdin") as copy:
        copy.write_row(("PartitionPlainThree", 102))
    assert conn.execute(
        "select id, decrypted_s from decrypted_t_part order by id"
    ).fetchall() == [
        (1, "PartitionPlainOne"),
        (101, "PartitionPlainTwo"),
        (102, "PartitionPlainThree"),
    ]
    log = server_log(proxy)
    for (stored,) in direct.execute("select s from t_part").fetchall():
        assert "Plain" not in stored
    assert "PartitionPlain" not in log


def test_writes_through_a_users_view_over_a_labelled_table_are_refused(
    proxy: RunningProxy, conn: psycopg.Connection[Any], labelled: str
) -> None:
    """The proxy cannot tell which columns of a user's view are encrypted: writes
    through it (or through a view over the decrypting view) are refused before
    anything goes upstream; reads and deletes pass as written."""
    conn.execute(
        "create or replace view v_over_t_w as select id, secret, note from t_w"
    )
    conn.execute("create or replace view v_over_v as select id, note from v_over_t_w")
    conn.execute(
        "create or replace view v_over_dec as select id, note from decrypted_t_w"
    )
    before = stored_rows(conn)
    plain = "ThisIsMyVeryLongSecretPasswordWithNoSpacesAtAll1"
    for sql in [
        "insert into v_over_t_w (id, secret) values (70, %s)",
        "update v_over_t_w set secret = %s where id = 1",
        "insert into v_over_v (id, note) values (71, %s)",
        "insert into v_over_dec (id, note) values (72, %s)",
    ]:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="a view over"):
            conn.execute(sql, [plain])
    assert stored_rows(conn) == before
    assert plain not in server_log(proxy)
    stored = conn.execute("select secret from t_w where id = 1").fetchone()
    assert conn.execute("select secret from v_over_t_w where id = 1").fetchone() == (
        stored
    )
    conn.execute("delete from v_over_t_w where id = 1")
    assert conn.execute("select count(*) from t_w where id = 1").fetchone() == (0,)


def test_names_resolve_once_for_the_labels_they_were_rewritten_for(
    proxy: RunningProxy, db: str, direct: psycopg.Connection[Any]
) -> None:
    """A table's name is resolved before its statement runs: a statement of the
    same message that may change the resolution first (SET search_path, DDL) makes
    a later one naming a kept name refused; a prepared statement reaches the table
    its name resolved to when it was parsed, whatever search_path says later."""
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        key, other = new_key(conn), new_key(conn)
        for schema, k in (("s_one", key), ("s_two", other)):
            conn.execute(f"drop schema if exists {schema} cascade")
            conn.execute(f"create schema {schema}")
            conn.execute(f"create table {schema}.t_sp (id int, secret text)")
            conn.execute(
                f"security label for pgsodium on column {schema}.t_sp.secret "
                f"is 'ENCRYPT WITH KEY ID {k}'"
            )
        conn.execute("drop schema if exists s_plain cascade")
        conn.execute("create schema s_plain")
        conn.execute("create table s_plain.t_sp (id int, secret text)")
        conn.execute("set search_path = s_plain, public")
        for script in [
            "set search_path = s_one, public; insert into t_sp values (1, "
            "'SpPlainOne')",
            "alter table s_plain.t_sp rename to t_gone; "
            "insert into t_sp values (1, 'SpPlainTwo')",
        ]:
            with pytest.raises(
                psycopg.errors.FeatureNotSupported, match="names resolve to"
            ):
                conn.execute(script.encode())  # one simple Query message
        conn.execute("set search_path = s_one, public")
        sql = "insert into t_sp (id, secret) values (%s, %s)"
        conn.execute(sql, [2, "SpPreparedOne"], prepare=True)
        conn.execute("set search_path = s_two, public")
        conn.execute(sql, [3, "SpPreparedTwo"], prepare=True)  # still s_one.t_sp
        conn.execute("set search_path = s_one, public")
        assert conn.execute(
            "select id, decrypted_secret from decrypted_t_sp order by id"
        ).fetchall() == [(2, "SpPreparedOne"), (3, "SpPreparedTwo")]
    assert direct.execute("select count(*) from s_two.t_sp").fetchone() == (0,)
    assert direct.execute("select count(*) from s_plain.t_sp").fetchone() == (0,)
    log = server_log(proxy)
    for plain in ("SpPlainOne", "SpPlainTwo", "SpPreparedOne", "SpPreparedTwo"):
        assert plain not in log


def test_column_privileges_of_computed_columns_hold_through_the_proxy(
    proxy: RunningProxy, conn: psycopg.Connection[Any], labelled: str, db: str
) -> None:
    """The proxy computes decrypted_<col> and decrypted_raw_key, but SELECT on
    them is still the database's to check: a role granted the other columns only
    gets PostgreSQL's 42501, directly and a query level down."""
    conn.execute("drop role if exists tce_cols")
    conn.execute("create role tce_cols login")
    conn.execute("grant pgsodium_keyiduser to tce_cols")
    conn.execute(
        "grant select (id, secret, blob, decrypted_blob, note) on decrypted_t_w to "
        "tce_cols"
    )
    columns = ", ".join(c for c in (
        "id", "status", "created", "expires", "key_type", "key_id", "key_context",
        "name", "associated_data", "raw_key", "raw_key_nonce", "parent_key", "comment",
    ))  # fmt: skip
    conn.execute(f"grant select ({columns}) on pgsodium.decrypted_key to tce_cols")
    try:
        with psycopg.connect(
            proxy.dsn(user="tce_cols", dbname=db), autocommit=True
        ) as c:
            for sql in [
                # Through the proxy a read needs SELECT on every column of the
                # decrypting view, the decrypted ones included.
                "select decrypted_blob from decrypted_t_w where id = 1",
                "select decrypted_secret from decrypted_t_w",
                "with d as (select * from decrypted_t_w) select decrypted_secret from "
                "d",
                "select decrypted_raw_key from pgsodium.decrypted_key",
            ]:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    c.execute(sql)
    finally:
        conn.execute("revoke all on decrypted_t_w from tce_cols")
        conn.execute("revoke all on pgsodium.decrypted_key from tce_cols")
        conn.execute("drop role tce_cols")


def test_table_only_and_star_over_the_decrypting_views(
    conn: psycopg.Connection[Any], labelled: str
) -> None:
    """`TABLE v`, `FROM ONLY v` and `FROM v *` read a view as `FROM v` does."""
    expected = conn.execute(
        "select id, decrypted_secret from decrypted_t_w order by id"
    ).fetchall()
    for sql in [
        "select id, decrypted_secret from only decrypted_t_w order by id",
        "select id, decrypted_secret from decrypted_t_w * order by id",
    ]:
        assert conn.execute(sql).fetchall() == expected
    rows = conn.execute("table decrypted_t_w").fetchall()
    assert sorted((r[0], r[2]) for r in rows) == expected
    assert len(conn.execute("table pgsodium.decrypted_key").fetchall()) >= 1
    conn.execute("table vault.decrypted_secrets")
    conn.execute("select * from only vault.decrypted_secrets")


def test_table_as_a_sessions_first_statement_reads_labelled_relations(
    proxy: RunningProxy,
    conn: psycopg.Connection[Any],
    direct: psycopg.Connection[Any],
    labelled: str,
    db: str,
) -> None:
    """`TABLE t` as the first statement of a session (before the proxy has read
    the labelled names), or anywhere a query stands, returns PostgreSQL's rows,
    the decrypting view's decrypted."""
    stored = direct.execute("table t_w").fetchall()
    decrypted = conn.execute("select * from decrypted_t_w").fetchall()
    for sql, expected in [
        ("table t_w", stored),
        ("table t_w;", stored),
        ("table pg_class limit 0; select * from t_w", stored),
        ("table decrypted_t_w", decrypted),
        ("/* first */ table t_w", stored),
        ("select * from (table t_w) x", stored),
        ("table t_w except values (0, '', ''::bytea, '')", stored),
        ("values (0, '', ''::bytea, '') except table t_w", [(0, "", b"", "")]),
        ("with x as (table decrypted_t_w) select * from x", decrypted),
        ("select * from (table decrypted_t_w) x", decrypted),
    ]:
        with psycopg.connect(
            proxy.dsn(dbname=db), autocommit=True, cursor_factory=type(conn.cursor())
        ) as c:
            cur = c.execute(sql)
            while cur.nextset():
                pass  # the last statement's rows
            assert cur.fetchall() == expected, sql


def test_a_search_needs_select_on_the_decrypted_column(
    proxy: RunningProxy, conn: psycopg.Connection[Any], labelled: str, db: str
) -> None:
    """WHERE decrypted_<col> = v runs upstream as a ciphertext comparison; the
    database still checks SELECT on decrypted_<col>, as it would for WHERE."""
    conn.execute("drop role if exists tce_search_cols")
    conn.execute("create role tce_search_cols login")
    conn.execute("grant pgsodium_keyiduser to tce_search_cols")
    conn.execute(
        "grant select (id, secret, blob, note) on decrypted_t_w to tce_search_cols"
    )
    try:
        with psycopg.connect(
            proxy.dsn(user="tce_search_cols", dbname=db), autocommit=True
        ) as c:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(
                    "select id from decrypted_t_w where decrypted_blob = %s", [b"one"]
                )
    finally:
        conn.execute("revoke all on decrypted_t_w from tce_search_cols")
        conn.execute("drop role tce_search_cols")


DECRYPTS = (
    "pgsodium.crypto_aead_det_decrypt(bytea,bytea,uuid,bytea)",
    "pgsodium.crypto_aead_det_decrypt(bytea,bytea,uuid)",
)
ENCRYPTS = (
    "pgsodium.crypto_aead_det_encrypt(bytea,bytea,uuid,bytea)",
    "pgsodium.crypto_aead_det_encrypt(bytea,bytea,uuid)",
)


def test_a_search_needs_execute_on_the_decrypt_it_stands_for_not_the_encrypt(
    proxy: RunningProxy, conn: psycopg.Connection[Any]
) -> None:
    """pgsodium evaluates `WHERE decrypted_c = v` (and the same decrypt written
    over the table) by decrypting each row: the current role needs EXECUTE on
    crypto_aead_det_decrypt, never on crypto_aead_det_encrypt, which the proxy
    computes in its stead. Without it: 42501 naming the decrypt, and v never
    reaches the database."""
    db = make_database(proxy, "tce_search_execute")
    cursor = type(conn.cursor())
    value = f"guess-{uuid.uuid4().hex}-{cursor.__name__}"
    admin = psycopg.connect(proxy.dsn(dbname=db), autocommit=True)
    admin.execute("drop role if exists tce_guesser")
    admin.execute("create role tce_guesser login in role pgsodium_keyiduser")
    try:
        key = new_key(admin)
        admin.execute("create table t_ds (id int, s text)")
        admin.execute(
            "security label for pgsodium on column t_ds.s "
            f"is 'ENCRYPT WITH KEY ID {key}'"
        )
        admin.execute("insert into t_ds values (1, %s)", [value])
        admin.execute("grant select on t_ds, decrypted_t_ds to tce_guesser")
        searches = [
            ("select id from decrypted_t_ds where decrypted_s = %s", [value]),
            (f"select id from decrypted_t_ds where decrypted_s = '{value}'", None),
            (
                "select id from t_ds where convert_from(pgsodium.crypto_aead_det_"
                "decrypt(decode(s, 'base64'), ''::bytea, %s::uuid), 'utf8') = %s",
                [key, value],
            ),
        ]
        everyone = "pgsodium_keyiduser, pgsodium_keymaker"
        with psycopg.connect(
            proxy.dsn(user="tce_guesser", dbname=db),
            autocommit=True,
            cursor_factory=cursor,
        ) as guesser:
            for revoked, granted in ((DECRYPTS, ENCRYPTS), (ENCRYPTS, DECRYPTS)):
                for fn in granted:
                    admin.execute(f"grant execute on function {fn} to {everyone}")
                for fn in revoked:
                    admin.execute(f"revoke execute on function {fn} from {everyone}")
                for sql, params in searches:
                    if revoked is DECRYPTS:
                        with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
                            guesser.execute(sql, params)
                        assert e.value.diag.message_primary == (
                            "permission denied for function crypto_aead_det_decrypt"
                        ), sql
                    else:
                        assert guesser.execute(sql, params).fetchall() == [(1,)], sql
        assert value not in server_log(proxy)
    finally:
        admin.close()
        proxy.upstream.psql(f"DROP DATABASE IF EXISTS {db}")
        proxy.upstream.psql("DROP ROLE IF EXISTS tce_guesser")


def test_writes_of_an_inheritance_child_of_a_labelled_table_are_encrypted(
    proxy: RunningProxy, conn: psycopg.Connection[Any], labelled: str
) -> None:
    """A child table's rows are read through the parent's decrypting view: they
    are encrypted as the parent's (found by a fresh-eyes test: plaintext)."""
    conn.execute("drop table if exists t_w_child")
    conn.execute("create table t_w_child () inherits (t_w)")
    conn.execute("insert into t_w_child (id, secret) values (80, 'ChildPlainOne')")
    with conn.cursor().copy("copy t_w_child (id, secret) from stdin") as copy:
        copy.write_row((81, "ChildPlainTwo"))
    assert conn.execute(
        "select id, decrypted_secret from decrypted_t_w where id >= 80 order by id"
    ).fetchall() == [(80, "ChildPlainOne"), (81, "ChildPlainTwo")]
    assert "ChildPlain" not in server_log(proxy)
    conn.execute("drop table t_w_child")


def test_a_statement_prepared_before_its_table_was_labelled_is_prepared_again(
    proxy: RunningProxy, db: str, direct: psycopg.Connection[Any]
) -> None:
    """psycopg's prepared statement (and asyncpg's cache, the same protocol)
    parsed before a label, or under another key: its next execution is parsed
    again by the proxy, so it is encrypted under the labels as they are now."""
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        key, other = new_key(conn), new_key(conn)
        fresh_table(conn, "t_prep", "id int, b bytea, s text")
        sql = "insert into t_prep values (%s, %s, %s)"
        conn.execute(sql, [1, b"before the label", "x"], prepare=True)
        label = (
            "security label for pgsodium on column t_prep.b is 'ENCRYPT WITH KEY ID {}'"
        )
        conn.execute(label.format(key))
        plain = b"PreparedPlain-bytes-long-enough-for-the-guard-33"
        conn.execute(sql, [2, plain, "x"], prepare=True)
        view = "select decrypted_b from decrypted_t_prep where id = %s"
        assert conn.execute(view, [2]).fetchone() == (plain,)
        conn.execute(label.format(other))  # row 2 no longer decrypts, as in pgsodium
        conn.execute(sql, [3, plain + b"3", "x"], prepare=True)
        assert conn.execute(view, [3]).fetchone() == (plain + b"3",)
    stored = direct.execute("select b from t_prep where id > 1").fetchall()
    assert all(plain not in row[0] for row in stored)
    assert plain.hex() not in server_log(proxy)


def test_sql_prepare_cannot_carry_what_the_proxy_evaluates(
    proxy: RunningProxy, db: str, direct: psycopg.Connection[Any]
) -> None:
    """PREPARE … AS: the proxy rewrites a statement when it is sent, not when
    EXECUTE runs it: pgsodium calls (a nonce would repeat), Vault calls and
    labelled tables are refused in it, and EXECUTE of one prepared before its
    table got encrypted columns is refused."""
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        key = new_key(conn)
        fresh_table(conn, "t_sqlprep", "id int, s text")
        conn.execute(
            "prepare p_early (int, text) as insert into t_sqlprep values ($1, $2)"
        )
        conn.execute(
            "security label for pgsodium on column t_sqlprep.s is 'ENCRYPT WITH KEY "
            f"ID {key}'"
        )
        for sql in [
            "prepare p1 as select pgsodium.crypto_aead_det_noncegen()",
            "prepare p2 as select vault.create_secret('SqlPrepPlainVault')",
            "prepare p3 (int, text) as insert into t_sqlprep values ($1, $2)",
            "execute p_early (1, 'SqlPrepPlainEarly')",
        ]:
            with pytest.raises(psycopg.errors.FeatureNotSupported):
                conn.execute(sql)
        assert conn.execute("select count(*) from t_sqlprep").fetchone() == (0,)
    log = server_log(proxy)
    assert "SqlPrepPlainVault" not in log and "SqlPrepPlainEarly" not in log


def test_a_call_that_may_change_search_path_before_a_labelled_table_is_refused(
    proxy: RunningProxy, db: str, direct: psycopg.Connection[Any]
) -> None:
    """The proxy resolves a labelled table's name before a Query message runs: a
    statement of the message that calls set_config or a user's function (which
    may SET search_path), or ends the transaction (SET LOCAL ends with it), makes
    a later statement naming the table refused, where PostgreSQL would have
    reached another table. Statements that call nothing of the kind, as a script
    of INSERTs, still run in one message."""
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        key = new_key(conn)
        for schema in ("s_fn_main", "s_fn_other"):
            conn.execute(f"drop schema if exists {schema} cascade")
            conn.execute(f"create schema {schema}")
            conn.execute(f"create table {schema}.t_fn (id int, secret text)")
        conn.execute(
            "security label for pgsodium on column s_fn_main.t_fn.secret "
            f"is 'ENCRYPT WITH KEY ID {key}'"
        )
        conn.execute(
            "create function s_fn_main.to_other() returns void language sql as "
            "$$ select set_config('search_path', 's_fn_other, public', false) $$"
        )
        conn.execute("set search_path = s_fn_main, public")
        for script in [
            "select set_config('search_path', 's_fn_other, public', false); "
            "insert into t_fn values (1, 'FnPlainOne')",
            "select to_other(); insert into t_fn values (2, 'FnPlainTwo')",
            "select s_fn_main.to_other(); insert into t_fn values (3, 'FnPlainThree')",
            "insert into t_fn values (4, 'x'), (length(to_other()::text), 'y'); "
            "select * from decrypted_t_fn",
        ]:
            with pytest.raises(
                psycopg.errors.FeatureNotSupported, match="user's function"
            ):
                conn.execute(script.encode())  # one simple Query message
            assert conn.execute("show search_path").fetchone() == ("s_fn_main, public",)
        conn.execute("begin")
        conn.execute("set local search_path = s_fn_other, public")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="COMMIT"):
            conn.execute(b"commit; insert into t_fn values (5, 'FnPlainFive')")
        conn.execute("rollback")
        conn.execute(
            b"insert into t_fn values (6, 'FnScriptSix'); "
            b"insert into t_fn (id, secret) values (7, 'FnScriptSeven'); "
            b"select now(), count(*) from t_fn; "
            b"insert into t_fn values (5 + length('abc'), 'FnScriptEight')"
        )
        assert conn.execute(
            "select id, decrypted_secret from decrypted_t_fn order by id"
        ).fetchall() == [
            (6, "FnScriptSix"),
            (7, "FnScriptSeven"),
            (8, "FnScriptEight"),
        ]
    assert direct.execute("select count(*) from s_fn_other.t_fn").fetchone() == (0,)
    log = server_log(proxy)
    for plain in ("FnPlain", "FnScript"):
        assert plain not in log


def test_a_name_resolved_elsewhere_by_the_time_its_statement_runs_writes_nothing(
    proxy: RunningProxy, db: str, direct: psycopg.Connection[Any]
) -> None:
    """search_path changed where no text of the message shows it (an operator's
    function, a domain's check, a cast, pg_settings): each value the proxy
    encrypted checks upstream that the name still means the table whose labels
    were applied, so the write fails whichever way the name moved."""
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        key = new_key(conn)
        for schema in ("s_op_main", "s_op_other"):
            conn.execute(f"drop schema if exists {schema} cascade")
            conn.execute(f"create schema {schema}")
            conn.execute(f"create table {schema}.t_op (id int, secret text)")
        conn.execute(
            "security label for pgsodium on column s_op_other.t_op.secret "
            f"is 'ENCRYPT WITH KEY ID {key}'"
        )
        conn.execute(
            "create function s_op_main.op_path(int, int) returns bool language sql "
            "as $$ select set_config('search_path', 's_op_other, s_op_main, public', "
            "false) is not null $$"
        )
        conn.execute(
            "create operator s_op_main.=== (function = s_op_main.op_path, "
            "leftarg = int, rightarg = int)"
        )
        conn.execute(
            "create function s_op_main.op_back(int, int) returns bool language sql "
            "as $$ select set_config('search_path', 's_op_main, s_op_other, public', "
            "false) is not null $$"
        )
        conn.execute(
            "create operator s_op_main.==== (function = s_op_main.op_back, "
            "leftarg = int, rightarg = int)"
        )
        cases = [
            # Labelled other.t_op resolved first; the operator moves it to main.
            ("s_op_other, s_op_main, public", "select 1 ==== 2; "
             "insert into t_op values (1, 'OpSecretOne')"),
            # Unlabelled main.t_op first... labelled other.t_op is where it lands.
            ("s_op_main, s_op_other, public", "select 1 === 2; "
             "update t_op set secret = 'OpSecretTwo'"),
        ]  # fmt: skip
        for path, script in cases:
            conn.execute(f"set search_path = {path}")
            with pytest.raises(psycopg.errors.FeatureNotSupported) as caught:
                conn.execute(script.encode())  # one simple Query message
            assert "cannot write" in (caught.value.diag.message_primary or "")
        # The name reaches nothing before the message runs; an operator's function
        # then makes it reach the labelled table: nothing of it goes up as written.
        conn.execute("set search_path = public")
        for script in [
            b"select 1 operator(s_op_main.===) 2; "
            b"insert into t_op values (5, 'OpSecretFive')",
            b"select 1 operator(s_op_main.===) 2; "
            b"select id from decrypted_t_op where decrypted_secret = 'OpSecretSix'",
        ]:
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="reaches no"):
                conn.execute(script)
            assert conn.execute("show search_path").fetchone() == ("public",)
        conn.execute("set search_path = s_op_other, s_op_main, public")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="cannot write"):
            conn.execute(b"select 1; copy t_op from stdin")
        conn.execute(
            b"select 1; insert into t_op values (3, 'OpScriptThree'); "
            b"insert into t_op values (4, 'OpScriptFour')"
        )
        assert conn.execute(
            "select id, decrypted_secret from s_op_other.decrypted_t_op order by id"
        ).fetchall() == [(3, "OpScriptThree"), (4, "OpScriptFour")]
    assert direct.execute("select count(*) from s_op_main.t_op").fetchone() == (0,)
    assert "OpSecret" not in server_log(proxy)
    assert "OpScript" not in server_log(proxy)


def test_ddl_naming_a_labelled_table_is_resolved_by_postgresql(
    proxy: RunningProxy, db: str, direct: psycopg.Connection[Any]
) -> None:
    """Only statements that read or write rows have their names written out as
    they resolved: `create temp table t` is a new table, not the labelled one."""
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        key = new_key(conn)
        fresh_table(conn, "t_ddlname", "id int, secret text")
        conn.execute(
            "security label for pgsodium on column t_ddlname.secret "
            f"is 'ENCRYPT WITH KEY ID {key}'"
        )
        conn.execute("create temp table t_ddlname (id int, secret text)")
        conn.execute("insert into pg_temp.t_ddlname values (1, 'plain')")
        assert conn.execute("select secret from pg_temp.t_ddlname").fetchall() == [
            ("plain",)
        ]
        conn.execute("drop schema if exists s_ddlname cascade")
        conn.execute("create schema s_ddlname")
        conn.execute("set search_path = s_ddlname, public")
        conn.execute("create table if not exists t_ddlname (id int)")
        assert direct.execute(
            "select count(*) from pg_tables where schemaname = 's_ddlname'"
        ).fetchone() == (1,)
