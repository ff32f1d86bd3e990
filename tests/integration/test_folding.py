"""Folding pgsodium calls wherever they stand, with PostgreSQL's errors and grants.

Literal forms, NULL and STRICT, several statements in one Query, search_path,
overloads, named arguments and defaults; the positions INSERT … VALUES, UPDATE …
SET, WHERE and DELETE; errors compared with what the upstream (which declares
pgsodium's functions) says for the same text; transaction blocks after a proxy
error; EXECUTE privileges for the current role, SET ROLE and SET SESSION
AUTHORIZATION.
"""

from __future__ import annotations

import hashlib
import select
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from .conftest import RunningProxy, make_database, server_log

ABC_SHA256 = hashlib.sha256(b"abc").digest()
BAD_KEY = "'\\x00'::bytea"  # one byte: pgsodium's "invalid key"
ZERO_KEY = "'\\x" + "00" * 32 + "'::bytea"


@pytest.fixture(scope="module")
def db(proxy: RunningProxy) -> str:
    name = make_database(proxy, "folding")
    with psycopg.connect(proxy.direct_dsn(dbname=name), autocommit=True) as conn:
        conn.execute("create table t (c bytea, d int)")
        conn.execute("drop role if exists fold_user")
        conn.execute("create role fold_user login")
        conn.execute("grant all on t to fold_user")
    return name


