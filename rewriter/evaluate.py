"""Compute a folded value node from literals, bind values and pgsodium calls.

Pure: bind values arrive decoded, pgsodium calls go to the `call` callback (the
keystore), and casts follow the server's input functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from keystore.catalogue import Signature

from . import types
from .errors import RewriteError
from .plan import (
    Aggregate,
    Apply,
    Call,
    Case,
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
    """The server's cast from `source` to `target` for the types the proxy folds
    (types.cast: pg_cast's own functions, e.g. booltext, not boolout)."""
    return types.cast(value, source, target, bytea_output)


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
        if node.number not in params:
            raise RewriteError("42P02", f"there is no parameter ${node.number}")
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
    if isinstance(node, Case):
        for condition, result in node.whens:
            if value(condition) is True:
                return value(result)
        return value(node.default)
    if isinstance(node, Aggregate):
        args = [None if a is None else (lambda a=a: value(a)) for a in node.args]
        return aggregate(node, value(node.rows), args, call)
    raise RewriteError("XX000", f"unexpected node {type(node).__name__}")


RowFunction = Callable[[Sequence[Any]], Any]


def compile_row(
    node: Node,
    call: CallFunction,
    bytea_output: str,
    params: Mapping[int, Any],
    sources: Sequence[Any] = (),
) -> RowFunction:
    """`node` as a function of one row's inputs, for values computed per row.

    Subtrees without row inputs are computed once here, as the server folds
    constants when it plans; pgsodium calls are never folded (some are volatile).
    """
    function, _ = _compile(node, call, bytea_output, params, sources)
    return function


def _compile(
    node: Node,
    call: CallFunction,
    bytea_output: str,
    params: Mapping[int, Any],
    sources: Sequence[Any],
) -> tuple[RowFunction, bool]:
    """(function of the row, whether it is constant)."""

    def sub(inner: Node) -> tuple[RowFunction, bool]:
        return _compile(inner, call, bytea_output, params, sources)

    if isinstance(node, Column):
        return itemgetter(node.index), False
    if isinstance(node, (Const, Param, Source)):
        value = evaluate(node, params, call, bytea_output, sources)
        return (lambda row: value), True
    if isinstance(node, FieldOf):
        inner, constant = sub(node.node)
        position = node.index

        def field(row: Sequence[Any]) -> Any:
            composite = inner(row)
            return None if composite is None else composite[position]

        return _fold(field, constant)
    if isinstance(node, Cast):
        inner, constant = sub(node.node)
        source, target = node_type(node.node), node.type
        return _fold(
            lambda row: cast_value(inner(row), source, target, bytea_output), constant
        )
    if isinstance(node, Apply):
        parts = [sub(a) for a in node.args]
        functions = [f for f, _ in parts]
        builtin = node.builtin

        function, strict = builtin.function, builtin.strict
        if len(parts) == 2 and parts[1][1] and not parts[0][1]:
            # convert_from(x, 'utf8'), encode(x, 'hex'), ...: the second is fixed
            first, fixed = functions[0], functions[1](())
            if strict and fixed is None:
                return (lambda row: None), False

            def apply_fixed(row: Sequence[Any]) -> Any:
                a = first(row)
                if strict and a is None:
                    return None
                return function(a, fixed)

            return apply_fixed, False
        if len(functions) == 2:
            first, second = functions

            def apply(row: Sequence[Any]) -> Any:
                a, b = first(row), second(row)
                if strict and (a is None or b is None):
                    return None
                return function(a, b)

        else:

            def apply(row: Sequence[Any]) -> Any:
                args = [f(row) for f in functions]
                if strict and None in args:
                    return None
                return function(*args)

        return _fold(apply, all(c for _, c in parts))
    if isinstance(node, Call):
        parts = [sub(a) for a in node.args]
        functions = [f for f, _ in parts]
        signature = node.signature
        bind = getattr(call, "bind", None)
        if bind is not None:
            # Constant arguments bound once (a key derived once, not per row).
            constants = {i: f(()) for i, (f, c) in enumerate(parts) if c}
            bound = bind(signature, constants)
            if bound is not None:
                varying = [f for f, c in parts if not c]
                if len(varying) == 1:  # decrypt(c, 'ad', key_id): the ciphertext
                    (only,) = varying
                    return (lambda row: bound(only(row))), False
                if len(varying) == 2:  # decrypt(c, ad, key_id): and the AD
                    first, second = varying
                    return (lambda row: bound(first(row), second(row))), False
                return (lambda row: bound(*[f(row) for f in varying])), False
        return (lambda row: call(signature, [f(row) for f in functions])), False
    if isinstance(node, Case):
        branches = [(sub(c)[0], sub(r)[0]) for c, r in node.whens]
        default = sub(node.default)[0]

        def case(row: Sequence[Any]) -> Any:
            for condition, result in branches:
                if condition(row) is True:
                    return result(row)
            return default(row)

        return case, False
    if isinstance(node, Aggregate):
        rows = sub(node.rows)[0]
        computed = [None if a is None else sub(a)[0] for a in node.args]
        return (
            lambda row: aggregate(
                node,
                rows(row),
                [None if f is None else (lambda f=f: f(row)) for f in computed],
                call,
            )
        ), False
    raise RewriteError("XX000", f"unexpected node {type(node).__name__}")


def aggregate(
    node: Aggregate,
    rows: Any,
    args: Sequence[Callable[[], Any] | None],
    call: CallFunction,
) -> Any:
    """An aggregate without an initial state: NULL over no rows; else the state
    function applied row by row, the state starting NULL (pgsodium's state
    functions start it with crypto_sign_init() or the row's initial state).
    `args` computes the arguments the proxy has (once a row, as the server
    evaluates an aggregate's arguments); None stands for a collected one."""
    if rows is None or rows == 0:
        return None
    several = sum(a is None for a in args) > 1
    elements = range(rows) if isinstance(rows, int) else rows
    state = None
    for element in elements:
        collected = iter(element if several else (element,))
        values = [next(collected) if a is None else a() for a in args]
        state = call(node.step, [state, *values])
    return state


def _fold(function: RowFunction, constant: bool) -> tuple[RowFunction, bool]:
    if not constant:
        return function, False
    value = function(())
    return (lambda row: value), True
