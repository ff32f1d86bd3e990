"""Choose the pgsodium overload a call means, as PostgreSQL's parser would.

Follows func_get_detail/func_select_candidate (parse_func.c): argument count with
defaults and named arguments, then exact matches, implicit coercions, preferred
types and type categories for unknown-typed arguments; ambiguity is 42725 and no
match 42883, with PostgreSQL's own message texts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from keystore.catalogue import Signature, overloads

from . import types
from .errors import RewriteError


@dataclass(frozen=True, slots=True)
class Bound:
    """A resolved call: the signature and, per parameter, which argument fills it."""

    signature: Signature
    # For each declared parameter: index into the call's arguments, or None for the
    # declared default.
    slots: tuple[int | None, ...]


def _bind_names(
    sig: Signature, positional: int, named: Sequence[str]
) -> tuple[int | None, ...] | None:
    params = sig.params
    if positional + len(named) > len(params):
        return None
    slots: list[int | None] = [None] * len(params)
    for i in range(positional):
        slots[i] = i
    for offset, name in enumerate(named):
        index = next((i for i, p in enumerate(params) if p.name == name), None)
        if index is None or slots[index] is not None:
            return None
        slots[index] = positional + offset
    for index, param in enumerate(params):
        if slots[index] is None and param.default is None:
            return None
    return tuple(slots)


def _arg_types(bound: tuple[int | None, ...], arg_types: Sequence[str]) -> list[str]:
    return [arg_types[i] for i in bound if i is not None]


def _param_types(sig: Signature, bound: tuple[int | None, ...]) -> list[str]:
    return [p.type for p, i in zip(sig.params, bound, strict=True) if i is not None]


def _category(type_name: str) -> tuple[str, bool]:
    try:
        found = types.lookup(type_name)
    except RewriteError:
        return ("U", False)
    return (found.category, found.preferred)


def _select(
    candidates: list[tuple[Signature, tuple[int | None, ...]]], arg_types: list[str]
) -> list[tuple[Signature, tuple[int | None, ...]]]:
    """func_select_candidate: narrow down when several candidates coerce."""

    def declared(c: tuple[Signature, tuple[int | None, ...]]) -> list[str]:
        return _param_types(c[0], c[1])

    def keep_most(score) -> None:  # type: ignore[no-untyped-def]
        nonlocal candidates
        best = max(score(c) for c in candidates)
        candidates = [c for c in candidates if score(c) == best]

    keep_most(
        lambda c: sum(a == p for a, p in zip(arg_types, declared(c), strict=True))
    )
    if len(candidates) > 1:
        keep_most(
            lambda c: sum(
                a == p or (a != "unknown" and _category(p)[1])
                for a, p in zip(arg_types, declared(c), strict=True)
            )
        )
    for position, arg in enumerate(arg_types):
        if len(candidates) <= 1 or arg != "unknown":
            continue
        categories = {_category(declared(c)[position])[0] for c in candidates}
        if "S" in categories:
            chosen = "S"
        elif len(categories) == 1:
            chosen = categories.pop()
        else:
            continue
        in_category = [
            c for c in candidates if _category(declared(c)[position])[0] == chosen
        ]
        preferred = [c for c in in_category if _category(declared(c)[position])[1]]
        candidates = preferred or in_category
    return candidates


def describe_call(name: str, arg_types: Sequence[str], named: Sequence[str]) -> str:
    positional = len(arg_types) - len(named)
    shown = list(arg_types[:positional]) + [
        f"{n} => {t}" for n, t in zip(named, arg_types[positional:], strict=True)
    ]
    return f"{name}({', '.join(shown)})"


def resolve(
    name: str, arg_types: Sequence[str], named: Sequence[str], position: int | None
) -> Bound:
    """`arg_types` of all arguments in call order; the last len(named) are named."""
    positional = len(arg_types) - len(named)
    candidates = []
    for sig in overloads(name):
        slots = _bind_names(sig, positional, named)
        if slots is not None:
            candidates.append((sig, slots))
    typed = [
        (sig, slots)
        for sig, slots in candidates
        if all(
            types.can_coerce_implicitly(a, p)
            for a, p in zip(
                _arg_types(slots, arg_types), _param_types(sig, slots), strict=True
            )
        )
    ]
    shown = describe_call(f"pgsodium.{name}", arg_types, named)
    if not typed:
        raise RewriteError(
            "42883",
            f"function {shown} does not exist",
            position,
        )
    exact = [
        c for c in typed if _arg_types(c[1], arg_types) == _param_types(c[0], c[1])
    ]
    chosen = exact if len(exact) == 1 else typed
    if len(chosen) > 1:
        chosen = _select(chosen, _arg_types(chosen[0][1], arg_types))
    if len(chosen) != 1:
        raise RewriteError("42725", f"function {shown} is not unique", position)
    sig, slots = chosen[0]
    return Bound(sig, slots)