@pytest.fixture
def conn(proxy: RunningProxy, db: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as connection:
        connection.execute("delete from t")
        yield connection


def one(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return bytes(row[0]) if isinstance(row[0], memoryview) else row[0]


def error_of(conn: psycopg.Connection[Any], sql: str) -> tuple[Any, ...]:
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(sql)
    diag = caught.value.diag
    return (
        caught.value.sqlstate,
        diag.message_primary,
        diag.message_hint,
        diag.statement_position,
    )


# -- literals, NULL, STRICT ---------------------------------------------------------


@pytest.mark.parametrize(
    "literal",
    [
        "'abc'",
        "E'abc'",
        "E'\\\\x616263'",
        "'\\x616263'",
        "$$abc$$",
        "$q$abc$q$",
        "U&'\\0061bc'",
        "'\\x616263'::bytea",
        "'abc'::bytea",
        "cast('abc' as bytea)",
        "bytea 'abc'",
        "convert_to('abc', 'utf8')",
        "decode('616263', 'hex')",
        "decode('YWJj', 'base64')",
        "'abc'::text::bytea",
    ],
)
def test_every_literal_form_folds_to_the_same_value(
    conn: psycopg.Connection[Any], literal: str
) -> None:
    assert one(conn, f"select pgsodium.crypto_hash_sha256({literal})") == ABC_SHA256


def test_null_reaches_c_functions_and_strict_functions_give_null(
    conn: psycopg.Connection[Any],
) -> None:
    assert error_of(conn, "select pgsodium.crypto_hash_sha256(NULL)")[:2] == (
        "22000",
        "pgsodium_crypto_hash_sha256: message cannot be NULL",
    )
    assert one(conn, "select pgsodium.crypto_ipcrypt_ip2bin(NULL)") is None
    assert (
        one(conn, f"select pgsodium.crypto_ipcrypt_encrypt(NULL, {ZERO_KEY})") is None
    )
    key = one(conn, "select id from pgsodium.create_key('kdf')")
    assert (
        one(
            conn,
            "select pgsodium.crypto_kdf_derive_from_key(32, NULL, 'abcdefgh', %s)",
            [key],
        )
        is None
    )
    assert (
        one(
            conn,
            "select pgsodium.crypto_ipcrypt_decrypt(%b::bytea, %b::uuid)",
            [None, key],
        )
        is None
    )


# -- statements, names, overloads, arguments ----------------------------------------


def test_several_statements_in_one_query_message(conn: psycopg.Connection[Any]) -> None:
    cur = conn.execute(
        "select 1 as a; select pgsodium.crypto_hash_sha256('abc') as h; "
        "insert into t values (pgsodium.crypto_hash_sha256('abc'), 1); select 2 as b"
    )
    seen = []
    while True:
        if cur.description is not None:
            seen.append((cur.description[0].name, cur.fetchall()))
        if not cur.nextset():
            break
    assert seen == [("a", [(1,)]), ("h", [(ABC_SHA256,)]), ("b", [(2,)])]
    assert one(conn, "select c from t where d = 1") == ABC_SHA256


def test_unqualified_names_follow_set_search_path(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any]
) -> None:
    sql = "select crypto_hash_sha256('abc')"
    assert error_of(conn, sql) == error_of(direct, sql)
    conn.execute("set search_path to pgsodium, public")
    assert one(conn, sql) == ABC_SHA256
    assert one(conn, "select crypto_auth('m', 1) = crypto_auth('m', derive_key(1))")
    conn.execute("reset search_path")
    assert error_of(conn, sql)[0] == "42883"


def test_overloads_as_postgresql_resolves_them(conn: psycopg.Connection[Any]) -> None:
    # An integer literal is the key id overload; a bytea the raw key one.
    assert one(
        conn,
        "select pgsodium.crypto_auth('m', 1) = pgsodium.crypto_auth('m', 1::bigint) "
        "and pgsodium.crypto_auth('m', 1::smallint) = "
        "pgsodium.crypto_auth('m', pgsodium.derive_key(1))",
    )
    row = conn.execute("select id, key_id from pgsodium.create_key('auth')").fetchone()
    assert row is not None
    assert one(
        conn,
        "select pgsodium.crypto_auth('m', %s::uuid) = pgsodium.crypto_auth('m', %s)",
        [str(row[0]), row[1]],
    )


def test_named_arguments_and_defaults(conn: psycopg.Connection[Any]) -> None:
    assert one(
        conn,
        "select pgsodium.crypto_aead_det_encrypt(message => 'm', additional => '', "
        "key_id => 3) = pgsodium.crypto_aead_det_encrypt('m', '', 3, 'pgsodium', NULL)"
        " and pgsodium.crypto_aead_det_encrypt('m', '', 3, nonce := %s) = "
        "pgsodium.crypto_aead_det_encrypt('m', '', 3, 'pgsodium', %s)",
        [bytes(16), bytes(16)],
    )
    assert one(
        conn,
        "select pgsodium.crypto_generichash('m') = "
        "pgsodium.crypto_generichash(message := 'm', key := NULL::bytea)",
    )
    assert one(
        conn,
        "select pgsodium.crypto_auth('m', pgsodium.derive_key(key_len => 32, "
        "key_id => 5)) = pgsodium.crypto_auth('m', 5::bigint, 'pgsodium')",
    )


# -- positions ----------------------------------------------------------------------


def test_non_secret_results_fold_in_insert_update_where_delete(
    proxy: RunningProxy, conn: psycopg.Connection[Any]
) -> None:
    marker = f"plaintext-{uuid.uuid4().hex}"
    conn.execute(
        "insert into t values (pgsodium.crypto_aead_det_encrypt(convert_to(%s, "
        "'utf8'), '', 1), 1), (pgsodium.crypto_auth(%s::bytea, 1), 2)",
        [marker, marker],
    )
    conn.execute(
        "update t set c = pgsodium.crypto_auth(%s::bytea, 2) where d = 2", [marker]
    )
    where = "select d from t where c = pgsodium.crypto_aead_det_encrypt(%s, '', 1)"
    assert one(conn, where, [marker.encode()]) == 1
    assert (
        one(
            conn,
            "select count(*) from t where c in (pgsodium.crypto_auth(%s::bytea, 2), "
            "pgsodium.crypto_auth('other', 2))",
            [marker],
        )
        == 1
    )
    cur = conn.execute(
        "delete from t where c = pgsodium.crypto_auth(%s::bytea, 2) returning d",
        [marker],
    )
    assert cur.fetchall() == [(2,)]
    assert (
        one(
            conn,
            "select convert_from(pgsodium.crypto_aead_det_decrypt(c, '', 1), 'utf8') "
            "from t where d = 1",
        )
        == marker
    )
    assert marker not in server_log(proxy)


@pytest.mark.parametrize(
    "statement",
    [
        "insert into t values (pgsodium.crypto_aead_det_decrypt({ct}, '', 1), 9)",
        "update t set c = pgsodium.crypto_aead_det_decrypt({ct}, '', 1)",
        "select d from t where c = pgsodium.crypto_aead_det_decrypt({ct}, '', 1)",
        "insert into t values (pgsodium.derive_key(1), 9)",
        "update t set c = pgsodium.crypto_secretbox_keygen() where d = 1",
    ],
)
def test_secret_results_are_refused_outside_the_select_list(
    conn: psycopg.Connection[Any], statement: str
) -> None:
    ct = one(conn, "select pgsodium.crypto_aead_det_encrypt('secret', '', 1)")
    conn.execute("insert into t values ('\\x01', 1)")
    sql = statement.format(ct="'\\x" + ct.hex() + "'::bytea")
    state, message, _, position = error_of(conn, sql)
    assert state == "0A000"
    assert "its result is secret" in message
    assert position is not None and sql[int(position) - 1 :].startswith("pgsodium.")
    assert conn.execute("select c, d from t").fetchall() == [(b"\x01", 1)]


# -- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "select pgsodium.crypto_auth('m')",
        "select pgsodium.crypto_auth('m', 'k')",
        "select pgsodium.crypto_auth('m', 'k'::text)",
        "select pgsodium.nosuch(1)",
        "select 1, pgsodium.crypto_aead_det_encrypt('m', '', 1, 2, 3, 4)",
        "select pgsodium.crypto_auth(message => 'm', nokey => 1)",
        pytest.param(
            "select pgsodium.crypto_auth(message => 'm', 1)",
            marks=pytest.mark.xfail(
                reason="pglast's A_Const has no location: the proxy points at the "
                "call, PostgreSQL at the positional argument",
                strict=True,
            ),
        ),
        "select pgsodium.crypto_auth('m', key_id => 1, key_id => 2)",
        "insert into t values (pgsodium.crypto_auth('m', 'x'::text), 1)",
        "insert into t values (pgsodium.crypto_generichash('a'), 1), (null)",
        "insert into t (c) values (pgsodium.crypto_generichash('a'), 1)",
        "insert into t (c, d) values (pgsodium.crypto_generichash('a'))",
        "values (pgsodium.crypto_generichash('a')), (null, 2)",
        "select pgsodium.crypto_generichash(v) from "
        "(values ('a'::bytea), ('b', 'c')) as x(v)",
        "select convert_from(pgsodium.crypto_aead_det_decrypt(v, '', 1), 'utf8') "
        "from (values ('a'::bytea), ('b', 'c')) as x(v)",
        "with x(v) as (values ('a'::bytea), ('b', 'c')) "
        "select pgsodium.crypto_generichash(v) from x",
        "select (select pgsodium.crypto_generichash(v)) "
        "from (values ('a'::bytea), ('b', 'c')) as x(v)",
        "insert into t select pgsodium.crypto_generichash(v), 1 "
        "from (values ('a'::bytea), ('b', 'c')) as x(v)",
    ],
)
def test_resolution_errors_are_the_servers_own(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any], sql: str
) -> None:
    assert error_of(conn, sql) == error_of(direct, sql)


