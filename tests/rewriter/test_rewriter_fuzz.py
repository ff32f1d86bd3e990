"""Hostile SQL: the rewriter fed a corpus and generated statements never fails with
anything but a RewriteError (which the proxy sends as an ErrorResponse), and never
plans a change to a statement that involves nothing of pgsodium, however many of
pgsodium's words it carries in literals, comments, identifiers or bodies.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewriter.analyze import analyze
from rewriter.errors import RewriteError

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
FUNCTIONS = Path(__file__).parent.parent / "data" / "pgsodium-3.1.11-functions.tsv"

# Words that make the proxy's cheap check look closer (proxy.intercept._TRIGGER).
WORDS = [
    "pgsodium", "crypto_aead_det_encrypt", "crypto_box", "derive_key", "create_key",
    "randombytes_buf", "sodium_bin2base64", "decrypted_key", "_proxy_raise",
    "pgsodium.crypto_aead_det_decrypt(x, y, z)", "key_uuid", "ü 日本", "'", '"', "$$",
]  # fmt: skip

# Statements that name pgsodium only where it is not a call, view or relation.
NOT_PGSODIUM = [
    "select 'pgsodium.crypto_aead_det_encrypt(1)'",
    "select 1 -- pgsodium.create_key()",
    "select /* crypto_box( */ 2",
    'select "pgsodium", "crypto_box(" from t',
    "select crypto_box, derive_key.x from derive_key",
    "select x.crypto_aead_det_encrypt(1) from x",
    "select public.create_key(), other.derive_key(1, 2)",
    "select 1 as decrypted_key, 2 as pgsodium",
    "select * from decrypted_keys, pgsodium_notes",
    "select $tag$ pgsodium.crypto_box() $tag$, $$create_key()$$",
    "select e'\\'pgsodium.create_key()', U&'pgsodium\\0041'",
    "comment on table t is 'see pgsodium.create_key()'",
    "copy (select 'sodium_x') to stdout",
    "explain select 'pgsodium.create_key()'",
    "prepare p as select 'pgsodium'",
    "do $$ begin raise notice 'pgsodium.create_key()'; end $$",
    "create table crypto_box (pgsodium text default 'derive_key(1)')",
    "select 'a' || 'pgsodium' from pg_class where relname like 'crypto_%'",
    "select count(*) filter (where 'create_key' = any(array['x'])) from t",
]


def _unchanged(sql: str, *, on_path: bool = False) -> None:
    plans = analyze(sql, on_path=on_path)
    assert not any(p.rewrites for p in plans), sql
    for plan in plans:
        assert plan.text in sql


@pytest.mark.parametrize("sql", NOT_PGSODIUM)
def test_pgsodium_words_outside_calls_plan_no_change(sql: str) -> None:
    _unchanged(sql)


def _corpus() -> list[Path]:
    """The SQL PostgreSQL ships (catalog views, information_schema, extensions):
    thousands of real statements, none of them pgsodium's."""
    found = glob.glob("/usr/share/postgresql/*/*.sql")
    found += glob.glob("/usr/share/postgresql/*/extension/*.sql")
    return sorted(Path(p) for p in found)


def test_the_sql_postgresql_ships_plans_no_change() -> None:
    files = _corpus()
    if not files:
        pytest.skip("no PostgreSQL share directory on this machine")
    statements = 0
    for path in files:
        # psql meta-commands (\echo, \quit) are not SQL.
        lines = path.read_text(errors="replace").splitlines()
        text = "\n".join(line for line in lines if not line.startswith("\\"))
        try:
            plans = analyze(text, on_path=True)
        except RewriteError:
            continue  # a syntax the parser refuses: refused, not crashed
        assert not any(p.rewrites for p in plans), path
        statements += len(plans)
    assert statements > 1000


# -- generated statements ----------------------------------------------------------

word = st.sampled_from(WORDS)
text_with_words = st.lists(st.one_of(word, st.text(max_size=6)), max_size=4).map(
    " ".join
)


def _literal(text: str) -> str:
    return "'" + text.replace("\0", "").replace("'", "''") + "'"


def _identifier(text: str) -> str:
    return '"' + (text.replace("\0", "").replace('"', '""') or "x") + '"'


def _dollar(text: str) -> str:
    return "$q$" + text.replace("\0", "").replace("$q$", "") + "$q$"


def _comment(text: str) -> str:
    clean = text.replace("\0", "").replace("*/", "").replace("/*", "")
    return f"/* {clean} */"


