"""A portal or cursor over computed rows that code inside the server replaced
(a DO block closing it and opening another under its name) is no longer read as
the proxy's own: its rows pass through as PostgreSQL sends them, and the proxy
decrypts nothing from inputs or key references the replacement chose.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import asyncpg
import psycopg
import pytest

from proxy import codec
from proxy.codec import Bind, Execute, Frame, Parse, Query, Sync

from .conftest import RunningProxy, make_database
from .test_passthrough import RawClient, bounded

PER_ROW = (
    "select id, convert_from(pgsodium.crypto_aead_det_decrypt(secret, ''::bytea, "
    "kid), 'utf8') as p from rp_accounts"
)
# Closes portal or cursor %(name)s and opens another under its name.
REPLACE = """do $$ declare r refcursor := %(name)s; begin
  close r; open r for %(query)s; end $$"""


@pytest.fixture(scope="module")
def db(proxy: RunningProxy) -> str:
    name = make_database(proxy, "replaced")
    with psycopg.connect(proxy.dsn(dbname=name), autocommit=True) as conn:
        conn.execute("create table rp_accounts (id int, secret bytea, kid uuid)")
        for number, plain in ((1, "alice-plain"), (2, "bob-plain")):
            key = conn.execute("select id from pgsodium.create_key()").fetchone()
            assert key is not None
            conn.execute(
                "insert into rp_accounts values (%s, pgsodium.crypto_aead_det_encrypt("
                "convert_to(%s, 'utf8'), ''::bytea, %s::uuid), %s)",
                [number, plain, key[0], key[0]],
            )
    return name


def _literal(conn: Any, value: Any) -> str:
    return psycopg.sql.Literal(value).as_string(conn)


def _forged(conn: psycopg.Connection[Any], statement: str) -> str:
    """A query with the proxy's input columns, named as in `statement`, that puts
    row 2's ciphertext beside row 1's key uuid and row 2's key reference: read as
    the proxy's own, it would decrypt bob's value under a key it did not name."""
    names = re.findall(r'"(_\w+?r0_\w+)"', statement)
    assert names, statement
    one, two = conn.execute(
        "select kid from rp_accounts where id = 1 union all "
        "select kid from rp_accounts where id = 2"
    ).fetchall()
    secret = conn.execute("select secret from rp_accounts where id = 2").fetchone()
    assert secret is not None
    columns = ["2 as id"]
    for name in dict.fromkeys(names):
        if name.endswith("k"):
            value = f"pgsodium._proxy_key_ref({_literal(conn, two[0])}::uuid)"
        elif name.endswith("_0"):
            value = f"{_literal(conn, bytes(secret[0]))}::bytea"
        else:
            value = f"{_literal(conn, one[0])}::uuid"
        columns.append(f'{value} as "{name}"')
    return "select " + ", ".join(columns)


def test_a_replaced_cursor_passes_through_and_decrypts_nothing(
    proxy: RunningProxy, db: str
) -> None:
    with psycopg.connect(proxy.dsn(dbname=db)) as conn:
        conn.execute(f"declare cc cursor for {PER_ROW} where id = 1")
        statement = conn.execute(
            "select statement from pg_cursors where name = 'cc'"
        ).fetchone()
        assert statement is not None
        query = _forged(conn, statement[0])
        conn.execute(REPLACE % {"name": "'cc'", "query": query})

        rows = conn.execute("fetch all from cc").fetchall()

        assert rows and rows[0][0] == 2
        assert "bob-plain" not in repr(rows)
        assert len(rows[0]) > 2  # the replacement's own columns, as it sent them
        # The cursor is no longer the proxy's: its next FETCH passes through too.
        assert conn.execute("fetch all from cc").fetchall() == []


def test_a_cursor_read_after_other_statements_still_decrypts(
    proxy: RunningProxy, db: str
) -> None:
    with psycopg.connect(proxy.dsn(dbname=db)) as conn:
        conn.execute(f"declare cc cursor for {PER_ROW} order by id")
        assert conn.execute("fetch 1 from cc").fetchall() == [(1, "alice-plain")]
        conn.execute("select 1")
        conn.execute("do $$ begin perform 1; end $$")
        assert conn.execute("fetch 1 from cc").fetchall() == [(2, "bob-plain")]
        with conn.cursor(name="named") as named:
            named.execute(f"{PER_ROW} order by id")
            assert named.fetchmany(1) == [(1, "alice-plain")]
            conn.execute("select 2")
            assert named.fetchmany(1) == [(2, "bob-plain")]


async def _portal_name(conn: asyncpg.Connection) -> str:
    name = await conn.fetchval(
        "select name from pg_cursors where statement like '%_proxy_key_ref%'"
    )
    assert name
    return str(name)


async def test_a_replaced_protocol_portal_passes_through(
    proxy: RunningProxy, db: str
) -> None:
    conn = await asyncpg.connect(proxy.url(dbname=db))
    try:
        async with conn.transaction():
            cursor = await conn.cursor(f"{PER_ROW} order by id")
            assert tuple(await cursor.fetchrow()) == (1, "alice-plain")
            name = await _portal_name(conn)
            # The portal the DO block opens sends text, whatever the Bind asked:
            # asyncpg reads its first column as the int4 it bound, as it would
            # reading PostgreSQL directly.
            replacement = "select 'abcd'::text, 'as sent'::text"
            await conn.execute(REPLACE % {"name": f"'{name}'", "query": replacement})

            rows = await cursor.fetch(1)

            assert [tuple(r) for r in rows] == [
                (int.from_bytes(b"abcd", "big"), "as sent")
            ]
    finally:
        await asyncio.wait_for(conn.close(), 10)


async def test_a_protocol_portal_read_after_other_statements_still_decrypts(
    proxy: RunningProxy, db: str
) -> None:
    conn = await asyncpg.connect(proxy.url(dbname=db))
    try:
        async with conn.transaction():
            cursor = await conn.cursor(f"{PER_ROW} order by id")
            assert tuple(await cursor.fetchrow()) == (1, "alice-plain")
            await conn.execute("do $$ begin perform 1; end $$")
            assert await conn.fetchval("select 3") == 3
            assert [tuple(r) for r in await cursor.fetch(1)] == [(2, "bob-plain")]
    finally:
        await asyncio.wait_for(conn.close(), 10)


def test_a_fetch_in_the_message_that_declares_the_cursor_is_refused(
    proxy: RunningProxy, db: str
) -> None:
    """The cursor's rows would come back before the proxy knows the cursor (the
    session ended with XX000)."""
    with psycopg.connect(
        proxy.dsn(dbname=db), cursor_factory=psycopg.ClientCursor
    ) as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="declares it"):
            conn.execute(f"declare cc cursor for {PER_ROW}; fetch all from cc")
        conn.rollback()
        conn.execute(f"declare cc cursor for {PER_ROW} order by id")
        assert conn.execute("fetch 1 from cc").fetchall() == [(1, "alice-plain")]


# Replaces portal or cursor n with query q when the planner folds it (an
# immutable call with constant arguments): while a Bind plans the unnamed
# statement, before anything is executed.
EVIL_AT_PLANNING = """create or replace function rp_replace(n text, q text)
  returns int immutable language plpgsql as $$
  declare r refcursor := n; begin close r; open r for execute q; return 1; end $$"""


def _forged_row(conn: psycopg.Connection[Any]) -> str:
    """Row 2's ciphertext beside row 1's key uuid and row 2's key reference."""
    one, two = (
        conn.execute("select kid from rp_accounts where id = %s", [i]).fetchone()[0]
        for i in (1, 2)
    )
    secret = conn.execute("select secret from rp_accounts where id = 2").fetchone()
    assert secret is not None
    return (
        f"select 1, {_literal(conn, bytes(secret[0]))}::bytea, "
        f"{_literal(conn, one)}::uuid, "
        f"pgsodium._proxy_key_ref({_literal(conn, two)}::uuid)"
    )