@pytest.mark.parametrize("protocol", ["simple", "extended"])
@pytest.mark.parametrize(
    "sql",
    [
        "selec pgsodium.crypto_auth('x', 'k')",
        "select pgsodium.crypto_auth('x' 'k')",
        "select 'é', pgsodium.crypto_auth('x',",
        "select 'é', pgsodium.crypto_auth('x', -- to the end\n  ",
        "select 1; select 'éé'; selec pgsodium.crypto_auth('x')",
        "select pgsodium.crypto_auth('x', 'abc",
        "select pgsodium.crypto_generichash(E'\\xff'::bytea)",
        "select pgsodium.crypto_generichash(E'a\\xff')",
        "select pgsodium.crypto_generichash(1::float(0)::text::bytea)",
        "select pgsodium.crypto_generichash(sum(1) over (rows between "
        "unbounded following and current row)::text::bytea)",
    ],
)
def test_syntax_errors_are_the_servers_own(
    conn: psycopg.Connection[Any],
    direct: psycopg.Connection[Any],
    sql: str,
    protocol: str,
) -> None:
    def error(connection: psycopg.Connection[Any]) -> tuple[Any, ...]:
        with pytest.raises(psycopg.Error) as caught:
            connection.execute(sql, prepare=protocol == "extended")
        diag = caught.value.diag
        return (
            caught.value.sqlstate,
            diag.message_primary,
            diag.message_hint,
            diag.statement_position,
        )

    assert error(conn) == error(direct)


