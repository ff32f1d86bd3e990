"""Compute a folded value node from literals, bind values and pgsodium calls.

Pure: bind values arrive decoded, pgsodium calls go to the `call` callback (the
keystore), and casts follow the server's input functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from keystore.catalogue import Signature

from . import types
from .errors import RewriteError
from .plan import (
    Apply,
    Call,
    Cast,
    Column,
    Const,
    FieldOf,
    Node,
    Param,
    Source,
    node_type,
)

CallFunction = Callable[[Signature, list[Any]], Any]
_TEXTLIKE = ("text", "character varying", "name", "unknown")


def cast_value(value: Any, source: str, target: str, bytea_output: str) -> Any:
    """The server's cast from `source` to `target` for the types the proxy folds."""
    if value is None or source == target:
        return value
    if source in _TEXTLIKE:
        return types.text_in(target, value)
    if target in _TEXTLIKE:
        return types.text_out(source, value, bytea_output)
    if isinstance(value, int) and target in ("smallint", "integer", "bigint", "oid"):
        return types.int_in(target, str(value))
    if isinstance(value, int) and target in ("numeric", "double precision"):
        return value
    # Any other pair goes through text, as an explicit I/O conversion cast does.
    return types.text_in(target, types.text_out(source, value, bytea_output))


def evaluate(
    node: Node,
    params: Mapping[int, Any],
    call: CallFunction,
    bytea_output: str = "hex",
    sources: Sequence[Any] = (),
    row: Mapping[int, Any] | None = None,
) -> Any:
    """The value of `node`; `sources` are FROM values, `row` the row inputs."""

    def value(inner: Node) -> Any:
        return evaluate(inner, params, call, bytea_output, sources, row)

    if isinstance(node, Const):
        return node.value
    if isinstance(node, Param):
        return params[node.number]
    if isinstance(node, Column):
        assert row is not None
        return row[node.index]
    if isinstance(node, Source):
        return sources[node.index]
    if isinstance(node, FieldOf):
        composite = value(node.node)
        return None if composite is None else composite[node.index]
    if isinstance(node, Cast):
        return cast_value(
            value(node.node), node_type(node.node), node.type, bytea_output
        )
    if isinstance(node, Apply):
        args = [value(a) for a in node.args]
        if node.builtin.strict and any(a is None for a in args):
            return None
        return node.builtin.function(*args)
    if isinstance(node, Call):
        return call(node.signature, [value(a) for a in node.args])
    raise RewriteError("XX000", f"unexpected node {type(node).__name__}")
