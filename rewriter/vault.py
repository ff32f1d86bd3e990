"""Supabase Vault through the proxy: create/update rewritten, the view expanded.

Vault 0.3 stores `encode(crypto_aead_det_encrypt(convert_to(secret, 'utf8'),
convert_to(id::text, 'utf8'), 0, 'pgsodium', nonce), 'base64')`. A call of
`vault.create_secret(...)` becomes `vault._proxy_create_secret(<ids>, <those
expressions>, <nonces>, ...)`: arrays of ids and nonces the proxy draws, so the rest
of the rewriter folds each ciphertext and the secret never reaches the database. A
call PostgreSQL may run for several rows gets _ROWS of them, one call _ONCE; each
run takes the next unused id, and one run too many fails with 0A000 upstream;
`vault.update_secret(...)` likewise, with a fresh nonce. A read of
`vault.decrypted_secrets` becomes a subquery over the view whose
`decrypted_secret` the per-row machinery computes. Arguments must be literals or
bind parameters (or casts of them); anything else is refused with 0A000. The
client sees the column names Vault's own call gives: the rewritten call is named
after vault's function wherever PostgreSQL would name a column after it.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from pglast import ast
from pglast.visitors import Visitor

from . import marks, sqltext, unrewritten
from .errors import RewriteError
from .sqltext import Token
from .statements import DEFINITIONS
from .tce import is_null, refuse_sampled_view

_NONCE_BYTES = 16
# The ids (and nonces and ciphertexts) a create_secret call carries: one where it
# runs at most once, else enough for the rows of a small script; each costs one
# encryption and about 200 bytes of SQL. The upstream function refuses a run past
# the last one (0A000) rather than reuse an id (23505) or a nonce.
_ONCE = 1
_ROWS = 64
_CREATE = ("new_secret", "new_name", "new_description", "new_key_id")
_UPDATE = ("secret_id", "new_secret", "new_name", "new_description", "new_key_id")
_VIEW_COLUMNS = (
    "id, name, description, secret, "
    "convert_from(pgsodium.crypto_aead_det_decrypt(decode(secret, 'base64'), "
    "convert_to(id::text, 'utf8'), 0::bigint, 'pgsodium'::bytea, nonce), 'utf8') "
    "AS decrypted_secret, key_id, nonce, created_at, updated_at"
)


_NAMES = ("create_secret", "update_secret")


class _Unqualified(Visitor):  # type: ignore[misc]
    """Vault's names written without their schema (found through search_path)."""

    def __init__(self) -> None:
        self.found = False

    def visit_FuncCall(self, ancestors: Any, node: ast.FuncCall) -> None:
        names = [n.sval for n in node.funcname]
        self.found = self.found or (len(names) == 1 and names[0] in _NAMES)

    def visit_RangeVar(self, ancestors: Any, node: ast.RangeVar) -> None:
        self.found = self.found or (
            node.schemaname is None and node.relname in ("decrypted_secrets", "secrets")
        )


def unqualified(statements: Any) -> bool:
    """Whether the statements call Vault's functions or name its relations
    without `vault.`; the proxy recognises them qualified only."""
    finder = _Unqualified()
    for raw in statements:
        finder(raw.stmt)
    return finder.found


def mentions_vault(statements: Any) -> bool:
    finder = _Finder()
    for raw in statements:
        finder(raw.stmt)
    return bool(finder.calls or finder.views or finder.secrets)


class _Finder(Visitor):  # type: ignore[misc]
    def __init__(self) -> None:
        self.calls: list[ast.FuncCall] = []
        self.repeats: list[ast.FuncCall] = []  # calls that may run for many rows
        self.views: list[ast.RangeVar] = []
        self.secrets: list[ast.RangeVar] = []  # vault.secrets itself
        self.target_lists: list[tuple[ast.ResTarget, ...]] = []
        self.functions: list[ast.Node] = []  # function expressions in FROM

    def visit_FuncCall(self, ancestors: Any, node: ast.FuncCall) -> None:
        names = [n.sval for n in node.funcname]
        if (
            len(names) == 2
            and names[0] == "vault"
            and names[1]
            in (
                "create_secret",
                "update_secret",
            )
        ):
            self.calls.append(node)
            if _may_repeat(ancestors):
                self.repeats.append(node)

    def visit_RangeVar(self, ancestors: Any, node: ast.RangeVar) -> None:
        if node.schemaname == "vault" and node.relname == "decrypted_secrets":
            self.views.append(node)
        elif node.schemaname == "vault" and node.relname == "secrets":
            self.secrets.append(node)

    def visit_SelectStmt(self, ancestors: Any, node: ast.SelectStmt) -> None:
        if node.targetList:
            self.target_lists.append(node.targetList)

    def visit_ReturningClause(self, ancestors: Any, node: ast.ReturningClause) -> None:
        if node.exprs:
            self.target_lists.append(node.exprs)

    def visit_RangeFunction(self, ancestors: Any, node: ast.RangeFunction) -> None:
        self.functions += [function for function, _ in node.functions]


