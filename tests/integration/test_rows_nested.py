"""Per-row values through any number of query levels, through the real proxy: pgsodium
calls, TCE decrypting views, vault.decrypted_secrets and pgsodium.decrypted_key read
inside subqueries in FROM and WITH queries, and passed up to the outer select list.

Results are compared with the plaintext written (or, for decrypted_key, with the
proxy's own top-level decryption); each refusal is 0A000 and its text never
reaches the database.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from .conftest import RunningProxy, make_database, server_log

PLAIN = {1: "alice", 2: "bob", 3: "émilie 🔐"}
DECRYPT = "pgsodium.crypto_aead_det_decrypt(secret, convert_to(id::text, 'utf8'), kid)"


@pytest.fixture(scope="module")
def db(proxy: RunningProxy) -> str:
    name = make_database(proxy, "nested")
    with psycopg.connect(proxy.dsn(dbname=name), autocommit=True) as conn:
        key = conn.execute("select id from pgsodium.create_key()").fetchone()[0]
        conn.execute("create table acc (id int primary key, secret bytea, kid uuid)")
        for i, text in PLAIN.items():
            conn.execute(
                "insert into acc values (%s, pgsodium.crypto_aead_det_encrypt("
                "convert_to(%s, 'utf8'), convert_to(%s, 'utf8'), %s), %s)",
                [i, text, str(i), key, key],
            )
        conn.execute("create table other (id int, tag text)")
        conn.execute("insert into other values (1, 'one'), (2, 'two'), (3, 'three')")
        conn.execute(
            "select pgsodium.create_key('hmacsha256', raw_key => "
            "pgsodium.crypto_auth_hmacsha256_keygen())"
        )
        tce_key = conn.execute("select id from pgsodium.create_key()").fetchone()[0]
        conn.execute("create table t_n (id int primary key, secret text, blob bytea)")
        conn.execute(
            "security label for pgsodium on column t_n.secret "
            f"is 'ENCRYPT WITH KEY ID {tce_key} ASSOCIATED (id)'"
        )
        conn.execute(
            f"security label for pgsodium on column t_n.blob is 'ENCRYPT WITH KEY ID "
            f"{tce_key}'"
        )
        for i, text in PLAIN.items():
            conn.execute(
                "insert into t_n values (%s, %s, %s)", [i, text, text.encode()]
            )
        conn.execute("select vault.create_secret('vault-one', 'nested-one')")
    return name


def _plain(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [(i, PLAIN[i]) for i, _ in rows]


SHAPES = [
    f"select * from (select * from (select id, convert_from({DECRYPT}, 'utf8') p "
    "from acc) a) b order by id",
    f"select id, convert_from(p, 'utf8') from (select id, p from (select id, "
    f"{DECRYPT} p from acc) a) b order by id",
    f"select b.id, b.t from (select a.id, convert_from(a.p, 'utf8') t from (select "
    f"id, {DECRYPT} p from acc where id > 0) a) b order by 1",
    f"with d as (select id, {DECRYPT} p from acc), e as (select * from d) "
    "select id, convert_from(p, 'utf8') from e order by id",
    f"with d as (select id, {DECRYPT} p from acc) select id, t from (select id, "
    "convert_from(p, 'utf8') t from d) x order by id",
    f"select o.id, x.t from other o join (select * from (select id, "
    f"convert_from({DECRYPT}, 'utf8') t from acc) a) x on x.id = o.id order by o.id",
    f"with d as (select id, {DECRYPT} p from acc) select a.id, convert_from(b.p, "
    "'utf8') from d a join d b using (id) order by a.id",
    f"select a.id, l.t from acc a, lateral (select convert_from({DECRYPT}, 'utf8') "
    "t) l order by a.id",
    f"select * from (select * from (select * from (select id, convert_from("
    f"{DECRYPT}, 'utf8') t from acc order by id limit 10) a) b) c order by id",
    f"with d as (select id, {DECRYPT} p from acc), unused as (select {DECRYPT} q "
    "from acc) select id, convert_from(p, 'utf8') from d order by id",
    f"select i, convert_from(t, 'utf8') from (select id, {DECRYPT} p from acc) "
    "as s(i, t) order by i",
    f"with d(i, t) as (select id, {DECRYPT} p from acc) select x, convert_from(y, "
    "'utf8') from d as e(x, y) order by x",
    f"select * from (select id, convert_from({DECRYPT}, 'utf8') p from acc) "
    "s(i) order by i",
]


@pytest.mark.parametrize("sql", SHAPES)
def test_value_computed_levels_down_reaches_the_outer_select_list(
    conn: psycopg.Connection[Any], sql: str
) -> None:
    rows = conn.execute(sql).fetchall()
    assert rows == _plain(rows) and len(rows) == 3


@pytest.mark.parametrize("sql", SHAPES[:4])
def test_binary_results_levels_down(proxy: RunningProxy, db: str, sql: str) -> None:
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        rows = conn.execute(sql, binary=True).fetchall()
    assert rows == _plain(rows) and len(rows) == 3


def test_names_and_types_come_up_with_the_value(conn: psycopg.Connection[Any]) -> None:
    cursor = conn.execute(
        f"select * from (select q, length(q) n from (select {DECRYPT} q from acc "
        "where id = 2) a) b"
    )
    assert [d.name for d in cursor.description] == ["q", "n"]
    assert cursor.fetchall() == [(b"bob", 3)]


# -- decrypting views one or more levels down ----------------------------------------


TCE_SHAPES = [
    ("with d as (select * from decrypted_t_n) select id, decrypted_secret from d "
     "order by id", None),
    ("select s.id, s.decrypted_secret from (select * from decrypted_t_n) s order "
     "by s.id", None),
    ("select * from (select id, decrypted_secret from (select * from decrypted_t_n) "
     "a) b order by id", None),
    ("with d as (select id, decrypted_secret from decrypted_t_n where "
     "decrypted_blob = %s) select * from d", [b"bob"]),
    ("with d as (select id, decrypted_secret from decrypted_t_n where "
     "decrypted_blob = 'bob') select * from d", None),
    ("select * from (select * from (select id, decrypted_secret from decrypted_t_n "
     "v where v.decrypted_blob = %s) a) b", [b"bob"]),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "params"), TCE_SHAPES)
def test_decrypting_view_inside_a_cte_or_subquery(
    proxy: RunningProxy, conn: psycopg.Connection[Any], sql: str, params: Any
) -> None:
    if params and isinstance(conn.cursor(), psycopg.ClientCursor):
        # psycopg writes bytes as '\x…'::bytea: a value written as a cast, which
        # the search does not take (as at the top level).
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="WHERE"):
            conn.execute(sql, params)
        return
    rows = conn.execute(sql, params).fetchall()
    if "bob" in sql or params:
        assert rows == [(2, "bob")]
    else:
        assert rows == _plain(rows) and len(rows) == 3


def test_view_search_levels_down_sends_ciphertext_only(
    proxy: RunningProxy, conn: psycopg.Connection[Any]
) -> None:
    unique = f"zebra-{uuid.uuid4().hex[:12]}"
    rows = conn.execute(
        "with d as (select id, decrypted_secret from decrypted_t_n where "
        f"decrypted_blob = '{unique}') select * from d"
    ).fetchall()
    assert rows == []
    assert unique not in server_log(proxy)
    assert unique.encode().hex() not in server_log(proxy)


def test_vault_view_one_level_down(conn: psycopg.Connection[Any]) -> None:
    assert conn.execute(
        "select x.decrypted_secret from (select * from vault.decrypted_secrets) x "
        "where x.name = 'nested-one'"
    ).fetchall() == [("vault-one",)]
    assert conn.execute(
        "with s as (select name, decrypted_secret from vault.decrypted_secrets) "
        "select decrypted_secret from s where name = 'nested-one'"
    ).fetchall() == [("vault-one",)]


def test_decrypted_key_levels_down_equals_the_top_level(
    conn: psycopg.Connection[Any],
) -> None:
    expected = conn.execute(
        "select id, decrypted_raw_key from pgsodium.decrypted_key order by id"
    ).fetchall()
    assert any(raw is not None for _, raw in expected)
    for sql in [
        "select id, decrypted_raw_key from (select id, decrypted_raw_key from "
        "pgsodium.decrypted_key) k order by id",
        "select k.id, k.decrypted_raw_key from (select * from pgsodium.decrypted_key) "
        "k order by k.id",
        "with k as (select d.* from pgsodium.decrypted_key d) select id, "
        "decrypted_raw_key from (select * from k) x order by id",
        "select id, r from (select id, decrypted_raw_key as r from pgsodium."
        "decrypted_key) k order by id",
    ]:
        assert conn.execute(sql).fetchall() == expected, sql
    lengths = conn.execute(
        "select id, length(decrypted_raw_key) from (select * from "
        "pgsodium.decrypted_key) k order by id"
    ).fetchall()
    assert lengths == [(i, None if r is None else len(r)) for i, r in expected]


@pytest.mark.asyncio
async def test_asyncpg_describes_values_levels_down_before_any_row(
    proxy: RunningProxy, db: str
) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(
            host=proxy.host, port=proxy.port, user="postgres", database=db
        )
        try:
            stmt = await conn.prepare(
                f"with d as (select id, {DECRYPT} p from acc) select id, "
                "convert_from(p, 'utf8') as plain, length(p) as n from (select * "
                "from d) x where id = $1"
            )
            assert [(a.name, a.type.name) for a in stmt.get_attributes()] == [
                ("id", "int4"),
                ("plain", "text"),
                ("n", "int4"),
            ]
            assert list(await stmt.fetchrow(2)) == [2, "bob", 3]
            rows = await conn.fetch(
                "select id, decrypted_secret from (select * from decrypted_t_n) s "
                "order by id"
            )
            assert [tuple(r) for r in rows] == list(PLAIN.items())
            stmt = await conn.prepare(
                "select * from (select id, decrypted_raw_key from "
                "pgsodium.decrypted_key) k"
            )
            assert [(a.name, a.type.name) for a in stmt.get_attributes()] == [
                ("id", "uuid"),
                ("decrypted_raw_key", "bytea"),
            ]
            stmt = await conn.prepare(
                "select $1::int as n, (select decrypted_secret from decrypted_t_n v "
                "where v.id = $1) as s"
            )
            assert [(a.name, a.type.name) for a in stmt.get_attributes()] == [
                ("n", "int4"),
                ("s", "text"),
            ]
            assert list(await stmt.fetchrow(3)) == [3, PLAIN[3]]
        finally:
            await conn.close()

    await asyncio.wait_for(run(), 30)


# -- scalar subqueries over decrypting views and levels below ------------------------


SCALARS = [
    ("select (select decrypted_secret from decrypted_t_n where id = 1)",
     [("alice",)]),
    ("select (select decrypted_secret from decrypted_t_n where id = -1) as s",
     [(None,)]),
    ("select o.id, (select v.decrypted_secret from decrypted_t_n v where v.id = "
     "o.id) as s from other o order by o.id", [(i, p) for i, p in PLAIN.items()]),
    ("select o.id, (select upper(o.tag) || ':' || decrypted_secret from "
     "decrypted_t_n v where v.id = o.id) from other o where o.id = 2",
     [(2, "TWO:bob")]),
    ("select (select convert_from(decrypted_blob, 'utf8') from decrypted_t_n where "
     "id = 3) as b, 7 as n", [(PLAIN[3], 7)]),
    ("select (select decrypted_secret from vault.decrypted_secrets where name = "
     "'nested-one')", [("vault-one",)]),
    ("select (select decrypted_secret from decrypted_t_n where decrypted_blob = "
     "'bob')", [("bob",)]),
    ("select o.id, (select convert_from(p, 'utf8') from (select id, "
     f"{DECRYPT} p from acc) a where a.id = o.id) from other o order by o.id",
     [(i, p) for i, p in PLAIN.items()]),
    # Other columns of the view: the database's, whatever the subquery's clauses.
    ("select (select id from decrypted_t_n order by id desc limit 1), (select "
     "count(*) from decrypted_t_n where id > 1)", [(3, 2)]),
    (f"select (select convert_from({DECRYPT}, 'utf8') from acc where "
     "length(secret) > 0 and id = 2)", [("bob",)]),
    ("with d as (select id, decrypted_secret from decrypted_t_n) select o.tag, "
     "(select d.decrypted_secret from d where d.id = o.id) from other o where "
     "o.id = 1", [("one", "alice")]),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "expected"), SCALARS)
def test_scalar_subquery_over_a_decrypting_view_or_levels_below(
    conn: psycopg.Connection[Any], sql: str, expected: list[tuple[Any, ...]]
) -> None:
    assert conn.execute(sql).fetchall() == expected


@pytest.mark.parametrize("binary", [False, True])
def test_scalar_subquery_over_a_view_names_and_types_its_column(
    proxy: RunningProxy, db: str, binary: bool
) -> None:
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        cursor = conn.execute(
            "select o.id, (select decrypted_blob from decrypted_t_n v where v.id = "
            "o.id) from other o order by o.id",
            binary=binary,
        )
        assert [(d.name, d.type_code) for d in cursor.description] == [
            ("id", 23),
            ("decrypted_blob", 17),
        ]
        assert cursor.fetchall() == [(i, p.encode()) for i, p in PLAIN.items()]


def test_scalar_subquery_over_a_view_takes_bind_parameters(
    conn: psycopg.Connection[Any],
) -> None:
    sql = (
        "select %s::int as asked, (select decrypted_secret from decrypted_t_n "
        "where id = %s)"
    )
    for i, text in PLAIN.items():
        assert conn.execute(sql, [i, i]).fetchall() == [(i, text)]
    assert conn.execute(
        "select (select decrypted_secret from vault.decrypted_secrets where name = %s)",
        ["nested-one"],
    ).fetchall() == [("vault-one",)]


def test_scalar_subquery_over_a_view_keeps_postgresqls_cardinality_rule(
    proxy: RunningProxy, conn: psycopg.Connection[Any]
) -> None:
    with pytest.raises(psycopg.errors.CardinalityViolation):
        conn.execute("select (select decrypted_secret from decrypted_t_n)")
    with pytest.raises(psycopg.errors.CardinalityViolation):
        conn.execute(
            f"select (select p from (select id, {DECRYPT} p from acc) a where id > 1)"
        )
    assert conn.execute("select 1").fetchone() == (1,)


def test_scalar_subquery_over_a_view_equals_the_query_over_the_plaintext(
    conn: psycopg.Connection[Any],
) -> None:
    """The same correlated scalar subquery over the view and over a plaintext
    copy of the table give the same rows."""
    conn.execute("drop table if exists t_plain")
    conn.execute("create table t_plain (id int, decrypted_secret text)")
    for i, text in PLAIN.items():
        conn.execute("insert into t_plain values (%s, %s)", [i, text])
    conn.execute("insert into other values (4, 'four')")
    try:
        template = (
            "select o.id, o.tag, (select '<' || x.decrypted_secret || '>' || "
            "o.tag from {} x where x.id = o.id) from other o order by 1"
        )
        got = conn.execute(template.format("decrypted_t_n")).fetchall()
        assert got == conn.execute(template.format("t_plain")).fetchall()
        assert got[-1] == (4, "four", None)
    finally:
        conn.execute("delete from other where id = 4")


# -- scalar subqueries whose FROM or WHERE picks rows: one evaluation gives all inputs

PICKED = [
    "select (select decrypted_secret from (select * from {v} order by id limit 1) v)",
    "select (select decrypted_secret from {v} where id in (select id from t_n "
    "order by id offset 2))",
    "select (select convert_from(v.decrypted_blob, 'utf8') from {v} v join t_n t "
    "tablesample system (100) using (id) where v.id = 2)",
    "select (select decrypted_secret from (select * from {v} where id = 1 union "
    "all select * from {v} where id = 5) u)",
    "select g, (select id::text || ':' || decrypted_secret from {v} where id = "
    "(select id from t_n order by id limit 1 offset g)) from generate_series(0, 3) g",
]


@pytest.fixture
def plain_copy(conn: psycopg.Connection[Any]) -> Iterator[str]:
    """A plaintext table with the decrypting view's columns and rows."""
    conn.execute("drop table if exists plain_n")
    conn.execute(
        "create table plain_n (id int, secret text, blob bytea, decrypted_secret "
        "text, decrypted_blob bytea)"
    )
    for i, text in PLAIN.items():
        conn.execute(
            "insert into plain_n values (%s, null, null, %s, %s)",
            [i, text, text.encode()],
        )
    yield "plain_n"
    conn.execute("drop table plain_n")


