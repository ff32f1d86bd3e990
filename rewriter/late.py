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
from typing import Any

from pglast import ast

from keystore.catalogue import overloads

from . import builtins, context, sqltext, types
from .compile import Compiler, NotFoldable, field_of, function_name, is_pgsodium_call
from .errors import RewriteError
from .plan import (
    Aggregate,
    Apply,
    Call,
    Case,
    Cast,
    Column,
    Const,
    Node,
    Param,
    node_type,
    walk,
)
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


@dataclass(frozen=True, slots=True)
class LateCase:
    whens: tuple[tuple[Open, Open], ...]
    default: Open
    what: str = "CASE"  # the construct it stands for, in an error (UNION ALL)


@dataclass(frozen=True, slots=True)
class LateAggregate:
    """pgsodium's aggregate over the rows array_agg collected (plan.Aggregate)."""

    name: str
    rows: Open
    args: tuple[Open | None, ...]  # None: collected by the database
    location: int


Open = Node | RowInput | LateCall | LateApply | LateField | LateCase | LateAggregate

# pgsodium's aggregates: the state function (plan.Aggregate.step) by argument count.
_AGGREGATE_STEPS = {
    "crypto_sign_update_agg": {
        1: "crypto_sign_update_agg1",
        2: "crypto_sign_update_agg2",
    }
}


# One query level an input comes up through (rewriter.levels): the inner item's
# index in Plan.inner, and how the level above names that item's query (None: a
# subquery without an alias, whose columns are named unqualified).
Step = tuple[int, str | None]


@dataclass(frozen=True, slots=True)
class Input:
    text: str  # the argument's SQL text, in the scope where it is computed
    key_ref: bool  # the database also returns pgsodium._proxy_key_ref(text)
    # The inner items it comes up through, outermost first; the last one computes
    # it. Empty: computed in the select-list item itself.
    path: tuple[Step, ...] = ()


