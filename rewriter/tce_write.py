"""TCE rewriting of one statement: writes encrypted, decrypting views expanded.

See rewriter/tce.py for the design. Every value the proxy encrypts must be visible
in the statement (a literal, a bind parameter, or a cast of one), and so must the
key column, associated data and nonce that pgsodium's trigger would read from the
same row; otherwise the statement is refused with 0A000.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pglast import ast
from pglast.enums import OnConflictAction
from pglast.visitors import Visitor

from . import sqltext, unrewritten, values_rows, vault
from .sqltext import Token
from .statements import DEFINITIONS
from .tce import (
    Column,
    Relation,
    _RangeVars,
    associated_text,
    associated_type,
    is_null,
    range_var_name,
    refuse,
    refuse_sampled_view,
    visible,
)
from .tce import _literal as sql_literal
from .tce import parse as parse_statements
from .tce_reencrypt import ReencryptPlan
from .tce_reencrypt import plan as plan_reencrypt
from .tce_search import search

__all__ = ["parse_statements", "plan_rewrite", "rewrite"]

_VIEW_ALIAS = "_pgsp_tce"
_DATA_STATEMENTS = (
    ast.SelectStmt,
    ast.InsertStmt,
    ast.UpdateStmt,
    ast.DeleteStmt,
    ast.CopyStmt,
    ast.MergeStmt,
    ast.DeclareCursorStmt,  # its query reads as a SELECT does
)


def rewrite(
    sql: str, statements: Sequence[ast.RawStmt], relations: dict[str, Relation]
) -> str:
    """The statements with TCE turned into pgsodium calls (or a RewriteError)."""
    return plan_rewrite(sql, statements, relations)[0]


def plan_rewrite(
    sql: str,
    statements: Sequence[ast.RawStmt],
    relations: dict[str, Relation],
    declared: Sequence[int] = (),
    guards: dict[str, str] | None = None,
) -> tuple[str, ReencryptPlan | None]:
    """The rewritten text, and the re-encryption its UPDATE needs first (if any:
    rewriter.tce_reencrypt); the text is then that UPDATE with its FROM item yet
    to be filled. `declared`: the parameter type OIDs of its Parse message.
    `guards`: for a relation named as resolved before the message ran (its
    qualified name), the name as the client wrote it; each value encrypted for
    it then fails upstream if that name resolves to another table when its
    statement runs (pgsodium._proxy_tce_written)."""
    from .tce import has_security_label, security_label

    values_rows.check_lengths(statements, sql)
    toks = sqltext.tokens(sql)
    replacements: list[tuple[int, int, str]] = []
    reencrypt: ReencryptPlan | None = None
    for raw in statements:
        stmt = raw.stmt
        if has_security_label([raw]):
            start = raw.stmt_location
            end = start + raw.stmt_len if raw.stmt_len else len(sql)
            replacements.append((start, end, security_label(stmt)))
            continue
        statement = _Statement(sql, toks, relations, declared, guards or {})
        replacements += statement.rewrite(stmt)
        replacements += vault.replacements(sql, toks, stmt)
        if statement.reencrypt is not None:
            if len(statements) > 1:
                names = ", ".join(c.name for c in statement.reencrypt.columns)
                raise refuse(
                    f"re-encrypt {names} in an UPDATE among other statements (send "
                    "it as a Query of its own)"
                )
            reencrypt = statement.reencrypt
    if not replacements:
        return sql, None
    return sqltext.splice(sql, replacements), reencrypt


def _regclass(name: str) -> str:
    """`name` (a relation name in SQL syntax) as a regclass constant, resolved when
    its statement is analysed."""
    return f"{sql_literal(name)}::pg_catalog.regclass"


def _literal(node: Any) -> bool:
    if isinstance(node, ast.TypeCast):
        return _literal(node.arg)
    return isinstance(node, ast.A_Const)


def _dependencies(column: Column) -> list[str]:
    deps = list(column.associated)
    if column.key_column:
        deps.append(column.key_column)
    if column.nonce:
        deps.append(column.nonce)
    return deps


def _changed(relation: Relation, names: list[str]) -> tuple[bool, list[Column]]:
    """Whether the SET list writes an encrypted column, and the encrypted columns
    it leaves alone but whose key, associated data or nonce it changes."""
    touched = False
    stale: list[Column] = []
    for column in relation.columns:
        if not column.encrypted:
            continue
        if column.name in names:
            touched = True
        elif any(d in names for d in _dependencies(column)):
            stale.append(column)
    return touched, stale


def privilege_reference(qualifier: str, column: str) -> str:
    """A reference to a column that PostgreSQL's privilege check sees and its
    planner drops unevaluated (CASE WHEN false folds to NULL): the proxy computes
    the column itself, and SELECT on it must be checked as if the database did."""
    q = sqltext.quote_ident
    return f"CASE WHEN false THEN {q(qualifier)}.{q(column)} END"


def decrypted_expression(column: Column, guard: str | None = None) -> str:
    """pgsodium's decrypted_<c> column of the generated view; `guard`: the alias
    of the view, whose decrypted_<c> the client's role must be allowed to read."""
    q = sqltext.quote_ident
    col = q(column.name)
    tested = col
    if guard is not None:
        reference = privilege_reference(guard, "decrypted_" + column.name)
        tested = f"COALESCE({col}, {reference})"
    key = q(column.key_column) if column.key_column else f"'{column.key_id}'"
    ad = " || ".join(f"{q(a)}::text" for a in column.associated) or "''"
    nonce = q(column.nonce) if column.nonce else "NULL"
    inner = (
        f"pgsodium.crypto_aead_det_decrypt(decode({col}, 'base64'), "
        f"convert_to(({ad})::text, 'utf8'), {key}::uuid, {nonce})"
    )
    if column.type == "text":
        inner = f"convert_from({inner}, 'utf8')"
    else:
        inner = (
            f"pgsodium.crypto_aead_det_decrypt({col}, "
            f"convert_to(({ad})::text, 'utf8'), {key}::uuid, {nonce})"
        )
    return (
        f"CASE WHEN {tested} IS NULL THEN NULL ELSE CASE WHEN {key} IS NULL THEN NULL "
        f"ELSE {inner} END END AS {q('decrypted_' + column.name)}"
    )


