"""The proxy's own queries run under the client's search_path, which may put a
schema of the client's before pg_catalog. Functions and operators named like
the catalog's there must change nothing the proxy decides: privileges, the
session's client_encoding, whether a cursor is still the proxy's.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from proxy import codec
from proxy.codec import Bind, Execute, Parse, Query, Sync

from .conftest import RunningProxy, make_database
from .test_passthrough import RawClient, bounded
from .test_replaced_portals import _forged

LOW = "sc_low"
SHADOW = "set search_path = sc_evil, pg_catalog, public"
PER_ROW = (
    "select id, convert_from(pgsodium.crypto_aead_det_decrypt(secret, ''::bytea, "
    "{key}), 'utf8') as p from rp_accounts"
)


@pytest.fixture(scope="module")
def db(proxy: RunningProxy) -> str:
    name = make_database(proxy, "shadowed")
    with psycopg.connect(proxy.dsn(dbname=name), autocommit=True) as conn:
        conn.execute(
            "create table rp_accounts (id int, secret bytea, kid uuid, kno bigint)"
        )
        for number, plain in ((1, "alice-plain"), (2, "bob-plain")):
            key = conn.execute(
                "select id, key_id from pgsodium.create_key()"
            ).fetchone()
            assert key is not None
            conn.execute(
                "insert into rp_accounts values (%s, pgsodium.crypto_aead_det_encrypt("
                "convert_to(%s, 'utf8'), ''::bytea, %s::uuid), %s, %s)",
                [number, plain, key[0], key[0], key[1]],
            )
        conn.execute("create schema sc_evil")
        # Says yes to every privilege, and UTF8 for every setting asked.
        conn.execute(
            "create function sc_evil.has_function_privilege(pg_catalog.regprocedure, "
            "pg_catalog.text) returns bool language sql as 'select true'"
        )
        conn.execute(
            "create function sc_evil.current_setting(pg_catalog.text) returns text "
            "language sql as $$ select 'UTF8'::pg_catalog.text $$"
        )
        # Replaces the cursor it compares once it has compared it (sc_evil.q).
        conn.execute(
            """create function sc_evil.eq(a text, b text) returns bool
            language plpgsql as $$
            declare q text := pg_catalog.current_setting('sc_evil.q', true);
              r refcursor;
            begin
              if q <> '' and a operator(pg_catalog.=) b then
                perform pg_catalog.set_config('sc_evil.q', '', false);
                r := a; close r; open r for execute q;
              end if;
              return a operator(pg_catalog.=) b;
            end $$"""
        )
        conn.execute(
            "create operator sc_evil.= (leftarg = text, rightarg = text, "
            "function = sc_evil.eq)"
        )
        conn.execute(f"drop role if exists {LOW}")
        conn.execute(f"create role {LOW} login")
        conn.execute(f"grant select on rp_accounts to {LOW}")
        conn.execute(f"grant usage on schema sc_evil to {LOW}")
    return name


def test_a_role_without_execute_is_refused_whatever_its_search_path(
    proxy: RunningProxy, db: str
) -> None:
    """The key id comes from a column: which overload runs is known only from
    the rows' types, and its privilege is asked with the rows (lookup.CHECK_SQL)."""
    with psycopg.connect(proxy.dsn(user=LOW, dbname=db), autocommit=True) as conn:
        conn.execute(SHADOW)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(PER_ROW.format(key="kno")).fetchall()


def test_a_cursor_replaced_by_the_check_itself_is_not_read(
    proxy: RunningProxy, db: str
) -> None:
    with psycopg.connect(proxy.dsn(dbname=db)) as conn:
        conn.execute(f"declare cc cursor for {PER_ROW.format(key='kid')} where id = 1")
        statement = conn.execute(
            "select statement from pg_cursors where name = 'cc'"
        ).fetchone()
        assert statement is not None
        query = _forged(conn, statement[0])
        conn.execute("select pg_catalog.set_config('sc_evil.q', %s, false)", [query])
        conn.execute(SHADOW)

        rows: Any = conn.execute("fetch all from cc").fetchall()

        assert rows == [(1, "alice-plain")]


@bounded()
async def test_an_encoding_set_ahead_is_seen_whatever_the_search_path(
    proxy: RunningProxy, db: str
) -> None:
    folded = (
        "select convert_from(pgsodium.crypto_aead_det_decrypt("
        "pgsodium.crypto_aead_det_encrypt(convert_to('Ünï', 'utf8'), ''::bytea, "
        "1::bigint), ''::bytea, 1::bigint), 'utf8')"
    )
    client = await RawClient.connect(proxy.host, proxy.port, database=db)
    try:
        await client.send(Query(SHADOW))
        await client.until(b"Z")
        await client.send(
            Parse("", "set client_encoding = 'LATIN1'"),
            Bind("", "", (), (), ()),
            Execute(""),
            Parse("", folded),
            Bind("", "", (), (), ()),
            Execute(""),
            Sync(),
        )
        frames = await client.until(b"Z")
    finally:
        await client.close()

    errors = [codec.decode_backend(f) for f in frames if f.type == ord("E")]
    assert [e.sqlstate for e in errors] == ["0A000"]
    assert not [f for f in frames if f.type == ord("D")]