@pytest.mark.parametrize("template", PICKED)
def test_scalar_subquery_whose_from_picks_rows_equals_the_plaintext_query(
    conn: psycopg.Connection[Any], plain_copy: str, template: str
) -> None:
    got = conn.execute(template.format(v="decrypted_t_n")).fetchall()
    assert got == conn.execute(template.format(v=plain_copy)).fetchall()


@pytest.fixture
def picks(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Volatility out of the statement's sight: a view that picks a random row,
    and a user's operator over a volatile function."""
    conn.execute(
        "create or replace view pick_n as select id from t_n order by random() limit 1"
    )
    conn.execute(
        "create or replace function pick_eq(a int, b int) returns boolean "
        "language sql volatile as $$ select a = (select id from pick_n) + b $$"
    )
    conn.execute(
        "create operator === (leftarg = int, rightarg = int, function = pick_eq)"
    )
    yield
    conn.execute("drop operator === (int, int)")
    conn.execute("drop function pick_eq(int, int)")
    conn.execute("drop view pick_n")


CONSISTENT = {f"{i}:{text}" for i, text in PLAIN.items()}


@pytest.mark.usefixtures("picks")
def test_scalar_subquery_over_a_random_view_reads_one_row(
    conn: psycopg.Connection[Any],
) -> None:
    """Every input of one value comes from the one row PostgreSQL picked."""
    shapes = [
        "select (select id::text || ':' || decrypted_secret from decrypted_t_n "
        "where id = (select id from pick_n)) from generate_series(1, 30)",
        "select (select d.id::text || ':' || convert_from(d.decrypted_blob, 'utf8') "
        "from decrypted_t_n d join pick_n p using (id)) from generate_series(1, 30)",
        "select (select d.id::text || ':' || d.decrypted_secret from decrypted_t_n "
        "d where d.id in (select id from pick_n) and g > 0) from "
        "generate_series(1, 30) g",
        f"select (select id::text || ':' || convert_from({DECRYPT}, 'utf8') from acc "
        "where id = (select id from pick_n)) from generate_series(1, 30)",
    ]
    for sql in shapes:
        values = [v for (v,) in conn.execute(sql).fetchall()]
        assert len(values) == 30 and set(values) <= CONSISTENT, sql


@pytest.mark.usefixtures("picks")
def test_scalar_subquery_with_a_users_volatile_operator_reads_one_row(
    conn: psycopg.Connection[Any],
) -> None:
    """Each row matches with its own evaluation: none (NULL), one, or more
    (PostgreSQL's 21000), never a value of two rows."""
    sqls = [
        "select (select id::text || ':' || decrypted_secret from decrypted_t_n "
        "where id === 0)",
        f"select (select id::text || ':' || convert_from({DECRYPT}, 'utf8') from acc "
        "where id === 0)",
    ]
    for sql in sqls * 15:
        try:
            (value,) = conn.execute(sql).fetchone()
        except psycopg.errors.CardinalityViolation:
            continue
        assert value is None or value in CONSISTENT, sql


def test_scalar_subquery_evaluates_its_from_once_per_row_as_postgresql(
    conn: psycopg.Connection[Any], plain_copy: str
) -> None:
    """A sequence read in the subquery's WHERE advances as it does over plaintext."""
    conn.execute("create sequence if not exists scalar_once")
    sql = (
        "select (select decrypted_secret from {v} where id = 2 and "
        "nextval('scalar_once') > 0) from generate_series(1, 5)"
    )
    try:
        counts = []
        for view in ("decrypted_t_n", plain_copy):
            conn.execute("select setval('scalar_once', 1, false)")
            rows = conn.execute(sql.format(v=view)).fetchall()
            assert rows == [("bob",)] * 5
            counts.append(conn.execute("select last_value from scalar_once").fetchone())
        assert counts[0] == counts[1]
    finally:
        conn.execute("drop sequence scalar_once")


# -- refused, and nothing reaches the database ----------------------------------------

REFUSED = [
    (f"select * from (select p from (select {DECRYPT} p from acc) a where p is "
     "null) b", "WHERE"),
    (f"select * from (select * from (select {DECRYPT} p from acc) a order by p) b",
     "ORDER BY"),
    (f"select * from (select a.p from (select {DECRYPT} p from acc) a group by "
     "a.p) b", "GROUP BY"),
    (f"select * from (select distinct * from (select {DECRYPT} p from acc) a) b",
     "DISTINCT"),
    (f"select count(p) from (select * from (select {DECRYPT} p from acc) a) b",
     "aggregate count()"),
    (f"select x.id from (select * from (select id, {DECRYPT} p from acc) a) x join "
     "other o on o.tag::bytea = x.p", "JOIN ON"),
    (f"select to_json(s) from (select {DECRYPT} p from acc) s", '"s"'),
    (f"select * from (select {DECRYPT} p from acc) s, lateral (select s.p q) l",
     '"s.p"'),
    (f"with d as (select id, {DECRYPT} p from acc) select id from d where exists "
     "(select 1 from d d2 where d2.p is null)", 'WITH query "d"'),
    (f"with d as (select id, {DECRYPT} p from acc) select * from d a, d b",
     "passed up"),
    (f"select * from (select * from (select id, {DECRYPT} p from acc) a) s(i, t)",
     "alias list"),
    # SECURITY: the names would land on the client's own columns of (a).*.
    (f"with d(x, p, r1, r2) as (select (a).*, {DECRYPT} p from acc a) "
     "select p from d", "alias list"),
    (f"select * from (select (a).*, {DECRYPT} p from acc a) s(x, q, r1, r2)",
     "alias list"),
    (f"select * from (select id, {DECRYPT} p from acc) s natural join other",
     "NATURAL"),
    (f"select * from (select * from acc union all select id, {DECRYPT}, kid from "
     "acc) u", "* in a branch"),
    ("with d as (select * from decrypted_t_n) select * from d where "
     "decrypted_secret like 'a%'", "WHERE"),
    ("select * from (select * from decrypted_t_n) s order by decrypted_secret",
     "ORDER BY"),
    ("select * from (select decrypted_raw_key from pgsodium.decrypted_key) k "
     "where decrypted_raw_key is null", "WHERE"),
    ("select * from (select * from vault.decrypted_secrets) v group by "
     "decrypted_secret", "GROUP BY"),
    # A decrypting view in an IN subquery: the database would compare.
    ("select id from t_n where id in (select id from decrypted_t_n)",
     "crypto_aead_det_decrypt()"),
    ("select id from t_n where id in (select decrypted_secret from decrypted_t_n)",
     "crypto_aead_det_decrypt()"),
    # A scalar subquery over a view with clauses of its own.
    ("select (select decrypted_secret from decrypted_t_n limit 1)", "LIMIT"),
    # … or where the database would need the value.
    ("select (select id from decrypted_t_n where decrypted_secret like 'a%')",
     "WHERE"),
    ("select coalesce((select decrypted_secret from decrypted_t_n where id = 1), "
     "'none')", "crypto_aead_det_decrypt()"),
    ("select (select decrypted_secret from decrypted_t_n where id = 1) order by 1",
     "ORDER BY"),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "named"), REFUSED)
