"""The TCE pass on exact SQL text: labels checked, writes encrypted, views expanded."""

from __future__ import annotations

import pytest

from rewriter import tce
from rewriter.analyze import analyze
from rewriter.errors import RewriteError
from rewriter.tce_search import SEARCH_DECRYPT, SEARCH_MARK
from rewriter.tce_write import plan_rewrite, rewrite

KEY = "9c2d4b0e-0c4c-4a0e-9d8e-2f4a4b7b6a11"

TABLE = tce.Relation(
    kind="table",
    table='"public"."t"',
    view="public.decrypted_t",
    columns=(
        tce.Column("id", "integer"),
        tce.Column("secret", "text", encrypted=True, key_id=KEY, associated=("id",)),
        tce.Column("raw", "bytea", encrypted=True, key_column="k", nonce="n"),
        tce.Column("k", "uuid"),
        tce.Column("n", "bytea"),
    ),
)
VIEW = tce.Relation("view", TABLE.table, TABLE.view, TABLE.columns)
RELATIONS = {'"t"': TABLE, '"decrypted_t"': VIEW}


def run(sql: str) -> str:
    return rewrite(sql, tce.parse(sql), RELATIONS)


def test_insert_values_with_literal_and_parameter() -> None:
    assert run("insert into t (id, secret) values (1, 'x'), ($1, $2)") == (
        "insert into t (id, secret) values (1, encode(pgsodium.crypto_aead_det_encrypt("
        "convert_to(('x')::text, 'utf8'), convert_to(((1)::int4::text)::text, 'utf8'), "
        f"'{KEY}'::uuid, NULL::bytea), 'base64')), ($1, CASE WHEN ($2) IS NULL "
        "THEN NULL ELSE encode(pgsodium.crypto_aead_det_encrypt(convert_to(($2)::text,"
        f" 'utf8'), convert_to((($1)::int4::text)::text, 'utf8'), '{KEY}'::uuid, "
        "NULL::bytea), 'base64') END)"
    )


def test_bytea_with_key_column_and_nonce() -> None:
    assert run("insert into t (raw, k, n) values ($1, $2, $3)") == (
        "insert into t (raw, k, n) values (CASE WHEN ($1) IS NULL THEN NULL "
        "WHEN (($2)::uuid) IS NULL THEN NULL ELSE "
        "pgsodium.crypto_aead_det_encrypt(($1)::bytea, "
        "convert_to(('')::text, 'utf8'), ($2)::uuid, ($3)::bytea) END, $2, $3)"
    )


def test_null_default_and_null_key_stay_as_they_are() -> None:
    sql = "insert into t (id, secret, raw, k, n) values (1, null, 'r', null, null)"
    assert run(sql) == sql.replace("'r'", "NULL")
    sql = "insert into t (id, secret) values (1, default)"
    assert run(sql) == sql


def test_update_set() -> None:
    assert run("update t set secret = 'y', id = 2 where id = 1") == (
        "update t set secret = encode(pgsodium.crypto_aead_det_encrypt(convert_to(('y')"
        "::text, 'utf8'), convert_to(((2)::int4::text)::text, 'utf8'), "
        f"'{KEY}'::uuid, NULL::bytea), 'base64'), id = 2 where id = 1"
    )


def test_view_read_becomes_a_subquery_over_the_view() -> None:
    out = run("select d.decrypted_secret from decrypted_t d")
    assert out.startswith(
        'select d.decrypted_secret from (SELECT "id", "secret", CASE '
    )
    assert out.endswith(
        'AS "decrypted_raw", "k", "n" FROM decrypted_t _pgsp_tce WHERE '
        '(CASE WHEN false THEN "_pgsp_tce"."decrypted_secret" END) IS NULL AND '
        '(CASE WHEN false THEN "_pgsp_tce"."decrypted_raw" END) IS NULL) d'
    )  # the database checks SELECT on each decrypted column
    assert 'AS "decrypted_t"' in run("select * from decrypted_t")


def test_untouched_statements_are_returned_unchanged() -> None:
    for sql in [
        "select * from t",
        "delete from t where id = 1",
        "grant select on decrypted_t to someone",
        "update t set k = k, raw = null",
    ]:
        assert run(sql) == sql


