"""rewriter.types against a real PostgreSQL: input, output, receive, send and casts.

Every case runs the same conversion on the server (one round trip per batch, through
a PL/pgSQL helper that traps errors) and in the proxy, and compares the text result
or the SQLSTATE and message exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import pq

from proxy.cluster import Cluster
from rewriter import evaluate, types
from rewriter.errors import RewriteError

Outcome = tuple[str, ...]  # ("ok", text) / ("null",) / ("error", sqlstate, message)

TRY_EVAL = """
CREATE FUNCTION pg_temp.try_eval(q text, OUT val text, OUT state text, OUT msg text)
LANGUAGE plpgsql AS $f$
BEGIN
  EXECUTE 'SELECT (' || q || ')::text' INTO val;
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
END $f$
"""
BATCH = """
SELECT r.val, r.state, r.msg
  FROM unnest(%s::text[]) WITH ORDINALITY AS u(q, n), LATERAL pg_temp.try_eval(q) r
 ORDER BY n
"""
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
# Text PostgreSQL can hold: no NUL, no lone surrogates.
PG_TEXT = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")


class Oracle:
    """Evaluates SQL expressions on the server, many per round trip."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        conn.execute(TRY_EVAL)

    def run(self, exprs: Sequence[str], bytea_output: str = "hex") -> list[Outcome]:
        self.conn.execute(f"SET bytea_output = {bytea_output}")
        rows = self.conn.execute(BATCH, [list(exprs)]).fetchall()
        return [_outcome(*row) for row in rows]


def _outcome(val: str | None, state: str | None, msg: str | None) -> Outcome:
    if state is not None:
        return ("error", state, msg or "")
    return ("null",) if val is None else ("ok", val)


def refused(outcome: Outcome) -> bool:
    """The proxy's fail-closed answer for what it does not reproduce."""
    return outcome[:2] == ("error", "0A000") and outcome[2].startswith(
        "pgsodium-proxy cannot"
    )


def proxy(compute: Callable[[], str | None]) -> Outcome:
    """The proxy's outcome for a computation that yields the result's text form."""
    try:
        result = compute()
    except RewriteError as exc:
        return ("error", exc.sqlstate, exc.message)
    return ("null",) if result is None else ("ok", result)


def text_literal(text: str) -> str:
    """An E'' literal: the same whatever standard_conforming_strings is."""
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def bytea_literal(data: bytes) -> str:
    return f"E'\\\\x{data.hex()}'::bytea"


def assert_same(
    oracle: Oracle,
    cases: Sequence[tuple[str, Callable[[], str | None]]],
    bytea_output: str = "hex",
    allow_refusal: bool = False,
) -> None:
    """Server and proxy agree; with `allow_refusal`, the proxy may also refuse."""
    server = oracle.run([sql for sql, _ in cases], bytea_output)
    mismatches = [
        (sql, expected, got)
        for (sql, compute), expected in zip(cases, server, strict=True)
        if (got := proxy(compute)) != expected and not (allow_refusal and refused(got))
    ]
    assert not mismatches, "\n".join(
        f"{s}: server {e} proxy {g}" for s, e, g in mismatches
    )


@pytest.fixture(scope="module")
def conn(pg_cluster: Cluster) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg_cluster.dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="module")
def oracle(conn: psycopg.Connection[Any]) -> Oracle:
    return Oracle(conn)


def input_case(type_name: str, text: str) -> tuple[str, Callable[[], str | None]]:
    """`'text'::type` on the server; text_in then text_out in the proxy."""
    sql = f"{text_literal(text)}::{type_name}"
    if type_name == "boolean":
        # (x)::text of a boolean is booltext ('true'), not boolout ('t').
        return sql, lambda: str(types.bool_in(text)).lower()
    return sql, lambda: types.text_out(type_name, types.text_in(type_name, text))


# ---------------------------------------------------------------- bytea