@dataclass(frozen=True, slots=True)
class RowOutput:
    """A select-list item computed from each row."""

    span: tuple[int, int]
    name: str
    tree: Open
    inputs: tuple[Input, ...]
    candidates: frozenset[str]  # regprocedures it may resolve to
    # A scalar subquery's FROM … WHERE (rewriter.scalar, scalar_levels): one
    # evaluation of it, rendered, returns all the inputs (scalar_columns).
    body: tuple[int, int] | None = None


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
        # The per-row values of the query's FROM items (rewriter.inner.Resolver):
        # find(ref) names one or None; reads(node) says whether an expression may
        # read one.
        self.scope: Any = None

    def build(self, node: ast.Node) -> Open:
        try:
            return self.compiler.compile(node)
        except NotFoldable:
            pass
        if isinstance(node, ast.ColumnRef) and self.scope is not None:
            visible = self.scope.find(node)
            if visible is not None:
                return self._inner(visible)
        if isinstance(node, ast.FuncCall):
            return self._call(node)
        if isinstance(node, ast.TypeCast):
            return LateApply("::" + _cast_target(node), (self.build(node.arg),))
        if isinstance(node, ast.CoalesceExpr):
            return LateApply("coalesce", tuple(self.build(a) for a in node.args))
        if isinstance(node, ast.CaseExpr) and node.arg is None:
            return self._case(node)
        if (
            isinstance(node, ast.A_Expr)
            and node.kind.name == "AEXPR_OP"
            and [n.sval for n in node.name] == ["||"]
            and node.lexpr is not None
            and self._computes_inside(node)
        ):
            return LateApply(
                "||",
                (
                    self._operand(node.lexpr, node.location, left=True),
                    self._operand(node.rexpr, node.location, left=False),
                ),
            )
        if isinstance(node, ast.A_Indirection) and len(node.indirection) == 1:
            field = node.indirection[0]
            if isinstance(field, ast.String):
                return LateField(self.build(node.arg), field.sval)
        raise NotFoldable(type(node).__name__, getattr(node, "location", None))

    def _inner(self, visible: Any) -> Open:
        """A per-row value of a FROM item (rewriter.inner.Visible): its inputs come
        up from the level that computes them."""
        from .inner import rebase

        offset = len(self.inputs)
        self.inputs += visible.inputs()
        self.candidates |= visible.item.candidates
        return rebase(visible.item.tree, offset)

    def _case(self, node: ast.CaseExpr) -> Open:
        """A searched CASE: conditions without pgsodium calls are computed by the
        database as boolean row inputs; the branches are computed by the proxy."""
        parts = sqltext.case_parts(self.tokens, node.location)
        spans = {kind: [(s, e) for k, s, e in parts if k == kind] for kind in
                 ("WHEN", "THEN", "ELSE")}  # fmt: skip
        if len(spans["WHEN"]) != len(node.args):
            raise NotFoldable("a CASE expression", node.location)
        whens = []
        for when, condition, result in zip(
            node.args, spans["WHEN"], spans["THEN"], strict=True
        ):
            whens.append(
                (
                    self._value(when.expr, condition, boolean=True),
                    self._value(when.result, result),
                )
            )
        default: Open = Const("unknown", None)
        if node.defresult is not None:
            default = self._value(node.defresult, spans["ELSE"][0])
        return LateCase(tuple(whens), default)

    def _computes_inside(self, node: ast.Node) -> bool:
        """Whether the proxy computes something in `node` (a pgsodium call or an
        inner query's value); if not, the database computes all of it."""
        if any(is_pgsodium_call(c, self.on_path) for c in _calls(node)):
            return True
        return self._reads_inner(node)

    def _operand(self, node: ast.Node, operator: int, *, left: bool) -> Open:
        """An operand of `||`: built by the proxy, or a row input the database
        computes (its text found next to the operator, checked by re-parsing)."""
        from .search import operand_span

        try:
            return self.build(node)
        except NotFoldable:
            if any(is_pgsodium_call(c, self.on_path) for c in _calls(node)):
                raise
        self._not_inner(node)
        span = operand_span(self.sql, self.tokens, node, operator, left=left)
        if span is None:
            raise NotFoldable("an operand of ||", operator)
        # As an argument over rows (_argument): an expression of columns that calls
        # nothing of pgsodium is the database's to compute.
        self.inputs.append(Input(self.sql[span[0] : span[1]].strip(), False))
        return RowInput(len(self.inputs) - 1)

    def _value(
        self, node: ast.Node, span: tuple[int, int], boolean: bool = False
    ) -> Open:
        """A part of a CASE: built by the proxy, or a row input if the database
        can compute it (it calls nothing of pgsodium)."""
        involves = any(is_pgsodium_call(c, self.on_path) for c in _calls(node))
        if boolean and involves:
            raise NotFoldable("a CASE condition over a pgsodium call", None)
        try:
            return self.compiler.compile(node) if boolean else self.build(node)
        except NotFoldable:
            if involves:
                raise
        self._not_inner(node)
        self.inputs.append(Input(self.sql[span[0] : span[1]].strip(), False))
        return RowInput(len(self.inputs) - 1)

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
        if pgsodium and name in _AGGREGATE_STEPS:
            return self._aggregate(node, name)
        _, _, spans = sqltext.call_span(self.tokens, node.location)
        if len(spans) != len(node.args or ()):
            # SQL-standard syntax (substring(x FROM a FOR b)): no comma spans.
            spans = [None] * len(node.args or ())
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

    def _aggregate(self, node: ast.FuncCall, name: str) -> Open:
        """An aggregate over the rows of each group: the database collects its
        arguments with array_agg (the call's ORDER BY and FILTER kept, so the
        order and the rows are the server's own), the proxy runs the state
        function over them. Each argument goes through byteacat(x, '') so that
        the server types it exactly as the aggregate's bytea parameter would
        (unknown literals and untyped parameters become bytea; other types fail
        with 42883); it may read columns, never a value the proxy computes."""
        if node.over is not None:
            raise NotFoldable(
                f"the aggregate pgsodium.{name}() as a window function", node.location
            )
        if node.agg_star or node.agg_distinct or node.agg_within_group:
            raise NotFoldable(f"this form of pgsodium.{name}()", node.location)
        args = list(node.args or ())
        if any(isinstance(a, ast.NamedArgExpr) for a in args):
            raise RewriteError(
                "0A000", "aggregates cannot use named arguments", node.location + 1
            )
        parts = sqltext.aggregate_parts(self.tokens, node.location)
        if len(parts.args) != len(args) or len(args) not in _AGGREGATE_STEPS[name]:
            raise RewriteError(
                "42883",
                f"function pgsodium.{name}() does not exist with {len(args)} arguments",
                node.location + 1,
            )
        slots: list[Open | None] = []
        collected: list[str] = []
        for arg, (start, end) in zip(args, parts.args, strict=True):
            self._not_inner(arg)
            if not _upstream_computes(arg, self.on_path):
                try:
                    # Literals, bind parameters and pgsodium calls of those stay
                    # in the proxy, as every argument of a call over rows.
                    slots.append(self.compiler.compile(arg))
                    continue
                except NotFoldable:
                    if self._computes_inside(arg):
                        raise NotFoldable(
                            f"a value computed per row inside pgsodium.{name}()",
                            getattr(arg, "location", node.location),
                        ) from None
            slots.append(None)
            collected.append(f"pg_catalog.byteacat(({self.sql[start:end]}), ''::bytea)")
        where = (
            f" {self.sql[parts.filter[0] : parts.filter[1]]}" if parts.filter else ""
        )
        if not collected:
            text = f"pg_catalog.count(*){where}"
        else:
            element = (
                collected[0]
                if len(collected) == 1
                else f"ARRAY[{', '.join(collected)}]"
            )
            order = (
                f" {self.sql[parts.order[0] : parts.order[1]]}" if parts.order else ""
            )
            text = f"pg_catalog.array_agg({element}{order}){where}"
        self.inputs.append(Input(text, False))
        self.candidates |= {sig.regprocedure for sig in overloads(name)}
        return LateAggregate(
            name, RowInput(len(self.inputs) - 1), tuple(slots), node.location
        )

    def _argument(
        self,
        value: ast.Node,
        span: tuple[int, int] | None,
        is_key: bool,
        arg: ast.Node,
    ) -> Open:
        if (
            span is not None
            and _upstream_computes(value, self.on_path)
            and not self._reads_inner(value)
        ):
            return self._input(value, span, is_key, arg)
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
        if span is None:
            raise NotFoldable("a column inside SQL-standard function syntax", None)
        self._not_inner(value)
        # XXX: the expression goes upstream as the client wrote it, constants
        # included: in `encrypt(convert_to(name || ' suffix', 'utf8'), ...)` over
        # rows the database sees ' suffix' (never the result). Blast radius: the
        # literal parts of a per-row plaintext expression; folded calls and bind
        # parameters are not affected.
        return self._input(value, span, is_key, arg)

    def _reads_inner(self, value: ast.Node) -> bool:
        """Whether `value` may read a per-row value of a FROM item."""
        return self.scope is not None and bool(self.scope.reads(value))

    def _not_inner(self, node: ast.Node) -> None:
        """SECURITY: an expression the database computes as a row input must not
        read a per-row value of a FROM item: upstream that column holds the
        value's inputs, or NULL, never the value (the result would be wrong)."""
        if self._reads_inner(node):
            from .analyze import _column_refs

            first = next(r for r in _column_refs(node) if self.scope.suspect(r))
            raise NotFoldable(
                context.enclosing(node, first)
                or "a value computed per row in a subquery, inside an expression "
                "the proxy does not evaluate",
                first.location,
            )

    def _input(
        self, value: ast.Node, span: tuple[int, int], is_key: bool, arg: ast.Node
    ) -> RowInput:
        """The argument's text becomes a row input: the database computes it."""
        start = span[0]
        if isinstance(arg, ast.NamedArgExpr):
            text = self.sql[span[0] : span[1]]
            for arrow in (":=", "=>"):
                if arrow in text:
                    start = span[0] + text.index(arrow) + len(arrow)
                    break
        self.inputs.append(Input(self.sql[start : span[1]].strip(), is_key))
        return RowInput(len(self.inputs) - 1)


