"""rewriter.builtins against a real PostgreSQL: results and errors, exactly.

convert_to/convert_from over encoding names and invalid UTF-8, encode/decode in every
format (base64 line breaks, padding errors, escape round trips), length,
octet_length, repeat, the trim family, || and the overload find_builtin picks.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rewriter import builtins, types
from tests.rewriter.test_types_vs_server import (
    PG_TEXT,
    SETTINGS,
    Oracle,
    assert_same,
    bytea_literal,
    conn,
    oracle,
    text_literal,
)

__all__ = ["conn", "oracle"]  # module fixtures shared with the types tests

Case = tuple[str, Callable[[], str | None]]

ENCODING_NAMES = [
    "UTF8",
    "utf8",
    "UTF-8",
    "utf_8",
    "Unicode",
    "LATIN1",
    "latin-1",
    "ISO-8859-1",
    "iso_8859_1",
    "ISO8859-1",
    "SQL_ASCII",
    "sql-ascii",
    " utf8 ",
    "u.t.f.8",
    "",
    "utf9",
    "latin",
    "ascii",
    "UTF-16",
    "u\u0308tf8",
    "\u0130SO88591",
    "x" * 70,
    "utf8" + "-" * 70,
    "é" * 40,
]


def bytea_text(data: bytes | None, output: str = "hex") -> str | None:
    return None if data is None else types.bytea_out(data, output)


def convert_from_case(data: bytes, encoding: str) -> Case:
    sql = f"convert_from({bytea_literal(data)}, {text_literal(encoding)})"
    return sql, lambda: builtins.convert_from(data, encoding)


def convert_to_case(text: str, encoding: str) -> Case:
    sql = f"convert_to({text_literal(text)}, {text_literal(encoding)})"
    return sql, lambda: bytea_text(builtins.convert_to(text, encoding))


# ---------------------------------------------------------------- convert_from / to

INVALID_UTF8 = [
    b"",
    b"plain",
    b"\x00",
    b"a\x00b",
    b"\x00\xff",
    b"\xff\x00",
    b"\x80",
    b"\xc0\xaf",
    b"\xc3\x28",
    b"\xc3",
    b"\xe2\x82",
    b"\xe2\x82\xac",
    b"\xe2\x28\xa1",
    b"\xe2\x82A",
    b"\xed\xa0\x80",
    b"\xef\xbf\xbf",
    b"\xf0\x9f\x98\x80",
    b"\xf0\x9f\x98",
    b"\xf4\x90\x80\x80",
    b"\xf5\x80\x80\x80",
    b"\xf8\x88\x80\x80\x80",
    b"\xfe\xff",
    b"ok \xe9t\xe9",
    bytes(range(256)),
]


def test_convert_from_invalid_and_edge_bytes(oracle: Oracle) -> None:
    encodings = ["UTF8", "LATIN1", "SQL_ASCII"]
    cases = [convert_from_case(d, e) for d in INVALID_UTF8 for e in encodings]
    assert_same(oracle, cases)


def test_encoding_names_resolve_like_pg_char_to_encoding(oracle: Oracle) -> None:
    cases = [convert_from_case(b"caf\xc3\xa9", n) for n in ENCODING_NAMES]
    cases += [convert_to_case("caf\u00e9", n) for n in ENCODING_NAMES]
    assert_same(oracle, cases)


def test_every_known_encoding_name_is_known_or_refused(oracle: Oracle) -> None:
    """Aliases the proxy does not convert are refused, never called invalid."""
    names = list(builtins._ENCODING_NAMES)
    cases = [convert_from_case(b"abc", n) for n in names]
    cases += [convert_to_case("abc", n.upper()) for n in names]
    assert_same(oracle, cases, allow_refusal=True)
    server = oracle.run([sql for sql, _ in cases])
    assert not [o for o in server if "encoding name" in o[-1]]


UTF8ISH = st.one_of(
    st.binary(max_size=24),
    st.lists(
        st.sampled_from(
            [
                b"a",
                b"\x00",
                b"\xc3\xa9",
                b"\xe2\x82\xac",
                b"\xf0\x9f\x98\x80",
                b"\x80",
                b"\xc3",
                b"\xe2\x82",
                b"\xed\xa0\x80",
                b"\xf4\x90",
                b"\xff",
                b"\xc1\xbf",
            ]
        ),  # fmt: skip
        max_size=8,
    ).map(b"".join),
)


@SETTINGS
@given(
    st.lists(UTF8ISH, min_size=1, max_size=8),
    st.sampled_from(["UTF8", "utf-8", "LATIN1", "sql_ascii"]),
)
def test_convert_from_matches_pg_convert(
    oracle: Oracle, values: list[bytes], encoding: str
) -> None:
    assert_same(oracle, [convert_from_case(v, encoding) for v in values])


@SETTINGS
@given(
    st.lists(st.text(PG_TEXT, max_size=16), min_size=1, max_size=8),
    st.sampled_from(["UTF8", "Unicode", "LATIN1", "iso-8859-1", "SQL_ASCII"]),
)
def test_convert_to_matches_pg_convert(
    oracle: Oracle, texts: list[str], encoding: str
) -> None:
    assert_same(oracle, [convert_to_case(t, encoding) for t in texts])


def test_convert_to_latin1_reports_the_first_untranslatable_character(
    oracle: Oracle,
) -> None:
    texts = ["€", "a€", "ÿĀ", "é\U0001f600", "\u0100", "ok\u07ffz", "\uffff"]
    assert_same(oracle, [convert_to_case(t, "LATIN1") for t in texts])


# ---------------------------------------------------------------- encode / decode

FORMS = ["hex", "base64", "escape", "HEX", "Base64", "ESCAPE", "bogus", "", "hex "]


def encode_case(data: bytes, form: str) -> Case:
    sql = f"encode({bytea_literal(data)}, {text_literal(form)})"
    return sql, lambda: builtins.encode(data, form)


def decode_case(text: str, form: str, output: str = "hex") -> Case:
    sql = f"decode({text_literal(text)}, {text_literal(form)})"
    return sql, lambda: bytea_text(builtins.decode(text, form), output)


def test_encode_base64_breaks_lines_every_76_characters(oracle: Oracle) -> None:
    sizes = [0, 1, 2, 3, 55, 56, 57, 58, 59, 113, 114, 115, 171, 200]
    cases = [
        encode_case(bytes(range(n % 256)) * (n // 256 + 1), "base64") for n in sizes
    ]
    cases += [encode_case(bytes(n), "base64") for n in sizes]
    assert_same(oracle, cases)


@SETTINGS
@given(
    st.lists(st.binary(max_size=130), min_size=1, max_size=6), st.sampled_from(FORMS)
)
def test_encode_matches_binary_encode(
    oracle: Oracle, values: list[bytes], form: str
) -> None:
    assert_same(oracle, [encode_case(v, form) for v in values])


DECODE_EDGES = {
    "hex": ["", "0", "00", "0 0", " 00 ", "00\n11", "0g", "g0", "abc", "abg", "é0",
            "0é", "\v00", "DeadBeef", "0\t"],
    "base64": ["", "QQ==", "QUI=", "QUJD", "QQ", "QQ=", "Q===", "=", "==QQ", "Q=Q=",
               "QQ==QUJD", "QQ==Q", "QQ== ", "Q Q = =", "QUJD\nQUJD", "QUJ\r\nD",
               "QU.D", "QUJDé", "QUJD\v", "QQ=a", "QUI==", "QUI=QUJD===", "-_-_"],
    "escape": ["", "abc", "\\", "\\\\", "\\x41", "\\101", "\\400", "\\18", "a\\",
               "\\1", "\\12", "é\\351", "\\0000"],
}  # fmt: skip


@pytest.mark.parametrize("output", ["hex", "escape"])
def test_decode_edge_cases(oracle: Oracle, output: str) -> None:
    cases = [
        decode_case(text, form, output)
        for form, texts in DECODE_EDGES.items()
        for text in texts
    ]
    cases += [decode_case("00", form, output) for form in ("bogus", "Hex", "")]
    assert_same(oracle, cases, output)


ALPHABETS = {
    "hex": "0123456789abcdefABCDEF \n\t\rgé\v",
    "base64": "ABCabcxyz0189+/= \n\t\r.-é",
    "escape": "\\\\\\0123478ax é",
}


@SETTINGS
@given(st.data())
def test_decode_matches_binary_decode(oracle: Oracle, data: st.DataObject) -> None:
    form = data.draw(st.sampled_from(sorted(ALPHABETS)))
    texts = data.draw(
        st.lists(st.text(st.sampled_from(ALPHABETS[form]), max_size=20), max_size=8)
    )
    assert_same(oracle, [decode_case(t, form) for t in texts])


@SETTINGS
@given(
    st.lists(st.binary(max_size=100), min_size=1, max_size=6),
    st.sampled_from(FORMS[:3]),
)
def test_decode_of_encode_round_trips_on_both_sides(
    oracle: Oracle, values: list[bytes], form: str
) -> None:
    encoded = [builtins.encode(v, form) for v in values]
    assert [builtins.decode(e, form) for e in encoded] == values
    assert_same(oracle, [decode_case(e, form) for e in encoded])


# ---------------------------------------------------------------- length, repeat, trim


@SETTINGS
@given(st.lists(st.text(PG_TEXT, max_size=20), min_size=1, max_size=6))
def test_length_and_octet_length_of_text_and_bytea(
    oracle: Oracle, texts: list[str]
) -> None:
    cases: list[Case] = []
    for t in texts:
        raw = t.encode("utf-8")
        cases += [
            (f"length({text_literal(t)}::text)", lambda t=t: str(len(t))),
            (f"octet_length({text_literal(t)}::text)", lambda r=raw: str(len(r))),
            (f"length({bytea_literal(raw)})", lambda r=raw: str(len(r))),
            (f"octet_length({bytea_literal(raw)})", lambda r=raw: str(len(r))),
        ]
    assert_same(oracle, cases)


REPEATS = [
    ("x", 0),
    ("x", -5),
    ("", 100000),
    ("ab", 3),
    ("é", 2),
    ("x", 2**30 - 4),
    ("xy", 2**29),
    ("é", 2**29 - 2),
    ("abc", 2**31 - 1),
]
# The largest result allowed is 1 GB - 5 bytes: only the refused side is tried here.


def test_repeat_results_and_length_limit(oracle: Oracle) -> None:
    def compute(text: str, count: int) -> str | None:
        result = builtins._repeat(text, count)
        return f"{len(result)}:{result[:8]}"

    shown = "(SELECT length(r) || ':' || left(r, 8) FROM repeat({}, {}) r)"
    cases: list[Case] = [
        (shown.format(text_literal(t), n), lambda t=t, n=n: compute(t, n))
        for t, n in REPEATS
    ]
    assert_same(oracle, cases)


TRIMS = ["btrim", "ltrim", "rtrim"]


@SETTINGS
@given(
    st.lists(
        st.tuples(st.text("ab é", max_size=8), st.text("a é", max_size=3)),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from(TRIMS),
)
def test_trim_family_on_text_and_bytea(
    oracle: Oracle, pairs: list[tuple[str, str]], name: str
) -> None:
    cases: list[Case] = []
    for value, chars in pairs:
        text_fn = builtins.find_builtin(name, ["text", "text"])
        one_fn = builtins.find_builtin(name, ["text"])
        bytea_fn = builtins.find_builtin(name, ["bytea", "bytea"])
        assert text_fn and one_fn and bytea_fn
        raw, raw_chars = value.encode(), chars.encode()
        cases += [
            (
                f"{name}({text_literal(value)}::text, {text_literal(chars)}::text)",
                lambda f=text_fn, v=value, c=chars: str(f.function(v, c)),
            ),
            (
                f"{name}({text_literal(' ' + value + ' ')}::text)",
                lambda f=one_fn, v=value: str(f.function(" " + v + " ")),
            ),
            (
                f"{name}({bytea_literal(raw)}, {bytea_literal(raw_chars)})",
                lambda f=bytea_fn, v=raw, c=raw_chars: bytea_text(f.function(v, c)),
            ),
        ]
    assert_same(oracle, cases)


def test_concatenation_of_text_and_bytea(oracle: Oracle) -> None:
    text_cat = builtins.find_builtin("||", ["unknown", "unknown"])
    bytea_cat = builtins.find_builtin("||", ["bytea", "unknown"])
    assert text_cat is not None and bytea_cat is not None
    zero = bytea_literal(b"\x00")
    cases: list[Case] = [
        ("'a' || 'é'", lambda: str(text_cat.function("a", "é"))),
        (
            f"{zero} || E'\\\\x01'",
            lambda: bytea_text(bytea_cat.function(b"\x00", b"\x01")),
        ),
    ]
    assert_same(oracle, cases)


# ---------------------------------------------------------------- overload choice

PICK = r"""
CREATE FUNCTION pg_temp.pick(call text, OUT proc text, OUT state text, OUT msg text)
LANGUAGE plpgsql AS $f$
BEGIN
  BEGIN
    EXECUTE 'CREATE TEMP VIEW _pick AS SELECT ' || call;
    -- The outermost function or operator of the stored query tree.
    SELECT (regexp_match(r.ev_action::text, ':(?:op)?funcid (\d+)'))[1]::oid
           ::regprocedure::text
      INTO proc FROM pg_rewrite r WHERE r.ev_class = 'pg_temp._pick'::regclass;
    RAISE EXCEPTION 'undo';
  EXCEPTION WHEN OTHERS THEN
    IF proc IS NULL THEN
      GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    END IF;
  END;
