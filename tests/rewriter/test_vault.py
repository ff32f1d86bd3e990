"""Vault calls and view reads on exact SQL text."""

from __future__ import annotations

import re

import pytest

from rewriter import marks, tce
from rewriter.errors import RewriteError
from rewriter.tce_write import rewrite

_ID = re.compile(r"'[0-9a-f-]{36}'")
_NONCE = re.compile(r"decode\('[0-9a-f]{32}', 'hex'\)")
_CIPHERTEXT = re.compile(r"encode\(pgsodium\.crypto_aead_det_encrypt\(.*?'base64'\)")


def run(sql: str) -> str:
    out = rewrite(sql, tce.parse(sql), {})
    mark = marks.VAULT_UPDATE if "update_secret" in sql else marks.VAULT_CREATE
    assert out.count(mark) == out.count("crypto_aead_det_encrypt(")
    out = out.replace(mark, "")  # each encryption stands for Vault's function
    return _NONCE.sub("<nonce>", _ID.sub("<id>", out))


def test_create_secret() -> None:
    assert run("select vault.create_secret('s', 'n', new_description := 'd')") == (
        "select vault._proxy_create_secret(CURRENT_USER, "
        "ARRAY[<id>]::uuid[], ARRAY[encode("
        "pgsodium.crypto_aead_det_encrypt(convert_to(('s')::text, 'utf8'), "
        "convert_to(<id>, 'utf8'), 0::bigint, 'pgsodium'::bytea, <nonce>), "
        "'base64')]::text[], ARRAY[<nonce>]::bytea[], ('n')::text, ('d')::text, "
        "NULL::uuid) AS create_secret"
    )


def test_update_secret_without_a_new_secret_keeps_the_old_one() -> None:
    assert run("select vault.update_secret($1, new_name => $2)") == (
        "select vault._proxy_update_secret(CURRENT_USER, "
        "($1)::uuid, NULL::text, NULL::bytea, "
        "($2)::text, NULL::text, NULL::uuid) AS update_secret"
    )


def test_a_null_secret_is_passed_on_as_null_never_encrypted() -> None:
    """Vault stores the secret as given: NULL reaches vault.secrets (NOT NULL:
    23502 for create_secret; update_secret keeps the old one). A parameter may
    be NULL: the proxy folds the CASE with its value."""
    assert run("select vault.create_secret(null::text)") == (
        "select vault._proxy_create_secret(CURRENT_USER, "
        "ARRAY[<id>]::uuid[], "
        "ARRAY[NULL::text]::text[], ARRAY[<nonce>]::bytea[], NULL::text, ''::text, "
        "NULL::uuid) AS create_secret"
    )
    assert run("select vault.create_secret($1)") == (
        "select vault._proxy_create_secret(CURRENT_USER, "
        "ARRAY[<id>]::uuid[], ARRAY[CASE WHEN "
        "($1) IS NULL THEN NULL ELSE encode(pgsodium.crypto_aead_det_encrypt("
        "convert_to(($1)::text, 'utf8'), convert_to(<id>, 'utf8'), 0::bigint, "
        "'pgsodium'::bytea, <nonce>), 'base64') END]::text[], "
        "ARRAY[<nonce>]::bytea[], NULL::text, ''::text, NULL::uuid) AS create_secret"
    )
    assert run("select vault.update_secret($1, NULL::text)") == (
        "select vault._proxy_update_secret(CURRENT_USER, "
        "($1)::uuid, NULL::text, NULL::bytea, "
        "NULL::text, NULL::text, NULL::uuid) AS update_secret"
    )
    assert run("select vault.update_secret($1, $2)").startswith(
        "select vault._proxy_update_secret(CURRENT_USER, "
        "($1)::uuid, CASE WHEN ($2) IS NULL THEN "
        "NULL ELSE encode(pgsodium.crypto_aead_det_encrypt(convert_to(($2)::text"
    )


_CREATE = (
    "vault._proxy_create_secret(CURRENT_USER, "
    "ARRAY[<id>]::uuid[], ARRAY[<ciphertext>]::text[], "
    "ARRAY[<nonce>]::bytea[], NULL::text, ''::text, NULL::uuid)"
)
_UPDATE = (
    "vault._proxy_update_secret(CURRENT_USER, "
    "($1)::uuid, NULL::text, NULL::bytea, NULL::text, "
    "NULL::text, NULL::uuid)"
)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("select vault.create_secret('s') as x", f"select {_CREATE} as x"),
        (
            "select 1, vault.create_secret('s')::text, 2",
            f"select 1, {_CREATE}::text AS create_secret, 2",
        ),
        (
            "select case when $2 is distinct from 1 then null "
            "else vault.update_secret($1) end from t",
            "select case when $2 is distinct from 1 then null "
            f"else {_UPDATE} end AS update_secret from t",
        ),
        (
            "select upper(vault.create_secret('s')::text)",
            f"select upper({_CREATE}::text)",
        ),
        (
            "with w as (select vault.create_secret('s')) select * from w",
            f"with w as (select {_CREATE} AS create_secret) select * from w",
        ),
        (
            "insert into t values (1) returning vault.update_secret($1), 2",
            f"insert into t values (1) returning {_UPDATE} AS update_secret, 2",
        ),
        (
            "select * from vault.create_secret('s') with ordinality s",
            f"select * from CAST((SELECT {_CREATE} AS create_secret) AS uuid) "
            "with ordinality s",
        ),
        (
            "select * from rows from (vault.update_secret($1), generate_series(1, 2))",
            f"select * from rows from (CAST((SELECT {_UPDATE} AS update_secret) "
            "AS void), generate_series(1, 2))",
        ),
    ],
)
def test_calls_keep_the_column_names_of_vaults_own_functions(
    sql: str, expected: str
) -> None:
    assert _CIPHERTEXT.sub("<ciphertext>", run(sql)) == expected