# Functions whose second argument is a name, not data: an encoding or a format.
_NAMED_FORM = frozenset({"convert_to", "convert_from", "encode", "decode"})


def _upstream_computes(node: ast.Node, on_path: bool) -> bool:
    """Whether the database may compute this argument of a pgsodium call itself:
    it reads columns, calls nothing of pgsodium, and holds no literal or bind
    parameter (SECURITY: a client's constant may be plaintext, which never goes
    upstream) except the encoding or format name of convert_to/encode and kin.
    PostgreSQL computing it is exact by construction, and off the proxy's core."""
    return _computes(node, on_path) is True


def _computes(node: ast.Node, on_path: bool) -> bool | None:
    """True: computable upstream and reads a column; None: computable, no column;
    False: not computable upstream."""
    if isinstance(node, ast.ColumnRef):
        return isinstance(node.fields[-1], ast.String)
    if isinstance(node, ast.TypeCast):
        return _computes(node.arg, on_path)
    if isinstance(node, ast.FuncCall):
        if is_pgsodium_call(node, on_path) or node.agg_star or node.over is not None:
            return False
        args = list(node.args or ())
        if any(isinstance(a, ast.NamedArgExpr) for a in args):
            return False
        _, name = function_name(node)
        if name in _NAMED_FORM and len(args) == 2:
            if not (isinstance(args[1], ast.A_Const) and not args[1].isnull):
                return False
            args = args[:1]
        return _all_compute(args, on_path)
    if isinstance(node, ast.A_Expr) and node.kind.name == "AEXPR_OP":
        return _all_compute([n for n in (node.lexpr, node.rexpr) if n], on_path)
    return False


