"""Query shapes around pgsodium calls over rows: subqueries and WITH queries that
feed the outer select list, joins, RETURNING, and every construct the proxy must
refuse because the database would have to use a value it never sees.

Each case runs through both protocols and compares with values folded from
literals (what pgsodium returns for the same inputs).
"""

from __future__ import annotations

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import RunningProxy, make_database, server_log

PLAIN = {1: "alice", 2: "bob", 3: "émilie 🔐"}
DECRYPT = "pgsodium.crypto_aead_det_decrypt(secret, convert_to(id::text, 'utf8'), kid)"


@pytest.fixture(scope="module")
def db(proxy: RunningProxy) -> str:
    name = make_database(proxy, "shapes")
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
    return name


def _plain(rows: list[tuple]) -> list[tuple]:
    return [(i, PLAIN[i]) for i, _ in rows]


SUBQUERY_SHAPES = [
    f"select * from (select id, convert_from({DECRYPT}, 'utf8') as p from acc) s "
    "order by id",
    f"select id, convert_from(p, 'utf8') from (select id, {DECRYPT} p from acc) s "
    "order by id",
    f"select s.id, convert_from(s.p, 'utf8') as p from (select id, {DECRYPT} p "
    "from acc) s order by s.id",
    f"with d as (select id, {DECRYPT} as p from acc) "
    "select id, convert_from(p, 'utf8') from d order by id",
    f"with d as (select id, convert_from({DECRYPT}, 'utf8') p from acc) "
    "select d.* from d order by id",
    f"select o.id, convert_from(s.p, 'utf8') from other o join (select id, "
    f"{DECRYPT} p from acc) s on s.id = o.id order by o.id",
    f"select id, convert_from(p, 'utf8') from (select id, {DECRYPT} p from acc "
    "where id > 0 order by id limit 10) s order by id",
]


@pytest.mark.parametrize("sql", SUBQUERY_SHAPES)
def test_value_computed_in_a_subquery_reaches_the_outer_select_list(
    conn: psycopg.Connection, sql: str
) -> None:
    rows = conn.execute(sql).fetchall()
    assert rows == _plain(rows) and len(rows) == 3


def test_a_values_list_feeds_a_call_over_rows_as_a_with_query_or_subquery(
    conn: psycopg.Connection,
) -> None:
    """A WITH query that is a VALUES list has no select list (it was a planning
    error, XX000)."""
    call = "pgsodium.crypto_generichash(v)"
    want = [
        conn.execute("select pgsodium.crypto_generichash(%s::bytea)", [m]).fetchone()
        for m in (b"a", b"b")
    ]
    for sql in (
        f"with x(v) as (values ('a'::bytea), ('b')) select {call} from x",
        f"select {call} from (values ('a'::bytea), ('b')) as x(v)",
        f"with x(v) as (values ('a'::bytea), ('b')) select {call} "
        "from (select v from x) y",
    ):
        assert conn.execute(sql).fetchall() == want


def test_subquery_value_keeps_its_name_and_type(conn: psycopg.Connection) -> None:
    cursor = conn.execute(
        f"select * from (select id, {DECRYPT} as p from acc) s where id = 1"
    )
    assert [d.name for d in cursor.description] == ["id", "p"]
    assert cursor.fetchall() == [(1, b"alice")]
    cursor = conn.execute(
        f"select length(p) as n from (select {DECRYPT} as p from acc where id = 2) s"
    )
    assert [d.name for d in cursor.description] == ["n"]
    assert cursor.fetchall() == [(3,)]


def test_unread_subquery_value_is_never_computed(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        f"select id from (select id, {DECRYPT} as p from acc) s order by id"
    ).fetchall()
    assert rows == [(1,), (2,), (3,)]


def test_returning_decrypts_the_written_rows(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        f"update acc set kid = kid where id = 2 returning id, convert_from({DECRYPT}, "
        "'utf8')"
    ).fetchall()
    assert rows == [(2, "bob")]


