"""Syntax errors in PostgreSQL's form: its message, and the position as a 1-based
character offset into the whole text (what PostgreSQL 15 answered for each)."""

from __future__ import annotations

import pytest

from rewriter.analyze import analyze
from rewriter.errors import RewriteError


@pytest.mark.parametrize(
    ("sql", "message", "position"),
    [
        (
            "selec pgsodium.crypto_auth('x', 'k')",
            'syntax error at or near "selec"',
            1,
        ),
        (
            "select pgsodium.crypto_auth('x' 'k')",
            "syntax error at or near \"'k'\"",
            33,
        ),
        # Characters, not UTF-8 bytes: 'é' is two bytes.
        (
            "select 1; select 'éé'; selec pgsodium.crypto_auth('x')",
            'syntax error at or near "selec"',
            24,
        ),
        (
            "select 'é', pgsodium.crypto_auth('x',",
            "syntax error at end of input",
            38,
        ),
        (
            "select 'é', pgsodium.crypto_auth('x',   \n  ",
            "syntax error at end of input",
            44,
        ),
        (
            "select 'é', pgsodium.crypto_auth('x', -- c",
            "syntax error at end of input",
            43,
        ),
        (
            "select pgsodium.crypto_auth('x', 'abc",
            'unterminated quoted string at or near "\'abc"',
            34,
        ),
        (
            'select pgsodium.crypto_auth("")',
            'zero-length delimited identifier at or near """"',
            29,
        ),
    ],
)
def test_syntax_errors_have_postgresqls_message_and_position(
    sql: str, message: str, position: int
) -> None:
    with pytest.raises(RewriteError) as caught:
        analyze(sql, on_path=False)
    assert (caught.value.sqlstate, caught.value.message, caught.value.position) == (
        "42601",
        message,
        position,
    )


@pytest.mark.parametrize(
    ("sql", "sqlstate", "message"),
    [
        (
            "select pgsodium.crypto_generichash(E'\\xff'::bytea)",
            "22021",
            'invalid byte sequence for encoding "UTF8": 0xff',
        ),
        (
            "select pgsodium.crypto_generichash(E'a\\xff')",
            "22021",
            'invalid byte sequence for encoding "UTF8": 0xff',
        ),
        (
            "select pgsodium.crypto_generichash('m'::float(0)::text::bytea)",
            "22023",
            "precision for type float must be at least 1 bit",
        ),
    ],
)
def test_raw_parser_errors_that_are_not_syntax_errors_keep_their_sqlstate(
    sql: str, sqlstate: str, message: str
) -> None:
    with pytest.raises(RewriteError) as caught:
        analyze(sql, on_path=False)
    assert (caught.value.sqlstate, caught.value.message) == (sqlstate, message)


@pytest.mark.parametrize(
    ("sql", "message", "position"),
    [
        (
            "values (pgsodium.crypto_generichash('a')), (null, 2)",
            "VALUES lists must all be the same length",
            45,
        ),
        (
            "with x(v) as (values ('a'::bytea), ('b', 'c')) "
            "select pgsodium.crypto_generichash(v) from x",
            "VALUES lists must all be the same length",
            37,
        ),
        (
            "select pgsodium.crypto_generichash('a') from (values (1), ((1), 1)) y",
            "VALUES lists must all be the same length",
            61,
        ),
        (
            "insert into t (c) values (pgsodium.crypto_generichash('a'), 1)",
            "INSERT has more expressions than target columns",
            61,
        ),
        (
            "insert into t (c, d) values (pgsodium.crypto_generichash('a'))",
            "INSERT has more target columns than expressions",
            19,
        ),
    ],
)
def test_values_lists_that_do_not_fit_are_42601_where_postgresql_places_them(
    sql: str, message: str, position: int
) -> None:
    with pytest.raises(RewriteError) as caught:
        analyze(sql, on_path=False)
    assert (caught.value.sqlstate, caught.value.message, caught.value.position) == (
        "42601",
        message,
        position,
    )
