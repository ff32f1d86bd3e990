"""rewriter.resolve against a real PostgreSQL holding pgsodium's declarations.

The server's choice is read without running the stub functions: each call becomes
a temporary view inside a subtransaction that is rolled back, and the view's
dependency (pg_depend) names the pgsodium function the parser picked. Untyped and
typed bind parameters are checked with a real Parse/Describe. The proxy must pick
the same overload, or raise the same 42883/42725/42601/0A000/54023 with the same
message.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pglast import ast, parse_sql
from psycopg import pq
from psycopg.conninfo import make_conninfo

from keystore import catalogue, schema
from proxy.cluster import Cluster
from rewriter import types
from rewriter.errors import RewriteError
from rewriter.resolve import resolve
from tests.rewriter.test_types_vs_server import SETTINGS

Choice = tuple[str | None, str | None, str | None]  # (regprocedure, sqlstate, message)

WHICH = r"""
CREATE FUNCTION pg_temp.which(call text, OUT proc text, OUT state text, OUT msg text)
LANGUAGE plpgsql AS $f$
BEGIN
  BEGIN
    EXECUTE 'CREATE TEMP VIEW _which AS SELECT ' || call;
    SELECT string_agg(d.refobjid::regprocedure::text, ' ') INTO proc
      FROM pg_depend d
      JOIN pg_rewrite r ON r.oid = d.objid AND d.classid = 'pg_rewrite'::regclass
      JOIN pg_proc p ON p.oid = d.refobjid AND d.refclassid = 'pg_proc'::regclass
     WHERE r.ev_class = 'pg_temp._which'::regclass
       AND p.pronamespace = 'pgsodium'::regnamespace;
    RAISE EXCEPTION 'undo the view';
  EXCEPTION WHEN OTHERS THEN
    IF proc IS NULL THEN
      GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    END IF;
  END;
END $f$
"""
BATCH = """
SELECT r.proc, r.state, r.msg
  FROM unnest(%s::text[]) WITH ORDINALITY AS u(q, n), LATERAL pg_temp.which(q) r
 ORDER BY n
