"""One execution of rewritten statements: look up, compute, render, transform rows.

Order of work, as pgsodium's own checks run: EXECUTE privileges first, then key rows
(P0002), then the crypto. Lookups run on the client's own upstream connection so a
key created earlier in the same transaction is visible.
"""

from __future__ import annotations

import functools
import secrets
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from keystore.calls import Evaluator
from keystore.derive import Env
from keystore.keys import DerivedKey, KeyChain, parse_material
from rewriter import render as renderer
from rewriter import types
from rewriter.compile import default_value
from rewriter.evaluate import compile_row, evaluate
from rewriter.late import params_of, resolve_open
from rewriter.plan import Aggregate, Call, Param, Plan, node_type, walk
from rewriter.sqltext import tokens
from rewriter.tce_reencrypt import ReencryptPlan

from . import codec
from .columns import BINARY, Layout, build_layout, upstream_formats
from .errors import SQLSTATE, ProxyError
from .lookup import KEY_ROWS_HINT, Bound, LookupFailed, Skipped, lookup
from .metrics import CRYPTO
from .owned import Replaced, statement_replaced
from .reencrypt import reencrypt
from .router import Reply

if TYPE_CHECKING:
    from .intercept import Interceptor

__all__ = [
    "CountingEvaluator",
    "Execution",
    "FetchExecution",
    "LookupFailed",
    "Skipped",
    "default_arg",
]

_CREATE_TYPES = ("uuid", "bytea", "bytea", "uuid", "text")
DET_NONCE_BYTES = 16
# The re-encryption FROM item's arrays, as extra bind parameters: oid[], tid[],
# then one text[] per column.
_OID_ARRAY, _TID_ARRAY, _TEXT_ARRAY = 1028, 1010, 1009


@functools.lru_cache(maxsize=256)
def default_arg(text: str | None) -> Any:
    """A parameter default's value (constants only, so it can be cached)."""
    return evaluate(default_value(text), {}, _no_calls)


def _no_calls(sig: Any, args: Any) -> Any:
    raise ProxyError(SQLSTATE.FEATURE_NOT_SUPPORTED, "nested call in a key argument")


class CountingEvaluator(Evaluator):
    """The keystore's Evaluator, counting each pgsodium function it computes."""

    def __call__(self, sig: Any, args: list[Any]) -> Any:
        CRYPTO.cell(sig.name)[0] += 1
        return super().__call__(sig, args)

    def bind(self, sig: Any, constants: dict[int, Any]) -> Any:
        bound = super().bind(sig, constants)
        if bound is None:
            return None
        count = CRYPTO.cell(sig.name)

        def counted(*values: Any) -> Any:
            count[0] += 1
            return bound(*values)

        return counted


# FirstNormalObjectId: objects below it are PostgreSQL's own (built-in types).
_FIRST_NORMAL_OID = 16384
# The proxy's per-row read of a key row (keystore/sql/proxy_internals.sql).
_KEY_REF = "pgsodium._proxy_key_ref(uuid)"