@pytest.mark.parametrize(
    ("sql", "rows"),
    [
        ("select vault.create_secret('s')", 1),
        (
            "insert into t values (vault.create_secret('s')), "
            "(vault.create_secret('t'))",
            1,
        ),
        ("select * from t, vault.create_secret('s')", 1),
        ("with w as (select vault.create_secret('s')) select * from w, t", 1),
        ("select vault.create_secret('s') from t", 64),
        ("select vault.create_secret('s'), generate_series(1, 3)", 64),
        ("select vault.create_secret('s'), app.rows()", 64),
        ("select (select vault.create_secret('s')) from t", 64),
        ("update t set c = vault.create_secret('s')", 64),
        ("insert into t values (1) returning vault.create_secret('s')", 64),
        ("insert into t select vault.create_secret('s') from names", 64),
    ],
)
def test_a_call_that_may_run_for_many_rows_carries_ids_for_them(
    sql: str, rows: int
) -> None:
    """Each run of create_secret stores a new secret with its own id and nonce:
    a call that PostgreSQL may evaluate for several rows carries that many, each
    with its own ciphertext (the upstream refuses a run past the last one)."""
    out = rewrite(sql, tce.parse(sql), {})
    ids = re.search(r"ARRAY\[([^]]*)\]::uuid\[\]", out)
    assert ids is not None
    drawn = ids.group(1).split(", ")
    assert len(drawn) == len(set(drawn)) == rows
    assert len(set(_NONCE.findall(out))) == rows * (2 if "'t'" in sql else 1)
    assert out.count("crypto_aead_det_encrypt") == rows * (2 if "'t'" in sql else 1)


def test_decrypted_secrets_read_becomes_a_subquery() -> None:
    out = run("select decrypted_secret from vault.decrypted_secrets where id = $1")
    assert out.startswith("select decrypted_secret from (SELECT id, name, ")
    assert out.endswith(
        "FROM vault.decrypted_secrets _pgsp_vault WHERE (CASE WHEN false THEN "
        "_pgsp_vault.decrypted_secret END) IS NULL) AS decrypted_secrets where id = $1"
    )


@pytest.mark.parametrize(
    "sql",
    [
        "select vault.create_secret(md5('x'))",
        "select vault.create_secret(new_name => 'n')",
        "select vault.create_secret('s', description => 'd')",
        "select vault.update_secret(new_secret => 's')",
        "delete from vault.decrypted_secrets",
    ],
)
def test_refused(sql: str) -> None:
    with pytest.raises(RewriteError) as info:
        run(sql)
    assert info.value.sqlstate == "0A000"


@pytest.mark.parametrize(
    ("sql", "column"),
    [
        ("update vault.secrets set id = $1 where id = $2", "id"),
        ("update vault.secrets set nonce = $1, name = 'n' where id = $2", "nonce"),
        ("update vault.secrets s set (description, id) = ('d', $1)", "id"),
        ("insert into vault.secrets (id, name) values ($1, 'n')", "id"),
        ("insert into vault.secrets (name, nonce) values ('n', $1)", "nonce"),
        (
            "insert into vault.secrets (name) values ('n') "
            "on conflict (name) where name is not null do update set nonce = $1",
            "nonce",
        ),
        (
            "insert into vault.secrets (name) values ('n') "
            "on conflict (name) where name is not null do update set secret = $1",
            "secret",
        ),
        ("update vault.secrets set nonce = $1, secret = $2", "secret"),
    ],
)
def test_writes_of_what_a_secret_is_bound_to_are_refused(sql: str, column: str) -> None:
    with pytest.raises(RewriteError) as info:
        run(sql)
    assert info.value.sqlstate == "0A000"
    assert f"write vault.secrets.{column} directly" in info.value.message


@pytest.mark.parametrize(
    "sql",
    [
        "update vault.secrets set name = $1, description = $2 where id = $3",
        "insert into vault.secrets (name, description) values ($1, $2)",
        "copy vault.secrets (id, secret, nonce) from stdin",
        "delete from vault.secrets where id = $1",
    ],
)
def test_other_writes_of_vault_secrets_pass_as_written(sql: str) -> None:
    assert run(sql) == sql
