"""bytea[] as array_out and array_send write it: the rows crypto_sign_update_agg
collects with array_agg (rewriter.late), read back on exact bytes."""

from __future__ import annotations

import struct

import pytest

from rewriter import types
from rewriter.errors import RewriteError


def _send(dims: list[int], items: list[bytes | None]) -> bytes:
    """array_send: ndim, has-nulls flag, element type, (size, lower bound) per
    dimension, then each element as a length (-1 for NULL) and its bytes."""
    head = struct.pack("!iiI", len(dims), int(None in items), 17)
    head += b"".join(struct.pack("!ii", d, 1) for d in dims)
    body = b"".join(
        struct.pack("!i", -1) if i is None else struct.pack("!i", len(i)) + i
        for i in items
    )
    return head + body


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("{}", []),
        ('{"\\\\x01ff",NULL,"\\\\x"}', [b"\x01\xff", None, b""]),
        (
            '{{"\\\\x01","\\\\x02"},{NULL,"\\\\x0304"}}',
            [[b"\x01", b"\x02"], [None, b"\x03\x04"]],
        ),
        # bytea_output = escape: plain elements unquoted, specials quoted.
        ('{abc,"a b","q\\"x","\\\\001"}', [b"abc", b"a b", b'q"x', b"\x01"]),
    ],
)
def test_text_form(text: str, value: list[object]) -> None:
    assert types.text_in("bytea[]", text) == value


def test_binary_form() -> None:
    assert types.binary_in("bytea[]", _send([3], [b"\x01", None, b""])) == [
        b"\x01",
        None,
        b"",
    ]
    assert types.binary_in("bytea[]", _send([2, 2], [b"a", b"b", None, b"d"])) == [
        [b"a", b"b"],
        [None, b"d"],
    ]
    assert types.binary_in("bytea[]", struct.pack("!iiI", 0, 0, 17)) == []


@pytest.mark.parametrize("text", ["{", '{"\\\\x01"', "x", "{a}b"])
def test_malformed_text_is_22p02(text: str) -> None:
    with pytest.raises(RewriteError) as caught:
        types.text_in("bytea[]", text)
    assert caught.value.sqlstate == "22P02"


def test_truncated_binary_is_22p03() -> None:
    with pytest.raises(RewriteError) as caught:
        types.binary_in("bytea[]", _send([2], [b"abc", b"d"])[:-2])
    assert caught.value.sqlstate == "22P03"