class Execution:
    def __init__(
        self, interceptor: Interceptor, sql: str, plans: list[Plan], *, extended: bool
    ) -> None:
        from .intercept import new_marker

        self.interceptor = interceptor
        self.session = interceptor.session
        # The Query or Parse message it came in, for the log (Interceptor.log_failure).
        self.statement = interceptor.current_statement
        self.sql = sql
        self.plans = plans
        self.extended = extended
        self.marker = new_marker()
        self.declared: tuple[int, ...] = ()
        self.bytea_output = "hex"
        self.outputs: list[list[Any]] = [[] for _ in plans]
        self.folds: list[list[Any]] = [[] for _ in plans]
        self.creates: list[list[list[Any]]] = [[] for _ in plans]
        self.evaluator: Evaluator | None = None
        self.n_params = 0
        self.kept: set[int] = set()
        self.described: Any = None  # future of the statement's Describe frames
        # The text of the Parse the proxy sent upstream for it (Owned checks it),
        # and the prepared statement a Bind names (None: the unnamed one).
        self.upstream_sql = ""
        self.statement_name: str | None = None
        self.catalog_first = True  # pg_catalog leads the search_path (prepare)
        self.bind_ran_code = False  # set by the Bind (Interceptor._bind)
        self.bind_message: Any = None
        self.layout: Layout | None = None
        self._chains: dict[str, KeyChain] = {}
        self.privileges: dict[str, bool] = {}
        self.params: dict[int, Any] = {}
        # An UPDATE that re-encrypts rows (rewriter.tce_reencrypt), and its FROM
        # item's arrays once computed, for this execution.
        self.reencrypt: ReencryptPlan | None = None
        self.reencrypted: list[str] = []

    def row_failed(self, exc: Exception) -> ProxyError:
        """The error of a value computed in the result stream, logged as the
        errors raised before a statement runs are."""
        from .intercept import to_proxy_error

        error = to_proxy_error(exc)
        self.interceptor.log_failure(exc, error, self.statement)
        return error

    # -- evaluation --------------------------------------------------------------------

    async def prepare(self, params: dict[int, Any]) -> None:
        """Look up privileges and keys upstream, then compute every value."""
        self.params = params
        calls = [c for plan in self.plans for c in plan.calls()]
        keys: list[tuple[str, str]] = []
        for call in calls:
            if call.signature.key_variant == "uuid" and not (
                call.signature.strict and self._has_null_arg(call, params)
            ):
                key_uuid = self._uuid_arg(call, params)
                if key_uuid:
                    keys.append((key_uuid, call.signature.key_type))
                # A NULL key uuid has no row to look up: evaluated, the call
                # raises pgsodium's P0002 (keystore.calls); in a CASE branch not
                # taken (TCE's NULL key column) it is never evaluated.
        parents = 0
        for plan in self.plans:
            for create in plan.creates:
                if self._known_null(create.raw_key, params):
                    continue  # a derived key after all: no parent is needed
                parent = self._value(create.parent_key, params)
                if parent is None:
                    parents += 1
                else:
                    keys.append((parent, "aead-det"))
        checks, candidates, caller = self._privileges_asked(calls)
        found = await lookup(
            self.session,
            checks,
            keys,
            parents,
            candidates,
            caller,
            self.statement_name,
        )
        if self.statement_name is not None and found.prepared != self.upstream_sql:
            # SECURITY: SQL (DEALLOCATE, then PREPARE under its name) replaced the
            # statement the proxy parsed; its rows would be read as the proxy's.
            raise Replaced(self.statement_name)
        self.privileges = found.privileges
        self._check_key_refs()
        self._check_search_path(found.schemas)
        # A schema before pg_catalog may hold operators of the client's own.
        searched = [s for s in found.schemas if not s.startswith("pg_temp")]
        self.catalog_first = not searched or searched[0] == "pg_catalog"
        self.bytea_output = found.bytea_output
        self.evaluator = CountingEvaluator(
            Env(self.session.server.root_key.secret), found.materials, default_arg
        )
        new_parents = iter(found.parents)
        for index, plan in enumerate(self.plans):
            call = self.evaluator
            sources = [
                evaluate(n, params, call, self.bytea_output) for n in plan.sources
            ]
            self.outputs[index] = [
                evaluate(o.node, params, call, self.bytea_output, sources)
                for o in plan.outputs
            ]
            self.folds[index] = [
                evaluate(f.node, params, call, self.bytea_output) for f in plan.folds
            ]
            self.creates[index] = [
                self._create(c, params, new_parents, found.materials)
                for c in plan.creates
            ]
        if self.reencrypt is not None:
            self.reencrypted = await reencrypt(
                self.session, self.reencrypt, self._pre_read(self.reencrypt)
            )

    def _pre_read(self, plan: ReencryptPlan) -> Bound:
        """The re-encryption's pre-read with the client's bind values it reads (its
        WHERE, the new key, associated data and nonce), parsed with the types the
        upstream gave the client's statement; every other value is sent as NULL.
        SECURITY: a parameter only the proxy reads (a plaintext) never goes
        upstream."""
        bind = self.bind_message
        if bind is None:
            return Bound(plan.select, [])  # a simple Query: no parameters
        read = _params_in(plan.select)
        if not read <= self.kept:
            raise ProxyError(SQLSTATE.INTERNAL_ERROR, "pgsodium-proxy internal error")
        values = [
            bind.params[n - 1] if n in read else None
            for n in range(1, self.n_params + 1)
        ]
        formats = tuple(
            _format_of(bind.param_formats, n - 1) for n in range(1, self.n_params + 1)
        )
        return Bound(plan.select, values, formats, tuple(self._param_oids()))

    def _param_oids(self) -> list[int]:
        for frame in self.described or []:
            if frame.type == ord("t"):
                oids = codec.decode_backend(frame).type_oids[: self.n_params]
                return list(oids)
        return [*self.declared, *[0] * (self.n_params - len(self.declared))]

    def _fill(self, text: str, arrays: list[str]) -> str:
        """The UPDATE with the re-encryption's FROM item filled in."""
        assert self.reencrypt is not None
        placeholder = self.reencrypt.placeholder
        if text.count(placeholder) != 1:
            raise ProxyError(
                SQLSTATE.FEATURE_NOT_SUPPORTED,
                "pgsodium-proxy cannot re-encrypt for this UPDATE: its text holds "
                "the proxy's own FROM item",
            )
        return text.replace(placeholder, self.reencrypt.source(arrays))

    def _privileges_asked(self, calls: list[Call]) -> tuple[list[str], list[str], str]:
        """The functions whose EXECUTE the statement needs (checked upstream as
        the current role), those a call over rows may resolve to (asked), and
        the pgsodium function a 42501 for key rows names."""
        checks = sorted({c for plan in self.plans for c in plan.checks})
        candidates = sorted(
            {c for plan in self.plans for row in plan.rows for c in row.candidates}
            | ({_KEY_REF} if self._key_ref_rows() else set())
        )
        uuid_calls = [c for c in calls if c.signature.key_variant == "uuid"]
        caller = uuid_calls[0].signature.name if uuid_calls else self._row_caller()
        if uuid_calls and uuid_calls[0].signature.regprocedure not in checks:
            # A search's encryption, standing for the decrypt pgsodium would call
            # (rewriter.analyze): the client called that.
            caller = "crypto_aead_det_decrypt"
        return checks, candidates, caller

    def may_run_code_at_bind(self) -> bool:
        """Whether its Bind may run the client's code upstream after the proxy's
        checks (a domain's CHECK or a user type's input on a bind value, a
        user's function or operator the planner folds), which could change the
        role or client_encoding before the portal starts."""
        if any(plan.may_change_role for plan in self.plans) or not self.catalog_first:
            return True
        for frame in self.described or []:
            if frame.type == ord("t"):
                oids = codec.decode_backend(frame).type_oids
                return any(oid >= _FIRST_NORMAL_OID for oid in oids)
        return False

    async def recheck(self) -> None:
        """EXECUTE checked again as the role current now. PostgreSQL checks the
        functions of a statement other than a plain SELECT (a write, a writing
        WITH query, a utility statement) when its portal runs, a plain SELECT's
        when it is bound: a SET ROLE between this portal's Bind and its Execute
        would otherwise have the proxy's values computed for a role that may not."""
        calls = [c for plan in self.plans for c in plan.calls()]
        checks, candidates, caller = self._privileges_asked(calls)
        found = await lookup(self.session, checks, [], 0, candidates, caller)
        before, self.privileges = self.privileges, found.privileges
        self._check_key_refs()
        for name, allowed in found.privileges.items():
            if before.get(name) and not allowed:  # a call over rows resolved to it
                raise ProxyError(
                    SQLSTATE.INSUFFICIENT_PRIVILEGE,
                    "permission denied for function "
                    f"{name.split('(')[0].split('.')[-1]}",
                )

    def _key_ref_rows(self) -> list[Any]:
        """The calls over rows whose key may be a uuid (read upstream per row)."""
        return [
            row
            for plan in self.plans
            for row in plan.rows
            if any(i.key_ref for i in row.inputs)
        ]

    def _row_caller(self) -> str:
        rows = self._key_ref_rows()
        if not rows or not rows[0].candidates:
            return "crypto_aead_det_encrypt"
        return str(sorted(rows[0].candidates)[0].split("(")[0].split(".")[-1])

    def _check_key_refs(self) -> None:
        """A call over rows whose key may be a uuid reads the key's row upstream
        (pgsodium._proxy_key_ref, pgsodium_keyiduser's, as the key rows are). A
        role that may execute none of the call's uuid overloads, or may not read
        key rows (one granted EXECUTE on the function outside pgsodium_keyiduser),
        gets pgsodium's own 42501 for the call here, before the upstream names the
        proxy's function."""
        for row in self._key_ref_rows():
            uuid_overloads = sorted(c for c in row.candidates if "uuid" in c)
            if not uuid_overloads:
                continue
            if not any(self.privileges.get(c) for c in uuid_overloads) or (
                self.privileges.get(_KEY_REF) is False
            ):
                name = uuid_overloads[0].split("(")[0].split(".")[-1]
                raise ProxyError(
                    SQLSTATE.INSUFFICIENT_PRIVILEGE,
                    f"permission denied for function {name}",
                    hint=KEY_ROWS_HINT,
                )

    def _check_search_path(self, schemas: list[str]) -> None:
        # A statement earlier in the same message may have changed it; the next
        # statement is planned with what the upstream says now.
        self.interceptor.on_path = "pgsodium" in schemas

    def _value(self, node: Any, params: dict[int, Any]) -> Any:
        if node is None:
            return None
        return evaluate(node, params, _no_calls, self.bytea_output)

    def _known_null(self, node: Any, params: dict[int, Any]) -> bool:
        try:
            return self._value(node, params) is None
        except ProxyError:
            return False  # computed by pgsodium calls: not NULL for our purpose

    def _computed(self, node: Any, params: dict[int, Any]) -> Any:
        """A value that may itself come from pgsodium calls (keys already looked up)."""
        if node is None:
            return None
        return evaluate(node, params, self.evaluator, self.bytea_output)

    def _has_null_arg(self, call: Call, params: dict[int, Any]) -> bool:
        try:
            return any(self._value(a, params) is None for a in call.args)
        except ProxyError:
            return False

    def _uuid_arg(self, call: Call, params: dict[int, Any]) -> str:
        position = next(
            i for i, p in enumerate(call.signature.params) if p.type == "uuid"
        )
        value = self._value(call.args[position], params)
        return "" if value is None else str(value)

    def _create(
        self,
        create: Any,
        params: dict[int, Any],
        new_parents: Any,
        materials: dict[tuple[str, str], str],
    ) -> list[Any]:
        """Values for pgsodium._proxy_create_raw_key: id, ciphertext, nonce, parent,
        associated_data — the raw key encrypted exactly as pgsodium's trigger does."""
        assert self.evaluator is not None
        key_uuid = str(uuid.uuid4())
        raw_key = self._computed(create.raw_key, params)
        nonce = self._computed(create.raw_key_nonce, params)
        associated = (
            ""
            if create.associated_data is None
            else self._computed(create.associated_data, params)
        )
        parent = self._value(create.parent_key, params)
        if raw_key is None:
            # A NULL raw_key: pgsodium.create_key makes a derived key, and so does
            # the upstream function given no raw key.
            return [key_uuid, None, nonce, parent, associated]
        if nonce is None:
            nonce = secrets.token_bytes(DET_NONCE_BYTES)
        if parent is None:
            parent, key_id, context = next(new_parents)
            chain = KeyChain((DerivedKey("aead-det", key_id, context),))
        else:
            chain = parse_material(materials[(str(parent), "aead-det")])
        additional = (
            None if associated is None else (key_uuid + associated).encode("utf-8")
        )
        encrypted = self.evaluator.encrypt_under(chain, raw_key, additional, nonce)
        return [key_uuid, encrypted, nonce, parent, associated]

    # -- rendering ---------------------------------------------------------------------

    def render_simple(self) -> str:
        texts = []
        for index, plan in enumerate(self.plans):
            folds = self.folds[index]
            creates = self.creates[index]
            texts.append(
                renderer.render(
                    plan,
                    self.marker,
                    lambda i, t, folds=folds: types.sql_literal(t, folds[i]),
                    lambda i, creates=creates: [
                        types.sql_literal(t, v)
                        for t, v in zip(_CREATE_TYPES, creates[i], strict=True)
                    ],
                )
            )
        text = ";".join(texts)
        if self.reencrypt is not None:
            # SECURITY: only table oids, ctids and ciphertexts (no quotes in any).
            text = self._fill(text, [f"'{a}'" for a in self.reencrypted])
        return text

    def render_extended(self) -> tuple[str, list[int]]:
        """The upstream statement text and parameter type OIDs for Parse."""
        plan = self.plans[0]
        self.n_params = max(len(self.declared), _max_param(plan.text))
        counter = iter(range(self.n_params + 1, 10**6))
        extra: list[str] = []

        def param(type_name: str) -> str:
            extra.append(type_name)
            return f"${next(counter)}::{type_name}"

        text = renderer.render(
            plan,
            self.marker,
            lambda i, t: param(t),
            lambda i: [param(t) for t in _CREATE_TYPES],
        )
        if self.reencrypt is not None:
            first = self.n_params + len(extra) + 1
            count = 2 + len(self.reencrypt.columns)
            text = self._fill(text, [f"${first + i}" for i in range(count)])
        self.kept = {n for n in _params_in(text) if n <= self.n_params}
        oids = []
        for number in range(1, self.n_params + 1):
            declared = self.declared[number - 1] if number <= len(self.declared) else 0
            if not declared and number not in self.kept:
                declared = types.lookup(plan.param_types.get(number, "text")).oid
            oids.append(declared)
        oids += [types.lookup(t).oid for t in extra]
        if self.reencrypt is not None:
            oids += [_OID_ARRAY, _TID_ARRAY]
            oids += [_TEXT_ARRAY] * len(self.reencrypt.columns)
        return text, oids

    # -- extended protocol -------------------------------------------------------------

    async def describe_statement(self, name: str) -> None:
        self.described = await self.session.internal_describe(name)

    def bound(self, bind: Any) -> Execution:
        """A copy of this prepared execution for one Bind."""
        execution = Execution(self.interceptor, self.sql, self.plans, extended=True)
        execution.statement = self.statement
        execution.marker = self.marker
        execution.declared = self.declared
        execution.n_params = self.n_params
        execution.kept = self.kept
        execution.described = self.described
        execution.upstream_sql = self.upstream_sql
        execution.statement_name = bind.statement or None
        execution.bind_message = bind
        execution.privileges = self.privileges
        execution.reencrypt = self.reencrypt
        return execution

    async def bind(self) -> codec.Bind:
        bind = self.bind_message
        params = self._decode_params(bind)
        await self.prepare(params)
        values: list[bytes | None] = []
        formats: list[int] = []
        for number in range(1, self.n_params + 1):
            if number in self.kept:
                values.append(bind.params[number - 1])
                formats.append(_format_of(bind.param_formats, number - 1))
            else:
                values.append(None)
                formats.append(0)
        plan = self.plans[0]
        for fold, value in zip(plan.folds, self.folds[0], strict=True):
            values.append(_text_value(node_type(fold.node), value, self.bytea_output))
            formats.append(0)
        for create_values in self.creates[0]:
            for type_name, value in zip(_CREATE_TYPES, create_values, strict=True):
                values.append(_text_value(type_name, value, "hex"))
                formats.append(0)
        for array in self.reencrypted:
            values.append(array.encode("ascii"))
            formats.append(0)
        result_formats = self._result_formats(bind.result_formats)
        self.layout = self._layout_for(result_formats)
        return codec.Bind(
            bind.portal,
            bind.statement,
            tuple(formats),
            tuple(values),
            tuple(result_formats),
        )

    def _decode_params(self, bind: Any) -> dict[int, Any]:
        plan = self.plans[0]
        decoded: dict[int, Any] = {}
        if len(bind.params) != self.n_params:
            raise ProxyError(
                SQLSTATE.PROTOCOL_VIOLATION,
                f"bind message supplies {len(bind.params)} parameters, but prepared "
                f"statement requires {self.n_params}",
            )
        used = {
            n.number
            for p in self.plans
            for root in _roots(p)
            for n in walk(root)
            if isinstance(n, Param)
        }
        used |= {n for p in self.plans for row in p.rows for n in params_of(row.tree)}
        for number in used:
            raw = bind.params[number - 1]
            type_name = plan.param_types.get(number) or _declared_type(
                self.declared, number
            )
            if raw is None:
                decoded[number] = None
            elif _format_of(bind.param_formats, number - 1) == BINARY:
                decoded[number] = types.binary_in(type_name, raw)
            else:
                # PostgreSQL checks a text value's bytes as client_encoding (UTF8
                # here) before any type reads them: 22021, never a crash.
                decoded[number] = types.text_in(type_name, types.utf8_text(raw))
        return decoded

    def _described_fields(self) -> list[codec.Field] | None:
        frames = self.described or []
        for frame in frames:
            if frame.type == ord("T"):
                return list(codec.decode_backend(frame).fields)
        return None

    def _result_formats(self, client: Sequence[int]) -> list[int]:
        if len(client) <= 1:
            return list(client)
        # Per-column formats (pgjdbc sends them): only the shape of the layout
        # matters here, which upstream columns feed each client column, so the
        # row computations are stand-ins.
        plan = self.plans[0]
        fields = self._described_fields() or []
        outputs = [None] * len(plan.outputs)
        deferred = [_shape_only] * len(plan.deferred)
        rows = [_row_shape_only] * len(plan.rows)
        layout = build_layout(plan, self.marker, fields, outputs, deferred, "hex", rows)
        return upstream_formats(layout, client, len(fields))

    def _layout_for(self, formats: list[int]) -> Layout | None:
        fields = self._described_fields()
        if fields is None:
            return None
        with_formats = [
            codec.Field(
                f.name,
                f.table_oid,
                f.column,
                f.type_oid,
                f.type_size,
                f.type_modifier,
                _format_of(formats, i),
            )
            for i, f in enumerate(fields)
        ]
        return self.make_layout(0, with_formats)

    def make_layout(self, index: int, fields: Sequence[codec.Field]) -> Layout:
        plan = self.plans[index]
        deferred = [self._deferred(d) for d in plan.deferred]
        outputs = self.outputs[index] or [None] * len(plan.outputs)
        rows = [self._row_resolver(r) for r in plan.rows]
        return build_layout(
            plan, self.marker, fields, outputs, deferred, self.bytea_output, rows
        )

    def _row_resolver(self, spec: Any) -> Any:
        """For a select-list item over rows: given its inputs' types, the result
        type and the per-row computation."""

        def resolve(input_types: list[str]) -> tuple[str, Any]:
            node = resolve_open(spec.tree, input_types)
            for call in (n for n in walk(node) if isinstance(n, (Call, Aggregate))):
                if self.privileges.get(call.signature.regprocedure) is False:
                    raise ProxyError(
                        SQLSTATE.INSUFFICIENT_PRIVILEGE,
                        f"permission denied for function {call.signature.name}",
                    )
            row_function: list[Any] = []

            last: list[Any] = [None, None]  # the previous row's keys, materials

            def compute(values: list[Any], materials: list[str | None]) -> Any:
                evaluator = self.evaluator
                assert evaluator is not None
                if not row_function:
                    row_function.append(
                        compile_row(node, evaluator, self.bytea_output, self.params)
                    )
                keys = (
                    [
                        (value, material)
                        for value, material in zip(values, materials, strict=True)
                        if material is not None and value is not None
                    ]
                    if materials.count(None) != len(materials)
                    else []  # a key id or a raw key: no key rows to look up
                )
                if keys != last[0]:
                    # Rows under the same keys (the usual case) reuse the lookup.
                    found: dict[tuple[str, str], str] = {}
                    for value, material in keys:
                        head = self._chain(material).head
                        found[(str(value), head.key_type)] = material
                    last[0], last[1] = keys, found
                evaluator.materials = last[1]
                return row_function[0](values)

            return node_type(node), compute

        return resolve

    def _chain(self, material: str) -> KeyChain:
        chain = self._chains.get(material)
        if chain is None:
            chain = self._chains[material] = parse_material(material)
        return chain

    def _deferred(self, spec: Any) -> Any:
        def compute(inputs: list[Any]) -> Any:
            ciphertext, additional, material, nonce = inputs
            if ciphertext is None or material is None:
                return None
            if isinstance(material, bytes):
                material = material.decode("utf-8")
            chain = self._chain(material)
            assert self.evaluator is not None
            value: Any = self.evaluator.decrypt_under(
                chain, _bytes(ciphertext), _maybe_bytes(additional), _maybe_bytes(nonce)
            )
            for wrapper in spec.wrappers:
                value = wrapper.function(value)
            return value

        return compute

    # -- replies -----------------------------------------------------------------------

    def query_reply(self, *, guarded: bool = False) -> Any:
        from .replies import QueryReply

        return QueryReply(self, guarded=guarded)

    def describe_reply(self, *, statement: bool) -> Reply:
        from .replies import DescribeReply

        return DescribeReply(self, statement=statement)

    def execute_reply(self) -> Reply:
        from .replies import ExecuteReply

        return ExecuteReply(self)


