"""Reading a row input's raw value: the fast path for bytea's hex text gives the
bytes the server's own rules give, and any other form goes the long way."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.columns import _bytea_text
from rewriter import types


@given(st.binary(max_size=300))
def test_hex_text_reads_as_bytea_in_reads_it(data: bytes) -> None:
    text = b"\\x" + data.hex().encode()
    assert _bytea_text(text) == types.bytea_in(text.decode()) == data


@pytest.mark.parametrize(
    "text", [b"abc", b"a\\\\b", b"\\001\\377", b"\\x", b"\\xAB", b"\\x 41"]
)
def test_other_forms_read_as_bytea_in_reads_them(text: bytes) -> None:
    assert _bytea_text(text) == types.bytea_in(text.decode())
