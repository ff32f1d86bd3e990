"""DECLARE … CURSOR: planned as its select when rows are computed, else whole."""

from __future__ import annotations

import pytest

from rewriter.analyze import analyze

OVER_ROWS = (
    "DECLARE {name} CURSOR FOR SELECT id, pgsodium.crypto_aead_det_decrypt("
    "c, ''::bytea, k) FROM t"
)


@pytest.mark.parametrize(
    ("name", "cursor"), [("c1", "c1"), ('"Mixed Case"', "Mixed Case"), ("UP", "up")]
)
def test_cursor_over_rows_names_its_cursor_as_fetch_will(name: str, cursor: str):
    (plan,) = analyze(OVER_ROWS.format(name=name), on_path=False)
    assert plan.cursor == cursor
    assert plan.rows and plan.text.startswith("DECLARE")


def test_cursor_over_folded_calls_is_planned_as_a_whole_statement() -> None:
    sql = (
        "DECLARE c BINARY CURSOR WITH HOLD FOR SELECT g,"
        " pgsodium.crypto_aead_det_encrypt('x'::bytea, ''::bytea, 1)"
        " FROM generate_series(1, 3) g"
    )
    (plan,) = analyze(sql, on_path=False)
    assert plan.cursor is None
    assert plan.folds and not plan.rows and not plan.outputs


def test_cursor_over_nothing_of_pgsodium_is_not_rewritten() -> None:
    (plan,) = analyze("DECLARE c CURSOR FOR SELECT 'pgsodium' FROM t", on_path=True)
    assert plan.cursor is None and not plan.rewrites