BYTEA_INPUTS = [
    "",
    "\\x",
    "\\x0",
    "\\x00",
    "\\x0 1",
    "\\x 01",
    "\\x01 ",
    "\\x0\t1",
    "\\x\n01\r\n02",
    "\\x0g",
    "\\xg0",
    "\\xabg",
    "\\xab\x0b",
    "\\xé0",
    "\\x0é",
    "\\X01",
    "\\xDEADbeef",
    "abc",
    "\\\\",
    "\\",
    "a\\",
    "\\0",
    "\\00",
    "\\000",
    "\\377",
    "\\400",
    "\\378",
    "\\x41\\",
    "caf\u00e9 \U0001f600",
    "\\001\\002\\\\\\003",
    "x\\x41",
]


@pytest.mark.parametrize("bytea_output", ["hex", "escape"])
def test_bytea_input_edge_cases_match_byteain(
    oracle: Oracle, bytea_output: str
) -> None:
    cases = [
        (
            f"{text_literal(t)}::bytea",
            lambda t=t: types.bytea_out(types.bytea_in(t), bytea_output),
        )
        for t in BYTEA_INPUTS
    ]
    assert_same(oracle, cases, bytea_output)


BYTEA_ALPHABET = st.sampled_from(
    list("\\x0123456789abcdefABCDEFg \t\n\r7") + ["é", "\x01"]
)


@SETTINGS
@given(st.lists(st.text(BYTEA_ALPHABET, max_size=12), min_size=1, max_size=8))
def test_bytea_input_matches_byteain(oracle: Oracle, texts: list[str]) -> None:
    assert_same(oracle, [input_case("bytea", t) for t in texts])


@SETTINGS
@given(
    st.lists(st.binary(max_size=40), min_size=1, max_size=8),
    st.sampled_from(["hex", "escape"]),
)
def test_bytea_output_matches_byteaout(
    oracle: Oracle, values: list[bytes], output: str
) -> None:
    cases = [(bytea_literal(v), lambda v=v: types.bytea_out(v, output)) for v in values]
    assert_same(oracle, cases, output)


@SETTINGS
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=8))
def test_bytea_escape_output_reads_back_as_the_same_bytes(
    oracle: Oracle, values: list[bytes]
) -> None:
    escaped = [types.bytea_out(v, "escape") for v in values]
    assert [types.bytea_in(e) for e in escaped] == values
    assert_same(oracle, [input_case("bytea", e) for e in escaped])


# ---------------------------------------------------------------- integers and oid

INT_TYPES = ["smallint", "integer", "bigint", "oid"]
INT_EDGES = [
    "",
    " ",
    "0",
    "-0",
    "+0",
    "+",
    "-",
    " 12 ",
    "\t\n\v\f\r12\r\f\v\n\t",
    "1 2",
    "12x",
    "x12",
    "1.0",
    "1e3",
    "0x10",
    "٣",
    "00000000000000000000000000000042",
    "- 1",
    "+-1",
    "32767",
    "32768",
    "-32768",
    "-32769",
    "2147483647",
    "2147483648",
    "-2147483648",
    "-2147483649",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "-18446744073709551615",
    "-18446744073709551616",
    "99999999999999999999x",
    "99999x",
    "-1",
    "-4294967295",
    "-4294967296",
    " -2147483648 ",
]


def test_integer_and_oid_input_edge_cases(oracle: Oracle) -> None:
    assert_same(oracle, [input_case(t, v) for t in INT_TYPES for v in INT_EDGES])


INT_TEXT = st.one_of(
    st.integers(-(2**65), 2**65).map(str),
    st.text(st.sampled_from(list("0123456789+- \tx")), max_size=25),
    st.builds(
        lambda n, pad: f"{pad}{n}{pad}",
        st.sampled_from([2**15, 2**31, 2**32, 2**63, 2**64]).flatmap(
            lambda b: st.integers(-b - 2, b + 2)
        ),
        st.sampled_from(["", " ", "\n"]),
    ),
)


@SETTINGS
@given(st.lists(INT_TEXT, min_size=1, max_size=8), st.sampled_from(INT_TYPES))
def test_integer_input_matches_the_server(
    oracle: Oracle, texts: list[str], type_name: str
) -> None:
    assert_same(oracle, [input_case(type_name, t) for t in texts])


# ---------------------------------------------------------------- uuid

U = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
UUID_EDGES = [
    U,
    U.upper(),
    U.replace("-", ""),
    "{" + U + "}",
    "{" + U.replace("-", "") + "}",
    "{" + U,
    U + "}",
    " " + U,
    U + " ",
    "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
    "a0eebc999c0b4ef8bb6d6bb9bd380a11-",
    "-a0eebc999c0b4ef8bb6d6bb9bd380a11",
    "a0eebc99--9c0b4ef8bb6d6bb9bd380a11",
    "a0e-ebc999c0b4ef8bb6d6bb9bd380a11",
    "a0eebc999c0b4ef8bb6d6bb9bd380a1",
    "a0eebc999c0b4ef8bb6d6bb9bd380a111",
    "g0eebc999c0b4ef8bb6d6bb9bd380a11",
    "",
    "{}",
    "{{" + U + "}}",
]


def test_uuid_input_edge_cases(oracle: Oracle) -> None:
    assert_same(oracle, [input_case("uuid", t) for t in UUID_EDGES])


@st.composite
def uuid_forms(draw: st.DrawFn) -> str:
    digits = draw(
        st.text(st.sampled_from("0123456789abcdefABCDEF"), min_size=30, max_size=34)
    )
    hyphens = draw(st.sets(st.integers(0, len(digits)), max_size=6))
    text = "".join(("-" if i in hyphens else "") + c for i, c in enumerate(digits))
    if draw(st.booleans()):
        text = "{" + text + draw(st.sampled_from(["}", "", "}}", " }"]))
    return text


@SETTINGS
@given(st.lists(uuid_forms(), min_size=1, max_size=8))
def test_uuid_input_matches_string_to_uuid(oracle: Oracle, texts: list[str]) -> None:
    assert_same(oracle, [input_case("uuid", t) for t in texts])


# ---------------------------------------------------------------- boolean

BOOL_WORDS = ["true", "false", "yes", "no", "on", "off", "1", "0"]
BOOL_EDGES = sorted(
    {w[:n] for w in BOOL_WORDS for n in range(len(w) + 1)}
    | {w.upper() for w in BOOL_WORDS}
    | {"TrUe", " t ", "\tyes\n", "onn", "of", "o", "offf", "truex", "2", "01", "t rue"}
    | {"\u0130", "ye", "n o", "+1", "-0", " ", "\v1\f"}
)


def test_boolean_input_spellings(oracle: Oracle) -> None:
    assert_same(oracle, [input_case("boolean", t) for t in BOOL_EDGES])


@SETTINGS
@given(
    st.lists(
        st.text(st.sampled_from("tTrRuUeEfFaAlLsSyYnNoO01 \t"), max_size=6),
        min_size=1,
        max_size=8,
    )
)
def test_boolean_input_matches_boolin(oracle: Oracle, texts: list[str]) -> None:
    assert_same(oracle, [input_case("boolean", t) for t in texts])


# ---------------------------------------------------------------- numeric, name, text

NUMERIC_EDGES = [
    "1",
    "1.50",
    "-0.00",
    "+.5",
    "5.",
    ".",
    "1e3",
    "1E-3",
    "1.0e-3",
    "15e-1",
    "1e 5",
    "1e+ 5",
    "1e",
    " 7 ",
    "NaN",
    "nan",
    "-NaN",
    "Infinity",
    "-inf",
    "+INF",
    "infinit",
    "1..2",
    "1.2.3",
    "0x10",
    "123456789012345678901234567890.123456789",
    "1e1000",
    "1e-1000",
]


def test_numeric_input_is_canonicalised_as_numeric_out(oracle: Oracle) -> None:
    assert_same(oracle, [input_case("numeric", t) for t in NUMERIC_EDGES])


NUMERIC_TEXT = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.text(st.sampled_from(list("0123456789.eE+- ")), min_size=1, max_size=12),
)


@SETTINGS
@given(st.lists(NUMERIC_TEXT, min_size=1, max_size=8))
def test_numeric_input_matches_numeric_in(oracle: Oracle, texts: list[str]) -> None:
    # Exponents beyond +-1000 are refused (the server's scale limits are not modelled).
    assert_same(oracle, [input_case("numeric", t) for t in texts], allow_refusal=True)