def _all_compute(nodes: list[ast.Node], on_path: bool) -> bool | None:
    results = [_computes(n, on_path) for n in nodes]
    if any(r is False for r in results):
        return False
    return True if any(results) else None


def _is_crypto(name: str) -> bool:
    """A function the proxy evaluates (not key management, which runs upstream)."""
    return any(sig.kind == "crypto" for sig in overloads(name))


def _may_be_uuid(node: Open) -> bool:
    kind = (
        node_type(node)
        if not isinstance(
            node, (RowInput, LateCall, LateApply, LateField, LateCase, LateAggregate)
        )
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
        if tree.name == "coalesce":
            return _coalesce(args)
        found = builtins.find_builtin(tree.name, [node_type(a) for a in args])
        if found is None:
            shown = ", ".join(node_type(a) for a in args)
            if tree.name == "||":  # the server has more || operators than the proxy
                raise RewriteError(
                    "0A000", f"pgsodium-proxy cannot evaluate || over {shown} here"
                )
            # Not 42883: the server has overloads the proxy does not evaluate
            # (substring(text, text), length(bytea, name), ...).
            raise RewriteError(
                "0A000",
                f"pgsodium-proxy cannot evaluate {tree.name}({shown}) over a value "
                "computed per row",
            )
        return Apply(
            found,
            tuple(
                _coerce(a, "text" if t == "name" else t)
                for a, t in zip(args, found.arg_types, strict=True)
            ),
        )
    if isinstance(tree, LateField):
        return field_of(resolve_open(tree.node, input_types), tree.name)
    if isinstance(tree, LateCase):
        return _case(tree, input_types)
    if isinstance(tree, LateAggregate):
        rows = resolve_open(tree.rows, input_types)
        if node_type(rows) not in ("bytea[]", "bigint"):
            raise RewriteError(
                "XX000", f"pgsodium.{tree.name}() over {node_type(rows)}"
            )
        args = [None if a is None else resolve_open(a, input_types) for a in tree.args]
        bound = resolve(
            tree.name,
            ["bytea" if a is None else node_type(a) for a in args],
            (),
            tree.location + 1,
        )
        (step,) = overloads(_AGGREGATE_STEPS[tree.name][len(args)])
        return Aggregate(
            bound.signature,
            step,
            rows,
            tuple(None if a is None else _coerce(a, "bytea") for a in args),
        )
    return tree


def static_type(tree: Open) -> str | None:
    """The type an open tree has whatever its row inputs' types, when the proxy
    can tell before any row (every overload returns one type), else None."""
    kind = _static(tree)
    return None if kind == "unknown" else kind


def _static(tree: Open) -> str | None:
    if isinstance(tree, RowInput | LateField | LateAggregate):
        return None
    if isinstance(tree, LateCall):
        returns = {sig.returns for sig in overloads(tree.name)}
        return returns.pop() if len(returns) == 1 else None
    if isinstance(tree, LateApply):
        if tree.name.startswith("::"):
            return tree.name[2:]
        args = [static_type(a) for a in tree.args]
        if tree.name == "coalesce" or any(a is None for a in args):
            return None
        found = builtins.find_builtin(tree.name, [a for a in args if a is not None])
        return None if found is None else found.returns
    if isinstance(tree, LateCase):
        # As _case: the branches' one type, unknown NULLs taking it.
        results = {_static(r) for _, r in tree.whens} | {_static(tree.default)}
        known = results - {"unknown"}
        return known.pop() if len(known) == 1 and None not in known else None
    return node_type(tree)


def _case(tree: LateCase, input_types: Sequence[str]) -> Node:
    """CASE: every branch resolves to one type (unknown NULLs take it)."""
    whens = [
        (resolve_open(c, input_types), resolve_open(r, input_types))
        for c, r in tree.whens
    ]
    default = resolve_open(tree.default, input_types)
    results = [r for _, r in whens] + [default]
    known = {node_type(r) for r in results} - {"unknown"}
    if len(known) != 1:
        shown = " and ".join(sorted(known)) or "unknown"
        raise RewriteError(
            "0A000",
            f"pgsodium-proxy cannot evaluate {tree.what} with {shown} results here: "
            "give every branch the same type",
        )
    (kind,) = known
    return Case(
        tuple((_coerce(c, "boolean"), _coerce(r, kind)) for c, r in whens),
        _coerce(default, kind),
        kind,
    )


def _coalesce(args: list[Node]) -> Node:
    """COALESCE: its values resolve to one type (unknown literals take it)."""
    known = {node_type(a) for a in args} - {"unknown"}
    if len(known) != 1:
        shown = " and ".join(sorted(known)) or "unknown"
        raise RewriteError(
            "0A000",
            f"pgsodium-proxy cannot evaluate COALESCE over {shown} values here: "
            "give every value the same type",
        )
    (kind,) = known
    return Apply(
        builtins.coalesce(kind, len(args)), tuple(_coerce(a, kind) for a in args)
    )


def _coerce(value: Node, target: str) -> Node:
    if node_type(value) == target:
        return value
    return Cast(value, target)


def params_of(tree: Open) -> set[int]:
    """The client's bind parameters a tree reads (their values stay in the proxy)."""
    found: set[int] = set()
    stack: list[Open | None] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (LateCall, LateApply)):
            stack += node.args
        elif isinstance(node, LateField):
            stack.append(node.node)
        elif isinstance(node, LateCase):
            stack += [part for pair in node.whens for part in pair]
            stack.append(node.default)
        elif isinstance(node, LateAggregate):
            stack.append(node.rows)
            stack += node.args
        elif node is not None and not isinstance(node, RowInput):
            found |= {n.number for n in walk(node) if isinstance(n, Param)}
    return found


