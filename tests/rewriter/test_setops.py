"""UNION ALL over per-row values (rewriter.setops) and scalar subqueries over
levels below (rewriter.scalar_levels), on exact SQL: what goes upstream, and what
is refused before anything does."""

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


def columns(spec: str, first: int = 0) -> str:
    """Row inputs of RowOutput 0 from number `first` on: `c:text` computed, `n`
    NULL, `p:q` passed up by the level that names the item's query q."""
    out = []
    for number, part in enumerate(spec.split(), start=first):
        kind, _, text = part.partition(":")
        alias = f'"{M}r0_{number}"'
        if kind == "c":
            out.append(f"({text}) AS {alias}")
        elif kind == "k":
            out.append(f'pgsodium._proxy_key_ref(({text})) AS {alias[:-1]}k"')
        elif kind == "nk":
            out.append(f'NULL AS {alias[:-1]}k"')
        else:
            out.append(f"NULL AS {alias}")
    return ", ".join(out)


def own(first: int, tagged: int = 2) -> str:
    """D's inputs computed, its `true`, and the branch's tag."""
    parts = [f'(secret) AS "{M}r0_{first}"', f'(kid) AS "{M}r0_{first + 1}"']
    parts.append(f'pgsodium._proxy_key_ref((kid)) AS "{M}r0_{first + 1}k"')
    parts += [f'(true) AS "{M}r0_{first + i}"' for i in range(2, 2 + tagged)]
    return ", ".join(parts)


def nulls(first: int, count: int, keys: tuple[int, ...] = ()) -> str:
    parts = []
    for number in range(first, first + count):
        parts.append(f'NULL AS "{M}r0_{number}"')
        if number in keys:
            parts.append(f'NULL AS "{M}r0_{number}k"')
    return ", ".join(parts)


CASES = [
    # The outermost query: each branch gives both branches' columns.
    (
        f"select id, {D} p from a union all select id, tag from b",
        f"select id, {own(0)}, {nulls(4, 2)} from a union all select id, "
        f'{nulls(0, 4, (1,))}, (tag) AS "{M}r0_4", (true) AS "{M}r0_5" from b',
    ),
    # A subquery in FROM: the query above passes every column of both.
    (
        f"select u.p from (select {D} p from a union all select {D} from b) u",
        "select "
        + ", ".join(f'"u"."{M}r0_{n}"' for n in "0 1 1k 2 3 4 5 5k 6 7".split())
        + f" from (select {own(0)}, {nulls(4, 4, (5,))} from a union all select "
        f"{nulls(0, 4, (1,))}, {own(4)} from b) u",
    ),
    # A literal branch stays in the proxy.
    (
        f"select {D} p from a union all select 'x'",
        f"select {own(0)}, {nulls(4, 1)} from a union all select "
        f'{nulls(0, 4, (1,))}, (true) AS "{M}r0_4"',
    ),
]


@pytest.mark.parametrize(("sql", "expected"), CASES)
def test_union_all_branches_give_each_others_columns_as_null(
    sql: str, expected: str
) -> None:
    assert upstream(sql) == expected


def test_scalar_subquery_over_a_level_reads_all_inputs_from_one_evaluation() -> None:
    """The inputs come from one record of one evaluation; each input's own
    column only types it (LIMIT 0: never run)."""
    sql = (
        f"select (select s.p from (select id, {D} p from a) s where s.id = o.id) from o"
    )
    body = f" from (select id, {own(0, tagged=1)} from a) s where s.id = o.id"
    parts = [f'(SELECT "s"."{M}r0_0" {body} LIMIT 0) AS "{M}r0_0"']
    parts.append(f'(SELECT "s"."{M}r0_1" {body} LIMIT 0) AS "{M}r0_1"')
    parts.append(f'NULL::text AS "{M}r0_1k"')
    parts.append(f'(SELECT "s"."{M}r0_2" {body} LIMIT 0) AS "{M}r0_2"')
    parts.append(f'(SELECT (true) {body} LIMIT 0) AS "{M}r0_3"')
    fields = ", ".join(f'"s"."{M}r0_{n}"' for n in "0 1 1k 2".split())
    parts.append(f'(SELECT ROW({fields}, (true)) {body}) AS "{M}r0_p"')
    assert upstream(sql) == f"select {', '.join(parts)} from o"


REFUSED = [
    (f"select {D} from a union select {D} from b", "UNION over"),
    (f"select {D} from a intersect all select {D} from b", "INTERSECT over"),
    (f"select {D} from a except select {D} from b", "EXCEPT over"),
    (f"select {D} from a union all select {D} from b union all select {D} from c",
     "more than two"),
    (f"(select {D} from a union all select {D} from b) union select {D} from c",
     "UNION over"),
    (f"select {D} p from a union all select {D} from b order by p", "ORDER BY"),
    (f"select {D}, id from a union all select {D}, id from b order by 2",
     "ORDER BY 2"),
    (f"select * from (select {D} p from a union all select {D} from b) u "
     "group by p", "GROUP BY"),
    (f"select (select s.p from (select {D} p from a) s limit 1)", "LIMIT"),
    (f"select (select s.p from (select id, {D} p from a) s where s.id = "
     "length(pgsodium.crypto_aead_det_noncegen()))", "for each row"),
    (f"select {D} from a union all values ('x'::bytea)", "VALUES in a branch"),
    (f"values ('x'::bytea) union all select {D} from a", "VALUES in a branch"),
]  # fmt: skip

# One evaluation returns every input, so what picks rows below is PostgreSQL's.
PICKED_BY_THE_DATABASE = [
    f"select (select s.p from (select id, {D} p from a) s where s.id = nextval('q'))",
    f"select (select s.p from (select id, {D} p from a order by id limit 1) s)",
    f"select (select s.p from (select {D} p from a union all select {D} from b) s)",
    f"select (select s.p from (select id, {D} p from a) s where s.id === 1)",
]


@pytest.mark.parametrize("sql", PICKED_BY_THE_DATABASE)
def test_scalar_subquery_over_rows_the_database_picks_reads_one_record(
    sql: str,
) -> None:
    rendered = upstream(sql)
    assert rendered.count("(SELECT ROW(") == 1
    assert rendered.count(" LIMIT 0) AS ") >= 4  # one per input, typing it


@pytest.mark.parametrize(("sql", "named"), REFUSED)
def test_what_the_database_would_evaluate_is_refused(sql: str, named: str) -> None:
    with pytest.raises(RewriteError) as caught:
        analyze(sql, on_path=False)
    assert caught.value.sqlstate == "0A000"
    assert named in caught.value.message


def test_branches_with_different_numbers_of_columns_get_42601() -> None:
    with pytest.raises(RewriteError) as caught:
        analyze(f"select {D}, 1 from a union all select {D} from b", on_path=False)
    assert caught.value.sqlstate == "42601"


@pytest.mark.parametrize(
    "sql",
    [
        "values (1) union all select id from a",
        "select 1 from a except values (2)",
        "values (1, 'a') intersect select id, tag from b",
    ],
)
def test_a_values_branch_over_no_computed_value_goes_up_as_it_is(sql: str) -> None:
    """A VALUES list as a set operation's branch names its columns column1…"""
    assert upstream(sql) == sql