@pytest.mark.parametrize(
    "sql",
    [
        "insert into t (id, secret) select 1, 'x'",
        "insert into t (id, secret) values (1, lower('x'))",
        "insert into t (secret) values ('x')",
        "update t set secret = 'x'",
        "update t set id = id",
        "copy t from '/tmp/plain.txt'",
        "insert into decrypted_t (id, decrypted_secret) values (1, 'x')",
        "insert into decrypted_t values (1, 'x')",
        "insert into t (id, secret) values (1, 'x') on conflict (id) do update "
        "set secret = 'y'",
    ],
)
def test_refused_with_0a000(sql: str) -> None:
    with pytest.raises(RewriteError) as info:
        run(sql)
    assert info.value.sqlstate == "0A000"


REENCRYPTED = (
    '"secret" = _pgsp_reencrypt._pgsp_c0 FROM ROWS FROM ('
    "pg_catalog.unnest(NULL::pg_catalog.oid[]), "
    "pg_catalog.unnest(NULL::pg_catalog.tid[]), "
    "pg_catalog.unnest(NULL::pg_catalog.text[])) "
    "AS _pgsp_reencrypt(_pgsp_oid, _pgsp_tid, _pgsp_c0)"
)
EQ = "OPERATOR(pg_catalog.=)"


def test_an_update_of_only_associated_data_re_encrypts_from_a_pre_read() -> None:
    sql = "update t set id = $1 where id = $2 returning *, id"
    text, plan = plan_rewrite(sql, tce.parse(sql), RELATIONS)
    assert text == (
        f'update t set id = $1, {REENCRYPTED} where "t".tableoid {EQ} '
        f'_pgsp_reencrypt._pgsp_oid AND "t".ctid {EQ} '
        '_pgsp_reencrypt._pgsp_tid AND (id = $2) returning "t".*, id'
    )
    assert plan is not None and plan.placeholder in text
    assert plan.select == (
        'SELECT "t".tableoid, "t".ctid, '
        "pg_catalog.encode(pg_catalog.convert_to("
        """("t"."id"::pg_catalog.text)::pg_catalog.text, 'utf8'), 'base64'), """
        "pg_catalog.encode(pg_catalog.convert_to("
        "(($1)::pg_catalog.int4::pg_catalog.text)::pg_catalog.text, 'utf8'), "
        "'base64'), "
        '"t"."secret" '
        'FROM t WHERE id = $2 LIMIT 100001 FOR UPDATE OF "t"'
    )
    (column,) = plan.columns
    assert (column.name, column.key_id, column.old_ad, column.new_ad) == (
        "secret",
        KEY,
        2,
        3,
    )
    assert (column.value, column.old_key, column.old_nonce) == (4, None, None)


def test_a_key_and_nonce_change_reads_old_and_new_and_keeps_the_alias() -> None:
    sql = "update only t as x set k = $1 where x.id = 1"
    text, plan = plan_rewrite(sql, tce.parse(sql), RELATIONS)
    assert "pg_catalog.decode(_pgsp_reencrypt._pgsp_c0, 'base64')" in text
    assert f'"x".ctid {EQ} _pgsp_reencrypt._pgsp_tid AND (x.id = 1)' in text
    assert plan is not None
    assert plan.select == (
        'SELECT "x".tableoid, "x".ctid, "x"."k"::pg_catalog.text, '
        "($1)::pg_catalog.uuid::pg_catalog.text, "
        """pg_catalog.encode("x"."n", 'base64'), """
        """pg_catalog.encode("x"."raw", 'base64') """
        'FROM only t as x WHERE x.id = 1 LIMIT 100001 FOR UPDATE OF "x"'
    )
    (column,) = plan.columns
    assert (column.old_key, column.new_key, column.old_nonce, column.new_nonce) == (
        2,
        3,
        4,
        4,
    )


def test_a_null_key_column_stores_null_without_reading() -> None:
    text, plan = plan_rewrite(
        "update t set k = null", tce.parse("update t set k = null"), RELATIONS
    )
    assert (text, plan) == ('update t set k = null, "raw" = NULL', None)


