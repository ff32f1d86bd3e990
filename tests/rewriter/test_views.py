"""Views over computed values on exact SQL: which reads are replaced by the view's
definition, and the text that replaces them (rewriter/views.py)."""

from __future__ import annotations

import pytest

from rewriter import tce, views
from rewriter.analyze import analyze

DEFINITION = (
    " SELECT acc.id,\n    pgsodium.crypto_aead_det_decrypt(acc.secret, ''::bytea, "
    "acc.kid) AS p\n   FROM public.acc;"
)
VIEW = views.View('"v"', "public.v", "id, p", DEFINITION)
BODY = (
    "(SELECT id, p FROM (SELECT acc.id,\n    pgsodium.crypto_aead_det_decrypt("
    "acc.secret, ''::bytea, acc.kid) AS p\n   FROM public.acc) _pgsp_view WHERE NOT "
    "EXISTS (SELECT FROM ONLY public.v WHERE false))"
)


def expand(sql: str) -> str:
    return views.expand(sql, tce.parse(sql), {'"v"': VIEW})


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("select * from v", f'select * from {BODY} AS "v"'),
        ("select x.p from v x where x.id = 1",
         f"select x.p from {BODY} x where x.id = 1"),
        ("select * from v as x(a, b)", f"select * from {BODY} as x(a, b)"),
        (
            "with d as (select p from v) select * from d",
            f'with d as (select p from {BODY} AS "v") select * from d',
        ),
        (
            "declare c cursor for select p from v",
            f'declare c cursor for select p from {BODY} AS "v"',
        ),
        (
            "select 1 where exists (select from v)",
            f'select 1 where exists (select from {BODY} AS "v")',
        ),
    ],
)  # fmt: skip
def test_reads_become_the_definition(sql: str, expected: str) -> None:
    assert expand(sql) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "insert into v (id) values (1)",
        "update v set id = 2",
        "delete from v",
        "with v as (select 1 as id) select * from v",  # the WITH query, not the view
        "select * into v from t",
        "select * from only v",
        "grant select on v to someone",
        "drop view v",
        "create view w as select * from v",  # a definition: read later, upstream
        "with x as (delete from v returning id) select * from x",
    ],
)
def test_other_statements_and_names_are_left_alone(sql: str) -> None:
    assert expand(sql) == sql


def test_the_expanded_text_plans_the_views_value_per_row() -> None:
    (plan,) = analyze(
        expand("select id, convert_from(p, 'utf8') from v"), on_path=False
    )
    assert [row.name for row in plan.rows] == ["convert_from"]


def test_read_names_lists_what_the_lookup_resolves() -> None:
    sql = "select * from v, public.w join x on true where exists (select from y)"
    assert views.read_names(tce.parse(sql)) == ['"public"."w"', '"v"', '"x"', '"y"']
    assert views.read_names(tce.parse("insert into v values (1)")) == []