_PER_ROW = (ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)


def _may_repeat(ancestors: Any) -> bool:
    """Whether PostgreSQL may evaluate the call at `ancestors` for more than one
    row: under a query level with FROM (not in that FROM, where a function runs
    once), beside a set-returning call, in UPDATE/DELETE/MERGE, RETURNING or ON
    CONFLICT. A WITH query with a volatile call runs once. Only sizes the call's
    ids: the upstream counts the runs, and refuses one too many."""
    while ancestors is not None and ancestors.node is not None:
        node, member = ancestors.node, ancestors.member
        if isinstance(node, (ast.RangeFunction, ast.CommonTableExpr)):
            return False
        if isinstance(node, _PER_ROW):
            return True
        if isinstance(node, ast.InsertStmt) and member != "selectStmt":
            return True
        if isinstance(node, ast.SelectStmt) and member != "fromClause":
            if node.fromClause or (
                member == "targetList" and _calls_besides_vault(node.targetList)
            ):
                return True
        ancestors = ancestors.parent
    return False


# Set-returning functions of pg_catalog that a select list may hold (a call of one
# makes the other items run once per row it returns).
_SET_RETURNING = frozenset(
    {"generate_series", "generate_subscripts", "unnest", "regexp_matches",
     "regexp_split_to_table", "string_to_table", "json_array_elements",
     "jsonb_array_elements", "json_array_elements_text", "jsonb_array_elements_text",
     "json_each", "jsonb_each", "json_each_text", "jsonb_each_text",
     "json_object_keys", "jsonb_object_keys", "jsonb_path_query",
     "json_populate_recordset", "jsonb_populate_recordset", "json_to_recordset",
     "jsonb_to_recordset", "pg_listening_channels", "aclexplode"}
)  # fmt: skip


def _calls_besides_vault(targets: Any) -> bool:
    """Whether a select list calls a set-returning function, or one that is not
    pg_catalog's (which may be one)."""
    finder = _SetReturning()
    finder(targets)
    return finder.found


class _SetReturning(Visitor):  # type: ignore[misc]
    def __init__(self) -> None:
        self.found = False

    def visit_FuncCall(self, ancestors: Any, node: ast.FuncCall) -> None:
        names = [n.sval for n in node.funcname]
        self.found = self.found or (
            names[-1] in _SET_RETURNING or names[0] not in ("pg_catalog", "vault")
            if len(names) > 1
            else names[-1] in _SET_RETURNING
        )


_WRITES = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt, ast.CopyStmt)
_READS = (ast.SelectStmt, ast.DeclareCursorStmt, ast.ExplainStmt)


# Statements in which a read of vault.decrypted_secrets is expanded (and a search
# over it rewritten by the rest of the rewriter).
_EXPANDED = (ast.SelectStmt, ast.InsertStmt, ast.UpdateStmt, ast.DeclareCursorStmt)


def replacements(sql: str, toks: list[Token], stmt: Any) -> list[tuple[int, int, str]]:
    finder = _Finder()
    finder(stmt)
    if isinstance(stmt, DEFINITIONS) or not isinstance(stmt, _WRITES + _READS):
        # ALTER VIEW … OWNER, GRANT, a view's definition: as written, so refused
        # where that would take a secret upstream (or, but for a definition, a
        # search term: a view over decrypted_secrets is read through the proxy).
        views = [] if isinstance(stmt, DEFINITIONS) else finder.views
        unrewritten.check(stmt, views, finder.calls)
        return []
    out: list[tuple[int, int, str]] = []
    target = getattr(stmt, "relation", None)
    written = _written(stmt) if any(rv is target for rv in finder.secrets) else None
    if written == "secret":
        # SECURITY: its value would go up, and be stored, as the client wrote it.
        raise _refuse(
            "write vault.secrets.secret directly (use vault.create_secret or "
            "vault.update_secret, whose secret the proxy encrypts)"
        )
    if written is not None:
        # A secret decrypts only with its row's own id (its associated data) and
        # nonce: a new one of either leaves it undecryptable.
        raise _refuse(
            f"write vault.secrets.{written} directly: a secret decrypts only with "
            "its own id and nonce (vault.create_secret draws both, "
            "vault.update_secret a new nonce with each new secret)"
        )
    refuse_sampled_view(stmt, finder.views)
    for rv in finder.views:
        if rv is target and isinstance(stmt, _WRITES):
            raise _refuse("write vault.decrypted_secrets (use vault.update_secret)")
        if isinstance(stmt, _EXPANDED):
            out.append(_expand(sql, toks, rv))
    if not isinstance(stmt, _EXPANDED):
        unrewritten.check(stmt, [rv for rv in finder.views if rv is not target])
    for call in finder.calls:
        rows = _ROWS if any(call is r for r in finder.repeats) else _ONCE
        start, end, text = _call(sql, toks, call, rows)
        if any(call is function for function in finder.functions):
            text = _named_in_from(call, text)
        out.append((start, end, text))
    out += _select_list_names(toks, finder)
    return out