END $f$
"""
ARG_TYPES = ["unknown", "text", "bytea", "integer", "bigint", "smallint", "numeric",
             "boolean", "uuid", "character varying", "name", "oid",
             "double precision", "inet", "timestamp with time zone"]  # fmt: skip
SERVER_NAMES = {"textcat": "||", "byteacat": "||"}


def _null(type_name: str) -> str:
    return "NULL" if type_name == "unknown" else f"NULL::{type_name}"


def _call_sql(name: str, arg_types: tuple[str, ...]) -> str:
    if name == "||":
        return f"{_null(arg_types[0])} || {_null(arg_types[1])}"
    return f"pg_catalog.{name}({', '.join(_null(t) for t in arg_types)})"


def _ours(proc: str | None) -> tuple[str, tuple[str, ...]] | None:
    """The server's pick as (builtin name, argument types) when it is one of ours."""
    if proc is None:
        return None
    head, _, args = proc.partition("(")
    head = head.strip('"')  # regprocedure quotes keyword names: "substring"
    name = SERVER_NAMES.get(head, head)
    arg_types = tuple(a for a in args.rstrip(")").split(",") if a)
    known = {(b.name, b.arg_types) for b in builtins.BUILTINS if b.function}
    return (name, arg_types) if (name, arg_types) in known else None


def test_find_builtin_picks_the_overload_the_server_picks(
    conn: psycopg.Connection,  # type: ignore[type-arg]
) -> None:
    conn.execute(PICK)
    calls = [
        (name, combo)
        for name in sorted({b.name for b in builtins.BUILTINS})
        for arity in sorted(
            {len(b.arg_types) for b in builtins.BUILTINS if b.name == name}
        )
        for combo in itertools.product(ARG_TYPES, repeat=arity)
    ]
    rows = conn.execute(
        "SELECT r.proc FROM unnest(%s::text[]) WITH ORDINALITY u(q, n),"
        " LATERAL pg_temp.pick(q) r ORDER BY n",
        [[_call_sql(name, combo) for name, combo in calls]],
    ).fetchall()
    mismatches = []
    for (name, combo), (proc,) in zip(calls, rows, strict=True):
        found = builtins.find_builtin(name, list(combo))
        mine = None if found is None else (found.name, found.arg_types)
        if mine != _ours(proc):
            mismatches.append((name, combo, proc, mine))
    assert not mismatches