atoms = st.one_of(
    st.integers(-(2**40), 2**40).map(str),
    text_with_words.map(_literal),
    text_with_words.map(_dollar),
    st.sampled_from(["a", "t.b", "crypto_box", "derive_key", "pgsodium_col", "NULL"]),
    text_with_words.map(_identifier),
)


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    call = st.tuples(
        st.sampled_from(["upper", "length", "coalesce", "md5", "x.create_key"]),
        st.lists(inner, min_size=1, max_size=3),
    ).map(lambda f: f"{f[0]}({', '.join(f[1])})")
    operator = st.tuples(inner, st.sampled_from(["+", "||", "=", "<>", "and"]), inner)
    case = st.tuples(inner, inner, inner).map(
        lambda c: f"case when {c[0]} then {c[1]} else {c[2]} end"
    )
    return st.one_of(
        call,
        operator.map(" ".join),
        case,
        inner.map(lambda e: f"({e})"),
        st.tuples(inner, text_with_words).map(lambda c: f"{c[0]} {_comment(c[1])}"),
        st.tuples(inner, text_with_words).map(lambda c: f"{c[0]} -- {c[1]!r}\n"),
    )


expressions = st.recursive(atoms, _extend, max_leaves=8)


@st.composite
def select_statements(draw: st.DrawFn) -> str:
    items = draw(st.lists(expressions, min_size=1, max_size=4))
    sql = "select " + ", ".join(items)
    if draw(st.booleans()):
        sql += " from t join crypto_box c on c.id = t.id"
    if draw(st.booleans()):
        sql += " where " + draw(expressions)
    if draw(st.booleans()):
        sql += " order by 1 limit " + str(draw(st.integers(0, 9)))
    return sql


@FUZZ
@given(st.lists(select_statements(), min_size=1, max_size=3))
def test_generated_statements_without_pgsodium_plan_no_change(
    statements: list[str],
) -> None:
    sql = "; ".join(statements)
    try:
        plans = analyze(sql, on_path=False)
    except RewriteError as exc:
        # Only the parser may refuse: a generated statement can be ill-typed
        # nonsense, but nothing in it is pgsodium's.
        assert exc.sqlstate == "42601", (sql, exc)
        return
    assert not any(p.rewrites for p in plans), sql


def _pgsodium_names() -> list[str]:
    names = set()
    for line in FUNCTIONS.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            names.add(line.split("(", 1)[0])
    return sorted(names)


argument = st.one_of(
    atoms,
    st.sampled_from(["$1", "$2", "$1::bytea", "'\\x00ff'::bytea", "1::bigint"]),
    st.sampled_from(["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid", "now()"]),
    st.tuples(st.sampled_from(["key_id", "context", "message"]), atoms).map(
        lambda a: f"{a[0]} => {a[1]}"
    ),
)


@st.composite
def pgsodium_statements(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(_pgsodium_names()))
    args = ", ".join(draw(st.lists(argument, max_size=5)))
    call = f"pgsodium.{name}({args})"
    shape = draw(
        st.sampled_from(
            [
                "select {c}",
                "select {c} from t",
                "select a, {c} as x from t where a = {c}",
                "insert into t values ({c}) returning {c}",
                "update t set a = {c}",
                "select * from {c}",
                "select (select {c})",
                "select {c} from pgsodium.decrypted_key",
                "select case when a then {c} else {c} end, coalesce({c}, b) from t",
                "with w as (select {c} as x from t) select x from w",
                "select x from (select {c} as x from t) s order by 1",
                "select a from t where"
                " pgsodium.crypto_aead_det_decrypt(c, '', k) = {c}",
                "declare cur cursor for select a, {c} from t",
            ]
        )
    )
    return shape.format(c=call)


@FUZZ
@given(pgsodium_statements(), st.lists(st.integers(0, 3000), max_size=4))
def test_generated_pgsodium_calls_plan_or_refuse_never_crash(
    sql: str, declared: list[int]
) -> None:
    for on_path in (False, True):
        try:
            analyze(sql, on_path=on_path, declared=tuple(declared))
        except RewriteError as exc:
            assert len(exc.sqlstate) == 5, exc


@FUZZ
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=120), word)
def test_random_text_around_pgsodium_words_never_crashes(text: str, name: str) -> None:
    cut = len(text) // 2
    sql = (text[:cut] + name + text[cut:]).replace("\0", "")
    try:
        analyze(sql, on_path=True)
    except RewriteError:
        pass


def test_text_that_was_not_utf8_is_refused_with_22021() -> None:
    """The codec keeps bytes that are not UTF-8 as surrogate escapes."""
    sql = b"select pgsodium.derive_key(1, '\xe9')".decode("utf-8", "surrogateescape")
    with pytest.raises(RewriteError) as caught:
        analyze(sql, on_path=True)
    assert caught.value.sqlstate == "22021"