@SETTINGS
@given(st.lists(st.text(PG_TEXT, max_size=80), min_size=1, max_size=8))
def test_name_input_is_clipped_like_namein(oracle: Oracle, texts: list[str]) -> None:
    assert_same(oracle, [input_case("name", t) for t in texts])


def test_name_input_clips_on_a_character_boundary(oracle: Oracle) -> None:
    texts = ["é" * n + "x" * m for n in (31, 32, 33) for m in (0, 1, 2)]
    texts += ["x" * n for n in (62, 63, 64, 65)] + ["\U0001f600" * 16 + "x"]
    assert_same(oracle, [input_case("name", t) for t in texts])


# ---------------------------------------------------------------- casts

# (SQL literal, type, Python value) of the sources the proxy casts from.
CAST_SOURCES: list[tuple[str, str, object]] = [
    *[(f"({v})::smallint", "smallint", v) for v in (0, -1, 32767, -32768)],
    *[
        (f"({v})::integer", "integer", v)
        for v in (0, 1, -1, 2, 32768, 2**31 - 1, -(2**31))
    ],
    *[(f"({v})::bigint", "bigint", v) for v in (-1, 2**31, 2**32, 2**63 - 1, -(2**63))],
    *[(f"'{v}'::oid", "oid", v) for v in (0, 1, 2**31, 2**32 - 1)],
    *[
        (f"'{v}'::numeric", "numeric", v)
        for v in ("1.5", "-2.5", "2.4999", "0.5", "-0.5", "2147483647.5", "1e3", "NaN")
    ],
    *[(f"'{v}'::numeric", "numeric", v) for v in ("Infinity", "99999999999999999999")],
    ("true", "boolean", True),
    ("false", "boolean", False),
    *[
        (f"{text_literal(v)}::{t}", t, types.name_in(v) if t == "name" else v)
        for v in ("12", " -3 ", "true", "x", U, "\\x41", "1.5", "é" * 40)
        for t in ("text", "character varying", "name")
    ],
    *[(bytea_literal(v), "bytea", v) for v in (b"", b"A\x00\\\xff")],
    (f"'{U}'::uuid", "uuid", U),
    *[(f"NULL::{t}", t, None) for t in ("smallint", "bigint", "oid", "numeric")],
    *[(f"NULL::{t}", t, None) for t in ("boolean", "bytea", "uuid", "text")],
]
CAST_TARGETS = [
    "smallint",
    "integer",
    "bigint",
    "oid",
    "numeric",
    "boolean",
    "text",
    "character varying",
    "name",
    "bytea",
    "uuid",
]


def cast_cases(
    cast: Callable[[object, str, str, str], object], bytea_output: str
) -> list[tuple[str, Callable[[], str | None]]]:
    def compute(value: object, source: str, target: str) -> str | None:
        result = cast(value, source, target, bytea_output)
        if result is None:
            return None
        if target == "boolean":
            return "true" if result else "false"
        return types.text_out(target, result, bytea_output)

    return [
        (f"({sql})::{target}", lambda v=value, s=source, t=target: compute(v, s, t))
        for sql, source, value in CAST_SOURCES
        for target in CAST_TARGETS
    ]


@pytest.mark.parametrize("bytea_output", ["hex", "escape"])
def test_casts_between_the_types_the_proxy_folds(
    oracle: Oracle, bytea_output: str
) -> None:
    assert_same(oracle, cast_cases(types.cast, bytea_output), bytea_output)


def test_evaluate_cast_value_matches_the_server(oracle: Oracle) -> None:
    assert_same(oracle, cast_cases(evaluate.cast_value, "hex"))


# ---------------------------------------------------------------- binary receive/send

OIDS = {t: types.lookup(t).oid for t in ("bytea", "bigint", "smallint", "integer",
        "text", "oid", "boolean", "uuid", "character varying", "name")}  # fmt: skip


