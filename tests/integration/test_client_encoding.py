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

from proxy import codec
from proxy.codec import Bind, Execute, Parse, Query, Sync

from .conftest import PROTOCOLS, RunningProxy, make_database
from .test_passthrough import RawClient, bounded

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
        "set/**/names 'LATIN1'",
        "set U&\"client\\005fencoding\" = 'LATIN1'",
        "select ce_set_encoding('LATIN1')",
        "begin; set local client_encoding = 'LATIN1'; commit",
    ],
)
def test_a_change_earlier_in_the_same_message_is_refused(
    proxy: RunningProxy, db: str, change: str
) -> None:
    with psycopg.connect(
        proxy.dsn(dbname=db), autocommit=True, cursor_factory=psycopg.ClientCursor
    ) as conn:
        conn.execute(
            "create or replace function ce_set_encoding(e text) returns text "
            "language sql as $$ select set_config('client_' || 'encoding', e, false) $$"
        )
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


@bounded()
async def test_a_change_sent_ahead_in_a_pipeline_is_seen_before_evaluating(
    proxy: RunningProxy, db: str
) -> None:
    """The SET's ParameterStatus has not reached the proxy when it evaluates the
    next statement of the pipeline: the upstream's own setting is asked."""
    statements = [
        FOLDED.replace("%s", "$1"),
        "insert into ce_labelled values (2, $1)",
        "select vault.create_secret($1)",
        PER_ROW,
    ]
    for sql in statements:
        client = await RawClient.connect(proxy.host, proxy.port, database=db)
        try:
            # Bytes that are UTF-8 too: a LATIN1 client means other characters.
            params = () if "$1" not in sql else ("Ünï".encode(),)
            await client.send(
                Parse("", "set client_encoding = 'LATIN1'"),
                Bind("", "", (), (), ()),
                Execute(""),
                Parse("", sql),
                Bind("", "", (), params, ()),
                Execute(""),
                Sync(),
            )
            frames = await client.until(b"Z")
        finally:
            await client.close()
        errors = [codec.decode_backend(f) for f in frames if f.type == ord("E")]
        assert [e.sqlstate for e in errors] == ["0A000"], sql
        assert not [f for f in frames if f.type == ord("D")], sql
    with psycopg.connect(proxy.direct_dsn(dbname=db)) as direct:
        assert direct.execute("select count(*) from ce_labelled").fetchone() == (0,)


@pytest.mark.parametrize("value", [b"\xe9", b"a\x00b"])
@bounded()
async def test_a_text_bind_value_that_is_not_utf8_gets_22021(
    proxy: RunningProxy, db: str, value: bytes
) -> None:
    """PostgreSQL checks a text value's bytes before any type reads them; the
    session goes on (it ended with the proxy's UnicodeDecodeError)."""
    client = await RawClient.connect(proxy.host, proxy.port, database=db)
    try:
        await client.send(
            Parse("", FOLDED.replace("%s", "$1")),
            Bind("", "", (), (value,), ()),
            Execute(""),
            Sync(),
        )
        frames = await client.until(b"Z")
        errors = [codec.decode_backend(f) for f in frames if f.type == ord("E")]
        assert [e.sqlstate for e in errors] == ["22021"]
        assert 'invalid byte sequence for encoding "UTF8"' in errors[0].message
        await client.send(Query("select 1"))
        assert [f.type for f in await client.until(b"Z")].count(ord("D")) == 1
    finally:
        await client.close()


@bounded()
async def test_a_reply_of_the_proxys_own_in_latin1_is_refused_not_a_crash(
    proxy: RunningProxy, db: str
) -> None:
    """After a SET sent ahead, the key lookup's reply is LATIN1 text (a schema
    name on the search_path): refused with 0A000, and the session goes on."""
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        conn.execute('create schema if not exists "schémà"')
    client = await RawClient.connect(proxy.host, proxy.port, database=db)
    try:
        await client.send(Query('set search_path = "schémà", public'))
        await client.until(b"Z")
        await client.send(
            Parse("", "set client_encoding = 'LATIN1'"),
            Bind("", "", (), (), ()),
            Execute(""),
            Parse("", FOLDED.replace("%s", "'x'")),
            Bind("", "", (), (), ()),
            Execute(""),
            Sync(),
        )
        frames = await client.until(b"Z")
        errors = [codec.decode_backend(f) for f in frames if f.type == ord("E")]
        assert [e.sqlstate for e in errors] == ["0A000"]
        await client.send(Query("select 1"))
        assert [f.type for f in await client.until(b"Z")].count(ord("D")) == 1
    finally:
        await client.close()


def test_ddl_before_a_call_in_the_same_message_is_evaluated(
    proxy: RunningProxy, db: str
) -> None:
    """A newcomer's first script: DDL cannot change client_encoding by itself."""
    with psycopg.connect(
        proxy.dsn(dbname=db), autocommit=True, cursor_factory=psycopg.ClientCursor
    ) as conn:
        conn.execute(
            "drop table if exists ce_first; create table ce_first (c bytea); "
            "insert into ce_first values (pgsodium.crypto_aead_det_encrypt("
            "convert_to('a', 'utf8'), ''::bytea, 1::bigint))"
        )
        assert conn.execute("select length(c) from ce_first").fetchone() == (33,)


def test_a_change_in_the_same_message_says_to_send_the_call_alone(
    proxy: RunningProxy, db: str
) -> None:
    with psycopg.connect(
        proxy.dsn(dbname=db), autocommit=True, cursor_factory=psycopg.ClientCursor
    ) as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported) as caught:
            conn.execute(f"set names 'UTF8'; {PER_ROW}")
        assert "may change client_encoding" in str(caught.value)
        assert caught.value.diag.message_hint == (
            "Send the statement as a Query of its own."
        )