def test_decrypted_key_joined_with_the_key_table(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        "select d.key_type::text, length(d.decrypted_raw_key) from "
        "pgsodium.decrypted_key d join pgsodium.key k on k.id = d.id "
        "where d.key_type = 'hmacsha256'"
    ).fetchall()
    assert rows == [("hmacsha256", 32)]


REFUSED = [
    (
        f"select id from (select id, {DECRYPT} p from acc) s where p is not null",
        "WHERE",
    ),
    (f"select id from (select id, {DECRYPT} p from acc order by p) s", "ORDER BY"),
    (f"select id, {DECRYPT} as p from acc order by p", "ORDER BY"),
    (f"select id, {DECRYPT} as p from acc order by 2", "ORDER BY 2"),
    # Upstream the value is several columns: ordinal 2 would name its second input.
    (f"select {DECRYPT} as p, id from acc order by 2", "ORDER BY 2"),
    (f"select id, {DECRYPT} as p from acc group by 1, 2", "GROUP BY 2"),
    (f"select distinct {DECRYPT} from acc", "DISTINCT"),
    (f"select id from acc where {DECRYPT} is null", "in WHERE"),
    (f"select count({DECRYPT}) from acc", "aggregate count()"),
    (f"select id from acc order by {DECRYPT}", "in ORDER BY"),
    (f"select id from acc group by id having max({DECRYPT}) is null", "aggregate"),
    (f"select row_number() over (order by {DECRYPT}) from acc", "window"),
    (f"select o.id from other o join acc a on {DECRYPT} is null", "JOIN ON"),
    (f"select (select {DECRYPT} from acc where id = 1) is null", "subquery"),
    (f"select id from acc where exists (select {DECRYPT} from acc)", "subquery"),
    (f"with d as (select id, {DECRYPT} p from acc) select d.* from d order by 1", "1"),
    (
        "select * from pgsodium.decrypted_key d join pgsodium.key k on k.id = d.id",
        "joined",
    ),
    (
        "select count(decrypted_raw_key) from pgsodium.decrypted_key",
        "decrypted_raw_key",
    ),
]


@pytest.mark.parametrize(("sql", "named"), REFUSED)
def test_value_the_database_would_need_is_refused_with_0A000(
    conn: psycopg.Connection, sql: str, named: str
) -> None:
    with pytest.raises(psycopg.errors.FeatureNotSupported) as caught:
        conn.execute(sql)
    message = caught.value.diag.message_primary or ""
    assert message.startswith("pgsodium-proxy cannot evaluate")
    assert named in message
    assert conn.execute("select 1").fetchone() == (1,)


def test_ambiguous_name_gets_postgresqls_own_error(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.AmbiguousColumn):
        conn.execute(
            f"select id, p from (select id, {DECRYPT} p from acc) s join (select id, "
            f"{DECRYPT} p from acc) t using (id)"
        )


def test_refusal_inside_a_transaction_aborts_it_as_postgresql_would(
    conn: psycopg.Connection,
) -> None:
    conn.autocommit = False
    try:
        conn.execute("insert into other values (99, 'kept?')")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute(f"select id from acc where {DECRYPT} is null")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("select 1")
        conn.rollback()
        assert conn.execute("select count(*) from other where id = 99").fetchone() == (
            0,
        )
    finally:
        conn.rollback()
        conn.autocommit = True


