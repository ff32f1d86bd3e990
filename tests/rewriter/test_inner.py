"""Per-row values through any number of query levels (rewriter.inner), on exact SQL:
what goes upstream, and what is refused before anything does."""

from __future__ import annotations

import pytest

from rewriter.analyze import analyze
from rewriter.errors import RewriteError
from rewriter.render import render

D = "pgsodium.crypto_aead_det_decrypt(secret, ''::bytea, kid)"
M = "_M_"


def upstream(sql: str) -> str:
    (plan,) = analyze(sql, on_path=False)
    return render(plan, M, lambda i, t: f"$F{i}", lambda i: ["x"] * 5)


def computed(row: int) -> str:
    """The row inputs of D (its literal stays in the proxy), computed where D
    stands, for RowOutput `row`, and the `true` that says its row is there."""
    r = f'"{M}r{row}_'
    return (
        f'(secret) AS {r}0", (kid) AS {r}1", pgsodium._proxy_key_ref((kid)) AS '
        f'{r}1k", (true) AS {r}2"'
    )


def passed(row: int, qualifier: str | None, names: str = "0 1 1k 2") -> str:
    """The same inputs as the level below passes them up."""
    q = "" if qualifier is None else f'"{qualifier}".'
    return ", ".join(f'{q}"{M}r{row}_{n}"' for n in names.split())


CASES = [
    # Three levels, `*` at every one: only the level that computes changes.
    (
        f"select * from (select * from (select id, {D} p from acc) a) b",
        f"select * from (select * from (select id, {computed(0)} from acc) a) b",
    ),
    # By name at every level, renamed on the way.
    (
        f"select convert_from(b.q, 'utf8') from (select a.p as q, id from "
        f"(select id, {D} p from acc) a) b",
        f"select {passed(0, 'b')} from (select {passed(0, 'a')}, id from "
        f"(select id, {computed(0)} from acc) a) b",
    ),
    # WITH queries reading each other.
    (
        f"with d as (select id, {D} p from acc), e as (select * from d) "
        "select convert_from(p, 'utf8') from e",
        f"with d as (select id, {computed(0)} from acc), e as (select * from d) "
        f"select {passed(0, 'e')} from e",
    ),
    # A function the proxy evaluates, one level down; the level above passes it.
    (
        f"select * from (select t from (select convert_from(p, 'utf8') t from "
        f"(select {D} p from acc) a) b) c",
        f"select * from (select {passed(0, 'b', '0 1 1k 2 3')} from (select "
        f'{passed(0, "a")}, (true) AS "{M}r0_3" from (select {computed(0)} from '
        "acc) a) b) c",
    ),
    # A WITH query read twice, by name: each read takes its own columns.
    (
        f"with d as (select id, {D} p from acc) select length(a.p), length(b.p) "
        "from d a join d b using (id)",
        f"with d as (select id, {computed(0)}, {computed(1)} from acc) select "
        f"{passed(0, 'a')}, {passed(1, 'b')} from d a join d b using (id)",
    ),
    # A value nothing reads becomes a NULL column, at every level.
    (
        f"select id from (select id, p from (select id, {D} p from acc) a) b",
        'select id from (select id, NULL AS "p" from (select id, NULL AS "p" '
        "from acc) a) b",
    ),
    # A WITH query nothing names is never run: its value is a NULL column.
    (
        f"with d as (select {D} p from acc) select 1",
        'with d as (select NULL AS "p" from acc) select 1',
    ),
    # LATERAL: the value's inputs are computed in the LATERAL subquery's scope.
    (
        f"select a.id, l.p from acc a, lateral (select {D} p) l",
        f"select a.id, {passed(0, 'l')} from acc a, lateral (select {computed(0)}) l",
    ),
    # A subquery of the outer query's join.
    (
        f"select o.tag, convert_from(s.p, 'utf8') from other o join (select id, "
        f"{D} p from acc) s on s.id = o.id where o.id > 1 order by o.id",
        f"select o.tag, {passed(0, 's')} from other o join (select id, "
        f"{computed(0)} from acc) s on s.id = o.id where o.id > 1 order by o.id",
    ),
]


ALIAS_LISTS = [
    # Each name that stands for a value becomes the names of its columns.
    (
        f"select b from (select id, {D} p from acc) as s(a, b)",
        f"select {passed(0, 's')} from (select id, {computed(0)} from acc) as "
        f's(a, "{M}r0_0", "{M}r0_1", "{M}r0_1k", "{M}r0_2")',
    ),
    (
        f'select * from (select {D} p, id from acc) s(a, "B")',
        f"select * from (select {computed(0)}, id from acc) "
        f's("{M}r0_0", "{M}r0_1", "{M}r0_1k", "{M}r0_2", "B")',
    ),
    # A list that stops before the value leaves it alone.
    (
        f"select a from (select id, {D} p from acc) s(a)",
        'select a from (select id, NULL AS "p" from acc) s(a)',
    ),
    # WITH d(…) and a reference's own list, both.
    (
        f"with d(x, y) as (select id, {D} p from acc) select n from d q(m, n)",
        f'with d(x, "{M}r0_0", "{M}r0_1", "{M}r0_1k", "{M}r0_2") as (select id, '
        f"{computed(0)} from acc) select {passed(0, 'q')} from d "
        f'q(m, "{M}r0_0", "{M}r0_1", "{M}r0_1k", "{M}r0_2")',
    ),
]