def test_value_the_database_would_need_is_refused_and_never_sent(
    proxy: RunningProxy, conn: psycopg.Connection[Any], sql: str, named: str
) -> None:
    marker = f"refused-{uuid.uuid4().hex}"
    with pytest.raises(psycopg.errors.FeatureNotSupported) as caught:
        conn.execute(f"{sql} /* {marker} */")
    message = caught.value.diag.message_primary or ""
    assert message.startswith("pgsodium-proxy cannot evaluate")
    assert named in message
    assert marker not in server_log(proxy)
    assert conn.execute("select 1").fetchone() == (1,)


def test_ambiguous_name_levels_down_is_postgresqls_42702(
    proxy: RunningProxy, conn: psycopg.Connection[Any]
) -> None:
    marker = f"ambiguous-{uuid.uuid4().hex}"
    with pytest.raises(psycopg.errors.AmbiguousColumn):
        conn.execute(
            f"select a.p, p from (select {DECRYPT} p from acc) a, (select {DECRYPT} "
            f"p from acc) b /* {marker} */"
        )
    assert marker not in server_log(proxy)


def test_equality_with_a_decrypted_value_levels_down_is_a_ciphertext_search(
    proxy: RunningProxy, conn: psycopg.Connection[Any]
) -> None:
    key = conn.execute("select kid from acc limit 1").fetchone()[0]
    decrypt = (
        "pgsodium.crypto_aead_det_decrypt(secret, convert_to('2', 'utf8'), "
        f"'{key}'::uuid)"
    )
    sql = (
        f"with d as (select id from acc where convert_from({decrypt}, 'utf8') = %s) "
        "select * from (select * from d) x"
    )
    assert conn.execute(sql, ["bob"]).fetchall() == [(2,)]
    unique = "zebra-" + uuid.uuid4().hex[:12]
    assert conn.execute(sql, [unique]).fetchall() == []
    assert unique not in server_log(proxy)


