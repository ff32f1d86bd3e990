"""Statements the TCE and Vault passes leave as written: refused (0A000) where a
secret or a search term would go upstream, passed on unchanged otherwise."""

from __future__ import annotations

import pytest

from rewriter import tce
from rewriter.errors import RewriteError
from rewriter.tce_write import rewrite

from .test_tce import RELATIONS


def run(sql: str) -> str:
    return rewrite(sql, tce.parse(sql), RELATIONS)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("create table x as select vault.create_secret('s')", "CREATE TABLE AS"),
        ("create table x as select vault.create_secret($1) with no data", "vault."),
        ("create temp table x (a) as values (vault.create_secret('s'))", "vault."),
        ("create table x as select * from vault.create_secret('s')", "vault."),
        (
            "create materialized view m as select vault.update_secret($1, $2)",
            "CREATE MATERIALIZED VIEW",
        ),
        ("create view v as select vault.create_secret('s')", "CREATE VIEW"),
        (
            "create rule r as on insert to a do also select vault.create_secret('s')",
            "CREATE RULE",
        ),
        ("create table a (id uuid default vault.create_secret('s'))", "CREATE TABLE"),
        ("alter table a alter id set default vault.create_secret('s')", "ALTER"),
        ("call p(vault.create_secret('s'))", "CALL"),
        ("create table x as select * from decrypted_t", "CREATE TABLE AS"),
        (
            "create materialized view m as select * from decrypted_t "
            "where decrypted_secret = $1",
            "CREATE MATERIALIZED VIEW",
        ),
        ("create table x as select * from vault.decrypted_secrets", "vault."),
        ("explain select * from decrypted_t where decrypted_secret = 'x'", "EXPLAIN"),
        (
            "explain (analyze, format json) select id from decrypted_t d "
            "where d.decrypted_raw = $1",
            "EXPLAIN",
        ),
        (
            "explain select * from vault.decrypted_secrets where decrypted_secret = $1",
            "EXPLAIN",
        ),
        (
            "delete from a where id in (select id from vault.decrypted_secrets "
            "where decrypted_secret = 'x')",
            "DELETE",
        ),
        (
            "copy (select * from vault.decrypted_secrets "
            "where decrypted_secret = 'x') to stdout",
            "COPY",
        ),
    ],
)
def test_refused(sql: str, message: str) -> None:
    with pytest.raises(RewriteError) as info:
        run(sql)
    assert info.value.sqlstate == "0A000"
    assert message in str(info.value)
    assert "'s'" not in str(info.value) and "'x'" not in str(info.value)


@pytest.mark.parametrize(
    "sql",
    [
        "explain select id from decrypted_t",
        "explain select * from vault.decrypted_secrets",
        "explain select * from t where id = 1",
        "create table x as select * from t where id = 1",
        "create view v as select * from decrypted_t where decrypted_secret = 'x'",
        "create view v as select * from vault.decrypted_secrets where name = 'x'",
        "grant select on decrypted_t to someone",
    ],
)
def test_passed_on_as_written(sql: str) -> None:
    assert run(sql) == sql
