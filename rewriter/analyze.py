"""Find what of pgsodium a statement uses and decide how each use is evaluated.

Strategies (DESIGN "How a call is evaluated"): a whole select-list item that folds is
computed by the proxy and filled into the result rows (upstream sees a typed NULL);
a foldable call elsewhere is computed first and sent upstream as a value, unless its
result is secret; decrypted_key.decrypted_raw_key is decrypted row by row. Anything
else that involves pgsodium is refused with 0A000 and the construct's position.
"""

from __future__ import annotations

from collections.abc import Sequence

from pglast import ast, parse_sql
from pglast.parser import ParseError
from pglast.visitors import Visitor

from . import builtins, sqltext
from .compile import Compiler, NotFoldable, function_name, is_pgsodium_call, is_secret
from .errors import RewriteError
from .late import RowCompiler, RowOutput
from .plan import (
    Call,
    DecryptedRawKey,
    FieldOf,
    Fold,
    Output,
    Plan,
    RawKeyCreate,
    walk,
)

DECRYPTED_KEY_COLUMNS = (
    "id",
    "status",
    "created",
    "expires",
    "key_type",
    "key_id",
    "key_context",
    "name",
    "associated_data",
    "raw_key",
    "decrypted_raw_key",
    "raw_key_nonce",
    "parent_key",
    "comment",
)
_WRAPPERS = frozenset({"length", "octet_length", "encode"})
_CREATE_KEY_SQL_ARGS = ("key_type", "name", "key_context", "expires")
_CREATE_KEY_PARAMS = (
    "key_type",
    "name",
    "raw_key",
    "raw_key_nonce",
    "parent_key",
    "key_context",
    "expires",
    "associated_data",
)


def refuse(what: str, location: int | None) -> RewriteError:
    return RewriteError(
        "0A000",
        f"pgsodium-proxy cannot evaluate {what}",
        None if location is None or location < 0 else location + 1,
    )


def analyze(sql: str, *, on_path: bool, declared: Sequence[int] = ()) -> list[Plan]:
    """One Plan per statement of `sql` (statement texts are exact substrings)."""
    try:
        statements = parse_sql(sql)
    except ParseError as exc:
        raise RewriteError("42601", str(exc).split("\n")[0]) from None
    plans = []
    for raw in statements:
        start = raw.stmt_location
        end = start + raw.stmt_len if raw.stmt_len else len(sql)
        plans.append(_Statement(sql, start, end, on_path, declared).plan(raw.stmt))
    return plans