class FetchExecution(Execution):
    """A FETCH from a cursor declared over rows the proxy computes.

    The cursor's rows carry the DECLARE's marker columns, which no client can
    predict, so FETCH results are rewritten with the DECLARE's plan, keys and
    values; the FETCH itself goes upstream as the client sent it.
    """

    def __init__(
        self, interceptor: Interceptor, sql: str, source: Execution, index: int
    ) -> None:
        super().__init__(interceptor, sql, [source.plans[index]], extended=True)
        self.source = source
        self.index = index
        self.marker = source.marker
        self.outputs = [source.outputs[index]]
        self.evaluator = source.evaluator
        self.params = source.params
        self.privileges = source.privileges
        self.bytea_output = source.bytea_output
        self._chains = source._chains

    def bound(self, bind: Any) -> Execution:
        execution = FetchExecution(self.interceptor, self.sql, self.source, self.index)
        execution.statement = self.statement
        execution.described = self.described
        execution.upstream_sql = self.upstream_sql
        execution.bind_message = bind
        return execution

    async def bind(self) -> codec.Bind:
        bind = self.bind_message
        if bind.statement and await statement_replaced(
            self.session, bind.statement, self.upstream_sql
        ):
            raise Replaced(bind.statement)
        result_formats = self._result_formats(bind.result_formats)
        self.layout = self._layout_for(result_formats)
        return codec.Bind(
            bind.portal,
            bind.statement,
            tuple(bind.param_formats),
            tuple(bind.params),
            tuple(result_formats),
        )