def test_pgsodium_errors_keep_sqlstate_and_text(conn: psycopg.Connection[Any]) -> None:
    assert error_of(
        conn, f"select pgsodium.crypto_auth_hmacsha256('m', {BAD_KEY})"
    ) == (
        "22000",
        "pgsodium_crypto_auth_hmacsha256: invalid key",
        None,
        None,
    )
    assert error_of(conn, "select pgsodium.crypto_aead_det_decrypt('\\x00', '', 1)")[
        :2
    ] == ("22000", "pgsodium_crypto_aead_det_decrypt_by_id: invalid message")
    unknown = str(uuid.uuid4())
    assert error_of(conn, f"select pgsodium.crypto_auth('m', '{unknown}'::uuid)")[
        :2
    ] == ("P0002", "query returned no rows")
    hmac_key = one(conn, "select id from pgsodium.create_key('hmacsha256')")
    assert error_of(conn, f"select pgsodium.crypto_auth('m', '{hmac_key}'::uuid)")[
        :2
    ] == ("P0002", "query returned no rows")


def test_expired_and_invalid_keys_still_work_by_uuid(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any]
) -> None:
    row = conn.execute(
        "select id, key_id from pgsodium.create_key('hmacsha256')"
    ).fetchone()
    assert row is not None
    key, key_id = row
    direct.execute(
        "update pgsodium.key set expires = now() - interval '1 day', "
        "status = 'invalid' where id = %s",
        [key],
    )
    assert one(
        conn,
        "select pgsodium.crypto_auth_hmacsha256('m', %s::uuid) = "
        "pgsodium.crypto_auth_hmacsha256('m', %s::bigint)",
        [key, key_id],
    )


@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_proxy_error_in_a_block_aborts_it_and_keeps_nothing(
    proxy: RunningProxy, db: str, protocol: str
) -> None:
    factory = psycopg.ClientCursor if protocol == "simple" else psycopg.Cursor
    with psycopg.connect(
        proxy.dsn(dbname=db), autocommit=True, cursor_factory=factory
    ) as conn:
        conn.execute("delete from t")
        conn.execute("begin")
        conn.execute("insert into t values (%s, 1)", [b"kept until rollback"])
        with pytest.raises(psycopg.errors.DataException):
            conn.execute(
                "insert into t values (pgsodium.crypto_auth_hmacsha256(%s, %s), 2)",
                [b"m", b"\x00"],
            )
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("select pgsodium.crypto_hash_sha256(%s)", [b"abc"])
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("select 1")
        conn.execute("rollback")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute("select count(*) from t").fetchone() == (0,)
        # The session goes on.
        assert one(conn, "select pgsodium.crypto_hash_sha256(%s)", [b"abc"]) == (
            ABC_SHA256
        )


def test_failed_statement_of_a_multi_statement_query_keeps_nothing(
    conn: psycopg.Connection[Any],
) -> None:
    with pytest.raises(psycopg.errors.DataException):
        conn.execute(
            "insert into t values ('\\x01', 1); "
            f"select pgsodium.crypto_auth_hmacsha256('m', {BAD_KEY})"
        )
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert conn.execute("select count(*) from t").fetchone() == (0,)


# -- privileges ---------------------------------------------------------------------

RAW_AUTH = f"select pgsodium.crypto_auth('m', {ZERO_KEY})"
ID_AUTH = "select pgsodium.crypto_auth('m', 1)"
DENIED_AUTH = ("42501", "permission denied for function crypto_auth")


def _denied(conn: psycopg.Connection[Any], sql: str) -> tuple[str, str]:
    return error_of(conn, sql)[:2]  # type: ignore[return-value]


@pytest.fixture
def plain_role(direct: psycopg.Connection[Any]) -> Iterator[str]:
    direct.execute("revoke pgsodium_keyiduser, pgsodium_keyholder from fold_user")
    yield "fold_user"
    direct.execute("revoke pgsodium_keyiduser, pgsodium_keyholder from fold_user")
    direct.execute(
        "grant execute on function pgsodium.crypto_hash_sha256(bytea) to public"
    )


