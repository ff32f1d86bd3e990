"""A value computed per row that fails: the client gets pgsodium's error, in both
protocols, the transaction ends as PostgreSQL would end it, and nothing of the
failed statement is kept."""

from __future__ import annotations

import asyncio

import asyncpg
import psycopg
import pytest

from .conftest import RunningProxy, make_database

BAD = "pgsodium.crypto_aead_det_decrypt(secret, convert_to(id::text, 'utf8'), kid)"


@pytest.fixture(scope="module")
def db(proxy: RunningProxy) -> str:
    name = make_database(proxy, "rowerrors")
    with psycopg.connect(proxy.dsn(dbname=name), autocommit=True) as conn:
        key = conn.execute("select id from pgsodium.create_key()").fetchone()[0]
        conn.execute("create table t (id int primary key, secret bytea, kid uuid)")
        for i in (1, 2):
            conn.execute(
                "insert into t values (%s, pgsodium.crypto_aead_det_encrypt("
                "convert_to('v', 'utf8'), convert_to(%s, 'utf8'), %s::uuid), %s)",
                [i, str(i), key, key],
            )
        # Row 3 was encrypted under another associated data: it does not decrypt.
        conn.execute(
            "insert into t values (3, pgsodium.crypto_aead_det_encrypt("
            "convert_to('v', 'utf8'), convert_to('x', 'utf8'), %s::uuid), %s)",
            [key, key],
        )
        conn.execute("create table log (id int)")
    return name