@pytest.mark.parametrize(
    ("sql", "construct"),
    [
        ("update t set id = 3 from u where u.id = t.id", "UPDATE ... FROM"),
        ("update t set id = 3 where current of c", "WHERE CURRENT OF"),
        ("with u as (select 1) update t set id = 3", "WITH ... UPDATE"),
        ("with u as (update t set id = 3 returning 1) select 1", "of its own"),
        ("update decrypted_t set id = 3", "decrypting view"),
        ("update t set id = id + 1", "not a literal or a parameter"),
        ("update t set id = default", "not a literal or a parameter"),
        ("update t set id = 3; select 1", "among other statements"),
        (
            "update t set id = 3 where secret = pgsodium.crypto_aead_det_encrypt("
            "'x', '', 1)",
            "calls a pgsodium function",
        ),
        (
            "update t set id = 3 where id in (select id from decrypted_t)",
            "reads a decrypting view",
        ),
        (
            "insert into t (id) values (1) on conflict (id) do update set id = 2",
            "ON CONFLICT DO UPDATE",
        ),
    ],
)
def test_re_encryption_is_refused_beyond_a_plain_update(
    sql: str, construct: str
) -> None:
    with pytest.raises(RewriteError) as info:
        run(sql)
    assert info.value.sqlstate == "0A000"
    assert construct in info.value.message


@pytest.mark.parametrize(
    "label",
    [
        f"ENCRYPT WITH KEY ID {KEY}",
        f"encrypt with key id {KEY.upper()} associated (a, b) nonce n security invoker",
        "ENCRYPT WITH KEY COLUMN secret2_key_id-test NONCE n ASSOCIATED (id)",
    ],
)
def test_good_column_labels(label: str) -> None:
    tce.check_column_label(label)


@pytest.mark.parametrize(
    "label",
    [
        "ENCRYPT WITH KEY",
        f"ENCRYPT WITH KEY ID {KEY} ASSOCIATED id",
        f"ENCRYPT WITH KEY ID {KEY} NONCE",
        f"ENCRYPT WITH KEY ID {KEY} NONCE a NONCE b",
        f"ENCRYPT WITH KEY ID {KEY} garbage",
        'ENCRYPT WITH KEY COLUMN "quoted"',
    ],
)
def test_bad_column_labels(label: str) -> None:
    with pytest.raises(RewriteError) as info:
        tce.check_column_label(label)
    assert info.value.sqlstate == "22023"


def test_security_label_becomes_a_do_block() -> None:
    sql = "security label for pgsodium on column s.t.c is 'ENCRYPT WITH KEY ID ''x'''"
    with pytest.raises(RewriteError):
        run(sql)
    sql = f"security label for pgsodium on column s.t.c is 'ENCRYPT WITH KEY ID {KEY}'"
    assert run(sql) == (
        "DO $pgsodium_proxy_label$ BEGIN PERFORM pgsodium._proxy_tce_set_label("
        f"'column', '\"s\".\"t\"', 'c', 'ENCRYPT WITH KEY ID {KEY}'); "
        "END $pgsodium_proxy_label$"
    )
    assert run("security label for pgsodium on role r is null").endswith(
        "_proxy_tce_set_label('role', 'r', NULL, NULL); END $pgsodium_proxy_label$"
    )


def test_a_with_query_of_the_same_name_is_left_alone() -> None:
    sql = "with decrypted_t as (select 1 as id) select * from decrypted_t"
    assert run(sql) == sql
    assert tce.relation_names(tce.parse(sql)) == []


@pytest.mark.parametrize(
    "sql",
    [
        "with x as (insert into t (id, secret) values (1, 'p') returning id) "
        "select * from x",
        "explain analyze insert into t (id, secret) values (1, 'p')",
        "prepare p as insert into t (id, secret) values (1, 'p')",
        "with x as (update decrypted_t set secret = 'p' returning id) select 1",
    ],
)
def test_nested_writes_are_refused(sql: str) -> None:
    with pytest.raises(RewriteError) as info:
        run(sql)
    assert info.value.sqlstate == "0A000"


@pytest.mark.parametrize(
    "sql",
    [
        "update decrypted_t set secret = 'new', id = 1 where decrypted_secret = 'old'",
        "delete from decrypted_t where decrypted_secret = 'old'",
        "insert into decrypted_t (id, secret) values (1, 'x') "
        "returning decrypted_secret",
    ],
)
def test_decrypted_columns_of_a_written_view_are_refused(sql: str) -> None:
    with pytest.raises(RewriteError) as info:
        run(sql)
    assert info.value.sqlstate == "0A000"
    assert "decrypted_secret" in info.value.message