def test_column_alias_lists_name_the_values(conn: psycopg.Connection[Any]) -> None:
    cursor = conn.execute(
        f"with d(i, t) as (select id, {DECRYPT} p from acc where id = 2) "
        "select * from d as e(x)"
    )
    assert [d.name for d in cursor.description] == ["x", "t"]
    assert cursor.fetchall() == [(2, b"bob")]
    cursor = conn.execute(
        "select * from (select id, decrypted_secret, decrypted_blob from "
        "decrypted_t_n) v(i, s) where i = 3"
    )
    assert [d.name for d in cursor.description] == ["i", "s", "decrypted_blob"]
    assert cursor.fetchall() == [(3, PLAIN[3], PLAIN[3].encode())]


OUTER_JOINS = [
    f"select o.id, s.v from other o left join (select id, coalesce({DECRYPT}, "
    "'\\x00'::bytea) v from acc where id = 1) s on s.id = o.id order by o.id",
    f"select o.id, s.v from other o left join (select id, case when kid is null "
    f"then '\\x00'::bytea else {DECRYPT} end v from acc where id = 1) s on s.id = "
    "o.id order by o.id",
    f"select o.id, t.v from other o left join (select id, coalesce(p, "
    f"'\\x00'::bytea) v from (select id, {DECRYPT} p from acc) a where id = 1) t "
    "on t.id = o.id order by o.id",
    f"with d as (select id, coalesce({DECRYPT}, '\\x00'::bytea) v from acc where "
    "id = 1) select o.id, d.v from d right join other o on o.id = d.id order by o.id",
]