@pytest.mark.parametrize(("sql", "expected"), CASES + ALIAS_LISTS)
def test_inputs_go_up_through_every_level(sql: str, expected: str) -> None:
    assert upstream(sql) == expected


def test_decrypted_key_one_level_down_is_written_out_as_pgsodium_defines_it() -> None:
    out = upstream("select * from (select * from pgsodium.decrypted_key) k")
    assert out.startswith(
        'select * from (select "decrypted_key".id, "decrypted_key".status, '
    )
    assert '("decrypted_key".raw_key IS NULL) AS "_M_r0_0"' in out
    assert 'pgsodium._proxy_key_ref(("decrypted_key".parent_key)) AS "_M_r0_4k"' in out
    assert out.endswith(
        '"decrypted_key".raw_key_nonce, "decrypted_key".parent_key, '
        '"decrypted_key".comment from pgsodium.decrypted_key) k'
    )
    assert "crypto_aead_det_decrypt" not in out
    (plan,) = analyze(
        "select k.id, length(k.decrypted_raw_key) from (select d.id, "
        "d.decrypted_raw_key from pgsodium.decrypted_key d) k",
        on_path=False,
    )
    assert [row.name for row in plan.rows] == ["length"]


def test_decrypted_key_and_a_subquerys_value_in_one_item() -> None:
    (plan,) = analyze(
        "select convert_from(s.p, 'utf8') || encode(decrypted_raw_key, 'hex') from "
        f"pgsodium.decrypted_key, (select {D} p from acc) s",
        on_path=False,
    )
    (row,) = plan.rows
    assert [i.path for i in row.inputs][:3] == [((0, "s"),)] * 3
    assert all(i.path == () for i in row.inputs[3:])


def test_names_and_positions_of_values_that_come_up() -> None:
    (plan,) = analyze(
        f"with d as (select {D} p, {D} q from acc) select convert_from(s.q, 'utf8'), "
        "a.* from (select q from d) s, (select p as renamed from d) a",
        on_path=False,
    )
    assert [row.name for row in plan.rows] == ["convert_from", "renamed"]
    assert [row.span[0] >= 0 for row in plan.rows] == [True, False]