WRAPPERS = [
    "encode({v}, 'base64')",
    "encode({v}, 'hex')",
    "encode({v}, 'escape')",
    "substring({v} from 2 for 3)",
    "substring({v}, 0, 3)",
    "substr({v}, 3)",
    "coalesce({v}, '\\x00'::bytea)",
    "{v}::text",
    "length({v})",
    "octet_length(convert_from({v}, 'utf8'))",
    "length(convert_from({v}, 'utf8'))",
    "substring(convert_from({v}, 'utf8'), 2, 4)",
    "upper(encode({v}, 'hex'))",
]


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_functions_around_a_per_row_value_give_the_servers_results(
    conn: psycopg.Connection, wrapper: str
) -> None:
    """Compared with the same expression evaluated by PostgreSQL on the plaintext."""
    conn.execute(
        "create temp table if not exists wrap (id int, secret bytea, kid uuid, p bytea)"
    )
    conn.execute("truncate wrap")
    key = conn.execute("select kid from acc limit 1").fetchone()[0]
    values = [b"x" * 100, "émilie 🔐 ".encode() * 9, b"\x00\\\xff", None]
    for i, value in enumerate(values, start=1):
        if value is None:
            conn.execute("insert into wrap values (%s, null, %s, null)", [i, key])
            continue
        conn.execute(
            "insert into wrap values (%s, pgsodium.crypto_aead_det_encrypt(%s::bytea, "
            "convert_to(%s, 'utf8'), %s::uuid), %s, %s)",
            [i, value, str(i), key, key, value],
        )
    decrypt = (
        "case when secret is null then null else pgsodium.crypto_aead_det_decrypt("
        "secret, convert_to(id::text, 'utf8'), kid) end"
    )

    def outcome(value: str) -> object:
        try:
            return conn.execute(
                f"select id, {wrapper.format(v=value)} from wrap order by id"
            ).fetchall()
        except psycopg.Error as exc:
            return exc.sqlstate  # e.g. 22021 for invalid UTF-8, as the server

    expected = outcome("p")
    got = outcome(decrypt)
    if "upper" in wrapper:  # not among the functions the proxy evaluates
        assert got == "0A000"
        return
    assert got == expected


SEARCHES = [
    ("select id from acc where convert_from({d}, 'utf8') = {v}", "text"),
    ("select id from acc where {v}::text = convert_from({d}, 'utf8')", "text"),
    ("select id from acc where {d} = convert_to({v}, 'utf8')", "text"),
    ("select id from acc where ({d} = {v}::bytea or id = -1) and id > 0", "bytea"),
    (
        "update acc set kid = kid where convert_from({d}, 'utf8') = {v} returning id",
        "text",
    ),
]


@pytest.mark.parametrize(("template", "kind"), SEARCHES)
def test_equality_with_a_decrypted_value_is_a_ciphertext_search(
    proxy: RunningProxy, conn: psycopg.Connection, template: str, kind: str
) -> None:
    """With the key and associated data fixed, `decrypt(c) = v` runs upstream as
    `c = encrypt(v)`: right rows, and the plaintext never reaches the database."""
    key = conn.execute("select kid from acc limit 1").fetchone()[0]
    decrypt = (
        "pgsodium.crypto_aead_det_decrypt(secret, convert_to('2', 'utf8'), "
        f"'{key}'::uuid)"
    )
    wanted = "bob" if kind == "text" else b"bob"
    sql = template.format(d=decrypt, v="%s")
    assert conn.execute(sql, [wanted]).fetchall() == [(2,)]
    literal = "'bob'" if kind == "text" else "'\\x626f62'"
    assert conn.execute(template.format(d=decrypt, v=literal)).fetchall() == [(2,)]
    unique = "zebra-" + key.hex[:8]
    assert (
        conn.execute(sql, [unique if kind == "text" else unique.encode()]).fetchall()
        == []
    )
    assert unique not in server_log(proxy)


@pytest.mark.parametrize(
    ("template", "value"),
    [
        ("select id from acc where convert_from({d}, 'utf8') = %s", 2),
        ("select id from acc where %s = convert_from({d}, 'utf8')", 2),
        ("select id from acc where convert_from({d}, 'utf8') = 2", None),
        ("select id from acc where not convert_from({d}, 'utf8') = %s", True),
        ("select id from acc where {d} = %s", 2),
        ("select id from acc where {d} = %s::text", "bob"),
    ],
)
def test_a_search_with_a_value_of_another_type_is_postgresqls_42883(
    conn: psycopg.Connection, direct: psycopg.Connection, template: str, value: object
) -> None:
    """No `=` for text = integer (or bytea = text): the server's error, which it
    gives before reading a row (the proxy refused it as a call over convert_to)."""
    key = conn.execute("select kid from acc limit 1").fetchone()[0]
    decrypt = (
        "pgsodium.crypto_aead_det_decrypt(secret, convert_to('2', 'utf8'), "
        f"'{key}'::uuid)"
    )
    sql = template.format(d=decrypt)
    params = None if value is None else [value]
    cursor = type(conn.cursor())

    def error(connection: psycopg.Connection) -> tuple[object, ...]:
        with pytest.raises(psycopg.errors.UndefinedFunction) as caught:
            cursor(connection).execute(sql, params)
        diag = caught.value.diag
        return diag.message_primary, diag.message_hint, diag.statement_position

    assert error(conn) == error(direct)