def test_privileges_of_the_login_role(
    proxy: RunningProxy, db: str, direct: psycopg.Connection[Any], plain_role: str
) -> None:
    with psycopg.connect(proxy.dsn(user=plain_role, dbname=db), autocommit=True) as c:
        assert _denied(c, RAW_AUTH) == DENIED_AUTH
        assert _denied(c, ID_AUTH) == DENIED_AUTH
        # Denied before anything is computed: not the 22000 of the bad key.
        assert _denied(c, f"select pgsodium.crypto_auth('m', {BAD_KEY})") == (
            DENIED_AUTH
        )
        # PUBLIC functions, the key id generichash included (sic, pgsodium).
        assert one(c, "select pgsodium.crypto_hash_sha256('abc')") == ABC_SHA256
        assert len(one(c, "select pgsodium.crypto_generichash('m', 1::bigint)")) == 32
        direct.execute("grant pgsodium_keyiduser to fold_user")
        assert len(one(c, ID_AUTH)) == 32
        assert _denied(c, RAW_AUTH) == DENIED_AUTH
        direct.execute("grant pgsodium_keyholder to fold_user")
        assert len(one(c, RAW_AUTH)) == 32
        direct.execute(
            "revoke execute on function pgsodium.crypto_hash_sha256(bytea) from public"
        )
        assert _denied(c, "select pgsodium.crypto_hash_sha256('abc')") == (
            "42501",
            "permission denied for function crypto_hash_sha256",
        )
        # Nested: the inner call's grant counts too.
        assert _denied(
            c,
            "select pgsodium.crypto_auth(pgsodium.crypto_hash_sha256('abc'), 1)",
        ) == ("42501", "permission denied for function crypto_hash_sha256")


@pytest.mark.parametrize(
    "become, back",
    [
        ("set role fold_user", "reset role"),
        ("set session authorization fold_user", "reset session authorization"),
    ],
)
def test_privileges_follow_set_role_and_session_authorization(
    conn: psycopg.Connection[Any],
    direct: psycopg.Connection[Any],
    plain_role: str,
    become: str,
    back: str,
) -> None:
    conn.execute(become)
    assert _denied(conn, RAW_AUTH) == DENIED_AUTH
    assert _denied(conn, ID_AUTH) == DENIED_AUTH
    direct.execute("grant pgsodium_keyiduser to fold_user")
    assert len(one(conn, ID_AUTH)) == 32
    assert _denied(conn, RAW_AUTH) == DENIED_AUTH
    conn.execute(back)
    assert len(one(conn, RAW_AUTH)) == 32
    # In a transaction block: SET LOCAL ROLE, then back at COMMIT.
    conn.execute("begin")
    conn.execute("set local role fold_user")
    assert _denied(conn, RAW_AUTH) == DENIED_AUTH
    conn.execute("rollback")
    assert len(one(conn, RAW_AUTH)) == 32


def _exchange(pgconn: Any, send: Any) -> list[Any]:
    """One libpq request without blocking in C (the proxy runs in this process)."""
    send()
    while pgconn.flush():
        select.select([], [pgconn.socket], [], 5)
    results = []
    while True:
        if pgconn.is_busy():
            select.select([pgconn.socket], [], [], 5)
            pgconn.consume_input()
            continue
        result = pgconn.get_result()
        if result is None:
            return results
        results.append(result)


def test_failed_parse_drops_the_unnamed_statement(proxy: RunningProxy, db: str) -> None:
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        pgconn = conn.pgconn
        pgconn.nonblocking = 1
        ok = _exchange(
            pgconn,
            lambda: pgconn.send_prepare(b"", b"select pgsodium.crypto_auth($1, 1)"),
        )
        assert ok[0].status == psycopg.pq.ExecStatus.COMMAND_OK
        failed = _exchange(
            pgconn,
            lambda: pgconn.send_prepare(b"", b"select pgsodium.crypto_auth($1, $2)"),
        )
        assert failed[0].error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"42725"
        described = _exchange(pgconn, lambda: pgconn.send_describe_prepared(b""))
        assert described[0].error_field(psycopg.pq.DiagnosticField.SQLSTATE) == (
            b"26000"
        )
        assert described[0].error_field(psycopg.pq.DiagnosticField.MESSAGE_PRIMARY) == (
            b"unnamed prepared statement does not exist"
        )
        pgconn.nonblocking = 0
        assert one(conn, "select pgsodium.crypto_hash_sha256('abc')") == ABC_SHA256