@pytest.mark.parametrize("sql", OUTER_JOINS)
def test_value_on_the_nullable_side_of_an_outer_join_is_null(
    conn: psycopg.Connection[Any], sql: str
) -> None:
    """PostgreSQL computes a subquery's column before the join NULL-extends it:
    where no row joins, the value is NULL, whatever COALESCE or CASE would make
    of NULL inputs."""
    assert conn.execute(sql).fetchall() == [(1, b"alice"), (2, None), (3, None)]


def test_a_value_nothing_reads_never_goes_upstream(
    proxy: RunningProxy, conn: psycopg.Connection[Any]
) -> None:
    marker = f"unread-{uuid.uuid4().hex}"
    rows = conn.execute(
        f"with d as (select id, pgsodium.crypto_generichash(secret || "
        f"convert_to('{marker}', 'utf8')) h from acc) select id from (select * "
        "from d) x order by id"
    ).fetchall()
    assert rows == [(1,), (2,), (3,)]
    assert marker not in server_log(proxy)


# -- generated shapes, compared with the same query over the plaintext ----------------


def _shape(rng: random.Random, value: str, depth: int) -> str:
    """A random query of `depth` levels over accp whose innermost level computes
    `value` (the decryption, or the plaintext column it must equal) as p."""
    if depth == 0:
        items = rng.choice(
            [
                f"id, {value} p",
                f"id, convert_from({value}, 'utf8')::bytea p",
                f"id, {value} p, {value} || '\\x21'::bytea q",
                f"id, coalesce({value}, '\\x3f'::bytea) p",
                f"{value} p, id",
            ]
        )
        return f"select {items} from accp" + rng.choice(["", " where id <> 2"])
    inner = _shape(rng, value, depth - 1)
    q = rng.choice(["s", "t"])
    select = rng.choice(
        [
            "*",
            f"{q}.*",
            f"{q}.id, {q}.p",
            f"{q}.p, {q}.id",
            f"{q}.id, convert_from({q}.p, 'utf8')::bytea p",
            f"{q}.id, {q}.p || {q}.p p",
            f"{q}.id, coalesce({q}.p, '\\x'::bytea) p",
            f"{q}.id, convert_to(substring(convert_from({q}.p, 'utf8') from 2 "
            "for 3), 'utf8') p",
            f"{q}.id, decode(encode({q}.p, 'hex'), 'hex') p",
            f"{q}.id, case when {q}.id > 2 then {q}.p else '\\x3f'::bytea end p",
        ]
    )
    join = rng.choice(
        [
            f"({inner}) {q}",
            f"({inner}) {q} join other o on o.id = {q}.id",
            f"other o left join ({inner}) {q} on {q}.id = o.id and o.id < 3",
            f"({inner}) {q} full join other o on o.id = {q}.id + 1",
            f"({inner}) {q} cross join lateral (select {q}.id + 1 n) l",
        ]
    )
    if "other o" in join and select.startswith("*"):
        select = f"{q}.*"
    return f"select {select} from {join}" + rng.choice(["", f" where {q}.id > 1"])