# The columns of vault.secrets that only Vault's functions write: the ciphertext,
# and what it is bound to (the id is the associated data).
_BOUND = ("secret", "id", "nonce")


def _written(stmt: Any) -> str | None:
    """Which of _BOUND a write of vault.secrets gives a value (the secret first),
    or None. COPY is left to the guard: a dump's COPY carries each row's id, nonce
    and ciphertext as they were stored (see the README)."""
    if isinstance(stmt, ast.MergeStmt):
        return "secret"
    names: list[str] = []
    if isinstance(stmt, ast.InsertStmt):
        if stmt.cols is None:
            return "secret"
        names = [c.name for c in stmt.cols]
        conflict = stmt.onConflictClause
        if conflict is not None:
            names += [t.name for t in conflict.targetList or ()]
    elif isinstance(stmt, ast.UpdateStmt):
        names = [t.name for t in stmt.targetList or ()]
    return next((c for c in _BOUND if c in names), None)


def _select_list_names(
    toks: list[Token], finder: _Finder
) -> list[tuple[int, int, str]]:
    """` AS create_secret` after each select-list (or RETURNING) item that
    PostgreSQL would name after a Vault call: it names it after the function
    called, and that is vault._proxy_* once rewritten."""
    out: list[tuple[int, int, str]] = []
    for targets in finder.target_lists:
        for target in targets:
            named_after = _named_after(target.val)
            if target.name is None and any(named_after is c for c in finder.calls):
                _, end = sqltext.list_items(toks, target.location)[0]
                out.append((end, end, f" AS {named_after.funcname[1].sval}"))
    return out


def _named_after(node: Any) -> Any:
    """The expression whose name PostgreSQL's FigureColname gives `node`, for the
    expressions that pass a function call's name on (parse_target.c)."""
    while True:
        if isinstance(node, (ast.TypeCast, ast.CollateClause)):
            node = node.arg
        elif isinstance(node, ast.CaseExpr) and node.defresult is not None:
            node = node.defresult
        else:
            return node


def _named_in_from(call: ast.FuncCall, text: str) -> str:
    """A call in FROM names its column (and its range, without an alias) after the
    function. A cast of a scalar subquery whose item has Vault's name keeps that
    name in every form of FROM (an alias, WITH ORDINALITY, ROWS FROM), and runs the
    call once, as a function in FROM does."""
    kind = call.funcname[1].sval
    returns = "uuid" if kind == "create_secret" else "void"
    return f"CAST((SELECT {text} AS {kind}) AS {returns})"


def _refuse(what: str, location: int | None = None) -> RewriteError:
    error = RewriteError("0A000", f"pgsodium-proxy cannot {what}")
    error.position = None if location is None else location + 1
    return error


def _expand(sql: str, toks: list[Token], rv: ast.RangeVar) -> tuple[int, int, str]:
    index = next(i for i, t in enumerate(toks) if t.start >= rv.location)
    end = toks[min(index + 2, len(toks) - 1)].end  # vault . decrypted_secrets
    start = rv.location
    # `ONLY view` and `view *` mean the view itself: the subquery replaces them.
    if index > 0 and toks[index - 1].name == "ONLY":
        start = toks[index - 1].start
    if index + 3 < len(toks) and toks[index + 3].name == "ASCII_42":
        end = toks[index + 3].end
    text = (
        f"(SELECT {_VIEW_COLUMNS} FROM vault.decrypted_secrets _pgsp_vault "
        "WHERE (CASE WHEN false THEN _pgsp_vault.decrypted_secret END) IS NULL)"
    )
    if rv.alias is None:
        text += " AS decrypted_secrets"
    return start, end, text


def _arguments(
    sql: str, toks: list[Token], call: ast.FuncCall, names: tuple[str, ...]
) -> tuple[tuple[int, int], dict[str, str], dict[str, Any]]:
    """The call's span, and its arguments by name: their text and their nodes."""
    start, end, spans = sqltext.call_span(toks, call.location)
    given: dict[str, str] = {}
    nodes: dict[str, Any] = {}
    for position, (node, (s, e)) in enumerate(zip(call.args or (), spans, strict=True)):
        name = names[position] if position < len(names) else None
        if isinstance(node, ast.NamedArgExpr):
            name, node = node.name, node.arg
            text = sql[s:e]
            for arrow in (":=", "=>"):
                if arrow in text:
                    s = s + text.index(arrow) + len(arrow)
                    break
        if name not in names or name in given:
            raise _refuse(f"call vault.{call.funcname[1].sval}() with these arguments")
        if not _visible(node):
            raise _refuse(
                f"see the {name} argument of vault.{call.funcname[1].sval}(): pass a "
                "literal or a parameter",
                call.location,
            )
        given[name] = sql[s:e].strip()
        nodes[name] = node
    return (start, end), given, nodes


