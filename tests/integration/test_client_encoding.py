"""The proxy reads and writes the text it evaluates as UTF-8. A session whose
client_encoding is another (LATIN1 here) would get other characters than
PostgreSQL gives, so every statement the proxy would evaluate is refused with
0A000 there, nothing is written, and the session goes on; statements the proxy
does not evaluate pass through as always.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from .conftest import PROTOCOLS, RunningProxy, make_database

PER_ROW = (
    "select id, convert_from(pgsodium.crypto_aead_det_decrypt(secret, ''::bytea, "
    "1::bigint), 'utf8') as p from ce_accounts order by id"
)
FOLDED = (
    "select pgsodium.crypto_aead_det_encrypt(convert_to(%s, 'utf8'), ''::bytea, "
    "1::bigint)"
)


@pytest.fixture(scope="module")
def db(proxy: RunningProxy) -> str:
    name = make_database(proxy, "encodings")
    with psycopg.connect(proxy.dsn(dbname=name), autocommit=True) as conn:
        conn.execute("create table ce_accounts (id int, secret bytea)")
        conn.execute(
            "insert into ce_accounts values (1, pgsodium.crypto_aead_det_encrypt("
            "convert_to('Ünï', 'utf8'), ''::bytea, 1::bigint))"
        )
        key = conn.execute("select id from pgsodium.create_key()").fetchone()
        assert key is not None
        conn.execute("create table ce_labelled (id int, secret text)")
        conn.execute(
            "security label for pgsodium on column ce_labelled.secret is "
            f"'ENCRYPT WITH KEY ID {key[0]}'"
        )
    return name


@pytest.fixture(params=PROTOCOLS, ids=["simple", "extended"])
def latin1(request: pytest.FixtureRequest, proxy: RunningProxy, db: str) -> Any:
    with psycopg.connect(
        proxy.dsn(dbname=db), autocommit=True, cursor_factory=request.param
    ) as conn:
        conn.execute("set client_encoding = 'LATIN1'")
        yield conn


def _refused(conn: Any, sql: str, params: Any = None) -> None:
    with pytest.raises(psycopg.errors.FeatureNotSupported) as caught:
        conn.execute(sql, params)
    assert "client_encoding UTF8 (this session's is LATIN1)" in str(caught.value)
    # The session goes on, and text it does not evaluate passes through.
    assert conn.execute("select 'Ünï'::text").fetchone() == ("Ünï",)


def test_values_computed_per_row_are_refused(latin1: Any) -> None:
    _refused(latin1, PER_ROW)


def test_folded_calls_are_refused(latin1: Any) -> None:
    _refused(latin1, FOLDED, ["Ünï"])


def test_writes_to_labelled_columns_are_refused_and_store_nothing(
    latin1: Any, proxy: RunningProxy, db: str
) -> None:
    _refused(latin1, "insert into ce_labelled values (1, %s)", ["Ünï"])
    with psycopg.connect(proxy.direct_dsn(dbname=db)) as direct:
        assert direct.execute("select count(*) from ce_labelled").fetchone() == (0,)


def test_a_statement_prepared_before_the_change_is_refused_after_it(
    proxy: RunningProxy, db: str
) -> None:
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        assert conn.execute(PER_ROW, prepare=True).fetchall() == [(1, "Ünï")]
        conn.execute("set client_encoding = 'LATIN1'")
        _refused(conn, PER_ROW, None)
        conn.execute("set client_encoding = 'UTF8'")
        assert conn.execute(PER_ROW, prepare=True).fetchall() == [(1, "Ünï")]


def test_a_cursor_declared_before_the_change_is_refused_after_it(
    proxy: RunningProxy, db: str
) -> None:
    with psycopg.connect(proxy.dsn(dbname=db)) as conn:
        conn.execute(f"declare cc cursor for {PER_ROW}")
        conn.execute("set client_encoding = 'LATIN1'")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute("fetch all from cc")


@pytest.mark.parametrize(
    "change",
    [
        "set client_encoding = 'LATIN1'",
        "set names 'LATIN1'",
        "select set_config('client_encoding', 'LATIN1', false)",
    ],
)
def test_a_change_earlier_in_the_same_message_is_refused(
    proxy: RunningProxy, db: str, change: str
) -> None:
    with psycopg.connect(
        proxy.dsn(dbname=db), autocommit=True, cursor_factory=psycopg.ClientCursor
    ) as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute(f"{change}; {PER_ROW}")
        assert conn.execute("show client_encoding").fetchone() == ("UTF8",)


def test_sql_ascii_over_a_utf8_database_is_evaluated(
    proxy: RunningProxy, db: str
) -> None:
    """SQL_ASCII converts nothing: the client's bytes are the database's UTF-8."""
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        conn.execute("set client_encoding = 'SQL_ASCII'")
        rows = conn.execute(
            PER_ROW.replace("convert_from(", "(").replace(", 'utf8') as p", ") as p")
        ).fetchall()
        assert rows == [(1, "Ünï".encode())]