@pytest.mark.asyncio
async def test_asyncpg_describes_per_row_columns_before_any_row(
    proxy: RunningProxy, db: str
) -> None:
    """asyncpg prepares (Parse + Describe statement) before it binds: the types it
    is told are the ones the rows then carry, in binary."""
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(
            host=proxy.host, port=proxy.port, user="postgres", database=db
        )
        try:
            stmt = await conn.prepare(
                f"select id, convert_from({DECRYPT}, 'utf8') as plain, "
                f"{DECRYPT} as raw, length({DECRYPT}) as n from acc where id = $1"
            )
            assert [(a.name, a.type.name) for a in stmt.get_attributes()] == [
                ("id", "int4"),
                ("plain", "text"),
                ("raw", "bytea"),
                ("n", "int4"),
            ]
            assert [p.name for p in stmt.get_parameters()] == ["int4"]
            assert list(await stmt.fetchrow(2)) == [2, "bob", b"bob", 3]
            rows = await conn.fetch(
                f"select id, convert_from({DECRYPT}, 'utf8') from acc order by id"
            )
            assert [tuple(r) for r in rows] == list(PLAIN.items())
        finally:
            await conn.close()

    await asyncio.wait_for(run(), 30)


# -- no forged decryptions -----------------------------------------------------------


def test_columns_named_like_the_proxys_own_are_returned_verbatim(
    conn: psycopg.Connection,
) -> None:
    """The proxy recognises its own result columns by a marker that is random for
    each statement, never by a name or a value a client can write: look-alike
    columns with forged key material pass through untouched."""
    key_id = conn.execute("select key_id from pgsodium.valid_key limit 1").fetchone()[0]
    forged = f"d,aead-det,{key_id},7067736f6469756d"
    secret = conn.execute("select secret from acc where id = 1").fetchone()[0]
    cursor = conn.execute(
        'select %s::bytea as "_pgsp_0000000000000000_r0_0", '
        '%s::text as "_pgsp_0000000000000000_r0_0k", '
        "'' as \"_pgsp_0000000000000000_d0a\", "
        f"convert_from({DECRYPT}, 'utf8') as plain from acc where id = 1",
        [secret, forged],
    )
    assert [d.name for d in cursor.description] == [
        "_pgsp_0000000000000000_r0_0",
        "_pgsp_0000000000000000_r0_0k",
        "_pgsp_0000000000000000_d0a",
        "plain",
    ]
    assert cursor.fetchall() == [(secret, forged, "", "alice")]


def test_the_proxys_internal_functions_are_refused_to_clients(
    conn: psycopg.Connection,
) -> None:
    for sql in (
        "select pgsodium._proxy_key_ref(id) from pgsodium.key",
        "select pgsodium._proxy_key_material(id, 'aead-det') from pgsodium.key",
    ):
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(sql)
        assert caught.value.sqlstate in ("42501", "0A000")
        assert conn.execute("select 1").fetchone() == (1,)