def server_receive(
    conn: psycopg.Connection[Any], type_name: str, data: bytes
) -> Outcome:
    """Bind `data` as a binary parameter of `type_name`; read back its text form."""
    result = conn.pgconn.exec_params(
        b"SELECT $1::text", [data], [OIDS[type_name]], [1], 0
    )
    if result.status == pq.ExecStatus.FATAL_ERROR:
        state = result.error_field(pq.DiagnosticField.SQLSTATE) or b""
        message = result.error_field(pq.DiagnosticField.MESSAGE_PRIMARY) or b""
        return ("error", state.decode(), message.decode())
    return ("ok", (result.get_value(0, 0) or b"").decode())


def proxy_receive(type_name: str, data: bytes) -> Outcome:
    def text() -> str:
        value = types.binary_in(type_name, data, param=1)
        if type_name == "boolean":
            return "true" if value else "false"
        return types.text_out(type_name, value)

    return proxy(text)


RECEIVE_CASES = [
    *[
        (t, n)
        for t in ("smallint", "integer", "bigint", "oid", "uuid")
        for n in range(0, 18, 3)
    ],
    *[(t, n) for t in ("smallint", "integer", "bigint", "oid") for n in (2, 4, 8)],
    ("uuid", 16),
    *[("boolean", n) for n in (0, 1, 2)],
]
TEXT_BYTES = [b"", b"abc", b"\x00", b"a\x00b", b"\xff", b"\xc3\x28", b"\xe2\x82",
              b"\xe2\x82\xac", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf",
              b"ok\xf0\x9f\x98", "é".encode() * 40]  # fmt: skip


def test_binary_parameters_are_received_like_the_server(
    conn: psycopg.Connection[Any],
) -> None:
    cases = [(t, bytes(range(1, n + 1))) for t, n in RECEIVE_CASES]
    cases += [(t, b"\x00" * n) for t in ("boolean", "integer") for n in (1, 4)]
    cases += [(t, d) for t in ("text", "character varying", "name") for d in TEXT_BYTES]
    cases += [("bytea", d) for d in TEXT_BYTES]
    for type_name, data in cases:
        assert proxy_receive(type_name, data) == server_receive(
            conn, type_name, data
        ), (
            type_name,
            data,
        )


SEND_VALUES: list[tuple[str, object]] = [
    ("bytea", b"\x00\xffA"),
    *[("smallint", v) for v in (0, -1, 32767)],
    *[("integer", v) for v in (0, -1, 2**31 - 1, -(2**31))],
    *[("bigint", v) for v in (-(2**63), 2**63 - 1)],
    *[("oid", v) for v in (0, 2**32 - 1)],
    ("uuid", U),
    ("boolean", True),
    ("boolean", False),
    ("text", "caf\u00e9 \U0001f600"),
    ("name", "n"),
    ("character varying", "v"),
]


def test_binary_results_are_sent_like_the_server(conn: psycopg.Connection[Any]) -> None:
    for type_name, value in SEND_VALUES:
        literal = types.sql_literal(type_name, value)
        result = conn.pgconn.exec_params(
            f"SELECT {literal}".encode(), [], None, None, 1
        )
        assert result.get_value(0, 0) == types.binary_out(type_name, value), type_name


# ---------------------------------------------------------------- SQL literals

LITERAL_VALUES: list[tuple[str, object]] = [
    *SEND_VALUES,
    ("text", "it's a \\ back'slash\\"),
    ("text", "\\x41"),
    ("bytea", b""),
    ("bytea", b"\\'"),
    ("numeric", "1.50"),
    ("text", None),
    ("uuid", None),
]


@pytest.mark.parametrize("conforming", ["on", "off"])
def test_sql_literals_mean_the_same_whatever_standard_conforming_strings(
    conn: psycopg.Connection[Any], conforming: str
) -> None:
    conn.execute(f"SET standard_conforming_strings = {conforming}")
    try:
        for type_name, value in LITERAL_VALUES:
            literal = types.sql_literal(type_name, value)
            sql = f"SELECT {literal}, pg_typeof({literal})::text"
            result = conn.pgconn.exec_params(sql.encode(), [], None, None, 0)
            shown = result.get_value(0, 0)
            expected = None if value is None else types.text_out(type_name, value)
            assert shown == (None if expected is None else expected.encode()), literal
            assert result.get_value(0, 1) == type_name.encode(), literal
    finally:
        conn.execute("RESET standard_conforming_strings")