def _data(frames: list[Frame]) -> list[list[bytes | None]]:
    return [codec.data_row_values(f.body) for f in frames if f.type == ord("D")]


def _passed_through(frames: list[Frame]) -> None:
    """The replacement's rows, as it sent them (its four columns), and nothing
    the proxy decrypted from them."""
    rows = _data(frames)
    assert rows and len(rows[0]) == 4
    assert not any(b"bob-plain" in (v or b"") for row in rows for v in row)


@bounded()
async def test_a_portal_replaced_while_a_bind_plans_is_not_read_as_the_proxys(
    proxy: RunningProxy, db: str
) -> None:
    """No Execute between: the Bind of another statement runs the replacement."""
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        conn.execute(EVIL_AT_PLANNING)
        forged = _forged_row(conn)
    client = await RawClient.connect(proxy.host, proxy.port, database=db)
    try:
        await client.send(Query("begin"))
        await client.until(b"Z")
        await client.send(
            Parse("s1", f"{PER_ROW} where id = 1"),
            Bind("P", "s1", (), (), ()),
            Parse("", f"select rp_replace('P', $q${forged}$q$)"),
            Bind("", "", (), (), ()),
            Execute("P"),
            Sync(),
        )
        frames = await client.until(b"Z")
    finally:
        await client.close()

    _passed_through(frames)


