"""Turn a parse-tree expression into a value node the proxy can fold, or say why not.

An expression folds when every leaf is a literal or a bind parameter and every
function is a pgsodium function or one of the builtins the proxy evaluates. Overloads
are resolved and unknown-typed literals and parameters take the declared types, as
the server's parser would do.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from pglast import ast, parse_sql

from keystore.catalogue import COMPOSITE_TYPES, Signature, overloads

from . import builtins, types
from .errors import RewriteError
from .plan import Apply, Call, Case, Cast, Const, FieldOf, Node, Param, node_type
from .resolve import resolve

INTERNAL_PREFIX = "_proxy_"


class NotFoldable(Exception):
    """The expression depends on rows or on something the proxy does not evaluate."""

    def __init__(self, what: str, location: int | None) -> None:
        super().__init__(what)
        self.what = what
        self.location = location


def function_name(call: ast.FuncCall) -> tuple[str | None, str]:
    names = [n.sval for n in call.funcname]
    if len(names) == 1:
        return None, names[0]
    if len(names) == 2:
        return names[0], names[1]
    return ".".join(names[:-1]), names[-1]


# pgsodium's TCE functions that keystore/sql/tce.sql declares upstream: they call
# nothing the proxy evaluates, so they run natively there. _proxy_tce_written is
# the guard the proxy writes around values it encrypted (rewriter/tce_write.py);
# harmless called directly.
UPSTREAM_TCE_FUNCTIONS = frozenset(
    {"update_mask", "update_masks", "_proxy_tce_written"}
)


def is_pgsodium_call(call: ast.FuncCall, on_path: bool) -> bool:
    schema, name = function_name(call)
    if name in UPSTREAM_TCE_FUNCTIONS:
        return False
    if schema == "pgsodium":
        return True
    return schema is None and on_path and bool(overloads(name))


def type_name(node: ast.TypeName) -> str:
    if node.arrayBounds:
        raise NotFoldable("an array type", node.location)
    if node.typmods:
        # varchar(3), numeric(10, 2): the proxy does not apply type modifiers, so
        # such a cast is never evaluated (it would give the unmodified value).
        raise NotFoldable("a cast with a type modifier", node.location)
    names = [n.sval for n in node.names]
    if names[0] == "pg_catalog":
        names = names[1:]
    name = ".".join(names)
    return types.ALIASES.get(name, name)


class Compiler:
    """Compiles expressions of one statement; records parameter types it infers."""

    def __init__(self, declared: Sequence[int], on_path: bool) -> None:
        self.declared = declared  # parameter type OIDs from Parse (0 = unspecified)
        self.on_path = on_path
        self.param_types: dict[int, str] = {}
        self.checks: set[str] = set()

    def compile(self, node: ast.Node) -> Node:
        if isinstance(node, ast.A_Const):
            return self._const(node)
        if isinstance(node, ast.TypeCast):
            inner = self.compile(node.arg)
            target = type_name(node.typeName)
            if isinstance(inner, Param) and inner.type == "unknown":
                # `$1::bytea` gives the parameter its type, as the server infers it.
                self.param_types[inner.number] = target
                return Param(inner.number, target)
            return Cast(inner, target)
        if isinstance(node, ast.ParamRef):
            return self._param(node.number)
        if isinstance(node, ast.FuncCall):
            return self._call(node)
        if isinstance(node, ast.A_Indirection):
            return self._field(node)
        if isinstance(node, ast.A_Expr) and _is_concat(node):
            return self._apply(
                "||", [self.compile(node.lexpr), self.compile(node.rexpr)]
            )
        if isinstance(node, ast.NullTest) and not node.argisrow:
            inner = self.compile(node.arg)
            negated = node.nulltesttype.name == "IS_NOT_NULL"
            return Apply(builtins.null_test(node_type(inner), negated), (inner,))
        if isinstance(node, ast.CaseExpr) and node.arg is None:
            return self._case(node)
        location = getattr(node, "location", None)
        raise NotFoldable(type(node).__name__, location)

    def _case(self, node: ast.CaseExpr) -> Case:
        """A searched CASE of folded values: one result type (unknown literals
        take it, as the server resolves them); only the branch taken is
        computed, so a call in another branch never runs."""
        whens = [(self.compile(w.expr), self.compile(w.result)) for w in node.args]
        default: Node = Const("unknown", None)
        if node.defresult is not None:
            default = self.compile(node.defresult)
        results = [r for _, r in whens] + [default]
        known = {node_type(r) for r in results} - {"unknown"}
        if len(known) > 1:
            raise NotFoldable("CASE with results of several types", node.location)
        kind = known.pop() if known else "text"
        for condition, _ in whens:
            if node_type(condition) not in ("boolean", "unknown"):
                raise NotFoldable("a CASE condition that is not boolean", node.location)
        return Case(
            tuple(
                (self._coerce(c, "boolean"), self._coerce(r, kind)) for c, r in whens
            ),
            self._coerce(default, kind),
            kind,
        )

    def _field(self, node: ast.A_Indirection) -> FieldOf:
        """`(composite).field` of a folded value."""
        if len(node.indirection) != 1 or not isinstance(
            node.indirection[0], ast.String
        ):
            raise NotFoldable("an indirection", None)
        inner = self.compile(node.arg)
        return field_of(inner, node.indirection[0].sval)

    def _const(self, node: ast.A_Const) -> Const:
        if node.isnull:
            return Const("unknown", None)
        value = node.val
        if isinstance(value, ast.Integer):
            return Const("integer", value.ival)
        if isinstance(value, ast.Float):
            text = value.fval
            if "." not in text and "e" not in text.lower():
                number = int(text)
                if -(2**63) <= number < 2**63:
                    return Const("bigint", number)
            return Const("numeric", text)
        if isinstance(value, ast.Boolean):
            return Const("boolean", bool(value.boolval))
        if isinstance(value, ast.String):
            return Const("unknown", value.sval)
        if isinstance(value, ast.BitString):
            return Const("bit", types.bit_literal(value.bsval))
        raise NotFoldable("a constant of this kind", None)

    def _param(self, number: int) -> Param:
        oid = self.declared[number - 1] if number <= len(self.declared) else 0
        if oid:
            known = types.BY_OID.get(oid)
            if known is None:
                raise RewriteError(
                    "0A000",
                    f"pgsodium-proxy cannot use parameter ${number} of type oid {oid} "
                    "in a pgsodium call",
                )
            return Param(number, known.name)
        return Param(number, self.param_types.get(number, "unknown"))

    def _call(self, node: ast.FuncCall) -> Node:
        schema, name = function_name(node)
        if name in UPSTREAM_TCE_FUNCTIONS and schema in (None, "pgsodium"):
            raise NotFoldable(f"function {name}()", node.location)
        if name.startswith(INTERNAL_PREFIX) and schema in (None, "pgsodium"):
            raise RewriteError(
                "42501",
                f"permission denied for function {name}",
                node.location + 1,
            )
        if node.agg_star or node.agg_distinct or node.over or node.agg_order:
            raise NotFoldable("an aggregate or window call", node.location)
        if is_pgsodium_call(node, self.on_path):
            return self._pgsodium(name, node)
        if schema in (None, "pg_catalog") and builtins.is_builtin_name(name):
            return self._builtin(name, node)
        raise NotFoldable(f"function {name}()", node.location)

    def _arguments(self, node: ast.FuncCall) -> tuple[list[Node], list[str]]:
        args: list[Node] = []
        named: list[str] = []
        for arg in node.args or ():
            # PostgreSQL points both errors at the offending argument (parse_func.c).
            if isinstance(arg, ast.NamedArgExpr):
                if arg.name in named:
                    raise RewriteError(
                        "42601",
                        f'argument name "{arg.name}" used more than once',
                        _location(arg, node),
                    )
                named.append(arg.name)
                args.append(self.compile(arg.arg))
            elif named:
                raise RewriteError(
                    "42601",
                    "positional argument cannot follow named argument",
                    _location(arg, node),
                )
            else:
                args.append(self.compile(arg))
        return args, named

    def _pgsodium(self, name: str, node: ast.FuncCall) -> Call:
        args, named = self._arguments(node)
        bound = resolve(name, [node_type(a) for a in args], named, node.location + 1)
        sig = bound.signature
        if sig.kind != "crypto":
            # get_key_by_id/name, get_named_keys, version: real SQL upstream.
            raise NotFoldable(f"pgsodium.{name}(), which runs upstream", node.location)
        if sig.language == "aggregate":
            raise NotFoldable(
                f"the aggregate pgsodium.{name}() over rows", node.location
            )
        filled: list[Node] = []
        for param, slot in zip(sig.params, bound.slots, strict=True):
            value = default_value(param.default) if slot is None else args[slot]
            filled.append(self._coerce(value, param.type))
        self.checks.add(sig.regprocedure)
        return Call(sig, tuple(filled), node.location)

    def _builtin(self, name: str, node: ast.FuncCall) -> Apply:
        args, named = self._arguments(node)
        if named:
            raise NotFoldable(f"named arguments to {name}()", node.location)
        return self._apply(name, args, node.location)

    def _apply(self, name: str, args: list[Node], location: int | None = None) -> Apply:
        found = builtins.find_builtin(name, [node_type(a) for a in args])
        if found is None:
            raise NotFoldable(f"function {name}()", location)
        coerced = tuple(
            self._coerce(a, "text" if t == "name" else t)
            for a, t in zip(args, found.arg_types, strict=True)
        )
        return Apply(found, coerced)

    def _coerce(self, value: Node, target: str) -> Node:
        current = node_type(value)
        if current == target:
            return value
        if isinstance(value, Param) and current == "unknown":
            self.param_types[value.number] = target
            return Param(value.number, target)
        return Cast(value, target)


def field_of(inner: Node, name: str) -> FieldOf:
    type_name = node_type(inner)
    fields = COMPOSITE_TYPES.get(type_name)
    if fields is None:
        raise NotFoldable(f"a field of a value of type {type_name}", None)
    for index, (field, field_type) in enumerate(fields):
        if field == name:
            return FieldOf(inner, index, field_type)
    raise RewriteError("42703", f'column "{name}" not found in data type {type_name}')


def _is_concat(node: ast.A_Expr) -> bool:
    return (
        node.kind.name == "AEXPR_OP"
        and node.lexpr is not None
        and [n.sval for n in node.name][-1] == "||"
    )


@lru_cache(maxsize=256)
def default_value(text: str | None) -> Node:
    """The value of a parameter default as pg_get_function_arguments prints it."""
    assert text is not None
    statement = parse_sql(f"SELECT {text}")[0].stmt
    return Compiler((), on_path=False).compile(statement.targetList[0].val)


def signature_of(call: Call) -> Signature:
    return call.signature


def _location(arg: ast.Node, call: ast.FuncCall) -> int:
    """1-based position of an argument, or of its call when it has none."""
    location = getattr(arg, "location", None)
    return (call.location if location is None or location < 0 else location) + 1


def is_secret(sig: Signature) -> bool:
    """Results that must never be sent upstream: keys, plaintexts, keystreams."""
    name = sig.name
    return (
        name in ("derive_key", "pgsodium_derive", "crypto_kdf_derive_from_key")
        or name in ("crypto_pwhash", "crypto_stream_xchacha20", "randombytes_new_seed")
        or name.endswith(
            ("_keygen", "_decrypt", "_open", "_new_seed", "_keypair", "_session_keys")
        )
        or name.startswith(("crypto_stream_xchacha20_xor", "crypto_signcrypt_"))
    )