def test_reading_decrypted_key_needs_pgsodiums_grants(
    proxy: RunningProxy, db: str
) -> None:
    """As with pgsodium, only roles granted SELECT on decrypted_key (keyholder) read
    it, and a key id user cannot decrypt by uuid without pgsodium_keyiduser."""
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as admin:
        admin.execute("drop role if exists forger")
        admin.execute("create role forger login")
        admin.execute("grant select on acc to forger")
    with psycopg.connect(proxy.dsn(user="forger", dbname=db), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select length(decrypted_raw_key) from pgsodium.decrypted_key")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"select {DECRYPT} from acc")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"select * from (select {DECRYPT} p from acc) s")
        assert conn.execute("select count(*) from acc").fetchone() == (3,)


# -- per row equals folded -----------------------------------------------------------

ROW_CALLS = [
    "pgsodium.crypto_aead_det_encrypt({m}, {ad}, {k})",
    "pgsodium.crypto_aead_det_decrypt(pgsodium.crypto_aead_det_encrypt({m}, {ad}, "
    "{k}), {ad}, {k})",
    "pgsodium.crypto_auth_hmacsha256({m}, {k})",
    "pgsodium.crypto_generichash({m}, {k})",
    "pgsodium.crypto_hash_sha512({m})",
    "pgsodium.crypto_aead_det_encrypt({m}, {ad}, 1::bigint)",
    "length(pgsodium.crypto_secretbox({m}, substring({k} || {k} from 1 for 24), {k}))",
]


def _literal(value: bytes | None) -> str:
    return "NULL::bytea" if value is None else f"'\\x{value.hex()}'::bytea"


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    rows=st.lists(
        st.tuples(
            st.binary(max_size=80),
            st.one_of(st.none(), st.binary(max_size=20)),
            st.binary(min_size=32, max_size=32),
        ),
        min_size=1,
        max_size=12,
    ),
    call=st.sampled_from(ROW_CALLS),
)
def test_per_row_values_equal_the_folded_values_of_the_same_inputs(
    proxy: RunningProxy, db: str, rows: list, call: str
) -> None:
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        conn.execute("create temp table gen (id int, m bytea, ad bytea, k bytea)")
        with conn.cursor().copy("copy gen from stdin") as copy:
            for i, row in enumerate(rows):
                copy.write_row((i, *row))

        def outcome(sql: str) -> object:
            try:
                return conn.execute(sql).fetchall()
            except psycopg.Error as exc:  # same SQLSTATE and text, or not equal
                return (exc.sqlstate, exc.diag.message_primary)

        per_row = outcome(
            f"select id, {call.format(m='m', ad='ad', k='k')} from gen order by id"
        )
        folded: list[object] = []
        for i, (m, ad, k) in enumerate(rows):
            one = outcome(
                "select " + call.format(m=_literal(m), ad=_literal(ad), k=_literal(k))
            )
            if isinstance(one, tuple):  # the first failing row fails the query
                folded = one  # type: ignore[assignment]
                break
            folded.append((i, one[0][0]))
    assert per_row == folded


# -- scalar subqueries ---------------------------------------------------------------


def test_scalar_subquery_over_rows_in_the_select_list(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        f"select o.id, (select convert_from({DECRYPT}, 'utf8') from acc "
        "where acc.id = o.id) as plain from other o order by o.id"
    ).fetchall()
    assert rows == _plain(rows) and len(rows) == 3
    assert conn.execute(
        "select (select length(decrypted_raw_key) from pgsodium.decrypted_key "
        "where key_type = 'hmacsha256')"
    ).fetchall() == [(32,)]
    cursor = conn.execute(
        "select (select decrypted_raw_key from pgsodium.decrypted_key "
        "where key_type = 'hmacsha256')"
    )
    assert [d.name for d in cursor.description] == ["decrypted_raw_key"]
    assert len(cursor.fetchone()[0]) == 32


def test_scalar_subquery_keeps_postgresqls_rules(conn: psycopg.Connection) -> None:
    assert conn.execute(
        f"select (select {DECRYPT} from acc where id = -1) as nothing"
    ).fetchall() == [(None,)]
    with pytest.raises(psycopg.errors.CardinalityViolation):
        conn.execute(f"select (select {DECRYPT} from acc) as many")
    # Any function in WHERE: one evaluation gives every input.
    assert conn.execute(
        f"select (select {DECRYPT} from acc where id = abs(-1)) as called"
    ).fetchall() == [(PLAIN[1].encode(),)]