class _Statement:
    def __init__(
        self,
        sql: str,
        toks: list[Token],
        relations: dict[str, Relation],
        declared: Sequence[int] = (),
        guards: dict[str, str] | None = None,
    ) -> None:
        self.sql = sql
        self.toks = toks
        self.relations = relations
        self.declared = declared  # parameter type OIDs (0 = unspecified)
        self.guards = guards or {}
        # The target's (name as written, qualified name) when guarded.
        self.guard: tuple[str, str] | None = None
        self.out: list[tuple[int, int, str]] = []
        self.reencrypt: ReencryptPlan | None = None
        self.updating = False  # an UPDATE's SET list, not an INSERT's VALUES

    def rewrite(self, stmt: Any) -> list[tuple[int, int, str]]:
        self._refuse_nested_writes(stmt)
        if not isinstance(stmt, _DATA_STATEMENTS):
            # DDL, GRANT, ...: names the relations, reads nothing now. A view's
            # definition is read through the proxy later (proxy/views.py); other
            # queries left as written (EXPLAIN, CREATE TABLE AS, ...) are refused
            # where they would take a search term upstream.
            if not isinstance(stmt, DEFINITIONS):
                unrewritten.check(stmt, self._decrypting_views(stmt))
            return self.out
        target = getattr(stmt, "relation", None)
        target_rel = self._relation(target) if target is not None else None
        if target is not None and range_var_name(target) in self.guards:
            qualified = range_var_name(target)
            self.guard = (self.guards[qualified], qualified)
        if target_rel is not None:
            self._write(stmt, target_rel)
        visitor = _RangeVars()
        visitor(stmt)
        into = getattr(stmt, "intoClause", None)
        views = []
        for rv in visitor.found:
            if rv is target or (into is not None and rv is into.rel):
                continue
            relation = self._relation(rv)
            if relation is not None and relation.kind == "view":
                views.append((rv, relation))
        refuse_sampled_view(stmt, [rv for rv, _ in views])
        for rv, relation in views:
            self._expand(rv, relation)
        # Every query level's WHERE over a view in its own FROM, however deep
        # (a WITH query, a subquery in FROM or in an expression).
        for query in _selects(stmt):
            if query.whereClause is not None:
                search(self, query)
        if self.reencrypt is not None:
            self._check_reencrypt_where(self.reencrypt)
        return self.out

    def _decrypting_views(self, stmt: Any) -> list[ast.RangeVar]:
        visitor = _RangeVars()
        visitor(stmt)
        return [
            rv
            for rv in visitor.found
            if (relation := self._relation(rv)) is not None and relation.kind == "view"
        ]

    def _check_reencrypt_where(self, plan: ReencryptPlan) -> None:
        """The pre-read sends the client's WHERE as the client wrote it: one that
        this pass rewrote (a decrypting view read in a subquery) cannot go so."""
        if plan.where is None:
            return
        start, end = plan.where
        if any(start <= s and e <= end and s < e for s, e, _ in self.out):
            names = ", ".join(c.name for c in plan.columns)
            raise refuse(
                f"re-encrypt {names} for an UPDATE whose WHERE reads a decrypting view"
            )

    def _refuse_nested_writes(self, stmt: Any) -> None:
        """A write of a labelled relation anywhere but at the top (in WITH, EXPLAIN
        ANALYZE, PREPARE, CREATE RULE, ...): its values would go upstream as they
        are, so it is refused."""
        finder = _Writes()
        finder(stmt)
        for node in finder.found:
            if node is stmt or isinstance(node, ast.CopyStmt):
                continue
            if self._relation(node.relation) is not None:
                raise refuse(
                    "write a table with encrypted columns here: only as a statement "
                    "of its own",
                    node.relation.location,
                )

    def _relation(self, rv: Any) -> Relation | None:
        if not isinstance(rv, ast.RangeVar):
            return None
        return self.relations.get(range_var_name(rv))

    # -- reads -------------------------------------------------------------------------

    def _expand(self, rv: ast.RangeVar, relation: Relation) -> None:
        start, end = self._name_span(rv.location)
        name_start, name_end = start, end
        # `ONLY view` and `view *` mean the view itself (a view has no children):
        # the subquery takes their place too.
        index = next(i for i, t in enumerate(self.toks) if t.start >= start)
        if index > 0 and self.toks[index - 1].name == "ONLY":
            start = self.toks[index - 1].start
        after = next((t for t in self.toks if t.start >= end), None)
        if after is not None and after.name == "ASCII_42":
            end = after.end
        items: list[str] = []
        for column in relation.columns:
            items.append(sqltext.quote_ident(column.name))
            if column.encrypted:
                items.append(decrypted_expression(column))
        # SECURITY: the database checks SELECT on each decrypted_<c> the proxy
        # computes (or searches), through references its planner folds away.
        guards = [
            f"({privilege_reference(_VIEW_ALIAS, 'decrypted_' + c.name)}) IS NULL"
            for c in relation.columns
            if c.encrypted
        ]
        where = f" WHERE {' AND '.join(guards)}" if guards else ""
        text = (
            f"(SELECT {', '.join(items)} FROM {self.sql[name_start:name_end]} "
            f"{_VIEW_ALIAS}{where})"
        )
        if rv.alias is None:
            text += " AS " + sqltext.quote_ident(rv.relname)
        self.out.append((start, end, text))

    def _name_span(self, location: int) -> tuple[int, int]:
        index = next(i for i, t in enumerate(self.toks) if t.start >= location)
        end = self.toks[index].end
        while (
            index + 2 < len(self.toks)
            and self.toks[index + 1].name == "ASCII_46"
            and self.toks[index + 1].start == end
        ):
            index += 2
            end = self.toks[index].end
        return location, end

    # -- writes ------------------------------------------------------------------------

    def _write(self, stmt: Any, relation: Relation) -> None:
        if relation.kind == "dependent":
            # A user's view over a labelled table: the proxy does not know which
            # of its columns are encrypted, so it cannot encrypt what goes through.
            if not isinstance(stmt, ast.DeleteStmt) and not (
                isinstance(stmt, ast.CopyStmt) and not stmt.is_from
            ):
                raise refuse(
                    f"write {relation.table}, a view over a table with encrypted "
                    "columns (write the table or its decrypting view)",
                    stmt.relation.location,
                )
            return
        if relation.kind == "view":
            self._refuse_decrypted_refs(stmt, relation)
        if isinstance(stmt, ast.InsertStmt):
            self._insert(stmt, relation)
        elif isinstance(stmt, ast.UpdateStmt):
            self.updating = True
            self._update(stmt, relation)
        elif isinstance(stmt, ast.CopyStmt):
            if stmt.is_from and (stmt.filename is not None or stmt.is_program):
                raise refuse(
                    "COPY FROM a server file or program into a table with encrypted "
                    "columns (use FROM STDIN, or psql's \\copy)"
                )
            # FROM STDIN: its rows are encrypted as they stream (proxy.tce).
        elif isinstance(stmt, ast.MergeStmt):
            raise refuse("MERGE into a table with encrypted columns")

    def _refuse_decrypted_refs(self, stmt: Any, relation: Relation) -> None:
        """decrypted_<c> of the view being written (WHERE, RETURNING, SET values)
        would be computed upstream, where it cannot be: refused."""
        decrypted = {"decrypted_" + c.name for c in relation.columns if c.encrypted}
        refs = _ColumnRefs()
        refs(stmt)
        for ref in refs.found:
            last = ref.fields[-1]
            if isinstance(last, ast.String) and last.sval in decrypted:
                raise refuse(
                    f"read {last.sval} of the view this statement writes",
                    ref.location,
                )

    def _insert(self, stmt: ast.InsertStmt, relation: Relation) -> None:
        if stmt.cols:
            names = [self._target_name(rt, relation) for rt in stmt.cols]
        elif relation.kind == "table":
            names = [c.name for c in relation.columns]
            select = stmt.selectStmt
            rows = getattr(select, "valuesLists", None)
            if rows and len(rows[0]) < len(names):
                # PostgreSQL gives the first columns the values and the rest their
                # defaults (a generated column last: its expression).
                names = names[: len(rows[0])]
        else:
            raise refuse("INSERT into a decrypting view without a column list")
        encrypted = [n for n in names if self._encrypted(relation, n)]
        if encrypted:
            select = stmt.selectStmt
            if select is not None:
                self._insert_values(select, names, encrypted, relation, stmt)
        clause = stmt.onConflictClause
        if clause is not None and clause.action == OnConflictAction.ONCONFLICT_UPDATE:
            self._on_conflict(clause, relation)

    def _insert_values(
        self,
        select: Any,
        names: list[str],
        encrypted: list[str],
        relation: Relation,
        stmt: ast.InsertStmt,
    ) -> None:
        if not select.valuesLists or any(
            getattr(select, f)
            for f in ("withClause", "sortClause", "limitCount", "limitOffset")
        ):
            raise refuse("INSERT ... SELECT into an encrypted column", stmt_loc(stmt))
        rows = self._values_rows(stmt.relation.location, len(select.valuesLists))
        values_rows.check_insert(select.valuesLists, rows, names, stmt.cols, self.toks)
        for nodes, spans in zip(select.valuesLists, rows, strict=True):
            if len(nodes) != len(spans):
                raise refuse("read this VALUES list", stmt_loc(stmt))
            row = {
                name: (node, self.sql[s:e])
                for name, node, (s, e) in zip(names, nodes, spans, strict=True)
            }
            for name in encrypted:
                node, _ = row[name]
                span = spans[names.index(name)]
                self._encrypt_value(relation, name, node, span, row)

    def _update(self, stmt: ast.UpdateStmt, relation: Relation) -> None:
        targets = list(stmt.targetList or ())
        names = [self._target_name(rt, relation) for rt in targets]
        touched, stale = _changed(relation, names)
        if not (touched or stale):
            return
        if any(isinstance(rt.val, ast.MultiAssignRef) for rt in targets):
            raise refuse("UPDATE ... SET (a, b) = ... of an encrypted column")
        items = sqltext.list_items(self.toks, targets[0].location)
        if len(items) != len(targets):
            raise refuse("read this SET list", targets[0].location)
        spans = [self._after_equals(s, e) for s, e in items]
        row = {
            name: (rt.val, self.sql[s:e])
            for name, rt, (s, e) in zip(names, targets, spans, strict=True)
        }
        for name, rt, span in zip(names, targets, spans, strict=True):
            if self._encrypted(relation, name):
                self._encrypt_value(relation, name, rt.val, span, row)
        if stale:
            # Its key, associated data or nonce changes, its value does not: the
            # proxy re-encrypts each row's value (rewriter.tce_reencrypt).
            self.reencrypt, replacements = plan_reencrypt(
                self.sql, self.toks, stmt, relation, stale, row, items[-1][1]
            )
            self.out += replacements

    def _on_conflict(self, clause: ast.OnConflictClause, relation: Relation) -> None:
        infer = clause.infer
        conflict = {e.name for e in (infer.indexElems or ())} if infer else set()
        assigned: dict[str, Any] = {rt.name: rt.val for rt in (clause.targetList or ())}
        for name, value in assigned.items():
            column = relation.column(name)
            if column is None or not column.encrypted:
                continue
            if not _is_excluded(value, name):
                raise refuse(
                    f"set {name} in ON CONFLICT DO UPDATE other than to EXCLUDED.{name}"
                )
            for dep in _dependencies(column):
                if dep not in conflict and not _is_excluded(assigned.get(dep), dep):
                    raise refuse(
                        f"set {name} = EXCLUDED.{name} unless {dep} is a conflict "
                        f"column or also set to EXCLUDED.{dep}"
                    )
        _, stale = _changed(relation, list(assigned))
        if stale:
            # The proxy re-encrypts a plain UPDATE's rows, not an upsert's.
            column = stale[0]
            changed = [d for d in _dependencies(column) if d in assigned]
            raise refuse(
                f"change {', '.join(changed)} without re-encrypting {column.name} "
                f"in ON CONFLICT DO UPDATE (set {column.name} in the same statement)"
            )

    def _encrypt_value(
        self,
        relation: Relation,
        name: str,
        node: Any,
        span: tuple[int, int],
        row: dict[str, tuple[Any, str]],
    ) -> None:
        if is_null(node) or isinstance(node, ast.SetToDefault):
            return  # NULL stays NULL; a default is checked by the guard upstream
        if not visible(node):
            raise refuse(f"encrypt a value of {name} it cannot see", span[0])
        column = relation.column(name)
        assert column is not None
        value = self.sql[span[0] : span[1]]
        # A bind parameter may be NULL: NULL stays NULL, as pgsodium's trigger
        # leaves it; so does the value of a row whose key column is NULL (the
        # trigger drops its plaintext). The proxy folds the whole CASE with the
        # values bound, computing only the branch taken; nothing of it goes up.
        nulls = [] if _literal(node) else [value]
        key = f"'{column.key_id}'::uuid"
        if column.key_column:
            key_node = row.get(column.key_column, (None, ""))[0]
            if is_null(key_node):
                self.out.append((span[0], span[1], "NULL"))
                return
            key_text = self._dependency(row, column.key_column, name)
            key = f"({key_text})::uuid"
            if not _literal(key_node):
                nulls.append(key)
        text = self._trigger_expression(relation, column, value, key, row)
        if nulls:
            whens = " ".join(f"WHEN ({n}) IS NULL THEN NULL" for n in nulls)
            text = f"CASE {whens} ELSE {text} END"
        self.out.append((span[0], span[1], text))

    def _trigger_expression(
        self,
        relation: Relation,
        column: Column,
        value: str,
        key: str,
        row: dict[str, tuple[Any, str]],
    ) -> str:
        """pgsodium's trigger expression for one value: `value` encrypted under
        `key` with the row's associated data and nonce."""
        name = column.name
        nonce = "NULL::bytea"
        if column.nonce:
            nonce = f"({self._dependency(row, column.nonce, name)})::bytea"
        ad_parts = []
        for a in column.associated:
            ad_type = relation.column(a)
            type_name = ad_type.type if ad_type else ""
            if associated_type(type_name) is None:
                raise refuse(f"compute the associated data {a} of {name}")
            given = self._dependency(row, a, name)
            ad_parts.append(str(associated_text(given, type_name)))
        ad = " || ".join(ad_parts) or "''"
        if column.type == "text":
            text = (
                f"encode(pgsodium.crypto_aead_det_encrypt(convert_to(({value})::text, "
                f"'utf8'), convert_to(({ad})::text, 'utf8'), {key}, {nonce}), 'base64')"
            )
        else:
            text = (
                f"pgsodium.crypto_aead_det_encrypt(({value})::bytea, "
                f"convert_to(({ad})::text, 'utf8'), {key}, {nonce})"
            )
        if self.guard is None:
            return text
        written, qualified = self.guard
        return (
            f"pgsodium._proxy_tce_written(({text})::{column.type}, "
            f"{_regclass(written)}, {_regclass(qualified)})"
        )

    def _dependency(self, row: dict[str, tuple[Any, str]], dep: str, name: str) -> str:
        if dep not in row:
            error = refuse(f"encrypt {name} without {dep} in the same row")
            error.hint = (
                f"The proxy encrypts {name} with the {dep} it sees in the statement: "
                + (
                    f"set {dep} in the same SET list, to the row's current value if "
                    f"it does not change (other encrypted columns that depend on "
                    f"{dep} are re-encrypted)."
                    if self.updating
                    else f"give {dep} in the same VALUES row."
                )
            )
            raise error
        node, text = row[dep]
        if not visible(node):
            raise refuse(f"encrypt {name}: {dep} is not a literal or parameter")
        return text

    # -- helpers -----------------------------------------------------------------------

    def _encrypted(self, relation: Relation, name: str) -> bool:
        column = relation.column(name)
        return column is not None and column.encrypted

    def _target_name(self, rt: ast.ResTarget, relation: Relation) -> str:
        name = rt.name
        if relation.kind == "view" and name.startswith("decrypted_"):
            base = relation.column(name[len("decrypted_") :])
            if base is not None and base.encrypted:
                raise refuse(f"write {name} (write {base.name} instead)", rt.location)
        if rt.indirection and self._involved(relation, name):
            raise refuse(f"write part of {name}", rt.location)
        return name

    def _involved(self, relation: Relation, name: str) -> bool:
        return any(
            c.encrypted and (c.name == name or name in _dependencies(c))
            for c in relation.columns
        )

    def _values_rows(self, after: int, count: int) -> list[list[tuple[int, int]]]:
        """Spans of each VALUES row's items, from the text after the target."""
        index = next(
            (
                i
                for i, t in enumerate(self.toks)
                if t.start > after and t.name == "VALUES"
            ),
            None,
        )
        if index is None:
            raise refuse("find the VALUES list", after)
        rows = values_rows.rows_at(self.toks, index)
        if len(rows) < count:
            raise refuse("read this VALUES list", after)
        return rows[:count]

    def _after_equals(self, start: int, end: int) -> tuple[int, int]:
        for tok in self.toks:
            if start <= tok.start < end and tok.name == "ASCII_61":
                position = tok.end
                while position < end and self.sql[position].isspace():
                    position += 1
                return position, end
        raise refuse("read this SET item", start)