def _visible(node: Any) -> bool:
    if isinstance(node, ast.TypeCast):
        return _visible(node.arg)
    return isinstance(node, (ast.A_Const, ast.ParamRef))


def _nonce() -> str:
    return f"decode('{secrets.token_bytes(_NONCE_BYTES).hex()}', 'hex')"


def _call(
    sql: str, toks: list[Token], call: ast.FuncCall, rows: int
) -> tuple[int, int, str]:
    kind = call.funcname[1].sval
    names = _CREATE if kind == "create_secret" else _UPDATE
    (start, end), given, nodes = _arguments(sql, toks, call, names)
    name = f"({given['new_name']})::text" if "new_name" in given else "NULL::text"
    key = f"({given['new_key_id']})::uuid" if "new_key_id" in given else "NULL::uuid"
    if kind == "create_secret":
        if "new_secret" not in given:
            raise _refuse("call vault.create_secret() without new_secret")
        description = (
            f"({given['new_description']})::text"
            if "new_description" in given
            else "''::text"
        )
        # Each run of the call is a new secret: its own id (the associated data)
        # and nonce, so its own ciphertext, as Vault draws them for each row.
        drawn = [(str(uuid.uuid4()), _nonce()) for _ in range(rows)]
        ids = ", ".join(f"'{new_id}'" for new_id, _ in drawn)
        nonces = ", ".join(nonce for _, nonce in drawn)
        ciphertexts = ", ".join(
            _secret(
                given["new_secret"],
                nodes["new_secret"],
                f"'{i}'",
                n,
                marks.VAULT_CREATE,
            )
            for i, n in drawn
        )
        args = (
            f"CURRENT_USER, ARRAY[{ids}]::uuid[], ARRAY[{ciphertexts}]::text[], "
            f"ARRAY[{nonces}]::bytea[], {name}, {description}, {key}"
        )
        return start, end, f"vault._proxy_create_secret({args})"
    # A secret's id is fixed: every run of an update_secret call writes the same
    # ciphertext (same id, nonce and secret), so one nonce serves them all.
    nonce = _nonce()
    if "secret_id" not in given:
        raise _refuse("call vault.update_secret() without secret_id")
    secret_id = f"({given['secret_id']})::uuid"
    description = (
        f"({given['new_description']})::text"
        if "new_description" in given
        else "NULL::text"
    )
    if "new_secret" in given and not is_null(nodes["new_secret"]):
        # A NULL bind value keeps the old secret and nonce, as a literal NULL does
        # (vault._proxy_update_secret, like Vault's update_secret).
        secret = _secret(
            given["new_secret"],
            nodes["new_secret"],
            f"{secret_id}::text",
            nonce,
            marks.VAULT_UPDATE,
        )
    else:
        secret, nonce = "NULL::text", "NULL::bytea"
    args = f"CURRENT_USER, {secret_id}, {secret}, {nonce}, {name}, {description}, {key}"
    return start, end, f"vault._proxy_update_secret({args})"


def _secret(value: str, node: Any, id_text: str, nonce: str, mark: str) -> str:
    """The ciphertext of a new secret; NULL for a NULL one, which Vault stores as
    it is: vault.secrets.secret is NOT NULL, so create_secret fails with 23502 as
    Vault's own does, and update_secret keeps the old secret."""
    if is_null(node):
        return "NULL::text"
    text = _encrypt(value, id_text, nonce, mark)
    if _is_literal(node):
        return text
    # The proxy folds the CASE with the value bound: encrypt never sees a NULL.
    return f"CASE WHEN ({value}) IS NULL THEN NULL ELSE {text} END"


def _is_literal(node: Any) -> bool:
    if isinstance(node, ast.TypeCast):
        return _is_literal(node.arg)
    return isinstance(node, ast.A_Const)


def _encrypt(value: str, id_text: str, nonce: str, mark: str) -> str:
    # SECURITY: marked as standing for Vault's own function (rewriter.marks).
    return (
        f"encode(pgsodium.crypto_aead_det_encrypt({mark}convert_to(({value})::text, "
        f"'utf8'), convert_to({id_text}, 'utf8'), 0::bigint, 'pgsodium'::bytea, "
        f"{nonce}), 'base64')"
    )