REFUSED = [
    # Where the database would need the value, at any level.
    (f"select * from (select p from (select {D} p from acc) a where p is null) b",
     '"p" in WHERE'),
    (f"select * from (select * from (select {D} p from acc) a order by p) b",
     'ORDER BY "p"'),
    (f"select * from (select * from (select {D} p from acc) a order by 1) b",
     "ORDER BY 1"),
    (f"select * from (select a.p from (select {D} p from acc) a group by a.p) b",
     '"a.p" in GROUP BY'),
    (f"select * from (select distinct * from (select {D} p from acc) a) b",
     "DISTINCT"),
    (f"select * from (select x.p from (select id, {D} p from acc) x join other o "
     "on o.tag = x.p::text) b", '"x.p" in JOIN ON'),
    (f"select count(p) from (select * from (select {D} p from acc) a) b",
     "aggregate count()"),
    (f"select * from (select max(p) m from (select {D} p from acc) a) b",
     "aggregate max()"),
    (f"select row_number() over (order by p) from (select {D} p from acc) b",
     "window function"),
    (f"select * from (select {D} p from acc) s where exists (select 1 from other "
     "where other.tag::bytea = s.p)", '"s.p" in WHERE'),
    (f"select * from (select {D} p from acc) s, lateral (select s.p q) l",
     '"s.p"'),
    (f"select * from (select {D} p from acc) s, unnest(array[s.p]) u",
     '"s.p" in a function in FROM'),
    (f"select to_json(s) from (select {D} p from acc) s", '"s" in function to_json()'),
    (f"select s from (select {D} p from acc) s", '"s"'),
    (f"select p = 'x' from (select {D} p from acc) s", '"p" in operator ='),
    (f"select upper(convert_from(p, 'utf8')) from (select {D} p from acc) s", '"p"'),
    # The fallbacks that would have had the database compute over the value.
    (f"select pgsodium.crypto_generichash(convert_to(upper(convert_from(p, 'utf8')),"
     f" 'utf8')) from (select {D} p from acc) s", '"p" in function upper()'),
    (f"select case when p is null then 'x' else convert_from(p, 'utf8') end from "
     f"(select {D} p from acc) s", '"p" in CASE'),
    (f"select p || upper(q::text)::bytea from (select {D} p, {D} q from acc) s",
     '"q" in function upper()'),
    (f"select (select pgsodium.crypto_generichash(s.p) from other o where o.id = 1)"
     f" from (select {D} p from acc) s", '"s.p" in a subquery'),
    # Joins over the value's column, or renaming it.
    (f"select * from (select id, {D} p from acc) s natural join other", "NATURAL"),
    (f"select * from (select id, {D} p from acc) s join (select id, 'x'::bytea p "
     "from other) o using (p)", 'USING ("p")'),
    (f"select j.p from ((select {D} p from acc) s join other o on true) j",
     "join with an alias"),
    # Column alias lists over a query whose columns a `*` hides.
    (f"select * from (select * from (select id, {D} p from acc) s) t(a, b)",
     "alias list"),
    (f"with d as (select *, 1 from (select {D} p from acc) s) select * from d x(y)",
     "alias list"),
    # SECURITY: (composite).* expands too; an alias list placed by position would
    # put the proxy's names on the client's own columns.
    (f"with d(x, p, r1) as (select (a).*, {D} p from acc a) select p from d",
     "alias list"),
    (f"select * from (select (a).*, {D} p from acc a) s(x, q, r1)", "alias list"),
    # WITH queries read where the analysis does not follow them.
    (f"with d as (select id, {D} p from acc) select id from d where exists "
     "(select 1 from d d2 where d2.p is null)", 'WITH query "d"'),
    (f"with d as (select id, {D} p from acc) select (select p from d limit 1)",
     "LIMIT in a scalar subquery"),
    (f"with d as (select id, {D} p from acc) select * from d a, d b", "passed up"),
    (f"with d as (select id, {D} p from acc) select * from (select * from d) a, "
     "(select p from d) b", 'named more than once and read through *'),
    (f"with recursive d as (select {D} p from acc) select * from d", "WITH query"),
    (f"select * from (select {D} p from acc union select {D} from acc) u",
     "UNION over"),
    (f"select * from (select * from acc union all select {D}, 1, kid from acc) u",
     "* in a branch of UNION ALL"),
    (f"select * from (select (a).* from acc a union all select {D}, 1, kid "
     "from acc) u", "* in a branch of UNION ALL"),
    (f"select {D}, (a).* from acc a union all select (f()).*, 1 from acc",
     "* in a branch of UNION ALL"),
    (f"select *, p from (select * from (select {D} p from acc) a) b", "passed up"),
    # A function around the call itself, in the outermost select list.
    (f"select upper(convert_from({D}, 'utf8')) from acc", "in function upper()"),
    (f"select char_length(convert_from({D}, 'utf8')) from acc",
     "in function char_length()"),
    (f"select md5({D}) from acc", "in function md5()"),
    (f"select * from (select *, p q from (select {D} p from acc) a) b", "passed up"),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "named"), REFUSED)
def test_value_the_database_would_need_is_refused(sql: str, named: str) -> None:
    with pytest.raises(RewriteError) as caught:
        analyze(sql, on_path=False)
    assert caught.value.sqlstate == "0A000", caught.value.message
    assert caught.value.message.startswith("pgsodium-proxy cannot evaluate")
    assert named in caught.value.message


@pytest.mark.parametrize(
    "sql",
    [
        f"select p from (select {D} p from acc) a, (select {D} p from acc) b",
        f"select a.p, p from (select {D} p from acc) a, (select {D} p from acc) b",
        f"select * from (select s.p from (select {D} p, 1 p from acc) s) t",
    ],
)
def test_an_ambiguous_name_gets_postgresqls_42702(sql: str) -> None:
    with pytest.raises(RewriteError) as caught:
        analyze(sql, on_path=False)
    assert caught.value.sqlstate == "42702"
    assert caught.value.message == 'column reference "p" is ambiguous'


def test_refusal_points_at_the_reference() -> None:
    sql = f"select * from (select p from (select {D} p from acc) a where p > '') b"
    with pytest.raises(RewriteError) as caught:
        analyze(sql, on_path=False)
    assert sql[caught.value.position - 1 :].startswith("p > ''")


@pytest.mark.parametrize(
    "sql",
    [
        "select * from (select * from (select id from acc) a) b",
        "with d as (select * from t), e as (select * from d) select * from e",
        "select * from (select 1) s(a), lateral (select s.a) l natural join x",
    ],
)
def test_statements_without_pgsodium_plan_no_change(sql: str) -> None:
    (plan,) = analyze(sql, on_path=True)
    assert not plan.rewrites and not plan.inner