class _ColumnRefs(Visitor):  # type: ignore[misc]
    def __init__(self) -> None:
        self.found: list[ast.ColumnRef] = []

    def visit_ColumnRef(self, ancestors: Any, node: ast.ColumnRef) -> None:
        self.found.append(node)


class _Writes(Visitor):  # type: ignore[misc]
    def __init__(self) -> None:
        self.found: list[Any] = []

    def visit_InsertStmt(self, ancestors: Any, node: Any) -> None:
        self.found.append(node)

    def visit_UpdateStmt(self, ancestors: Any, node: Any) -> None:
        self.found.append(node)

    def visit_MergeStmt(self, ancestors: Any, node: Any) -> None:
        self.found.append(node)


class _Selects(Visitor):  # type: ignore[misc]
    def __init__(self) -> None:
        self.found: list[ast.SelectStmt] = []

    def visit_SelectStmt(self, ancestors: Any, node: ast.SelectStmt) -> None:
        self.found.append(node)


def _selects(stmt: Any) -> list[ast.SelectStmt]:
    finder = _Selects()
    finder(stmt)
    return finder.found


def _is_excluded(node: Any, name: str) -> bool:
    return (
        isinstance(node, ast.ColumnRef)
        and len(node.fields) == 2
        and all(isinstance(f, ast.String) for f in node.fields)
        and node.fields[0].sval == "excluded"
        and node.fields[1].sval == name
    )


def stmt_loc(stmt: Any) -> int | None:
    relation = getattr(stmt, "relation", None)
    return getattr(relation, "location", None)