"""
INSTALLED = [s for s in catalogue.FUNCTIONS if s.kind in schema.INSTALLED_KINDS]
NAMES = sorted({s.name for s in INSTALLED})
KEY = str(uuid.UUID(int=7))


@pytest.fixture(scope="module")
def conn(pg_cluster: Cluster) -> Iterator[psycopg.Connection[Any]]:
    """A database of its own with pgsodium's functions declared by keystore.schema."""
    dbname = f"resolve_{uuid.uuid4().hex[:10]}"
    admin = make_conninfo(pg_cluster.dsn, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {dbname}")
    try:
        with psycopg.connect(make_conninfo(pg_cluster.dsn, dbname=dbname)) as c:
            c.execute(schema.render("a" * 32))  # type: ignore[arg-type]
        with psycopg.connect(
            make_conninfo(pg_cluster.dsn, dbname=dbname), autocommit=True
        ) as c:
            c.execute(WHICH)
            yield c
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


def server_choices(conn: psycopg.Connection[Any], calls: Sequence[str]) -> list[Choice]:
    return [tuple(row) for row in conn.execute(BATCH, [list(calls)]).fetchall()]  # type: ignore[misc]


# ---------------------------------------------------------------- the proxy's side


def _type_of(node: ast.Node) -> str:
    """The type the parser gives a literal, a cast or NULL (as compile.py does)."""
    if isinstance(node, ast.TypeCast):
        names = [n.sval for n in node.typeName.names]
        name = ".".join(names[1:] if names[0] == "pg_catalog" else names)
        return types.ALIASES.get(name, name)
    assert isinstance(node, ast.A_Const), node
    value = node.val
    if node.isnull or isinstance(value, ast.String):
        return "unknown"
    if isinstance(value, ast.Integer):
        return "integer"
    if isinstance(value, ast.Boolean):
        return "boolean"
    assert isinstance(value, ast.Float)
    if re.fullmatch(r"-?[0-9]+", value.fval) and -(2**63) <= int(value.fval) < 2**63:
        return "bigint"
    return "numeric"


def parse_call(sql: str) -> tuple[str | None, str, list[str], list[str]]:
    """(schema, name, argument types in call order, names of the named arguments)."""
    call = parse_sql(f"SELECT {sql}")[0].stmt.targetList[0].val
    assert isinstance(call, ast.FuncCall)
    names = [n.sval for n in call.funcname]
    arg_types, named = [], []
    for arg in call.args or ():
        if isinstance(arg, ast.NamedArgExpr):
            named.append(arg.name)
            arg = arg.arg
        arg_types.append(_type_of(arg))
    return (names[0] if len(names) == 2 else None), names[-1], arg_types, named


def proxy_choice(sql: str) -> Choice:
    schema_name, name, arg_types, named = parse_call(sql)
    try:
        bound = resolve(name, arg_types, named, None, schema=schema_name)
    except RewriteError as exc:
        return (None, exc.sqlstate, exc.message)
    return (bound.signature.regprocedure, None, None)


def _unqualified(choice: Choice) -> Choice:
    """regprocedure output leaves out a schema on the search_path; compare without."""
    proc, state, message = choice
    return (proc and proc.replace("pgsodium.", ""), state, message)


def assert_same_choices(conn: psycopg.Connection[Any], calls: Sequence[str]) -> None:
    server = server_choices(conn, calls)
    mismatches = [
        (sql, expected, got)
        for sql, expected in zip(calls, server, strict=True)
        if _unqualified(got := proxy_choice(sql)) != _unqualified(expected)
    ]
    assert not mismatches, "\n".join(
        f"{s}: server {e} proxy {g}" for s, e, g in mismatches
    )


# ---------------------------------------------------------------- hand-picked calls

P = "pgsodium."
CALLS = [
    # integer literal forms against bigint / bytea / uuid overloads
    f"{P}crypto_auth('msg', 1)",
    f"{P}crypto_auth('msg', 1::bigint)",
    f"{P}crypto_auth('msg', 1::int8)",
    f"{P}crypto_auth('msg', 2147483648)",
    f"{P}crypto_auth('msg', -2147483649)",
    f"{P}crypto_auth('msg', 9223372036854775808)",
    f"{P}crypto_auth('msg', 1.0)",
    f"{P}crypto_auth('msg', 1::smallint)",
    f"{P}crypto_auth('msg', true)",
    # unknown literals: ambiguous, or settled by the one known type
    f"{P}crypto_auth('msg', 'key')",
    f"{P}crypto_auth('msg', NULL)",
    f"{P}crypto_auth(NULL, NULL)",
    f"{P}crypto_auth('msg'::bytea, 'key')",
    f"{P}crypto_auth('msg', 'key'::bytea)",
    f"{P}crypto_auth('msg', E'\\\\x00'::bytea)",
    f"{P}crypto_auth(E'\\\\x00', '{KEY}'::uuid)",
    f"{P}crypto_auth('msg'::text, 'key')",
    f"{P}crypto_auth('msg'::text, 'key'::bytea)",
    f"{P}crypto_auth('msg'::varchar, 1)",
    f"{P}crypto_auth('msg'::bytea, 1::oid)",
    # named arguments, := and =>, any order, defaults
    f"{P}crypto_auth(message => 'm', key_id => 1)",
    f"{P}crypto_auth(message := 'm', key_uuid := NULL)",
    f"{P}crypto_auth('m', key => 'k')",
    f"{P}crypto_auth('m', context => 'c', key_id => 1)",
    f"{P}crypto_auth(key_id => 1, message => 'm')",
    f"{P}crypto_auth(key => 'k', message => 'm')",
    f"{P}crypto_auth('m', message => 'x')",
    f"{P}crypto_auth('m', nonexistent => 1)",
    f"{P}crypto_auth('m', key_id => 1, key_id => 2)",
    f"{P}crypto_auth('m', \"key_id\" => 1)",
    f"{P}crypto_auth('m', \"KEY_ID\" => 1)",
    f"{P}crypto_auth('m')",
    f"{P}crypto_auth()",
    f"{P}crypto_auth('m', 1, 'ctx', 'extra')",
    f"{P}crypto_aead_det_encrypt('m', 'ad', 1)",
    f"{P}crypto_aead_det_encrypt('m', 'ad', 1, 'ctx', 'nonce')",
    f"{P}crypto_aead_det_encrypt('m', 'ad', '{KEY}'::uuid)",
    f"{P}crypto_aead_det_encrypt('m', 'ad', NULL::uuid, 'nonce')",
    f"{P}crypto_aead_det_encrypt('m', 'ad', 'k'::bytea)",
    f"{P}crypto_aead_det_encrypt('m', 'ad', NULL)",
    f"{P}crypto_aead_det_encrypt('m'::bytea, 'ad', NULL)",
    f"{P}crypto_aead_det_encrypt('m', 'ad', key_uuid => NULL, nonce => 'n')",
    f"{P}crypto_aead_det_encrypt('m', 'ad', nonce => 'n', key_id => 1)",
    f"{P}crypto_aead_det_decrypt(message => 'm', additional => 'a', key_id => 1)",
    f"{P}crypto_aead_det_decrypt(ciphertext => 'm', additional => 'a', key => 'k')",
    f"{P}crypto_aead_det_decrypt(message => 'm', additional => 'a', key => 'k')",
    f"{P}crypto_aead_ietf_encrypt('m', 'a', 'n', 1, context => 'c')",
    f"{P}crypto_generichash('m')",
    f"{P}crypto_generichash('m', NULL)",
    f"{P}crypto_generichash('m', 1)",
    f"{P}crypto_generichash('m'::bytea, 'k')",
    f"{P}crypto_generichash(message => 'm')",
    f"{P}crypto_generichash(key => 1, message => 'm')",
    f"{P}crypto_kdf_derive_from_key(32, 1, 'ctx', 'k'::bytea)",
    f"{P}crypto_kdf_derive_from_key(32, 1, 'ctx', NULL::uuid)",
    f"{P}crypto_kdf_derive_from_key(32::bigint, 1, 'ctx', NULL)",
    f"{P}crypto_kdf_derive_from_key(32, 1, 'ctx', NULL)",
    f"{P}crypto_kdf_derive_from_key(32, 2147483648, 'ctx', NULL)",
    f"{P}crypto_stream_xchacha20_xor('m', 'n', 1)",
    f"{P}crypto_stream_xchacha20_xor('m', 'n', NULL)",
    f"{P}crypto_stream_xchacha20_xor_ic('m'::bytea, 'n', 1, 'k')",
    f"{P}derive_key(1)",
    f"{P}derive_key(1, 32)",
    f"{P}derive_key(1::smallint, 16::smallint)",
    f"{P}derive_key(key_len => 16, key_id => 1)",
    f"{P}derive_key(1, 32::bigint)",
    f"{P}pgsodium_derive(1, context => 'c')",
    f"{P}randombytes_uniform(10)",
    f"{P}randombytes_buf(10::bigint)",
    f"{P}randombytes_buf(size => '10')",
    f"{P}randombytes_random()",
    f"{P}randombytes_random(1)",
    f"{P}create_key()",
    f"{P}create_key('aead-det')",
    f"{P}create_key('aead-det'::text)",
    f"{P}create_key('aead-det'::pgsodium.key_type, 'n')",
    f"{P}create_key(name => 'n')",
    f"{P}create_key(raw_key => 'k'::bytea, name := 'n', key_type => 'hmacsha256')",
    f"{P}create_key(expires => '2030-01-01', parent_key => NULL)",
    f"{P}crypto_cmp('a', 'b')",
    f"{P}crypto_cmp('a'::varchar, 'b'::name)",
    f"{P}crypto_cmp('a', 1)",
    f"{P}crypto_cmp(a => 'x', b => 'y')",
    f"{P}crypto_ipcrypt_encrypt('1.2.3.4'::inet, 'k')",
    f"{P}crypto_ipcrypt_encrypt('1.2.3.4', 'k'::bytea)",
    f"{P}crypto_ipcrypt_encrypt(NULL, NULL::uuid)",
    f"{P}crypto_ipcrypt_encrypt('1.2.3.4', 'k')",
    f"{P}crypto_ipcrypt_encrypt(ip => NULL::inet, key_uuid => NULL)",
    f"{P}crypto_sign_update_agg('m')",
    f"{P}crypto_sign_update_agg(message => 'm')",
    f"{P}crypto_sign_update_agg('s', message => 'm')",
    f"{P}crypto_box_new_keypair()",
    f"{P}crypto_box_new_keypair(1)",
    f"{P}get_key_by_id(NULL)",
    f"{P}get_key_by_name('x')",
    f"{P}get_named_keys()",
    f"{P}get_named_keys(filter => 'a%')",
    f"{P}crypto_secretbox('m', 'n', 'k')",
    f"{P}crypto_secretbox('m', 'n'::bytea, 'k'::bytea)",
    f"{P}crypto_secretbox_open(message => 'm', nonce => 'n', key_id => 1)",
    f"{P}crypto_secretbox_open(ciphertext => 'm', nonce => 'n', key => 'k')",
    f"{P}no_such_function(1)",
    f"{P}crypto_auth({', '.join(['NULL'] * 101)})",
]


def test_hand_picked_calls_pick_the_servers_overload(
    conn: psycopg.Connection[Any],
) -> None:
    assert_same_choices(conn, CALLS)


def test_unqualified_calls_are_named_as_written_in_errors(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute("SET search_path = pgsodium, public")
    try:
        calls = [c.removeprefix(P) for c in CALLS if "key_type" not in c]
        assert_same_choices(conn, calls)
    finally:
        conn.execute("RESET search_path")


# ---------------------------------------------------------------- generated calls

# Argument spellings and the type each gives the parser.
ARGS = {
    "NULL": "unknown",
    "1": "integer",
    "2147483648": "bigint",
    "1.5": "numeric",
    "true": "boolean",
    "NULL::bytea": "bytea",
    "NULL::text": "text",
    "NULL::varchar": "character varying",
    "NULL::name": "name",
    "NULL::bigint": "bigint",
    "NULL::integer": "integer",
    "NULL::smallint": "smallint",
    "NULL::oid": "oid",
    "NULL::uuid": "uuid",
    "NULL::inet": "inet",
    "NULL::boolean": "boolean",
    "NULL::timestamptz": "timestamp with time zone",
    "NULL::pgsodium.key_type": "pgsodium.key_type",
}


@st.composite
def calls(draw: st.DrawFn) -> str:
    """A call of a pgsodium function: argument types near its overloads, some named."""
    name = draw(st.sampled_from(NAMES))
    overloads = catalogue.overloads(name)
    count = draw(st.integers(0, max(len(s.params) for s in overloads) + 1))
    args = []
    for i in range(count):
        declared = [f"NULL::{s.params[i].type}" for s in overloads if i < len(s.params)]
        args.append(
            draw(st.sampled_from(declared + ["NULL"] if declared else list(ARGS)))
        )
        if draw(st.integers(0, 3)) == 0:
            args[-1] = draw(st.sampled_from(list(ARGS)))
    names = sorted({p.name for s in overloads for p in s.params if p.name})
    named = (
        draw(st.lists(st.sampled_from(names), max_size=count, unique=True))
        if names
        else []
    )
    positional = count - len(named)
    shown = args[:positional] + [
        f"{n} => {a}" for n, a in zip(named, args[positional:], strict=True)
    ]
    return f"{P}{name}({', '.join(shown)})"


@SETTINGS
@given(st.lists(calls(), min_size=20, max_size=20))
def test_generated_calls_pick_the_servers_overload(
    conn: psycopg.Connection[Any], batch: list[str]
) -> None:
    assert_same_choices(conn, batch)


def test_every_overload_is_chosen_by_its_exact_types(
    conn: psycopg.Connection[Any],
) -> None:
    calls = [
        f"{P}{s.name}({', '.join(f'NULL::{p.type}' for p in s.params)})"
        for s in INSTALLED
    ]
    assert_same_choices(conn, calls)


# ---------------------------------------------------------------- bind parameters


def describe(
    conn: psycopg.Connection[Any], sql: str, oids: Sequence[int]
) -> tuple[str, ...] | tuple[str, str]:
    """Parse with these parameter type OIDs (0 = unspecified); the inferred types."""
    result = conn.pgconn.prepare(b"", f"SELECT {sql}".encode(), list(oids))
    if result.status == pq.ExecStatus.FATAL_ERROR:
        state = result.error_field(pq.DiagnosticField.SQLSTATE) or b""
        message = result.error_field(pq.DiagnosticField.MESSAGE_PRIMARY) or b""
        return ("error", state.decode(), message.decode())
    described = conn.pgconn.describe_prepared(b"")
    found = [described.param_type(i) for i in range(described.nparams)]
    return tuple(
        conn.execute("SELECT %s::regtype::text", [oid]).fetchone()[0]  # type: ignore[index]
        for oid in found
    )


PARAM_CALLS: list[tuple[str, list[str], list[str]]] = [
    # (call with $n, declared types (unknown = unspecified), named arguments)
    ("crypto_auth($1, $2)", ["unknown", "unknown"], []),
    ("crypto_auth($1, $2)", ["bytea", "unknown"], []),
    ("crypto_auth($1, $2)", ["unknown", "bigint"], []),
    ("crypto_auth($1, $2)", ["unknown", "uuid"], []),
    ("crypto_auth($1, $2)", ["text", "unknown"], []),
    ("crypto_auth($1, $2)", ["bytea", "integer"], []),
    ("crypto_auth($1, key_id => $2)", ["unknown", "unknown"], ["key_id"]),
    ("crypto_auth(message => $1, key_uuid => $2)", ["unknown", "unknown"],
     ["message", "key_uuid"]),
    ("crypto_aead_det_encrypt($1, $2, $3)", ["unknown", "unknown", "uuid"], []),
    ("crypto_aead_det_encrypt($1, $2, $3, $4)", ["unknown"] * 4, []),
    ("crypto_aead_det_encrypt($1, $2, $3)", ["bytea", "bytea", "unknown"], []),
    ("crypto_generichash($1)", ["unknown"], []),
    ("crypto_kdf_derive_from_key($1, $2, $3, $4)", ["unknown"] * 3 + ["uuid"], []),
    ("crypto_kdf_derive_from_key($1, $2, $3, $4)", ["integer"] * 2 + ["unknown"] * 2,
     []),
    ("derive_key($1)", ["unknown"], []),
    ("create_key(name => $1, raw_key => $2)", ["unknown", "unknown"],
     ["name", "raw_key"]),
    ("crypto_cmp($1, $2)", ["character varying", "unknown"], []),
]  # fmt: skip


def _param_sql(call: str, declared: list[str]) -> tuple[str, list[int]]:
    oids = [0 if t == "unknown" else types.lookup(t).oid for t in declared]
    return P + call, oids


@pytest.mark.parametrize(("call", "declared", "named"), PARAM_CALLS)
def test_bind_parameters_take_the_chosen_overloads_types(
    conn: psycopg.Connection[Any], call: str, declared: list[str], named: list[str]
) -> None:
    sql, oids = _param_sql(call, declared)
    server = describe(conn, sql, oids)

    name = call.partition("(")[0]
    try:
        bound = resolve(name, declared, named, None)
    except RewriteError as exc:
        assert server == ("error", exc.sqlstate, exc.message)
        return
    params = bound.signature.params
    by_argument = {slot: p.type for p, slot in zip(params, bound.slots, strict=True)}
    # An unspecified parameter takes the chosen parameter's type; a declared one keeps
    # its own (the value is coerced).
    assert server == tuple(
        by_argument[i] if t == "unknown" else t for i, t in enumerate(declared)
    )
