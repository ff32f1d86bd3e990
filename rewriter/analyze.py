"""Find what of pgsodium a statement uses and decide how each use is evaluated.

Strategies (DESIGN "How a call is evaluated"): a whole select-list item that folds is
computed by the proxy and filled into the result rows (upstream sees a typed NULL);
a foldable call elsewhere is computed first and sent upstream as a value, unless its
result is secret; decrypted_key.decrypted_raw_key is decrypted row by row. Anything
else that involves pgsodium is refused with 0A000 and the construct's position.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pglast import ast, parse_sql
from pglast.enums import NullTestType
from pglast.parser import ParseError
from pglast.visitors import Visitor

from . import (
    builtins,
    context,
    equality,
    inner,
    positive,
    repeat,
    scalar,
    scalar_levels,
    search,
    setops,
    sqltext,
    tce,
    types,
    values_rows,
)
from .compile import Compiler, NotFoldable, function_name, is_pgsodium_call, is_secret
from .errors import RewriteError, refuse
from .late import Input, RowCompiler, RowOutput
from .levels import Levels
from .marks import STANDS_FOR
from .plan import (
    Call,
    DecryptedRawKey,
    FieldOf,
    Fold,
    Node,
    Output,
    Plan,
    RawKeyCreate,
    node_type,
    placeholder,
    walk,
)
from .statements import DEFINITIONS

DECRYPTED_KEY_COLUMNS = scalar.DECRYPTED_KEY_COLUMNS
_WRAPPERS = frozenset({"length", "octet_length"})
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


def analyze(sql: str, *, on_path: bool, declared: Sequence[int] = ()) -> list[Plan]:
    """One Plan per statement of `sql` (statement texts are exact substrings)."""
    try:
        statements = parse_sql(sql)
    except ParseError as exc:
        raise sqltext.syntax_error(exc, sql) from None
    except UnicodeEncodeError:
        # Text decoded with surrogate escapes from bytes that are not UTF-8.
        raise RewriteError(
            "22021", 'invalid byte sequence for encoding "UTF8"'
        ) from None
    values_rows.check_lengths(statements, sql)
    values_rows.check_inserts(statements, sql)
    plans = []
    for raw in statements:
        start = raw.stmt_location
        end = start + raw.stmt_len if raw.stmt_len else len(sql)
        own_text, text, stmt = sql[start:end], sql, raw.stmt
        reads = isinstance(stmt, (ast.SelectStmt, ast.DeclareCursorStmt))
        stars = setops.expand_stars(sql, stmt, on_path) if reads else []
        if stars:
            # A branch's `*` written out (rewriter.setops): this statement is
            # planned over its new text.
            moved = [(s - start, e - start, t) for s, e, t in stars]
            text = sqltext.splice(sql[start:end], moved)
            stmt, start, end = parse_sql(text)[0].stmt, 0, len(text)
        plan = _Statement(text, start, end, on_path, declared).plan(stmt)
        plan.statement = type(raw.stmt).__name__
        plan.may_change_encoding = tce.may_change_encoding(raw, sql)
        plan.may_change_role = tce.may_change_role(raw, sql)
        plan.checked_at_bind = _checked_at_bind(raw.stmt)
        plan.calls_set_config = "set_config" in own_text.lower()
        _check_marks_folded(plan)
        plans.append(plan)
    return plans


def _checked_at_bind(stmt: ast.Node) -> bool:
    """A plain SELECT, whose executor PostgreSQL starts when its portal is bound
    (PORTAL_ONE_SELECT): no WITH query that writes, no SELECT INTO."""
    if not isinstance(stmt, ast.SelectStmt) or stmt.intoClause is not None:
        return False
    writes = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)

    class _Writes(Visitor):  # type: ignore[misc]
        found = False

        def visit_CommonTableExpr(self, ancestors: Any, node: Any) -> None:
            if isinstance(node.ctequery, writes):
                self.found = True

    finder = _Writes()
    finder(stmt)
    return not finder.found


def _check_marks_folded(plan: Plan) -> None:
    """SECURITY: a mark (rewriter.marks) goes upstream only with the call it marks
    folded away: anywhere else a client could read it back (from current_query())
    and mark calls of its own."""
    spans = [f.span for f in plan.folds]
    for mark in STANDS_FOR:
        at = plan.text.find(mark)
        while at != -1:
            if not any(s <= at < e for s, e in spans):
                raise RewriteError(
                    "XX000",
                    "pgsodium-proxy internal error while planning this statement",
                )
            at = plan.text.find(mark, at + 1)


class _Statement:
    def __init__(
        self, sql: str, start: int, end: int, on_path: bool, declared: Sequence[int]
    ) -> None:
        self.sql = sql
        self.start = start
        self.end = end
        self.declared = declared
        self.result = Plan(sql[start:end])
        self.compiler = Compiler(declared, on_path)
        self.on_path = on_path
        self._tokens: list[sqltext.Token] | None = None
        self.handled: set[int] = set()  # id() of FuncCall nodes already planned
        self._view_alone = True  # pgsodium.decrypted_key is the only FROM item
        self._scalar_spans: list[tuple[int, int]] = []  # rewriter.scalar items
        self._searches: dict[int, search.Search] = {}  # id() of the decrypt call
        self._visible: list[inner.Visible] = []  # rewriter.inner, FROM's values
        self._inner_groups: dict[int, set[tuple[int, bool]]] = {}
        self._handled_targets: set[int] = set()  # id() of computed ResTargets
        self._scoped_spans: list[tuple[int, int]] = []  # items over _visible
        self._positions: set[int] = set()  # 1-based select-list items computed
        self._has_star = False  # the select list has a `*`
        self._stmt: ast.Node | None = None
        self._repeated_ids: set[int] | None = None  # rewriter.repeat
        self._levels: Levels | None = None  # the outermost SELECT's

    @property
    def tokens(self) -> list[sqltext.Token]:
        if self._tokens is None:
            self._tokens = sqltext.tokens(self.sql)
        return self._tokens

    def span(self, start: int, end: int) -> tuple[int, int]:
        """A span of the whole text, made relative to this statement."""
        return (start - self.start, end - self.start)

    def plan(self, stmt: ast.Node) -> Plan:
        self._stmt = stmt
        if isinstance(stmt, ast.PrepareStmt):
            # The proxy evaluates a call when its statement is sent: folded into
            # the prepared text, a volatile call would give every EXECUTE the same
            # value (a nonce), and EXECUTE's values would go up unevaluated.
            found = [c for c in _calls(stmt.query) if is_pgsodium_call(c, self.on_path)]
            if found:
                raise refuse(
                    "pgsodium calls in PREPARE (prepare the statement with the "
                    "protocol's Parse, as drivers do)",
                    found[0].location,
                )
        if isinstance(stmt, DEFINITIONS):
            # A definition evaluates nothing now: its pgsodium calls run when it is
            # used (a view read, a default taken, a rule or trigger fired), inside
            # the server, where pgsodium's stubs raise 0A000 naming the call.
            # Folded here, `DEFAULT randombytes_buf(8)` would become one constant.
            return self.result
        if isinstance(stmt, ast.DeclareCursorStmt):
            cursor = self._cursor(stmt)
            if cursor is not None:
                return cursor
        # SELECT … INTO writes its rows to a new table, never to the client: what
        # the proxy computes in the result stream would never reach those rows.
        if (
            isinstance(stmt, ast.SelectStmt)
            and stmt.op.name == "SETOP_NONE"
            and stmt.intoClause is None
        ):
            if self._from_function(stmt):
                self.result.checks |= self.compiler.checks
                self.result.param_types = dict(self.compiler.param_types)
                return self.result
            levels = self._levels = Levels(self)
            self._visible = levels.top(stmt)
            self._select_list(stmt, stmt.targetList)
            levels.check_refs(
                stmt, inner.Resolver(self._visible), self._handled_targets
            )
            self._check_result_clauses(
                stmt, self._deferred_names(), self._positions, self._has_star
            )
            levels.finish(stmt)
        elif setops.is_set_operation(stmt):
            self._set_operation(stmt)
        elif isinstance(stmt, _WRITES) and stmt.returningClause is not None:
            self._select_list(stmt, stmt.returningClause.exprs)
        self._unhandled_decrypted_raw_key(stmt)
        if isinstance(stmt, (ast.SelectStmt, ast.UpdateStmt, ast.DeleteStmt)):
            self._add_searches(stmt.whereClause)
        self._remaining(stmt)
        self.result.checks |= self.compiler.checks
        self.result.param_types = dict(self.compiler.param_types)
        self.result.unqualified = self._has_unqualified(stmt)
        return self.result

    def _cursor(self, stmt: ast.DeclareCursorStmt) -> Plan | None:
        """DECLARE … CURSOR FOR a select whose values are computed per row: planned
        as that select, rows computed when a FETCH returns them. Any other cursor
        keeps the plan of a whole statement (calls folded before it goes upstream),
        which needs nothing of the FETCH."""
        if not isinstance(stmt.query, ast.SelectStmt):
            return None
        select = _Statement(self.sql, self.start, self.end, self.on_path, self.declared)
        try:
            plan = select.plan(stmt.query)
        except RewriteError:
            return None
        if not (plan.rows or plan.deferred):
            return None
        plan.cursor = stmt.portalname
        plan.cursor_hold = bool(stmt.options & _CURSOR_OPT_HOLD)
        return plan

    # -- the select list -----------------------------------------------------------

    def _select_list(self, stmt: ast.Node, items: Sequence[ast.ResTarget]) -> None:
        """The select list (or RETURNING list) of the outermost statement."""
        if not items:
            return
        view = self._decrypted_key_source(stmt)
        spans = sqltext.list_items(self.tokens, items[0].location)
        if len(spans) != len(items):
            raise RewriteError("XX000", "select list spans do not match the parse tree")
        for position, (target, (s, e)) in enumerate(
            zip(items, spans, strict=True), start=1
        ):
            span = self.span(s, e)
            before = len(self.result.rows) + len(self.result.deferred)
            self._target(target, span, view)
            if len(self.result.rows) + len(self.result.deferred) > before:
                self._positions.add(position)
                self._handled_targets.add(id(target))

    def _target(
        self, target: ast.ResTarget, span: tuple[int, int], view: str | None
    ) -> None:
        value = target.val
        if setops.expands(value):
            self._has_star = True
        if view is not None and self._deferred_target(target, span, view):
            return
        scoped = bool(self._visible) and inner.Resolver(self._visible).reads(value)
        if (
            isinstance(value, ast.SubLink)
            and not scoped
            and self._scalar(target, span, value)
        ):
            return
        if self._visible and self._inner_star(value):
            return
        if scoped:
            self._row_target(target, span)
            return
        if not self._mentions_pgsodium_call(value) or _is_create_key(value):
            return  # create_key is planned with the rest of the statement
        try:
            node = self.compiler.compile(value)
        except NotFoldable:
            self._row_target(target, span)
            return
        name = target.name or figure_colname(value)
        if _volatile(node) and self._repeated(value):
            self._volatile_target(value, span, name, node)
            return
        self.result.outputs.append(Output(span, name, node))
        self._mark_handled(value)

    def _repeated(self, node: ast.Node) -> bool:
        """Whether the server would evaluate a call in `node` more than once."""
        if self._repeated_ids is None:
            self._repeated_ids = repeat.repeated_calls(self._stmt)
        return any(id(c) in self._repeated_ids for c in _calls(node))

    def _volatile_target(
        self, value: ast.Node, span: tuple[int, int], name: str, node: Node
    ) -> None:
        """A select-list item over rows that calls a volatile function with
        constant arguments (`select id, crypto_aead_det_noncegen() from t`): a new
        value for every row, as the server gives, computed as the row passes. Its
        only row input is a NULL the database returns for each row."""
        if node_type(node) not in types.BY_NAME:
            raise refuse(
                f"{name}() for each row: it returns a composite value; select its "
                "fields, e.g. (pgsodium.crypto_box_new_keypair()).public",
                getattr(value, "location", None),
            )
        self.result.rows.append(
            RowOutput(span, name, node, (Input("NULL::boolean", False),), frozenset())
        )
        self._mark_handled(value)

    def _row_target(self, target: ast.ResTarget, span: tuple[int, int]) -> None:
        """A select-list item over rows, if the proxy can compute it per row; if
        not, its pgsodium calls are left to _remaining, which refuses them."""
        builder = RowCompiler(self.compiler, self.sql, self.tokens, self.on_path)
        group = len(self.result.rows)
        builder.scope = inner.Resolver(
            self._visible, lambda v: self._use_inner(v, group, star=False)
        )
        scoped = builder.scope.reads(target.val)
        try:
            tree = builder.build(target.val)
        except NotFoldable as exc:
            if scoped:
                raise inner.refuse_expression(
                    target.val, builder.scope.suspect, exc
                ) from None
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
        if scoped:
            self._scoped_spans.append(span)
        self._mark_handled(target.val)

    def _scalar(
        self, target: ast.ResTarget, span: tuple[int, int], link: ast.SubLink
    ) -> bool:
        """A scalar subquery whose column is computed per row (rewriter.scalar)."""
        if link.subLinkType.name != "EXPR_SUBLINK":
            return False
        sub = link.subselect
        alone = self._view_alone  # the outer query's, kept
        view = (
            self._decrypted_key_source(sub) if isinstance(sub, ast.SelectStmt) else None
        )
        self._view_alone = alone
        built = scalar.scalar_subquery(
            self.compiler, self.sql, self.tokens, self.on_path, link, view
        )
        if built is None:
            return self._scalar_over_levels(target, span, link)
        tree, inputs, candidates, (start, end) = built
        inner = sub.targetList[0]
        name = target.name or inner.name or figure_colname(inner.val)
        body = self.span(start, end)
        self.result.rows.append(
            RowOutput(span, name, tree, tuple(inputs), candidates, body)
        )
        self._scalar_spans.append(span)
        self._mark_handled(link)
        return True

    def _set_operation(self, stmt: ast.SelectStmt) -> None:
        """The outermost query is a set operation (rewriter.setops): each column
        computed per row is a RowOutput with no text of its own, its inputs
        computed in the branches' select lists."""
        levels = self._levels = Levels(self)
        exported = setops.union_level(levels, stmt, ())
        for _, item, name in exported.items:
            inputs = tuple(inner.through(item, None))
            self.result.rows.append(
                RowOutput((-1, -1), name, item.tree, inputs, item.candidates)
            )
        levels.finish(stmt)

    def _scalar_over_levels(
        self, target: ast.ResTarget, span: tuple[int, int], link: ast.SubLink
    ) -> bool:
        """A scalar subquery whose FROM items compute values per row below it."""
        if self._levels is None:
            return False
        row = scalar_levels.scalar_over_levels(
            self, self._levels, link, span, target.name
        )
        if row is None:
            return False
        self.result.rows.append(row)
        self._scalar_spans.append(span)
        return True

    # -- values of FROM items computed per row below (rewriter.levels) -------------

    def _use_inner(self, visible: inner.Visible, group: int, star: bool) -> None:
        inner.record_use(self._inner_groups, visible, group, star)

    def _inner_star(self, value: ast.Node) -> bool:
        """`*` or `q.*` over FROM items with values computed per row: those pass
        through, each a RowOutput of its own."""
        if not (
            isinstance(value, ast.ColumnRef)
            and isinstance(value.fields[-1], ast.A_Star)
        ):
            return False
        qualifier = value.fields[0].sval if len(value.fields) == 2 else None
        for visible in self._visible:
            if qualifier not in (None, visible.qualifier):
                continue
            group = len(self.result.rows)
            self._use_inner(visible, group, star=True)
            self.result.rows.append(
                RowOutput(
                    (-1, -1),
                    visible.name,
                    visible.item.tree,
                    tuple(visible.inputs()),
                    visible.item.candidates,
                )
            )
        return True  # the `*` itself stays as the client wrote it

    def _add_searches(self, where: ast.Node | None) -> None:
        """Deterministic searches in a WHERE clause (rewriter.search), this
        statement's or a query level's below it."""
        found = search.searches(where, self.sql, self.tokens, self.on_path)
        for each in found:
            self._searches[id(each.decrypt)] = each
            if each.construct is None:
                self._mark_handled(each.value)  # folded into the ciphertext

    def _deferred_names(self) -> set[str]:
        return {r.name for r in self.result.rows} | {
            d.name for d in self.result.deferred
        }

    def _check_result_clauses(
        self,
        stmt: ast.SelectStmt,
        names: set[str],
        positions: set[int],
        has_star: bool,
    ) -> None:
        """ORDER BY, GROUP BY and DISTINCT over a value the proxy computes per row
        would run over its inputs (ciphertext order): refused."""
        if not names and not positions:
            return
        distinct = stmt.distinctClause or ()
        if distinct and distinct[0] is None:
            raise refuse("SELECT DISTINCT over values computed per row", None)
        clauses = [
            ("ORDER BY", [s.node for s in stmt.sortClause or ()]),
            ("GROUP BY", list(stmt.groupClause or ())),
            ("DISTINCT ON", list(distinct)),
        ]
        for where, nodes in clauses:
            for node in nodes:
                self._check_result_reference(where, node, names, positions, has_star)

    def _check_result_reference(
        self,
        where: str,
        node: ast.Node,
        names: set[str],
        positions: set[int],
        has_star: bool,
    ) -> None:
        if isinstance(node, ast.A_Const) and isinstance(node.val, ast.Integer):
            if node.val.ival in positions or (has_star and positions):
                raise refuse(
                    f"{where} {node.val.ival}: that result column is computed per row "
                    "by the proxy",
                    getattr(node, "location", None),
                )
            if positions and node.val.ival > min(positions):
                # Upstream, a value computed per row is as many columns as it has
                # inputs: the ordinal would name another column.
                raise refuse(
                    f"{where} {node.val.ival}: a result column after one computed "
                    "per row by the proxy is numbered otherwise upstream (name it)",
                    getattr(node, "location", None),
                )
        elif isinstance(node, ast.ColumnRef) and len(node.fields) == 1:
            field = node.fields[0]
            if isinstance(field, ast.String) and field.sval in names:
                raise refuse(
                    f'{where} "{field.sval}": that result column is computed per row '
                    "by the proxy",
                    node.location,
                )

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
                parts.append(placeholder("output", len(self.result.outputs) - 1))
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
            if self._fold_case(stmt, call):
                continue
            try:
                stands_for = self._stands_for(call)
                if stands_for is not None:
                    node = self._standing_for(call, stands_for)
                else:
                    node = self.compiler.compile(call)
            except NotFoldable as exc:
                if id(call) in self._searches:
                    self._search(self._searches[id(call)], stmt, exc)
                    continue
                raise self._refuse_over_rows(stmt, call, name, exc) from None
            assert isinstance(node, Call)
            if node.signature.kind != "crypto":
                continue  # key-management functions run natively upstream
            self._check_fold(node, [node], call, call.location)
            s, e, _ = sqltext.call_span(self.tokens, call.location)
            self.result.folds.append(Fold(self.span(s, e), node))

    def _check_fold(
        self, node: Node, calls: list[Call], source: ast.Node, location: int
    ) -> None:
        """A value folded in place is sent to the database in place of `source`:
        never the result of a secret call, and never a volatile call's one value
        where the database would evaluate it again for each row."""
        for each in calls:
            if is_secret(each.signature):
                raise refuse(
                    f"pgsodium.{each.signature.name}() here: its result is secret "
                    "and pgsodium-proxy never sends it to the database; select it "
                    "as a result column",
                    location,
                )
        if _volatile(node) and self._repeated(source):
            raise refuse(
                "a volatile pgsodium call here (randombytes_*, a keygen or noncegen): "
                "it gives a new value each time, and the database would evaluate it "
                "for every row where pgsodium-proxy computes one value for the "
                "statement",
                location,
            )

    def _fold_case(self, stmt: ast.Node, call: ast.FuncCall) -> bool:
        """A call inside a searched CASE that folds as a whole (`CASE WHEN $1 IS
        NULL THEN NULL ELSE encrypt($1, …) END`, as TCE writes values): the CASE
        is folded, so the call runs only when its branch is taken. The outermost
        such CASE that folds: one that depends on rows may hold one that does not
        (`CASE WHEN g > 1 THEN vault.create_secret($1) END`), whose value test
        would otherwise go upstream with the value."""
        for case in _case_exprs(stmt):  # outer ones first
            inside = _calls(case)
            if not any(c is call for c in inside):
                continue
            ours = [c for c in inside if is_pgsodium_call(c, self.on_path)]
            marked = {self._stands_for(c) for c in ours}
            try:
                if len(marked) == 1 and None not in marked:
                    # A marked encryption of a parameter (its rewrite's own CASE).
                    node = self._standing_for(case, *marked)
                else:
                    node = self.compiler.compile(case)
                    self.compiler.checks |= {m for m in marked if m is not None}
            except NotFoldable:
                continue
            calls = [n for n in walk(node) if isinstance(n, Call)]
            self._check_fold(node, calls, case, call.location)
            end = sqltext.case_end(self.tokens, case.location)
            self.result.folds.append(Fold(self.span(case.location, end), node))
            for each in inside:
                self.handled.add(id(each))
            return True
        return False

    def _search(self, found: search.Search, stmt: ast.Node, exc: NotFoldable) -> None:
        """`decrypt(c, ...) = value` becomes `(c) = <ciphertext of value>`, as a
        condition of WHERE only (rewriter.positive). A value that may be NULL
        (a parameter, or a literal NULL) folds into a CASE that keeps it NULL:
        `c = NULL`, no row, as pgsodium's `decrypt(...) = NULL` gives."""
        call = found.decrypt
        # The server resolves the `=` first: its 42883 wherever the equality stands.
        equality.check_operand(
            "bytea" if found.wrapper is None else "text",
            found.value,
            self.declared,
            found.decrypted_left,
            found.operator,
        )
        if found.construct is not None:
            _, name = function_name(call)
            raise positive.refuse(
                f"a comparison of pgsodium.{name}()", found.construct, call.location
            )
        rest = tuple(call.args[1:])
        plaintext = found.value
        if found.wrapper is not None:
            plaintext = ast.FuncCall(
                funcname=(ast.String("convert_to"),),
                args=(found.value, found.wrapper.args[1]),
                location=call.location,
            )
        encrypt: ast.Node = ast.FuncCall(
            funcname=(ast.String("pgsodium"), ast.String("crypto_aead_det_encrypt")),
            args=(plaintext, *rest),
            location=call.location,
        )
        if tce.visible(found.value):
            # Evaluated once per branch: only a value without calls (a volatile
            # call would give the test and the encryption different values).
            encrypt = ast.CaseExpr(
                args=(
                    ast.CaseWhen(
                        expr=ast.NullTest(
                            arg=found.value,
                            nulltesttype=NullTestType.IS_NULL,
                            argisrow=False,
                        ),
                        result=ast.A_Const(isnull=True),
                    ),
                ),
                defresult=encrypt,
                location=call.location,
            )
        # The decrypt's own signature, for its EXECUTE privilege (PostgreSQL's check).
        typed_null = ast.TypeCast(
            arg=ast.A_Const(isnull=True),
            typeName=ast.TypeName(names=(ast.String("bytea"),)),
        )
        try:
            self.compiler.compile(
                ast.FuncCall(
                    funcname=call.funcname,
                    args=(typed_null, *rest),
                    location=call.location,
                )
            )
            self.compiler.compile(plaintext)  # the value's own calls' privileges
            node = self._standing_for(encrypt)
        except NotFoldable as inner_exc:
            _, name = function_name(call)
            raise self._refuse_over_rows(stmt, call, name, inner_exc) from None
        message = self.sql[found.message_span[0] : found.message_span[1]]
        self.result.texts.append((*self.span(*found.decrypted_span), f"({message})"))
        self.result.folds.append(Fold(self.span(*found.value_span), node))
        self._mark_handled(call)

    def _standing_for(self, encrypt: ast.Node, needs: str | None = None) -> Node:
        """An encryption the proxy computes in place of what pgsodium or Vault
        would evaluate: a search's decrypt on each row (whose privilege the caller
        checks, or `needs` for a decrypting view's), Vault's function (`needs`).
        SECURITY: the role needs EXECUTE on that, and nothing on the encrypt,
        which pgsodium never calls (or Vault calls as its definer): its privilege
        is the checks' only addition, the value's own calls compiled first."""
        needed = set(self.compiler.checks)
        if needs is not None:
            needed.add(needs)
        node = self.compiler.compile(encrypt)
        self.compiler.checks.intersection_update(needed)
        self.compiler.checks |= needed
        return node

    def _stands_for(self, call: ast.FuncCall) -> str | None:
        """What a call marked by the proxy's own rewrite stands for (its mark
        just inside its parentheses, rewriter.marks); None for any other call."""
        if not any(m in self.sql for m in STANDS_FOR):
            return None
        if not is_pgsodium_call(call, self.on_path):
            return None
        start, _, args = sqltext.call_span(self.tokens, call.location)
        if not args:
            return None
        first = self.sql[start : args[0][1]].partition("(")[2].lstrip()
        return next((f for m, f in STANDS_FOR.items() if first.startswith(m)), None)

    def _refuse_over_rows(
        self, stmt: ast.Node, call: ast.FuncCall, name: str, exc: NotFoldable
    ) -> RewriteError:
        where = context.constructs(stmt).get(id(call))
        what = context.describe(exc.what)
        if _in_a_branchs_scalar_subquery(stmt, call):
            return refuse(
                f"pgsodium.{name}() over {what} in a scalar subquery in a branch of "
                "UNION ALL (or another set operation): the proxy computes a scalar "
                "subquery over rows only as a select-list item of a query that is "
                "not a set operation",
                call.location,
            )
        around = None if where is not None else context.enclosing(stmt, call)
        if around is not None:
            return refuse(
                f"pgsodium.{name}() over {what} in {around}: the proxy computes "
                f"values over rows, but not {around} around them",
                call.location,
            )
        if where is None:
            return refuse(
                f"pgsodium.{name}() over {what} here: its arguments must be "
                "literals or bind parameters, or it must be a select-list item",
                call.location,
            )
        return refuse(
            f"pgsodium.{name}() over {what} in {where}: the proxy computes values "
            "over rows only in the select list of the outermost query (or "
            "RETURNING), or in a select list that feeds it through subqueries in "
            "FROM and WITH queries",
            call.location,
        )

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
        if self._repeated(call) or any(self._repeated(a) for a in call.args or ()):
            # One key row, encrypted once by the proxy, cannot stand for a key
            # per row (its id would repeat).
            raise refuse(
                "pgsodium.create_key(raw_key => …) for each row of a query; "
                "create each key in a statement of its own",
                call.location,
            )
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
                    f"pgsodium.create_key({key} => {context.describe(exc.what)}): "
                    "it must be a literal or a bind parameter",
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
        handled = {d.span for d in self.result.deferred} | set(self._scalar_spans)
        handled |= set(self._scoped_spans)
        handled |= {span for span, _ in self.result.inner if span[0] >= 0}
        for ref in _column_refs(stmt):
            last = ref.fields[-1]
            if not (isinstance(last, ast.String) and last.sval == "decrypted_raw_key"):
                continue
            if any(s <= ref.location - self.start < e for s, e in handled):
                continue
            where = context.constructs(stmt).get(id(ref)) or context.enclosing(
                stmt, ref
            )
            raise refuse(
                "pgsodium.decrypted_key.decrypted_raw_key "
                f"{'in ' + where if where else 'here'}: the proxy decrypts it "
                "only in the select list (or a subquery that feeds it), inside the "
                "expressions it evaluates over rows",
                ref.location,
            )

    # -- pgsodium.decrypted_key -----------------------------------------------------

    def _decrypted_key_source(self, stmt: ast.SelectStmt) -> str | None:
        """The qualifier naming pgsodium.decrypted_key in FROM, if it is there;
        notes whether it is the only FROM item."""
        view, alone = self.decrypted_key_in(stmt)
        if view is not None:
            self._view_alone = alone
        return view

    def decrypted_key_in(self, stmt: ast.Node) -> tuple[str | None, bool]:
        """The qualifier naming pgsodium.decrypted_key in FROM, if it is there, and
        whether it is the only FROM item (a bare `*` then means its columns
        alone). Two instances of the view are refused: which one an unqualified
        decrypted_raw_key means is not the proxy's to guess."""
        items = getattr(stmt, "fromClause", None) or ()
        relations = _from_relations(items)
        found = [r for r in relations if self._is_decrypted_key(r)]
        if not found:
            return None, False
        if len(found) > 1:
            raise refuse(
                "pgsodium.decrypted_key twice in one FROM: join it once and "
                "read the other key rows from pgsodium.key",
                found[1].location,
            )
        var = found[0]
        alone = len(items) == 1 and len(relations) == 1
        return (var.alias.aliasname if var.alias else var.relname), alone

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
            and (len(node.fields) == 1 or node.fields[-2].sval == view)
        ):
            return self._expanded_target(target, span, view)
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

    def _expanded_target(
        self, target: ast.ResTarget, span: tuple[int, int], view: str
    ) -> bool:
        """decrypted_raw_key inside any other expression: written out as pgsodium
        defines it, then computed per row like any pgsodium call over rows."""
        if not scalar.reads_decrypted_raw_key(target.val, view):
            return False
        start, end = span[0] + self.start, span[1] + self.start
        builder, value = scalar.expanded(
            self.compiler, self.sql, (start, end), target.val, view, self.on_path
        )
        group = len(self.result.rows)
        builder.scope = inner.Resolver(
            self._visible, lambda v: self._use_inner(v, group, star=False)
        )
        try:
            tree = builder.build(value)
        except NotFoldable:
            return False  # refused below, naming decrypted_raw_key
        name = target.name or figure_colname(target.val)
        self.result.rows.append(
            RowOutput(
                span, name, tree, tuple(builder.inputs), frozenset(builder.candidates)
            )
        )
        self._scalar_spans.append(span)
        self._mark_handled(target.val)
        return True

    def _star(self, node: ast.ColumnRef, span: tuple[int, int], view: str) -> bool:
        if len(node.fields) == 2 and node.fields[0].sval != view:
            return False
        if len(node.fields) == 1 and not self._view_alone:
            raise refuse(
                "* over pgsodium.decrypted_key joined with other relations: "
                f"select {view}.* and the other relations' columns by name",
                node.location,
            )
        q = sqltext.quote_ident(view)
        parts = []
        for column in DECRYPTED_KEY_COLUMNS:
            if column == "decrypted_raw_key":
                self.result.deferred.append(
                    DecryptedRawKey((-1, -1), column, view, (), False)
                )
                parts.append(placeholder("deferred", len(self.result.deferred) - 1))
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


