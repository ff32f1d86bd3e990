"""pgsodium calls over rows: arguments that come from each result row.

At analysis time every argument that depends on rows becomes a row input: the
database returns it as an extra result column (a possible key uuid also with its key
material, read by pgsodium._proxy_key_ref). Once the RowDescription gives those
columns' types the call is resolved as the server would resolve it, and the proxy
evaluates it row by row. Arguments that fold stay in the proxy: literals written by
the client (plaintexts among them) never go upstream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

from pglast import ast

from keystore.catalogue import overloads

from . import builtins, sqltext, types
from .compile import Compiler, NotFoldable, field_of, function_name, is_pgsodium_call
from .errors import RewriteError
from .plan import Apply, Call, Cast, Column, Const, Node, node_type
from .resolve import resolve


@dataclass(frozen=True, slots=True)
class RowInput:
    index: int


@dataclass(frozen=True, slots=True)
class LateCall:
    name: str
    args: tuple[Open, ...]
    named: tuple[str, ...]
    location: int


@dataclass(frozen=True, slots=True)
class LateApply:
    name: str
    args: tuple[Open, ...]


@dataclass(frozen=True, slots=True)
class LateField:
    node: Open
    name: str


Open = Union[Node, RowInput, LateCall, LateApply, LateField]


@dataclass(frozen=True, slots=True)
class Input:
    text: str  # the argument's SQL text
    key_ref: bool  # the database also returns pgsodium._proxy_key_ref(text)


@dataclass(frozen=True, slots=True)
class RowOutput:
    """A select-list item computed from each row."""

    span: tuple[int, int]
    name: str
    tree: Open
    inputs: tuple[Input, ...]
    candidates: frozenset[str]  # regprocedures it may resolve to


def _uuid_positions(name: str) -> tuple[set[int], set[str]]:
    positions: set[int] = set()
    names: set[str] = set()
    for sig in overloads(name):
        for index, param in enumerate(sig.params):
            if param.type == "uuid":
                positions.add(index)
                if param.name:
                    names.add(param.name)
    return positions, names


class RowCompiler:
    """Builds the open tree of one select-list item."""

    def __init__(
        self, compiler: Compiler, sql: str, toks: list[sqltext.Token], on_path: bool
    ) -> None:
        self.compiler = compiler
        self.sql = sql
        self.tokens = toks
        self.on_path = on_path
        self.inputs: list[Input] = []
        self.candidates: set[str] = set()

    def build(self, node: ast.Node) -> Open:
        try:
            return self.compiler.compile(node)
        except NotFoldable:
            pass
        if isinstance(node, ast.FuncCall):
            return self._call(node)
        if isinstance(node, ast.TypeCast):
            return LateApply("::" + _cast_target(node), (self.build(node.arg),))
        if isinstance(node, ast.A_Indirection) and len(node.indirection) == 1:
            field = node.indirection[0]
            if isinstance(field, ast.String):
                return LateField(self.build(node.arg), field.sval)
        raise NotFoldable(type(node).__name__, getattr(node, "location", None))

    def _call(self, node: ast.FuncCall) -> Open:
        schema, name = function_name(node)
        pgsodium = is_pgsodium_call(node, self.on_path)
        if pgsodium and not _is_crypto(name):
            # get_key_by_name(...) and the like run upstream, as a row input.
            raise NotFoldable(f"pgsodium.{name}(), which runs upstream", node.location)
        if not pgsodium and not (
            schema in (None, "pg_catalog") and builtins.is_builtin_name(name)
        ):
            raise NotFoldable(f"function {name}()", node.location)
        if pgsodium and any(s.language == "aggregate" for s in overloads(name)):
            # An aggregate folds many rows into one value: not a per-row value.
            raise NotFoldable(f"the aggregate pgsodium.{name}()", node.location)
        _, _, spans = sqltext.call_span(self.tokens, node.location)
        uuid_at, uuid_named = _uuid_positions(name) if pgsodium else (set(), set())
        args: list[Open] = []
        named: list[str] = []
        for position, (arg, span) in enumerate(
            zip(node.args or (), spans, strict=True)
        ):
            value = arg.arg if isinstance(arg, ast.NamedArgExpr) else arg
            if isinstance(arg, ast.NamedArgExpr):
                named.append(arg.name)
            is_key = (
                (arg.name in uuid_named)
                if isinstance(arg, ast.NamedArgExpr)
                else position in uuid_at
            )
            args.append(self._argument(value, span, is_key, arg))
        if not pgsodium:
            return LateApply(name, tuple(args))
        self.candidates |= {sig.regprocedure for sig in overloads(name)}
        return LateCall(name, tuple(args), tuple(named), node.location)

    def _argument(
        self, value: ast.Node, span: tuple[int, int], is_key: bool, arg: ast.Node
    ) -> Open:
        try:
            folded = self.build(value)
            # SECURITY: a raw key or key id written in the statement stays in the
            # proxy; only a key uuid goes upstream, to fetch its key row.
            if not is_key or not _may_be_uuid(folded):
                return folded
        except NotFoldable:
            pass
        if any(
            is_pgsodium_call(c, self.on_path) and _is_crypto(function_name(c)[1])
            for c in _calls(value)
        ):
            raise NotFoldable("a pgsodium call inside a row expression", None)
        start = span[0]
        if isinstance(arg, ast.NamedArgExpr):
            text = self.sql[span[0] : span[1]]
            for arrow in (":=", "=>"):
                if arrow in text:
                    start = span[0] + text.index(arrow) + len(arrow)
                    break
        self.inputs.append(Input(self.sql[start : span[1]].strip(), is_key))
        return RowInput(len(self.inputs) - 1)


def _is_crypto(name: str) -> bool:
    """A function the proxy evaluates (not key management, which runs upstream)."""
    return any(sig.kind == "crypto" for sig in overloads(name))


def _may_be_uuid(node: Open) -> bool:
    kind = (
        node_type(node)
        if not isinstance(node, (RowInput, LateCall, LateApply, LateField))
        else None
    )
    if kind == "uuid":
        return True
    if kind == "unknown" and isinstance(node, Const) and isinstance(node.value, str):
        try:
            types.uuid_in(node.value)
        except RewriteError:
            return False
        return True
    return False


def _cast_target(node: ast.TypeCast) -> str:
    from .compile import type_name

    return type_name(node.typeName)


def _calls(node: ast.Node) -> list[ast.FuncCall]:
    from .analyze import _calls as collect

    return collect(node)


# -- resolution once the row inputs' types are known --------------------------------


def resolve_open(tree: Open, input_types: Sequence[str]) -> Node:
    """A concrete value tree: row inputs typed, overloads chosen, casts inserted."""
    if isinstance(tree, RowInput):
        return Column(tree.index, input_types[tree.index])
    if isinstance(tree, LateCall):
        args = [resolve_open(a, input_types) for a in tree.args]
        bound = resolve(
            tree.name, [node_type(a) for a in args], tree.named, tree.location + 1
        )
        from .compile import default_value

        filled = []
        for param, slot in zip(bound.signature.params, bound.slots, strict=True):
            value = default_value(param.default) if slot is None else args[slot]
            filled.append(_coerce(value, param.type))
        return Call(bound.signature, tuple(filled), tree.location)
    if isinstance(tree, LateApply):
        args = [resolve_open(a, input_types) for a in tree.args]
        if tree.name.startswith("::"):
            return Cast(args[0], tree.name[2:])
        found = builtins.find_builtin(tree.name, [node_type(a) for a in args])
        if found is None:
            shown = ", ".join(node_type(a) for a in args)
            raise RewriteError("42883", f"function {tree.name}({shown}) does not exist")
        return Apply(
            found,
            tuple(
                _coerce(a, "text" if t == "name" else t)
                for a, t in zip(args, found.arg_types, strict=True)
            ),
        )
    if isinstance(tree, LateField):
        return field_of(resolve_open(tree.node, input_types), tree.name)
    return tree


def _coerce(value: Node, target: str) -> Node:
    if node_type(value) == target:
        return value
    return Cast(value, target)


def input_columns(marker: str, index: int, inputs: Sequence[Input]) -> str:
    """The upstream select-list text that stands for a RowOutput."""
    parts = []
    for number, item in enumerate(inputs):
        alias = sqltext.quote_ident(f"{marker}r{index}_{number}")
        parts.append(f"({item.text}) AS {alias}")
        if item.key_ref:
            ref = sqltext.quote_ident(f"{marker}r{index}_{number}k")
            parts.append(f"pgsodium._proxy_key_ref(({item.text})) AS {ref}")
    return ", ".join(parts)


__all__ = [
    "Column",
    "Const",
    "Input",
    "RowCompiler",
    "RowOutput",
    "input_columns",
    "resolve_open",
]