def test_decrypted_raw_key_inside_any_per_row_expression(
    conn: psycopg.Connection,
) -> None:
    raw = dict(
        conn.execute(
            "select id, decrypted_raw_key from pgsodium.decrypted_key"
        ).fetchall()
    )
    rows = conn.execute(
        "select d.id, encode(d.decrypted_raw_key, 'hex') as hex, "
        "substring(decrypted_raw_key from 1 for 4) as head, "
        "coalesce(decrypted_raw_key, '\\x'::bytea) as raw "
        "from pgsodium.decrypted_key d"
    ).fetchall()
    assert {r[0] for r in rows} == set(raw)
    for key_id, hex_text, head, value in rows:
        expected = raw[key_id]
        assert hex_text == (None if expected is None else expected.hex())
        assert head == (None if expected is None else expected[:4])
        assert value == (b"" if expected is None else expected)


def test_a_keyless_role_is_told_the_pgsodium_function_it_may_not_run(
    proxy: RunningProxy, db: str
) -> None:
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as admin:
        admin.execute("drop role if exists keyless")
        admin.execute("create role keyless login")
        admin.execute("grant select on acc to keyless")
    with psycopg.connect(proxy.dsn(user="keyless", dbname=db), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
            conn.execute(f"select {DECRYPT} from acc")
        assert caught.value.diag.message_primary == (
            "permission denied for function crypto_aead_det_decrypt"
        )
        # It never named the proxy's key rows; the hint says what it lacks.
        assert "pgsodium_keyiduser" in (caught.value.diag.message_hint or "")


def test_a_role_granted_only_the_function_is_told_that_function_never_the_proxys(
    proxy: RunningProxy, db: str
) -> None:
    """EXECUTE on pgsodium's uuid overloads granted to a role outside
    pgsodium_keyiduser: the key rows the proxy reads for it are
    pgsodium_keyiduser's, so the call is refused with 42501 naming the function
    the client called (it named pgsodium._proxy_key_ref / _proxy_key_material)."""
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as admin:
        key = admin.execute("select kid from acc limit 1").fetchone()[0]
        exists = admin.execute(
            "select 1 from pg_roles where rolname = 'granted_only'"
        ).fetchone()
        if exists:
            admin.execute("drop owned by granted_only")
            admin.execute("drop role granted_only")
        admin.execute("create role granted_only login")
        admin.execute("grant select on acc to granted_only")
        for signature in ("bytea, bytea, uuid", "bytea, bytea, uuid, bytea"):
            for name in ("crypto_aead_det_decrypt", "crypto_aead_det_encrypt"):
                admin.execute(
                    f"grant execute on function pgsodium.{name}({signature}) "
                    "to granted_only"
                )
    dsn = proxy.dsn(user="granted_only", dbname=db)
    for sql, params, name in (
        (f"select {DECRYPT} from acc", None, "crypto_aead_det_decrypt"),
        (
            f"select id, convert_from({DECRYPT}, 'utf8') from acc",
            None,
            "crypto_aead_det_decrypt",
        ),
        (
            "select pgsodium.crypto_aead_det_encrypt('x'::bytea, ''::bytea, %s)",
            [key],
            "crypto_aead_det_encrypt",
        ),
    ):
        with psycopg.connect(dsn, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
                conn.execute(sql, params)
            assert caught.value.diag.message_primary == (
                f"permission denied for function {name}"
            )
            assert conn.execute("select count(*) from acc").fetchone() == (3,)


@pytest.mark.parametrize(
    "expression",
    [
        "convert_from({v}, 'utf8') || '!'",
        "'pre-' || convert_from({v}, 'utf8')",
        "{v} || '\\x00'::bytea",
        "convert_from({v}, 'utf8') || id::text",
        "id::text || ':' || convert_from({v}, 'utf8')",
    ],
)
def test_concatenation_around_a_per_row_value(
    conn: psycopg.Connection, expression: str
) -> None:
    got = conn.execute(
        f"select id, {expression.format(v=DECRYPT)} from acc order by id"
    ).fetchall()
    expected = conn.execute(
        f"select id, {expression.format(v='p')} from (values "
        + ", ".join(f"({i}, convert_to('{text}', 'utf8'))" for i, text in PLAIN.items())
        + ") v(id, p) order by id"
    ).fetchall()
    assert got == expected