def test_key_management_calls_run_upstream_wherever_they_stand(
    conn: psycopg.Connection[Any],
) -> None:
    name = f"fold-{uuid.uuid4().hex}"
    created = one(conn, "select pgsodium.create_key('hmacsha256', %s)", [name])
    assert name in created  # the valid_key row, as a composite's text
    assert one(conn, "select pgsodium.version()") == "3.1.11"
    key_id = one(conn, "select key_id from pgsodium.valid_key where name = %s", [name])
    # A key uuid computed upstream by get_key_by_name, next to another column.
    cur = conn.execute(
        "select 1 as x, pgsodium.crypto_auth_hmacsha256('m', "
        "(pgsodium.get_key_by_name(%s)).id) as h, "
        "pgsodium.crypto_auth_hmacsha256('m', %s::bigint) as by_id",
        [name, key_id],
    )
    assert [d.name for d in cur.description] == ["x", "h", "by_id"]
    row = cur.fetchone()
    assert row is not None and row[0] == 1 and row[1] == row[2]
    assert error_of(
        conn,
        "select pgsodium.crypto_auth_hmacsha256('m', "
        "(pgsodium.get_key_by_name('no such key')).id)",
    )[:2] == ("P0002", "query returned no rows")


def test_a_role_change_before_a_call_in_one_query_is_refused(
    conn: psycopg.Connection[Any], plain_role: str
) -> None:
    """The EXECUTE check runs before the message does: it would use the old role."""
    for change in (
        "set role fold_user",
        "set session authorization fold_user",
        "reset role",
        "select set_config('role', 'fold_user', false)",
        # The same changes, spelled so that no word of them shows.
        'set U&"r\\006Fle" to fold_user',
        "set session_authorization = 'fold_user'",
        'set local U&"r\\006Fle" to fold_user',
    ):
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute(f"{change}; {RAW_AUTH}")
        conn.execute("reset session authorization")
    # Not after the call, and not in separate messages.
    cur = conn.execute(f"{RAW_AUTH}; set role fold_user")
    assert len(cur.fetchone()[0]) == 32
    conn.execute("reset role")
    conn.execute("set role fold_user")
    assert _denied(conn, RAW_AUTH) == DENIED_AUTH
    conn.execute("reset role")


def test_volatile_calls_give_a_new_value_for_every_row(
    conn: psycopg.Connection[Any],
) -> None:
    """randombytes_*, keygen and noncegen are VOLATILE: the server evaluates them
    for every row. The proxy computes them as rows pass, never one value for all
    (one nonce for every row would break the encryption)."""
    for cursor in (psycopg.ClientCursor, psycopg.Cursor):
        cur = cursor(conn)
        nonces = cur.execute(
            "select g, pgsodium.crypto_aead_det_noncegen() "
            "from generate_series(1, 50) g"
        ).fetchall()
        assert len({bytes(n) for _, n in nonces}) == 50
        keys = cur.execute(
            "select encode(pgsodium.crypto_aead_ietf_keygen(), 'hex') "
            "from generate_series(1, 20)"
        ).fetchall()
        assert len(set(keys)) == 20
        # A set-returning function in a select list without FROM makes rows too.
        numbers = cur.execute(
            "select generate_series(1, 20), pgsodium.randombytes_buf(16)"
        ).fetchall()
        assert len({bytes(b) for _, b in numbers}) == 20
        cur.execute("insert into t values ('\\x01', 1), ('\\x02', 2)")
        returned = cur.execute(
            "update t set d = d returning pgsodium.randombytes_buf(16)"
        ).fetchall()
        assert len({bytes(b) for (b,) in returned}) == 2
        conn.execute("delete from t")


@pytest.mark.parametrize(
    "sql",
    [
        "insert into t select pgsodium.randombytes_buf(8), g "
        "from generate_series(1, 3) g",
        "update t set c = pgsodium.crypto_aead_det_noncegen()",
        "select * from t where c = pgsodium.randombytes_buf(8)",
        "select pgsodium.crypto_box_new_keypair() from generate_series(1, 2)",
        "select pgsodium.create_key(raw_key := pgsodium.crypto_aead_det_keygen()) "
        "from generate_series(1, 3)",
    ],
)
def test_volatile_calls_the_server_would_repeat_are_refused(
    conn: psycopg.Connection[Any], sql: str
) -> None:
    conn.execute("insert into t values ('\\x01', 1), ('\\x02', 2)")
    with pytest.raises(psycopg.errors.FeatureNotSupported):
        conn.execute(sql)
    assert conn.execute("select count(*) from t").fetchone() == (2,)
    assert conn.execute("select count(*) from pgsodium.key").fetchone()[0] >= 0