def _roots(plan: Plan) -> list[Any]:
    roots: list[Any] = [o.node for o in plan.outputs] + [f.node for f in plan.folds]
    roots += plan.sources  # SELECT ... FROM pgsodium.f($1): f's own arguments
    for create in plan.creates:
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
    return roots


def _declared_type(declared: Sequence[int], number: int) -> str:
    oid = declared[number - 1] if number <= len(declared) else 0
    found = types.BY_OID.get(oid)
    return found.name if found else "text"


def _format_of(formats: Sequence[int], index: int) -> int:
    if not formats:
        return 0
    if len(formats) == 1:
        return formats[0]
    return formats[index] if index < len(formats) else 0


def _text_value(type_name: str, value: Any, bytea_output: str) -> bytes | None:
    if value is None:
        return None
    return types.text_out(type_name, value, "hex").encode("utf-8")


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return types.bytea_in(value)


def _maybe_bytes(value: Any) -> bytes | None:
    return None if value is None else _bytes(value)


def _max_param(sql: str) -> int:
    return max(_params_in(sql), default=0)


def _params_in(sql: str) -> set[int]:
    return {int(sql[t.start + 1 : t.end]) for t in tokens(sql) if t.name == "PARAM"}


def _shape_only(values: list[Any]) -> Any:
    """A stand-in computation, for a layout built only for its shape."""
    return None


def _row_shape_only(type_names: list[str]) -> tuple[str, Any]:
    return "bytea", _shape_only