def input_columns(marker: str, index: int, inputs: Sequence[Input]) -> str:
    """The upstream select-list text that stands for a RowOutput."""
    parts: list[str] = []
    for number, item in enumerate(inputs):
        alias = f"{marker}r{index}_{number}"
        if item.path:
            parts += _passed(item, alias, item.path[0][1])
        else:
            parts += _computed(item, alias)
    return ", ".join(parts)


def scalar_columns(marker: str, index: int, inputs: Sequence[Input], body: str) -> str:
    """input_columns of a RowOutput with a body (a scalar subquery over `body`).

    One evaluation of the subquery returns every input (and key material) as one
    record, column `{marker}r{index}_p`, which the proxy decodes: inputs of two
    rows could give a value of neither, and two evaluations may pick different
    rows (a volatile function or a LIMIT in a view, a user's operator). Each
    input's own column only gives its type: the same subquery under LIMIT 0,
    whose FROM and WHERE PostgreSQL never runs (ExecLimit), always NULL.
    """
    parts: list[str] = []
    packed: list[str] = []
    for number, item in enumerate(inputs):
        alias = f"{marker}r{index}_{number}"
        if item.path:
            prefix = item.path[0][1]
            q = "" if prefix is None else sqltext.quote_ident(prefix) + "."
            value = q + sqltext.quote_ident(alias)
            key = q + sqltext.quote_ident(alias + "k")
        else:
            value = f"({item.text})"
            key = f"pgsodium._proxy_key_ref(({item.text}))"
        parts.append(f"(SELECT {value} {body} LIMIT 0) AS {sqltext.quote_ident(alias)}")
        packed.append(value)
        if item.key_ref:
            parts.append(f"NULL::text AS {sqltext.quote_ident(alias + 'k')}")
            packed.append(key)
    name = sqltext.quote_ident(f"{marker}r{index}_p")
    parts.append(f"(SELECT ROW({', '.join(packed)}) {body}) AS {name}")
    return ", ".join(parts)


