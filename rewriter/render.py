"""Produce the statement text sent upstream for a Plan.

Result columns the proxy fills in carry aliases made from a marker that is random
for each rendering, so nothing a client writes can be mistaken for them (DESIGN
invariant 6). Folded values are either SQL literals (simple protocol) or extra bind
parameters after the client's own (extended protocol).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from . import sqltext
from .late import inner_aliases, inner_columns, input_columns, scalar_columns
from .plan import Plan, RawKeyCreate, node_type
from .plan import placeholder as place

# pgsodium's default key context 'pgsodium', written without backslashes.
_DEFAULT_CONTEXT = "decode('7067736f6469756d', 'hex')"


def output_alias(marker: str, index: int) -> str:
    return f"{marker}o{index}"


def deferred_alias(marker: str, index: int, part: str) -> str:
    return f"{marker}d{index}{part}"


def deferred_inputs(marker: str, index: int, qualifier: str) -> str:
    """The inputs of decrypted_raw_key, as pgsodium's view computes it."""
    q = sqltext.quote_ident(qualifier)
    # SECURITY: the proxy computes decrypted_raw_key; the reference makes the
    # database check SELECT on it, and folds away unevaluated.
    checked = f"CASE WHEN false THEN {q}.decrypted_raw_key END"
    parts = [
        (f"COALESCE({q}.raw_key, {checked})", "a"),
        (f"convert_to({q}.id::text || {q}.associated_data, 'utf8')", "b"),
        (
            f"CASE WHEN {q}.raw_key IS NOT NULL AND {q}.parent_key IS NOT NULL "
            f"THEN pgsodium._proxy_key_material({q}.parent_key, 'aead-det') END",
            "c",
        ),
        (f"{q}.raw_key_nonce", "d"),
    ]
    return ", ".join(
        f"{expr} AS {sqltext.quote_ident(deferred_alias(marker, index, part))}"
        for expr, part in parts
    )


def _create_call(create: RawKeyCreate, values: Sequence[str]) -> str:
    """pgsodium._proxy_create_raw_key(...) for create_key with a raw key.

    `values` are the SQL texts (literals or $n) of: id, encrypted raw key, nonce,
    parent uuid, associated_data.
    """
    key_id, raw_key, nonce, parent, associated = values
    key_type = create.key_type or "'aead-det'"
    return (
        "pgsodium._proxy_create_raw_key("
        f"{key_id}, ({key_type})::pgsodium.key_type, "
        f"({create.name or 'NULL'})::text, {raw_key}, {nonce}, {parent}, "
        f"({create.expires or 'NULL'})::timestamp with time zone, {associated}, "
        f"({create.key_context or _DEFAULT_CONTEXT})::bytea)"
    )


def render(
    plan: Plan,
    marker: str,
    fold_value: Callable[[int, str], str],
    create_values: Callable[[int], Sequence[str]],
) -> str:
    """The upstream text of `plan`.

    `fold_value(i, type)` gives the SQL text standing for fold i; `create_values(i)`
    the five SQL texts for raw-key create i.
    """
    replacements: list[tuple[int, int, str]] = []
    placeholders = []
    for index, output in enumerate(plan.outputs):
        alias = sqltext.quote_ident(output_alias(marker, index))
        placeholder = f"NULL::{node_type(output.node)} AS {alias}"
        placeholders.append(placeholder)
        if output.span[0] >= 0:
            replacements.append((*output.span, placeholder))
    for index, deferred in enumerate(plan.deferred):
        if deferred.span[0] >= 0:
            text = deferred_inputs(marker, index, deferred.qualifier)
            replacements.append((*deferred.span, text))
    columns = inner_columns(marker, plan.rows, len(plan.inner))
    if plan.inner_groups:
        columns = _grouped(plan, marker, columns)
    inner = [
        ", ".join(parts) or f"NULL AS {sqltext.quote_ident(name)}"
        for parts, (_, name) in zip(columns, plan.inner, strict=True)
    ]
    for start, end, text in plan.texts:
        if "\0" in text:
            for index, placeholder in enumerate(placeholders):
                text = text.replace(place("output", index), placeholder)
            for index, deferred in enumerate(plan.deferred):
                text = text.replace(
                    place("deferred", index),
                    deferred_inputs(marker, index, deferred.qualifier),
                )
            for index, columns in enumerate(inner):
                text = text.replace(place("inner", index), columns)
        replacements.append((start, end, text))
    for index, row in enumerate(plan.rows):
        if row.span[0] >= 0 and row.body is None:
            replacements.append((*row.span, input_columns(marker, index, row.inputs)))
    for index, (span, _) in enumerate(plan.inner):
        if span[0] >= 0:
            replacements.append((*span, inner[index]))
    if plan.inner_names:
        names = inner_aliases(marker, plan.rows, len(plan.inner))
        for union, group in plan.inner_groups:
            names[union] = [n for member in group for n in names[member]]
        for span, index, written in plan.inner_names:
            listed = ", ".join(sqltext.quote_ident(n) for n in names[index])
            replacements.append((*span, listed or written))
    for index, fold in enumerate(plan.folds):
        replacements.append((*fold.span, fold_value(index, node_type(fold.node))))
    for index, create in enumerate(plan.creates):
        replacements.append((*create.span, _create_call(create, create_values(index))))
    for index, row in enumerate(plan.rows):
        if row.body is not None:
            body, replacements = _rendered(plan.text, row.body, replacements)
            columns = scalar_columns(marker, index, row.inputs, body)
            replacements.append((*row.span, columns))
    return sqltext.splice(plan.text, replacements)


def _grouped(plan: Plan, marker: str, columns: list[list[str]]) -> list[list[str]]:
    """Each UNION ALL branch item's columns: those of every item of its group,
    its own as computed, the other branches' as NULL (rewriter.setops)."""
    names = inner_aliases(marker, plan.rows, len(plan.inner))
    out = list(columns)
    for _, group in plan.inner_groups:
        for member in group:
            out[member] = [
                part
                for other in group
                for part in (
                    columns[other]
                    if other == member
                    else [f"NULL AS {sqltext.quote_ident(n)}" for n in names[other]]
                )
            ]
    return out


def _rendered(
    text: str, span: tuple[int, int], replacements: list[tuple[int, int, str]]
) -> tuple[str, list[tuple[int, int, str]]]:
    """The text of `span` with the replacements inside it made, and the others."""
    start, end = span
    inside = [
        (s - start, e - start, t) for s, e, t in replacements if start <= s and e <= end
    ]
    rest = [(s, e, t) for s, e, t in replacements if not (start <= s and e <= end)]
    return sqltext.splice(text[start:end], inside), rest
