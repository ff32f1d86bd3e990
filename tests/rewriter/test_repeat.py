"""rewriter.repeat: where the server evaluates a call more than once."""

from __future__ import annotations

import pytest
from pglast import parse_sql

from rewriter.analyze import _calls
from rewriter.repeat import repeated_calls


def repeated(sql: str) -> list[str]:
    stmt = parse_sql(sql)[0].stmt
    found = repeated_calls(stmt)
    return [c.funcname[-1].sval for c in _calls(stmt) if id(c) in found]


@pytest.mark.parametrize(
    ("sql", "names"),
    [
        ("select pgsodium.f()", []),
        ("select pgsodium.f(), pgsodium.g()", []),
        ("select pgsodium.f() from t", ["f"]),
        ("select x from t where x = pgsodium.f()", ["f"]),
        ("select x from t order by pgsodium.f()", ["f"]),
        ("select x from t limit pgsodium.f()", []),
        ("select * from pgsodium.f()", []),
        # A set-returning function makes rows without FROM.
        ("select generate_series(1, 2), pgsodium.f()", ["generate_series", "f"]),
        ("select encode(pgsodium.f(), 'hex')", []),
        ("insert into t values (pgsodium.f()), (pgsodium.g())", []),
        ("insert into t select pgsodium.f() from u", ["f"]),
        ("insert into t values (1) returning pgsodium.f()", ["f"]),
        (
            "insert into t values (1) on conflict (a) do update set b = pgsodium.f()",
            ["f"],
        ),
        ("update t set a = pgsodium.f()", ["f"]),
        ("delete from t where a = pgsodium.f()", ["f"]),
        ("with c as (select pgsodium.f() x) select * from c, t", []),
        ("select * from t where a = (select pgsodium.f())", ["f"]),
        ("select pgsodium.f() over () ", []),
        ("select count(*) over (order by pgsodium.f()) from t", ["count", "f"]),
        # CREATE TABLE AS runs its query once; REFRESH runs a matview's again.
        ("create table n as select pgsodium.f()", []),
        ("create materialized view m as select pgsodium.f()", ["f"]),
        (
            "create materialized view m as with c as (select pgsodium.f() x) "
            "select * from c",
            ["f"],
        ),
    ],
)
def test_repeated_calls(sql: str, names: list[str]) -> None:
    assert repeated(sql) == names