SEARCHABLE = tce.Relation(
    kind="view",
    table='"public"."s"',
    view="public.decrypted_s",
    columns=(
        tce.Column("id", "integer"),
        tce.Column("email", "text", encrypted=True, key_id=KEY),
    ),
)


def test_search_through_a_view_compares_ciphertexts() -> None:
    sql = "select id from decrypted_s d where d.decrypted_email = $1 and id > 0"
    out = rewrite(sql, tce.parse(sql), {'"decrypted_s"': SEARCHABLE})
    assert out.endswith(
        ' d where "d"."email" = CASE WHEN ($1) IS NULL THEN NULL ELSE '
        f"encode(pgsodium.crypto_aead_det_encrypt({SEARCH_MARK}convert_to(($1)"
        "::text, 'utf8'), convert_to(('')::text, 'utf8'), "
        f"'{KEY}'::uuid, NULL::bytea), 'base64') END and id > 0"
    )
    # With associated data the ciphertext depends on the row: left (and refused).
    sql = "select id from decrypted_t where decrypted_secret = 'x'"
    assert "decrypted_secret = 'x'" in run(sql)


@pytest.mark.parametrize("value", ["'x'", "$1"])
def test_a_search_through_a_view_needs_the_views_decrypt_not_the_encrypt(
    value: str,
) -> None:
    """pgsodium evaluates the view's decrypt for `decrypted_c = v`: that is the
    EXECUTE privilege the plan asks for, and the mark of the encryption the proxy
    computes in its stead is folded away with it."""
    sql = f"select id from decrypted_s where decrypted_email = {value}"
    out = rewrite(sql, tce.parse(sql), {'"decrypted_s"': SEARCHABLE})
    (plan,) = analyze(out, on_path=False)
    assert plan.checks == {SEARCH_DECRYPT}
    (fold,) = plan.folds
    start, end = fold.span
    assert SEARCH_MARK in plan.text[start:end]


def test_a_search_of_a_table_needs_its_decrypt_and_a_write_the_encrypt() -> None:
    decrypt = f"pgsodium.crypto_aead_det_decrypt(c, ''::bytea, '{KEY}'::uuid)"
    encrypt = f"pgsodium.crypto_aead_det_encrypt('a', ''::bytea, '{KEY}'::uuid)"
    (plan,) = analyze(f"select 1 from t where {decrypt} = 'x'", on_path=False)
    assert plan.checks == {"pgsodium.crypto_aead_det_decrypt(bytea,bytea,uuid)"}
    (plan,) = analyze(
        f"select 1 from t where {decrypt} = 'x' and d = {encrypt}", on_path=False
    )
    assert plan.checks == {
        "pgsodium.crypto_aead_det_decrypt(bytea,bytea,uuid)",
        "pgsodium.crypto_aead_det_encrypt(bytea,bytea,uuid)",
    }


@pytest.mark.parametrize(
    "sql",
    [
        "select {mark}1 from t",
        "select 1 from t where c = {mark}pgsodium.crypto_aead_det_encrypt('a', '', "
        f"'{KEY}'::uuid)",
    ],
)
def test_a_clients_text_cannot_carry_the_search_mark_upstream(sql: str) -> None:
    """Only the proxy's own folded encryption may hold the mark: a client never
    learns it, and text that would send it upstream is refused."""
    with pytest.raises(RewriteError):
        analyze(sql.format(mark=SEARCH_MARK), on_path=False)


def test_search_leaves_strings_in_parts_and_casts_alone() -> None:
    relations = {'"decrypted_s"': SEARCHABLE}
    sql = "select id from decrypted_s where decrypted_email = 'a'\n'b'"
    # PostgreSQL's scanner makes one string constant of the two parts.
    assert "convert_to(('a'\n'b')::text" in rewrite(sql, tce.parse(sql), relations)
    for sql in [
        "select id from decrypted_s where decrypted_email = 'a'::text",
        "select id from decrypted_s where (select 1 where decrypted_email = 'a') = 1",
    ]:
        assert "decrypted_email = 'a'" in rewrite(sql, tce.parse(sql), relations)