class _Statement:
    def __init__(
        self, sql: str, start: int, end: int, on_path: bool, declared: Sequence[int]
    ) -> None:
        self.sql = sql
        self.start = start
        self.result = Plan(sql[start:end])
        self.compiler = Compiler(declared, on_path)
        self.on_path = on_path
        self._tokens: list[sqltext.Token] | None = None
        self.handled: set[int] = set()  # id() of FuncCall nodes already planned

    @property
    def tokens(self) -> list[sqltext.Token]:
        if self._tokens is None:
            self._tokens = sqltext.tokens(self.sql)
        return self._tokens

    def span(self, start: int, end: int) -> tuple[int, int]:
        """A span of the whole text, made relative to this statement."""
        return (start - self.start, end - self.start)

    def plan(self, stmt: ast.Node) -> Plan:
        if isinstance(stmt, ast.SelectStmt) and stmt.op.name == "SETOP_NONE":
            if self._from_function(stmt):
                self.result.checks |= self.compiler.checks
                self.result.param_types = dict(self.compiler.param_types)
                return self.result
            self._select_list(stmt)
        self._unhandled_decrypted_raw_key(stmt)
        self._remaining(stmt)
        self.result.checks |= self.compiler.checks
        self.result.param_types = dict(self.compiler.param_types)
        self.result.unqualified = self._has_unqualified(stmt)
        return self.result

    # -- the select list -----------------------------------------------------------

    def _select_list(self, stmt: ast.SelectStmt) -> None:
        if not stmt.targetList:
            return
        view = self._decrypted_key_source(stmt)
        spans = sqltext.list_items(self.tokens, stmt.targetList[0].location)
        if len(spans) != len(stmt.targetList):
            raise RewriteError("XX000", "select list spans do not match the parse tree")
        for target, (s, e) in zip(stmt.targetList, spans, strict=True):
            span = self.span(s, e)
            if view is not None and self._deferred_target(target, span, view):
                continue
            if not self._mentions_pgsodium_call(target.val):
                continue
            try:
                node = self.compiler.compile(target.val)
            except NotFoldable:
                self._row_target(target, span)
                continue
            name = target.name or figure_colname(target.val)
            self.result.outputs.append(Output(span, name, node))
            self._mark_handled(target.val)

    def _row_target(self, target: ast.ResTarget, span: tuple[int, int]) -> None:
        """A select-list item over rows, if the proxy can compute it per row; if
        not, its pgsodium calls are left to _remaining, which refuses them."""
        builder = RowCompiler(self.compiler, self.sql, self.tokens, self.on_path)
        try:
            tree = builder.build(target.val)
        except NotFoldable:
            return
        if not builder.inputs:
            # Nothing comes from rows, yet it did not fold: leave it to _remaining
            # (an empty select-list item would give the client no column at all).
            return
        name = target.name or figure_colname(target.val)
        self.result.rows.append(
            RowOutput(
                span, name, tree, tuple(builder.inputs), frozenset(builder.candidates)
            )
        )
        self._mark_handled(target.val)

    def _mark_handled(self, node: ast.Node) -> None:
        for call in _calls(node):
            self.handled.add(id(call))

    def _mentions_pgsodium_call(self, node: ast.Node) -> bool:
        """A pgsodium crypto call: key management (create_key, get_key_by_*, …)
        is left to _remaining, which runs it natively or folds a raw key."""
        for call in _calls(node):
            if is_pgsodium_call(call, self.on_path):
                name = function_name(call)[1]
                if name != "create_key" and self._catalogue_kind(name) == "crypto":
                    return True
        return False

    # -- SELECT ... FROM pgsodium.f(...) ----------------------------------------------

    def _from_function(self, stmt: ast.SelectStmt) -> bool:
        """`SELECT * | columns FROM pgsodium.f(...) [alias]`: f folded once, its
        columns filled in; the database runs a one-row SELECT of placeholders."""
        items = stmt.fromClause or ()
        if len(items) != 1 or not isinstance(items[0], ast.RangeFunction):
            return False
        item = items[0]
        call = item.functions[0][0] if len(item.functions) == 1 else None
        if not (
            isinstance(call, ast.FuncCall) and is_pgsodium_call(call, self.on_path)
        ):
            return False
        _, name = function_name(call)
        if name == "create_key" or self._catalogue_kind(name) != "crypto":
            return False
        where = f"pgsodium.{name}() in FROM"
        if _has_clauses(stmt) or item.lateral or item.ordinality or item.coldeflist:
            raise refuse(
                f"{where} with other clauses: select its columns only", call.location
            )
        try:
            node = self.compiler.compile(call)
        except NotFoldable as exc:
            raise refuse(f"{where} over {exc.what}", call.location) from None
        columns = self._from_columns(item, node, name)
        alias = item.alias.aliasname if item.alias else name
        self.result.sources.append(node)
        parts = []
        for target in stmt.targetList:
            for column, value in self._targets_of(target, alias, columns, call):
                self.result.outputs.append(Output((-1, -1), column, value))
                parts.append("{output:%d}" % (len(self.result.outputs) - 1))
        whole = (0, len(self.result.text))
        self.result.texts.append((*whole, "SELECT " + ", ".join(parts)))
        return True

    def _catalogue_kind(self, name: str) -> str:
        from keystore.catalogue import overloads

        kinds = {sig.kind for sig in overloads(name)}
        return kinds.pop() if len(kinds) == 1 else "crypto"

    def _from_columns(self, item: ast.RangeFunction, node, name: str):  # type: ignore[no-untyped-def]
        from keystore.catalogue import COMPOSITE_TYPES

        from .plan import Source, node_type

        fields = COMPOSITE_TYPES.get(node_type(node))
        aliases = [c.sval for c in (item.alias.colnames or ())] if item.alias else []
        if fields is None:
            column = (
                aliases[0]
                if aliases
                else (item.alias.aliasname if item.alias else name)
            )
            return [(column, Source(0, node_type(node)))]
        source = Source(0, node_type(node))
        out = []
        for index, (field, field_type) in enumerate(fields):
            shown = aliases[index] if index < len(aliases) else field
            out.append((shown, FieldOf(source, index, field_type)))
        return out

    def _targets_of(self, target: ast.ResTarget, alias: str, columns, call):  # type: ignore[no-untyped-def]
        value = target.val
        if isinstance(value, ast.ColumnRef):
            fields = value.fields
            if isinstance(fields[-1], ast.A_Star) and (
                len(fields) == 1 or fields[0].sval == alias
            ):
                return columns
            if isinstance(fields[-1], ast.String) and (
                len(fields) == 1 or fields[0].sval == alias
            ):
                for column, node in columns:
                    if column == fields[-1].sval:
                        return [(target.name or column, node)]
                raise RewriteError(
                    "42703",
                    f'column "{fields[-1].sval}" does not exist',
                    value.location + 1,
                )
        raise refuse(
            f"{figure_colname(call)}() in FROM with computed select-list items: "
            "select its columns only",
            getattr(value, "location", None),
        )

    # -- pgsodium calls anywhere else ------------------------------------------------

    def _remaining(self, stmt: ast.Node) -> None:
        for call in _outermost_pgsodium_calls(stmt, self.on_path):
            if id(call) in self.handled:
                continue
            _, name = function_name(call)
            if name == "create_key":
                self._create_key(call)
                continue
            if self._catalogue_kind(name) != "crypto":
                continue  # key-management functions run natively upstream
            try:
                node = self.compiler.compile(call)
            except NotFoldable as exc:
                raise refuse(
                    f"pgsodium.{name}() over {exc.what}: its arguments must be "
                    "literals or bind parameters here",
                    call.location,
                ) from None
            assert isinstance(node, Call)
            if node.signature.kind != "crypto":
                continue  # key-management functions run natively upstream
            if is_secret(node.signature):
                raise refuse(
                    f"pgsodium.{name}() here: its result is secret and pgsodium-proxy "
                    "never sends it to the database; select it as a result column",
                    call.location,
                )
            s, e, _ = sqltext.call_span(self.tokens, call.location)
            self.result.folds.append(Fold(self.span(s, e), node))

    def _create_key(self, call: ast.FuncCall) -> None:
        args: dict[str, ast.Node] = {}
        for index, arg in enumerate(call.args or ()):
            if isinstance(arg, ast.NamedArgExpr):
                args[arg.name] = arg.arg
            elif index < len(_CREATE_KEY_PARAMS):
                args[_CREATE_KEY_PARAMS[index]] = arg
        raw = args.get("raw_key")
        if raw is None or (isinstance(raw, ast.A_Const) and raw.isnull):
            self.result.checks.add(_create_key_regprocedure())
            return  # a derived key: pgsodium.create_key runs natively upstream
        _, _, arg_spans = sqltext.call_span(self.tokens, call.location)
        texts = {}
        for arg, (s, e) in zip(call.args, arg_spans, strict=True):
            name = arg.name if isinstance(arg, ast.NamedArgExpr) else None
            value_start = (
                arg.arg.location if name and hasattr(arg.arg, "location") else s
            )
            key = name or _CREATE_KEY_PARAMS[list(call.args).index(arg)]
            texts[key] = self.sql[_value_start(self.sql, s, e, name, value_start) : e]

        def value(key: str):  # type: ignore[no-untyped-def]
            if key not in args:
                return None
            try:
                return self.compiler.compile(args[key])
            except NotFoldable as exc:
                raise refuse(
                    f"pgsodium.create_key({key} => {exc.what}): it must be a literal "
                    "or a bind parameter",
                    call.location,
                ) from None

        s, e, _ = sqltext.call_span(self.tokens, call.location)
        self.result.checks.add(_create_key_regprocedure())
        self.result.creates.append(
            RawKeyCreate(
                self.span(s, e),
                *(texts.get(k) for k in _CREATE_KEY_SQL_ARGS),
                raw_key=self.compiler._coerce(value("raw_key"), "bytea"),
                raw_key_nonce=_coerced(self.compiler, value("raw_key_nonce"), "bytea"),
                parent_key=_coerced(self.compiler, value("parent_key"), "uuid"),
                associated_data=_coerced(
                    self.compiler, value("associated_data"), "text"
                ),
            )
        )

    def _unhandled_decrypted_raw_key(self, stmt: ast.Node) -> None:
        """decrypted_raw_key anywhere the proxy does not decrypt it is refused here,
        before the upstream's fail-closed stub would say less clearly."""
        if not any(self._is_decrypted_key(v) for v in _range_vars(stmt)):
            return
        handled = {d.span for d in self.result.deferred}
        for ref in _column_refs(stmt):
            last = ref.fields[-1]
            if not (isinstance(last, ast.String) and last.sval == "decrypted_raw_key"):
                continue
            if any(s <= ref.location - self.start < e for s, e in handled):
                continue
            raise refuse(
                "pgsodium.decrypted_key.decrypted_raw_key here: the proxy decrypts it "
                "only as a result column (alone or inside length/octet_length)",
                ref.location,
            )

    # -- pgsodium.decrypted_key -----------------------------------------------------

    def _decrypted_key_source(self, stmt: ast.SelectStmt) -> str | None:
        """The qualifier naming pgsodium.decrypted_key in FROM, if it is there."""
        for item in stmt.fromClause or ():
            if isinstance(item, ast.RangeVar) and self._is_decrypted_key(item):
                return item.alias.aliasname if item.alias else item.relname
        return None

    def _is_decrypted_key(self, var: ast.RangeVar) -> bool:
        if var.relname != "decrypted_key" or var.catalogname:
            return False
        return var.schemaname == "pgsodium" or (var.schemaname is None and self.on_path)

    def _deferred_target(
        self, target: ast.ResTarget, span: tuple[int, int], view: str
    ) -> bool:
        node = target.val
        if isinstance(node, ast.ColumnRef) and isinstance(node.fields[-1], ast.A_Star):
            return self._star(node, span, view)
        wrappers = []
        while isinstance(node, ast.FuncCall) and len(node.args or ()) >= 1:
            _, name = function_name(node)
            if name not in _WRAPPERS:
                break
            wrappers.append((name, node))
            node = node.args[0]
        if not (
            isinstance(node, ast.ColumnRef)
            and isinstance(node.fields[-1], ast.String)
            and node.fields[-1].sval == "decrypted_raw_key"
        ):
            return False
        builtins_chain = tuple(
            _wrapper_builtin(name, call) for name, call in reversed(wrappers)
        )
        self.result.deferred.append(
            DecryptedRawKey(
                span,
                target.name or figure_colname(target.val),
                view,
                builtins_chain,
                target.name is not None,
            )
        )
        return True

    def _star(self, node: ast.ColumnRef, span: tuple[int, int], view: str) -> bool:
        if len(node.fields) == 2 and node.fields[0].sval != view:
            return False
        q = sqltext.quote_ident(view)
        parts = []
        for column in DECRYPTED_KEY_COLUMNS:
            if column == "decrypted_raw_key":
                self.result.deferred.append(
                    DecryptedRawKey((-1, -1), column, view, (), False)
                )
                parts.append("{deferred:%d}" % (len(self.result.deferred) - 1))
            else:
                parts.append(f"{q}.{column}")
        self.result.texts.append((span[0], span[1], ", ".join(parts)))
        return True

    def _has_unqualified(self, stmt: ast.Node) -> bool:
        for call in _calls(stmt):
            schema, _ = function_name(call)
            if schema is None and is_pgsodium_call(call, True):
                return True
        return any(
            var.schemaname is None and var.relname == "decrypted_key"
            for var in _range_vars(stmt)
        )