def test_volatile_calls_evaluated_once_still_fold(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute(
        "insert into t values (pgsodium.randombytes_buf(8), 1), "
        "(pgsodium.randombytes_buf(8), 2)"
    )
    values = conn.execute("select c from t order by d").fetchall()
    assert len({bytes(v) for (v,) in values}) == 2
    first, second = conn.execute(
        "select pgsodium.randombytes_random(), pgsodium.randombytes_random()"
    ).fetchone()
    assert first != second


def test_case_of_folded_values_runs_only_the_branch_taken(
    conn: psycopg.Connection[Any],
) -> None:
    sql = (
        "insert into t values (CASE WHEN %s::bytea IS NULL THEN NULL ELSE "
        "pgsodium.crypto_aead_det_encrypt(%s::bytea, '', 1) END, %s)"
    )
    for cursor in (psycopg.ClientCursor, psycopg.Cursor):
        cur = cursor(conn)
        cur.execute(sql, [None, None, 1])  # the encrypt of NULL would raise
        cur.execute(sql, [b"m", b"m", 2])
        assert [
            (d, c is None) for c, d in conn.execute("select c, d from t order by d")
        ] == [(1, True), (2, False)]
        conn.execute("delete from t")
    assert (
        one(
            conn,
            "select CASE WHEN pgsodium.crypto_generichash('abc') IS NOT NULL "
            "THEN pgsodium.crypto_hash_sha256('abc') END",
        )
        == ABC_SHA256
    )


def test_definitions_keep_their_calls_for_when_they_run(
    conn: psycopg.Connection[Any], direct: psycopg.Connection[Any]
) -> None:
    """CREATE TABLE … DEFAULT, CREATE VIEW, CREATE FUNCTION … BEGIN ATOMIC evaluate
    nothing when they run: their pgsodium calls go upstream as written (folded,
    `DEFAULT randombytes_buf(8)` would be one constant for every row). Used
    inside the server, pgsodium's stub says the call must go through the proxy."""
    conn.execute("drop table if exists t_def cascade")
    conn.execute("create table t_def (a bytea default pgsodium.randombytes_buf(8))")
    conn.execute(
        "create view v_def as select pgsodium.crypto_generichash(a) h from t_def"
    )
    conn.execute(
        "create or replace function f_def() returns bytea begin atomic "
        "select pgsodium.crypto_generichash('abc'); end"
    )
    assert (
        one(
            direct,
            "select pg_get_expr(adbin, adrelid) from pg_attrdef "
            "where adrelid = 't_def'::regclass",
        )
        == "pgsodium.randombytes_buf(8)"
    )
    assert "pgsodium.crypto_generichash" in one(
        direct, "select pg_get_functiondef('f_def'::regproc)"
    )
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="pgsodium-proxy"):
        conn.execute("insert into t_def default values")
    conn.execute("drop table t_def cascade")
    conn.execute("drop function f_def")


def test_a_database_without_the_proxys_schema_says_so(proxy: RunningProxy) -> None:
    proxy.upstream.psql("DROP DATABASE IF EXISTS folding_no_init")
    proxy.upstream.psql("CREATE DATABASE folding_no_init")
    with psycopg.connect(proxy.dsn(dbname="folding_no_init"), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InvalidSchemaName) as caught:
            conn.execute("select pgsodium.crypto_generichash('x')")
        assert "pgsodium-proxy init" in (caught.value.diag.message_hint or "")
        assert "_proxy" not in str(caught.value)
        assert conn.execute("select 1").fetchone() == (1,)
        conn.execute("create table labelled_later (c text)")
        # A label names the proxy's schema too: said the same way, not as the
        # server's error about the proxy's internal function.
        with pytest.raises(psycopg.errors.InvalidSchemaName) as caught:
            conn.execute(
                "security label for pgsodium on column labelled_later.c is "
                "'ENCRYPT WITH KEY ID 3a9d3e6c-0b5f-4c1a-9a3e-1d2b3c4d5e6f'"
            )
        assert "pgsodium-proxy init" in (caught.value.diag.message_hint or "")
        assert "_proxy" not in str(caught.value)
        assert conn.execute("select 1").fetchone() == (1,)