@bounded()
async def test_a_cursor_replaced_while_a_bind_reads_a_domain_is_not_read(
    proxy: RunningProxy, db: str
) -> None:
    """A domain's CHECK runs user code while a Bind reads its parameter; the
    replacement names its columns as the proxy's (read from pg_cursors)."""
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        conn.execute(
            "create or replace function rp_check(v text) returns bool "
            "language plpgsql as $$ declare r refcursor := split_part(v, '|', 1); "
            "begin close r; open r for execute split_part(v, '|', 2); "
            "return true; end $$"
        )
        conn.execute("drop domain if exists rp_dom")
        conn.execute("create domain rp_dom as text check (rp_check(value))")
    client = await RawClient.connect(proxy.host, proxy.port, database=db)
    try:
        await client.send(Query(f"begin; declare cc cursor for {PER_ROW} where id = 1"))
        await client.until(b"Z")
        await client.send(Query("select statement from pg_cursors where name = 'cc'"))
        (statement,) = _data(await client.until(b"Z"))[0]
        assert statement is not None
        with psycopg.connect(proxy.dsn(dbname=db)) as conn:
            forged = _forged(conn, statement.decode())
        await client.send(Query("fetch 0 from cc"))
        await client.until(b"Z")
        await client.send(
            Parse("", "select $1::rp_dom"),
            Bind("", "", (), (f"cc|{forged}".encode(),), ()),
            Sync(),
        )
        await client.until(b"Z")
        await client.send(Query("fetch all from cc"))
        frames = await client.until(b"Z")
    finally:
        await client.close()

    _passed_through(frames)


def _forged_values(conn: psycopg.Connection[Any]) -> str:
    """The values of _forged_row as literals only (no call): row 2's ciphertext,
    row 1's key uuid, row 2's key reference as text."""
    one, two = (
        conn.execute("select kid from rp_accounts where id = %s", [i]).fetchone()[0]
        for i in (1, 2)
    )
    secret, ref = conn.execute(
        "select secret, pgsodium._proxy_key_ref(kid) from rp_accounts where id = 2"
    ).fetchone()
    return (
        f"{_literal(conn, bytes(secret))}::bytea, {_literal(conn, one)}::uuid, "
        f"{_literal(conn, ref)}::text"
    )


@bounded()
async def test_a_statement_prepared_again_by_sql_is_not_read_as_the_proxys(
    proxy: RunningProxy, db: str
) -> None:
    """DEALLOCATE and PREPARE under the name of a statement the proxy parsed: its
    Bind and Execute pass through, nothing is decrypted."""
    with psycopg.connect(proxy.direct_dsn(dbname=db)) as conn:
        values = _forged_values(conn)
    client = await RawClient.connect(proxy.host, proxy.port, database=db)
    try:
        await client.send(
            Parse("s1", f"{PER_ROW} where id = $1"),
            Bind("", "s1", (), (b"1",), ()),
            Execute(""),
            Sync(),
        )
        assert _data(await client.until(b"Z")) == [[b"1", b"alice-plain"]]
        await client.send(
            Query(f"deallocate s1; prepare s1(int) as select $1 as id, {values}")
        )
        await client.until(b"Z")
        await client.send(Bind("", "s1", (), (b"1",), ()), Execute(""), Sync())
        frames = await client.until(b"Z")
    finally:
        await client.close()

    _passed_through(frames)


@bounded()
async def test_a_fetch_prepared_again_by_sql_is_not_read_as_the_proxys(
    proxy: RunningProxy, db: str
) -> None:
    with psycopg.connect(proxy.direct_dsn(dbname=db)) as conn:
        values = _forged_values(conn)
    client = await RawClient.connect(proxy.host, proxy.port, database=db)
    try:
        await client.send(Query(f"begin; declare cur cursor for {PER_ROW}"))
        await client.until(b"Z")
        await client.send(Parse("f1", "fetch 1 from cur"), Sync())
        await client.until(b"Z")
        await client.send(
            Query(f"deallocate f1; prepare f1 as select 1 as id, {values}")
        )
        await client.until(b"Z")
        await client.send(Bind("", "f1", (), (), ()), Execute(""), Sync())
        frames = await client.until(b"Z")
    finally:
        await client.close()

    _passed_through(frames)


ENCRYPTED = "pgsodium.crypto_aead_det_encrypt('x'::bytea, ''::bytea, 1::bigint)"