def test_search_for_null_compares_the_stored_column_with_null() -> None:
    """`decrypted_c = NULL` is NULL for every row, whatever its key, associated
    data and nonce: the stored column is compared with NULL."""
    for sql, expected in [
        (
            "select id from decrypted_s where decrypted_email = null",
            'select id from decrypted_s where "email" = null',
        ),
        (
            "select id from decrypted_t t where null::bytea = t.decrypted_raw",
            'select id from decrypted_t t where null::bytea = "t"."raw"',
        ),
        (
            "select id from decrypted_t where decrypted_secret = NULL and id = 1",
            'select id from decrypted_t where "secret" = NULL and id = 1',
        ),
        (  # NULL under NOT too: PostgreSQL folds `x = NULL` to NULL anywhere
            "select id from decrypted_s where not (decrypted_email = null)",
            'select id from decrypted_s where not ("email" = null)',
        ),
    ]:
        relations = {'"decrypted_s"': SEARCHABLE, **RELATIONS}
        out = rewrite(sql, tce.parse(sql), relations)
        assert out.split(" where ", 1)[1] == expected.split(" where ", 1)[1]


@pytest.mark.parametrize(
    ("condition", "construct"),
    [
        ("not (decrypted_email = 'a')", "under NOT"),
        ("not decrypted_email = $1 and id = 1", "under NOT"),
        ("id = 1 or not (id = 2 and decrypted_email = 'a')", "under NOT"),
        ("(decrypted_email = 'a') is not true", "under IS NOT TRUE"),
        ("(decrypted_email = 'a') is true", "under IS TRUE"),
        ("(decrypted_email = 'a') is unknown", "under IS UNKNOWN"),
        ("case when decrypted_email = 'a' then false else true end", "inside CASE"),
        ("coalesce(decrypted_email = 'a', true)", "inside COALESCE"),
        ("bool_not(decrypted_email = 'a')", "as an argument of bool_not()"),
        ("(decrypted_email = 'a') = false", "as an operand of ="),
    ],
)
def test_search_only_as_a_condition_of_where(condition: str, construct: str) -> None:
    """Under NOT (or anything but AND/OR) a row that does not decrypt would match:
    refused, naming the construct, at the decrypted column."""
    sql = f"select id from decrypted_s where {condition}"
    with pytest.raises(RewriteError) as info:
        rewrite(sql, tce.parse(sql), {'"decrypted_s"': SEARCHABLE})
    assert info.value.sqlstate == "0A000"
    assert info.value.message.startswith(
        f"pgsodium-proxy cannot evaluate a comparison of decrypted_email {construct} "
        "in WHERE"
    )
    assert info.value.position == sql.index("decrypted_email =") + 1
    assert "'a'" not in info.value.message


def test_search_through_and_or_is_rewritten() -> None:
    sql = (
        "select id from decrypted_s where (id = 1 or decrypted_email = 'a') "
        "and (decrypted_email = $1 or id = 2)"
    )
    out = rewrite(sql, tce.parse(sql), {'"decrypted_s"': SEARCHABLE})
    assert "decrypted_email" not in out.split(" where ", 1)[1]
    assert out.count("pgsodium.crypto_aead_det_encrypt(") == 2


def test_insert_without_a_column_list_may_leave_trailing_columns_out() -> None:
    """PostgreSQL gives VALUES without a column list to the first columns (a
    generated column last takes its expression)."""
    generated = tce.Relation(
        "table",
        '"public"."g"',
        "public.decrypted_g",
        (
            tce.Column("id", "integer"),
            tce.Column(
                "secret", "text", encrypted=True, key_id=KEY, associated=("id",)
            ),
            tce.Column("doubled", "integer", generated=True),
        ),
    )
    relations = {'"g"': generated}
    sql = "insert into g values ($1, $2)"
    assert rewrite(sql, tce.parse(sql), relations).startswith(
        "insert into g values ($1, CASE WHEN ($2) IS NULL THEN NULL ELSE encode("
    )
    sql = "insert into g values (1)"
    assert rewrite(sql, tce.parse(sql), relations) == sql