def inner_columns(
    marker: str, rows: Sequence[RowOutput], count: int
) -> list[list[str]]:
    """The upstream select-list texts of each of the `count` inner items: for
    every input of every RowOutput that comes up through it, in order, the
    column the level below passes up (`q.alias`) or, at the level that computes
    it, the input itself (`(text) AS alias`). An item no RowOutput reads gets none."""
    parts: list[list[str]] = [[] for _ in range(count)]
    for index, row in enumerate(rows):
        for number, item in enumerate(row.inputs):
            alias = f"{marker}r{index}_{number}"
            for depth, (inner, _) in enumerate(item.path):
                if depth + 1 < len(item.path):
                    parts[inner] += _passed(item, alias, item.path[depth + 1][1])
                else:
                    parts[inner] += _computed(item, alias)
    return parts


def inner_aliases(
    marker: str, rows: Sequence[RowOutput], count: int
) -> list[list[str]]:
    """The names of the columns inner_columns gives each inner item, in order."""
    names: list[list[str]] = [[] for _ in range(count)]
    for index, row in enumerate(rows):
        for number, item in enumerate(row.inputs):
            alias = f"{marker}r{index}_{number}"
            for inner, _ in item.path:
                names[inner] += [alias, alias + "k"] if item.key_ref else [alias]
    return names


def _computed(item: Input, alias: str) -> list[str]:
    out = [f"({item.text}) AS {sqltext.quote_ident(alias)}"]
    if item.key_ref:
        ref = sqltext.quote_ident(alias + "k")
        out.append(f"pgsodium._proxy_key_ref(({item.text})) AS {ref}")
    return out


def _passed(item: Input, alias: str, qualifier: str | None) -> list[str]:
    """The columns of `alias` as the level below names them."""
    prefix = "" if qualifier is None else sqltext.quote_ident(qualifier) + "."
    out = [prefix + sqltext.quote_ident(alias)]
    if item.key_ref:
        out.append(prefix + sqltext.quote_ident(alias + "k"))
    return out


__all__ = [
    "Column",
    "Const",
    "Input",
    "RowCompiler",
    "RowOutput",
    "input_columns",
    "resolve_open",
]