def test_extended_protocol_gets_the_row_error(proxy: RunningProxy, db: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(
            host=proxy.host, port=proxy.port, user="postgres", database=db
        )
        try:
            sql = f"select id, {BAD} from t where id = any($1::int[]) order by id"
            assert len(await conn.fetch(sql, [1, 2])) == 2
            with pytest.raises(asyncpg.PostgresError) as caught:
                await conn.fetch(sql, [1, 3])
            assert caught.value.sqlstate == "22000"
            assert "invalid ciphertext" in caught.value.args[0]
            async with conn.transaction():
                with pytest.raises(asyncpg.PostgresError):
                    await conn.fetch(sql, [3])
                with pytest.raises(asyncpg.InFailedSQLTransactionError):
                    await conn.fetchval("select 1")
                raise asyncpg.exceptions._base.UnknownPostgresError("rollback")
        except asyncpg.exceptions._base.UnknownPostgresError:
            pass
        finally:
            assert await conn.fetchval("select 1") == 1
            await conn.close()

    asyncio.run(asyncio.wait_for(run(), 30))


def test_error_inside_a_block_leaves_it_aborted_until_rollback(
    proxy: RunningProxy, db: str
) -> None:
    with psycopg.connect(
        proxy.dsn(dbname=db), cursor_factory=psycopg.ClientCursor
    ) as conn:
        with pytest.raises(psycopg.errors.DataException):
            conn.execute(f"select id, {BAD} from t order by id")
        for _ in range(2):
            with pytest.raises(psycopg.errors.InFailedSqlTransaction):
                conn.execute("select 'A'")
        conn.rollback()
        assert conn.execute("select 'C'").fetchone() == ("C",)
        assert conn.execute("select 'D'").fetchone() == ("D",)


@pytest.mark.parametrize(
    "protocol", [psycopg.ClientCursor, psycopg.Cursor], ids=["simple", "extended"]
)
def test_a_failed_write_with_returning_keeps_nothing(
    proxy: RunningProxy, db: str, protocol: type
) -> None:
    with psycopg.connect(
        proxy.dsn(dbname=db), autocommit=True, cursor_factory=protocol
    ) as conn:
        with pytest.raises(psycopg.errors.DataException):
            conn.execute(f"update t set id = id + 100 returning id, {BAD}")
        assert conn.execute("select id from t order by id").fetchall() == [
            (1,),
            (2,),
            (3,),
        ]
        with pytest.raises(psycopg.errors.DataException):
            conn.execute(f"delete from t where id = 3 returning {BAD}")
        assert conn.execute("select count(*) from t").fetchone() == (3,)
        rows = conn.execute(
            f"update t set id = id where id = 1 returning id, {BAD}"
        ).fetchall()
        assert [r[0] for r in rows] == [1]


def test_a_failed_statement_of_a_query_string_keeps_nothing(
    proxy: RunningProxy, db: str
) -> None:
    with psycopg.connect(
        proxy.dsn(dbname=db), autocommit=True, cursor_factory=psycopg.ClientCursor
    ) as conn:
        with pytest.raises(psycopg.errors.DataException):
            conn.execute(
                f"insert into log values (97); select {BAD} from t; "
                "insert into log values (98)"
            )
        assert conn.execute("select count(*) from log").fetchone() == (0,)
        conn.execute(f"insert into log values (99); select {BAD} from t where id = 1")
        assert conn.execute("select id from log").fetchall() == [(99,)]
        conn.execute("delete from log")


def test_a_parameter_in_a_simple_query_is_postgresqls_error(
    proxy: RunningProxy, db: str
) -> None:
    with psycopg.connect(
        proxy.dsn(dbname=db), autocommit=True, cursor_factory=psycopg.ClientCursor
    ) as conn:
        with pytest.raises(psycopg.errors.UndefinedParameter):
            conn.execute(
                "select pgsodium.crypto_aead_det_encrypt($1::bytea, ''::bytea, 3)",
                prepare=False,
            )
        assert conn.execute("select 1").fetchone() == (1,)


def test_what_the_proxy_would_get_wrong_is_refused(
    proxy: RunningProxy, db: str
) -> None:
    with psycopg.connect(
        proxy.dsn(dbname=db), autocommit=True, cursor_factory=psycopg.ClientCursor
    ) as conn:
        conn.execute("set standard_conforming_strings = off")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute("select pgsodium.crypto_hash_sha256('\\\\x41'::bytea)")
        conn.execute("set standard_conforming_strings = on")
        assert conn.execute(
            "select pgsodium.crypto_hash_sha256('\\x41'::bytea)"
        ).fetchone() == (conn.execute("select sha256('\\x41'::bytea)").fetchone()[0],)
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute(
                "select convert_from(pgsodium.crypto_aead_det_decrypt(secret, "
                "convert_to(id::text, 'utf8'), kid), 'utf8')::varchar(1) from t"
            )
        # Where the database applies the modifier itself, the value is right.
        assert (
            conn.execute(
                "select 'abc'::varchar(1) || pgsodium.crypto_hash_sha256('x')::text"
            )
            .fetchone()[0]
            .startswith("a\\x")
        )


DECRYPTED = (
    "convert_from(pgsodium.crypto_aead_det_decrypt(secret, "
    "convert_to(id::text, 'utf8'), kid), 'utf8')"
)


@pytest.mark.parametrize(
    "expression",
    [
        f"({DECRYPTED} || '.0.0.1')::inet",
        f"(({DECRYPTED} || '.0.0.1')::inet)::text",
        f"('2023-01-02 03:04:05+02' || {DECRYPTED})::timestamptz",
        # Folded: a value computed from constants, sent to the client as it is.
        "convert_from(pgsodium.crypto_aead_det_decrypt(pgsodium.crypto_aead_det_"
        "encrypt(convert_to('ß', 'utf8'), ''::bytea, 1::bigint), ''::bytea, "
        "1::bigint), 'utf8')::inet",
    ],
)
@pytest.mark.parametrize(
    "cursor", [psycopg.ClientCursor, psycopg.Cursor], ids=["simple", "extended"]
)
def test_a_computed_value_cast_to_a_type_the_server_parses_is_refused(
    proxy: RunningProxy, db: str, cursor: type[psycopg.Cursor], expression: str
) -> None:
    """inet and timestamptz get their text from PostgreSQL's input and output
    functions (a canonical address; the session's TimeZone and DateStyle). The
    proxy never returns the text it was cast from as such a value ('v.0.0.1' is no
    address; PostgreSQL would give 22P02, and a timestamptz in UTC)."""
    with psycopg.connect(
        proxy.dsn(dbname=db), autocommit=True, cursor_factory=cursor
    ) as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="cast to"):
            conn.execute(f"select id, {expression} from t where id = 1").fetchall()
        assert conn.execute("select 1").fetchone() == (1,)


@pytest.mark.parametrize(
    "expression",
    [
        f"substring({DECRYPTED}, 'v+')",
        f"substring({DECRYPTED} from 'v+')",
        f"substring({DECRYPTED} similar 'v%' escape '#')",
        "length(pgsodium.crypto_aead_det_decrypt(secret, convert_to(id::text, "
        "'utf8'), kid), 'utf8')",
    ],
)
@pytest.mark.parametrize(
    "cursor", [psycopg.ClientCursor, psycopg.Cursor], ids=["simple", "extended"]
)
def test_an_overload_the_proxy_does_not_evaluate_is_refused_not_missing(
    proxy: RunningProxy, db: str, cursor: type[psycopg.Cursor], expression: str
) -> None:
    """PostgreSQL has these overloads; the proxy does not evaluate them over a
    value it computes: 0A000, never 42883 (which says the function is missing)."""
    with psycopg.connect(
        proxy.dsn(dbname=db), autocommit=True, cursor_factory=cursor
    ) as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="per row"):
            conn.execute(f"select id, {expression} from t where id = 1").fetchall()
        assert conn.execute("select 1").fetchone() == (1,)