_WRITES = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt)
_CURSOR_OPT_HOLD = 0x0020  # parsenodes.h: WITH HOLD, the cursor outlives its block


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


def _in_a_branchs_scalar_subquery(stmt: ast.Node, call: ast.FuncCall) -> bool:
    """Whether `call` is in a select-list scalar subquery of a branch of the
    outermost query, a set operation."""
    if not isinstance(stmt, ast.SelectStmt) or stmt.op.name == "SETOP_NONE":
        return False
    branches, leaves = [stmt], []
    while branches:
        query = branches.pop()
        if query.op.name == "SETOP_NONE":
            leaves.append(query)
        else:
            branches += [query.larg, query.rarg]
    return any(
        isinstance(target.val, ast.SubLink)
        and any(c is call for c in _calls(target.val))
        for leaf in leaves
        for target in leaf.targetList or ()
    )


def _is_create_key(node: ast.Node) -> bool:
    return isinstance(node, ast.FuncCall) and function_name(node)[1] == "create_key"


def _from_relations(items: Sequence[ast.Node]) -> list[ast.RangeVar]:
    """The tables and views of a FROM list, through joins (not into subqueries)."""
    found: list[ast.RangeVar] = []
    for item in items:
        if isinstance(item, ast.RangeVar):
            found.append(item)
        elif isinstance(item, ast.JoinExpr):
            found += _from_relations([item.larg, item.rarg])
    return found


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
    if isinstance(node, ast.CoalesceExpr):
        return "coalesce"
    return "?column?"


class _Collect(Visitor):  # type: ignore[misc]
    def __init__(self, kind: type) -> None:
        super().__init__()
        self.kind = kind
        self.found: list[ast.Node] = []

    def visit(self, ancestors, node):  # type: ignore[no-untyped-def]
        if isinstance(node, self.kind):
            self.found.append(node)


def _case_exprs(node: ast.Node) -> list[ast.CaseExpr]:
    collector = _Collect(ast.CaseExpr)
    collector(node)
    return collector.found


def _volatile(node: Node) -> bool:
    return any(
        isinstance(n, Call) and n.signature.volatility == "v" for n in walk(node)
    )


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
