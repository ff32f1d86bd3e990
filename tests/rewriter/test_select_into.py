"""SELECT … INTO writes its rows to a table: nothing computed in the result stream
can reach them, so values over rows are refused and constants are folded."""

from __future__ import annotations

import pytest

from rewriter.analyze import analyze
from rewriter.errors import RewriteError


@pytest.mark.parametrize(
    "sql",
    [
        "select id, pgsodium.crypto_aead_det_decrypt(c, ''::bytea, k) into x from t",
        "select id, decrypted_raw_key into x from pgsodium.decrypted_key",
    ],
)
def test_select_into_over_rows_is_refused(sql: str) -> None:
    with pytest.raises(RewriteError) as caught:
        analyze(sql, on_path=False)
    assert caught.value.sqlstate == "0A000"


def test_select_into_of_a_constant_call_folds_it_into_the_statement() -> None:
    sql = "select pgsodium.crypto_aead_det_encrypt('x'::bytea, ''::bytea, 1) into x"
    (plan,) = analyze(sql, on_path=False)
    assert plan.folds and not plan.outputs and not plan.rows