def test_generated_shapes_equal_the_same_query_over_the_plaintext(
    proxy: RunningProxy, db: str
) -> None:
    """Each level passes the value up the way PostgreSQL would pass the plaintext:
    the same query with the plaintext column in place of the decryption gives
    the same rows (or the same error), through both protocols."""
    rng = random.Random(int(os.environ.get("NESTED_SHAPES_SEED", "4242")))
    decrypt = f"case when secret is null then null else {DECRYPT} end"
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        conn.execute("drop table if exists accp")
        conn.execute("create table accp as select id, secret, kid from acc")
        conn.execute("alter table accp add column pt bytea")
        for i, text in PLAIN.items():
            conn.execute("update accp set pt = %s where id = %s", [text.encode(), i])
        conn.execute("insert into accp values (4, null, null, null)")
        compared = refused = 0
        for number in range(int(os.environ.get("NESTED_SHAPES", "120"))):
            seed, depth = rng.random(), rng.randint(1, 4)
            sql = _shape(random.Random(seed), decrypt, depth)
            plain = _shape(random.Random(seed), "pt", depth)
            cursor = psycopg.ClientCursor if number % 2 else psycopg.Cursor
            try:
                got = sorted(map(repr, cursor(conn).execute(sql).fetchall()))
            except psycopg.errors.FeatureNotSupported:
                refused += 1
                continue
            except psycopg.Error as exc:
                got = [exc.sqlstate or ""]
            try:
                expected = sorted(map(repr, conn.execute(plain).fetchall()))
            except psycopg.Error as exc:
                expected = [exc.sqlstate or ""]
            assert got == expected, (sql, plain)
            compared += 1
        assert compared >= refused, (compared, refused)
