"""What the rewriter decides for one statement, and the values it computes with.

A Plan is pure data, cacheable by SQL text: which spans of the text are replaced,
which result columns the proxy fills in, which privileges and keys it needs first.
Expression nodes (Const, Param, Call, Apply, Cast) describe values the proxy folds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from keystore.catalogue import Signature

from .builtins import Builtin


@dataclass(frozen=True, slots=True)
class Const:
    type: str
    value: object  # None is SQL NULL


@dataclass(frozen=True, slots=True)
class Param:
    number: int  # the client's $n, 1-based
    type: str  # the type its value is read as


@dataclass(frozen=True, slots=True)
class Call:
    signature: Signature
    args: tuple[Node, ...]  # one per declared parameter, defaults filled in
    location: int


@dataclass(frozen=True, slots=True)
class Apply:
    builtin: Builtin
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Cast:
    node: Node
    type: str


@dataclass(frozen=True, slots=True)
class FieldOf:
    """One field of a composite value: `(pgsodium.crypto_box_new_keypair()).public`."""

    node: Node
    index: int
    type: str


@dataclass(frozen=True, slots=True)
class Source:
    """The value of FROM item `index` (a folded call), computed once per execution."""

    index: int
    type: str


@dataclass(frozen=True, slots=True)
class Column:
    """A value the database computes per row (a row input), once its type is known."""

    index: int
    type: str


@dataclass(frozen=True, slots=True)
class Case:
    """A searched CASE: the result of the first condition that is true, else the
    default; only the branch taken is evaluated, as in PostgreSQL."""

    whens: tuple[tuple[Node, Node], ...]  # (boolean condition, result)
    default: Node
    type: str


@dataclass(frozen=True, slots=True)
class Aggregate:
    """pgsodium.crypto_sign_update_agg over the rows of one group: the database
    collects its arguments (array_agg, in the aggregate's own order and FILTER),
    the proxy runs pgsodium's state function over them in that order."""

    signature: Signature  # the aggregate (its EXECUTE privilege)
    step: Signature  # its state function, crypto_sign_update_agg1 or _agg2
    # What the database collected: bytea[] of the arguments that read columns
    # (one value a row, or a list a row when there are several), or the bigint
    # count of the rows when none does.
    rows: Node
    # One per argument: a value the proxy computes for each row (a literal, a
    # bind parameter, a pgsodium call of those), or None for one collected.
    args: tuple[Node | None, ...]


Node = (
    Const | Param | Call | Apply | Cast | FieldOf | Source | Column | Case | Aggregate
)


def node_type(node: Node) -> str:
    if isinstance(node, (Const, Param, Cast, FieldOf, Source, Column, Case)):
        return node.type
    if isinstance(node, (Call, Aggregate)):
        return node.signature.returns
    return node.builtin.returns


def walk(node: Node):  # type: ignore[no-untyped-def]
    yield node
    if isinstance(node, (Call, Apply)):
        for arg in node.args:
            yield from walk(arg)
    elif isinstance(node, (Cast, FieldOf)):
        yield from walk(node.node)
    elif isinstance(node, Aggregate):
        yield from walk(node.rows)
        for arg in node.args:
            if arg is not None:
                yield from walk(arg)
    elif isinstance(node, Case):
        for condition, result in node.whens:
            yield from walk(condition)
            yield from walk(result)
        yield from walk(node.default)


# -- what a plan contains ------------------------------------------------------------


def placeholder(kind: str, index: int) -> str:
    """Where Plan.texts leave room for text only rendering knows (an output's typed
    NULL, a deferred or inner item's columns). NUL delimits it: PostgreSQL's
    text never holds one, so no client text can be taken for it."""
    return f"\0{kind}:{index}\0"


@dataclass(frozen=True, slots=True)
class Output:
    """A result column the proxy computes entirely; upstream sends a typed NULL."""

    span: tuple[int, int]  # the whole select-list item, alias included
    name: str  # the column name the client sees
    node: Node


@dataclass(frozen=True, slots=True)
class Fold:
    """A value computed before the statement runs and sent upstream in its place."""

    span: tuple[int, int]
    node: Node


@dataclass(frozen=True, slots=True)
class RawKeyCreate:
    """pgsodium.create_key(...) with a raw_key: the proxy encrypts the raw key."""

    span: tuple[int, int]
    # SQL text of the arguments that stay SQL (None: pgsodium's default applies).
    key_type: str | None
    name: str | None
    key_context: str | None
    expires: str | None
    # Values the proxy needs (None: not given).
    raw_key: Node
    raw_key_nonce: Node | None
    parent_key: Node | None
    associated_data: Node | None


@dataclass(frozen=True, slots=True)
class DecryptedRawKey:
    """decrypted_raw_key of pgsodium.decrypted_key, decrypted row by row."""

    span: tuple[int, int]
    name: str
    qualifier: str  # how the statement names the view's row source
    wrappers: tuple[Builtin, ...]  # applied innermost first (e.g. length)
    alias_given: bool


@dataclass
class Plan:
    text: str
    outputs: list[Output] = field(default_factory=list)
    folds: list[Fold] = field(default_factory=list)
    creates: list[RawKeyCreate] = field(default_factory=list)
    deferred: list[DecryptedRawKey] = field(default_factory=list)
    # Folded calls in FROM, computed once; Outputs refer to them with Source nodes.
    sources: list[Node] = field(default_factory=list)
    # Select-list items computed from each row (rewriter.late.RowOutput).
    rows: list[Any] = field(default_factory=list)
    # Select-list items over rows of the queries below the outermost one (span,
    # name): rewriter.levels. A span of (-1, -1): a `*` of the client's passes
    # the item's columns up, or a placeholder in `texts` stands for them.
    inner: list[tuple[tuple[int, int], str]] = field(default_factory=list)
    # Names in column alias lists (`s(a, b)`, `WITH d(a, b)`) that stand for an
    # inner item (span, its index in `inner`, the name's text): rendered as the
    # names of the item's columns, so that the list keeps them, or as written
    # when the item has none.
    inner_names: list[tuple[tuple[int, int], int, str]] = field(default_factory=list)
    # A UNION ALL column and its items, one per branch (indexes in `inner`,
    # rewriter.setops): each branch's select list gives the columns of all of
    # them, in this order, NULL but for its own.
    inner_groups: list[tuple[int, list[int]]] = field(default_factory=list)
    # Extra replacements of fixed text (e.g. `*` expanded around a deferred column).
    texts: list[tuple[int, int, str]] = field(default_factory=list)
    # regprocedure texts the current role needs EXECUTE on.
    checks: set[str] = field(default_factory=set)
    # The client's parameter types as pgsodium's signatures imply them.
    param_types: dict[int, str] = field(default_factory=dict)
    # Client parameters still referenced by the upstream statement text.
    kept_params: set[int] = field(default_factory=set)
    # Some call or relation name was unqualified: it is pgsodium's only if the
    # session's search_path says so.
    unqualified: bool = False
    # DECLARE … CURSOR over computed rows: the cursor's name; its FETCHes return the
    # rows this plan's layout turns into the client's.
    # The parse tree's statement type (SelectStmt, InsertStmt, TransactionStmt...).
    statement: str = ""
    # May change client_encoding before the next statement of its message runs
    # (SET NAMES, RESET ALL, set_config, a user's function, ...): tce.
    may_change_encoding: bool = False
    # May change the current role before the next statement of its message (SET
    # ROLE however spelled, SET SESSION AUTHORIZATION, a user's function, ...).
    may_change_role: bool = False
    # PostgreSQL checks its functions' EXECUTE when its portal is bound: a plain
    # SELECT. Others (writes, a SELECT with a writing WITH query, utility
    # statements) are checked when the portal runs.
    checked_at_bind: bool = False
    # Calls set_config itself: its own rows may leave in another encoding.
    calls_set_config: bool = False
    cursor: str | None = None
    cursor_hold: bool = False  # WITH HOLD: it outlives the transaction block

    @property
    def rewrites(self) -> bool:
        return bool(
            self.outputs
            or self.folds
            or self.creates
            or self.deferred
            or self.sources
            or self.rows
            # Inner items no RowOutput reads: rendered as NULL columns, so that
            # their pgsodium calls and inputs never go upstream.
            or self.inner
        )

    def calls(self) -> list[Call]:
        roots: list[Node] = [o.node for o in self.outputs] + [
            f.node for f in self.folds
        ]
        roots += self.sources
        for create in self.creates:
            roots += [
                n
                for n in (
                    create.raw_key,
                    create.raw_key_nonce,
                    create.parent_key,
                    create.associated_data,
                )
                if n is not None
            ]
        return [n for root in roots for n in walk(root) if isinstance(n, Call)]
