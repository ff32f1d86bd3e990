"""Statements the proxy does not rewrite, which would take a Vault secret or a
search term over a decrypted value upstream as written (into the server log, a
view's or materialized view's definition): refused with 0A000 before any of
their bytes reach the database, the session left as PostgreSQL would leave it."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from .conftest import RunningProxy, make_database, server_log


@pytest.fixture(scope="module")
def db(proxy: RunningProxy) -> str:
    name = make_database(proxy, "refused")
    with psycopg.connect(proxy.dsn(dbname=name), autocommit=True) as conn:
        row = conn.execute(
            "select id::text from pgsodium.create_key('aead-det')"
        ).fetchone()
        assert row is not None
        conn.execute("create table tce (id int primary key, ssn text)")
        conn.execute(
            f"security label for pgsodium on column tce.ssn "
            f"is 'ENCRYPT WITH KEY ID {row[0]}'"
        )
        conn.execute("create table tce_kc (id int, ssn text, key_id uuid)")
        conn.execute(
            "security label for pgsodium on column tce_kc.ssn "
            "is 'ENCRYPT WITH KEY COLUMN key_id'"
        )
        conn.execute(
            "create view v_over_tce with (security_invoker = true) as "
            "select id, decrypted_ssn from decrypted_tce"
        )
        conn.execute("insert into tce values (1, 'one')")
        conn.execute("insert into tce_kc values (1, 'one', %s)", [row[0]])
    return name


def _refused(
    proxy: RunningProxy, conn: psycopg.Connection[Any], sql: str, match: str
) -> None:
    """`sql` (with one `{}` for the marker, or `%s` for it as a bind parameter)
    fails with 0A000, the marker never reaches the server log, and the session
    goes on; in a transaction block, the block is left aborted."""
    marker = f"RefusedLeak{uuid.uuid4().hex[:10]}"
    params = [marker] if "%s" in sql else None
    text = sql.replace("{}", marker)
    with pytest.raises(psycopg.errors.FeatureNotSupported, match=match) as info:
        conn.execute(text, params)
    assert info.value.sqlstate == "0A000"
    assert marker not in (info.value.diag.message_primary or "")
    assert conn.execute("select 1").fetchone() == (1,)

    conn.autocommit = False
    try:
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute(text, params)
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("select 1")
        conn.rollback()
    finally:
        conn.autocommit = True
    assert marker not in server_log(proxy)


VAULT_CALLS_IN_NEW_TABLES = [
    "create table xv1 as select vault.create_secret('{}')",
    "create table xv2 as select vault.create_secret(%s)",
    "create temp table xv3 as select vault.create_secret('{}', 'n')",
    "create table xv4 as select vault.create_secret('{}') with no data",
    "create table xv5 (a) as values (vault.create_secret('{}'))",
    "create table xv6 as select * from vault.create_secret(%s)",
    "create materialized view mv_v1 as select vault.create_secret('{}')",
    "create materialized view mv_v2 as select vault.create_secret(%s) with no data",
    "create table xv7 as select vault.update_secret(gen_random_uuid(), '{}')",
    "create table xv8 as select vault.update_secret(gen_random_uuid(), %s)",
]


@pytest.mark.parametrize("sql", VAULT_CALLS_IN_NEW_TABLES)
def test_create_table_as_calling_vault_is_refused_before_upstream(
    proxy: RunningProxy, conn: psycopg.Connection[Any], sql: str
) -> None:
    _refused(proxy, conn, sql, "vault.(create|update)_secret")


DECRYPTED_INTO_NEW_TABLES = [
    "create table xd1 as select * from decrypted_tce where decrypted_ssn = '{}'",
    "create table xd2 as select * from decrypted_tce where decrypted_ssn = %s",
    "create materialized view mv_d1 as select * from decrypted_tce "
    "where decrypted_ssn = '{}'",
    "create materialized view mv_d2 as select id from public.decrypted_tce "
    "where decrypted_ssn = %s with no data",
    "create temp table xd3 as select * from decrypted_tce_kc "
    "where decrypted_ssn = '{}'",
    "create table xd4 as select * from vault.decrypted_secrets "
    "where decrypted_secret = '{}'",
    "create table xd5 as select name from vault.decrypted_secrets "
    "where decrypted_secret = %s",
    "create table xd6 (a) as select decrypted_ssn from decrypted_tce "
    "where decrypted_ssn <> '{}' with no data",
]


@pytest.mark.parametrize("sql", DECRYPTED_INTO_NEW_TABLES)
def test_create_table_as_over_decrypted_values_is_refused_before_upstream(
    proxy: RunningProxy, conn: psycopg.Connection[Any], sql: str
) -> None:
    _refused(proxy, conn, sql, "CREATE (TABLE|MATERIALIZED VIEW)")


def test_create_table_as_over_decrypted_values_without_a_value_is_refused(
    conn: psycopg.Connection[Any],
) -> None:
    """The database cannot decrypt, and the proxy computes only the rows it
    returns: the new table would never get the plaintext."""
    for sql in [
        "create table xn1 as select * from decrypted_tce",
        "create materialized view mv_n1 as select * from vault.decrypted_secrets",
    ]:
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute(sql)
    assert conn.execute(
        "select to_regclass('xn1'), to_regclass('mv_n1')"
    ).fetchone() == (
        None,
        None,
    )


EXPLAINS = [
    "explain select * from decrypted_tce where decrypted_ssn = '{}'",
    "explain select * from decrypted_tce where decrypted_ssn = %s",
    "explain analyze select * from decrypted_tce where decrypted_ssn = '{}'",
    "explain (format json) select id from decrypted_tce where decrypted_ssn = %s",
    "explain select * from public.decrypted_tce d where d.decrypted_ssn = '{}'",
    "explain select * from decrypted_tce_kc where decrypted_ssn = '{}'",
    "explain select * from decrypted_tce_kc where decrypted_ssn = %s",
    "explain select * from vault.decrypted_secrets where decrypted_secret = '{}'",
    "explain analyze select * from vault.decrypted_secrets where decrypted_secret = %s",
    "explain select * from tce where id in "
    "(select id from decrypted_tce where decrypted_ssn = '{}')",
]


@pytest.mark.parametrize("sql", EXPLAINS)
def test_explain_with_values_over_decrypted_values_is_refused_before_upstream(
    proxy: RunningProxy, conn: psycopg.Connection[Any], sql: str
) -> None:
    _refused(proxy, conn, sql, "EXPLAIN")


def test_explain_without_values_over_a_decrypting_view_still_runs(
    conn: psycopg.Connection[Any],
) -> None:
    rows = conn.execute("explain select id from decrypted_tce").fetchall()
    assert rows


OVER_VIEWS_OF_COMPUTED_VALUES = [
    "explain select * from v_over_tce where decrypted_ssn = '{}'",
    "explain select * from v_over_tce where decrypted_ssn = %s",
    "create table xo1 as select * from v_over_tce where decrypted_ssn = '{}'",
    "create materialized view mv_o1 as select * from v_over_tce "
    "where decrypted_ssn = %s",
]


@pytest.mark.parametrize("sql", OVER_VIEWS_OF_COMPUTED_VALUES)
def test_explain_and_create_table_as_over_a_users_view_of_decrypted_values(
    proxy: RunningProxy, conn: psycopg.Connection[Any], sql: str
) -> None:
    """A view over a decrypting view is read through the proxy in SELECT only."""
    _refused(proxy, conn, sql, "pgsodium-proxy cannot")


VAULT_CALLS_IN_DEFINITIONS = [
    "create view vv1 as select vault.create_secret('{}')",
    "create view vv2 as select vault.update_secret(gen_random_uuid(), '{}')",
    "create or replace view vv3 as select vault.create_secret('{}', 'name')",
    "create table vt1 (id uuid default vault.create_secret('{}'))",
    "create rule vr1 as on insert to tce do also select vault.create_secret('{}')",
    "call nowhere(vault.create_secret('{}'))",
]


@pytest.mark.parametrize("sql", VAULT_CALLS_IN_DEFINITIONS)
def test_definitions_calling_vault_are_refused_before_upstream(
    proxy: RunningProxy, conn: psycopg.Connection[Any], sql: str
) -> None:
    """A definition would keep the secret in the catalog, as written."""
    _refused(proxy, conn, sql, "vault.(create|update)_secret")


def test_select_into_and_create_secret_in_from_still_work(
    conn: psycopg.Connection[Any],
) -> None:
    """What the proxy rewrites already (the secret encrypted before it goes up)."""
    conn.execute("drop table if exists made_into")
    conn.execute("select vault.create_secret('into-ok') as id into made_into")
    made = conn.execute("select id from made_into").fetchone()
    assert made is not None
    row = conn.execute("select * from vault.create_secret(%s)", ["from-ok"]).fetchone()
    assert row is not None
    found = conn.execute(
        "select id, decrypted_secret from vault.decrypted_secrets where id = any(%s)",
        [[made[0], row[0]]],
    ).fetchall()
    assert sorted(found, key=lambda r: r[1]) == [
        (row[0], "from-ok"),
        (made[0], "into-ok"),
    ]