@pytest.mark.parametrize(
    "statement",
    [
        f"insert into rp_log values ({ENCRYPTED}) returning length(c)",
        f"with w as (insert into rp_log values ({ENCRYPTED}) returning c) "
        "select length(c) from w",
        f"explain analyze insert into rp_log values ({ENCRYPTED})",
        f"create table rp_made as select {ENCRYPTED} as c",
        f"select {ENCRYPTED} as c into rp_made",
    ],
)
@bounded()
async def test_a_role_set_between_the_bind_and_execute_of_a_write_is_checked(
    proxy: RunningProxy, db: str, statement: str
) -> None:
    """PostgreSQL checks EXECUTE on the functions of a statement other than a
    plain SELECT when its portal runs, as the role current then; the proxy
    computed them at Bind."""
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        if not conn.execute("select from pg_roles where rolname = 'rp_none'").rowcount:
            conn.execute("create role rp_none")
        conn.execute("create table if not exists rp_log (c bytea)")
        conn.execute("drop table if exists rp_made")
        conn.execute("grant insert, select on rp_log to rp_none")
    insert = statement
    client = await RawClient.connect(proxy.host, proxy.port, database=db)
    try:
        await client.send(Query("begin"))
        await client.until(b"Z")
        await client.send(
            Parse("", insert),
            Bind("p", "", (), (), ()),
            Parse("", "set role rp_none"),
            Bind("", "", (), (), ()),
            Execute(""),
            Execute("p"),
            Sync(),
        )
        frames = await client.until(b"Z")
        await client.send(Query("rollback"))
        await client.until(b"Z")
        # Nothing between the Bind and the Execute: the role that bound it runs it.
        await client.send(
            Parse("", insert), Bind("p", "", (), (), ()), Execute("p"), Sync()
        )
        alone = await client.until(b"Z")
    finally:
        await client.close()

    errors = [codec.decode_backend(f) for f in frames if f.type == ord("E")]
    assert [e.sqlstate for e in errors] == ["42501"]
    assert "crypto_aead_det_encrypt" in errors[0].message
    assert not _data(frames)
    assert not [f for f in alone if f.type == ord("E")]


@bounded()
async def test_a_pgsodium_call_in_copy_over_the_extended_protocol_is_refused(
    proxy: RunningProxy, db: str
) -> None:
    """COPY takes no bind parameters, which carry the extended protocol's folded
    values (it failed with 42P02 upstream); as a simple Query it is folded."""
    copy = f"copy (select {ENCRYPTED}) to stdout"
    client = await RawClient.connect(proxy.host, proxy.port, database=db)
    try:
        await client.send(
            Parse("", copy), Bind("", "", (), (), ()), Execute(""), Sync()
        )
        frames = await client.until(b"Z")
        await client.send(Query(copy))
        simple = await client.until(b"Z")
    finally:
        await client.close()

    errors = [codec.decode_backend(f) for f in frames if f.type == ord("E")]
    assert [e.sqlstate for e in errors] == ["0A000"]
    assert "COPY" in errors[0].message
    assert [f.type for f in simple].count(ord("d")) == 1  # one CopyData row


@pytest.mark.parametrize(
    "statement",
    [
        "select current_user, pgsodium.derive_key(1), $1::rp_lower",
        f"insert into rp_log values ({ENCRYPTED}) returning $1::rp_lower",
    ],
)
@bounded()
async def test_a_role_a_bind_sets_with_a_domain_check_is_checked_at_execute(
    proxy: RunningProxy, db: str, statement: str
) -> None:
    """A domain's CHECK on a bind value runs during the Bind, after the proxy's
    check and before PostgreSQL's: the proxy checks again at Execute."""
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        if not conn.execute("select from pg_roles where rolname = 'rp_none'").rowcount:
            conn.execute("create role rp_none")
        conn.execute("create table if not exists rp_log (c bytea)")
        conn.execute("grant insert, select on rp_log to rp_none")
        conn.execute(
            "create or replace function rp_to_none(v int) returns bool "
            "language plpgsql as $$ begin "
            "perform pg_catalog.set_config('role', 'rp_none', false); "
            "return true; end $$"
        )
        conn.execute("drop domain if exists rp_lower")
        conn.execute("create domain rp_lower as int check (rp_to_none(value))")
    client = await RawClient.connect(proxy.host, proxy.port, database=db)
    try:
        await client.send(
            Parse("", statement),
            Bind("", "", (), (b"1",), ()),
            Execute(""),
            Sync(),
        )
        frames = await client.until(b"Z")
    finally:
        await client.close()

    errors = [codec.decode_backend(f) for f in frames if f.type == ord("E")]
    assert [e.sqlstate for e in errors] == ["42501"]
    assert not _data(frames)