def _has_clauses(stmt: ast.SelectStmt) -> bool:
    return any(
        getattr(stmt, clause, None)
        for clause in (
            "whereClause",
            "groupClause",
            "havingClause",
            "sortClause",
            "limitCount",
            "limitOffset",
            "distinctClause",
            "windowClause",
            "intoClause",
            "lockingClause",
            "withClause",
        )
    )


def _value_start(sql: str, s: int, e: int, name: str | None, hint: int) -> int:
    if name is None:
        return s
    text = sql[s:e]
    for arrow in (":=", "=>"):
        at = text.find(arrow)
        if at != -1:
            position = s + at + len(arrow)
            while position < e and sql[position].isspace():
                position += 1
            return position
    return hint


def _coerced(compiler: Compiler, node, target: str):  # type: ignore[no-untyped-def]
    return None if node is None else compiler._coerce(node, target)


def _create_key_regprocedure() -> str:
    return (
        "pgsodium.create_key(pgsodium.key_type,text,bytea,bytea,uuid,bytea,"
        "timestamp with time zone,text)"
    )


def _wrapper_builtin(name: str, call: ast.FuncCall) -> builtins.Builtin:
    if name == "encode":
        raise refuse("encode() around decrypted_raw_key yet", call.location)
    found = builtins.find_builtin(name, ["bytea"])
    assert found is not None
    return found


def figure_colname(node: ast.Node) -> str:
    """PostgreSQL's FigureColname for the expressions the proxy rewrites."""
    if isinstance(node, ast.FuncCall):
        return node.funcname[-1].sval
    if isinstance(node, ast.TypeCast):
        inner = figure_colname(node.arg)
        if inner != "?column?":
            return inner
        return node.typeName.names[-1].sval
    if isinstance(node, ast.ColumnRef) and isinstance(node.fields[-1], ast.String):
        return node.fields[-1].sval
    if isinstance(node, ast.A_Indirection) and isinstance(
        node.indirection[-1], ast.String
    ):
        return node.indirection[-1].sval
    if isinstance(node, ast.CaseExpr):
        return "case"
    return "?column?"


class _Collect(Visitor):  # type: ignore[misc]
    def __init__(self, kind: type) -> None:
        super().__init__()
        self.kind = kind
        self.found: list[ast.Node] = []

    def visit(self, ancestors, node):  # type: ignore[no-untyped-def]
        if isinstance(node, self.kind):
            self.found.append(node)


def _calls(node: ast.Node) -> list[ast.FuncCall]:
    collector = _Collect(ast.FuncCall)
    collector(node)
    return collector.found


def _range_vars(node: ast.Node) -> list[ast.RangeVar]:
    collector = _Collect(ast.RangeVar)
    collector(node)
    return collector.found


def _column_refs(node: ast.Node) -> list[ast.ColumnRef]:
    collector = _Collect(ast.ColumnRef)
    collector(node)
    return collector.found


def _outermost_pgsodium_calls(node: ast.Node, on_path: bool) -> list[ast.FuncCall]:
    calls = [c for c in _calls(node) if is_pgsodium_call(c, on_path)]
    inner: set[int] = set()
    for call in calls:
        for arg in call.args or ():
            for nested in _calls(arg):
                inner.add(id(nested))
    return [c for c in calls if id(c) not in inner]


def calls_in(plan: Plan) -> list[Call]:
    return [n for o in plan.outputs for n in walk(o.node) if isinstance(n, Call)]
