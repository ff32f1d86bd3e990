"""Choose the pgsodium overload a call means, as PostgreSQL's parser would.

Follows FuncnameGetCandidates (namespace.c) and func_get_detail/func_select_candidate
(parse_func.c, parse_func.c's helpers): argument count with defaults and named
arguments, overloads that expand to the same argument types, the exact match, implicit
coercions, preferred types, type categories for unknown-typed arguments and the "all
known types alike" last resort; ambiguity is 42725 and no match 42883, with
PostgreSQL's own message texts. Only the functions declared upstream are candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from keystore.catalogue import SCHEMA, Signature, overloads
from keystore.schema import INSTALLED_KINDS

from . import types
from .errors import RewriteError

FUNC_MAX_ARGS = 100  # pg_config_manual.h
# PostgreSQL's hints for the two resolution failures (parse_func.c).
_NO_MATCH = (
    "No function matches the given name and argument types. "
    "You might need to add explicit type casts."
)
_NOT_UNIQUE = (
    "Could not choose a best candidate function. "
    "You might need to add explicit type casts."
)

# Categories of types that only appear in signatures not declared upstream.
_OTHER_CATEGORIES = {"regrole": ("N", False), "record": ("P", False)}


@dataclass(frozen=True, slots=True)
class Bound:
    """A resolved call: the signature and, per parameter, which argument fills it."""

    signature: Signature
    # For each declared parameter: index into the call's arguments, or None for the
    # declared default.
    slots: tuple[int | None, ...]


@dataclass(slots=True)
class _Candidate:
    # None: several overloads expand to these argument types (PostgreSQL's oid 0).
    signature: Signature | None
    slots: tuple[int | None, ...]
    args: tuple[str, ...]  # declared types of the supplied arguments, in call order


def _bind(sig: Signature, nargs: int, named: Sequence[str]) -> _Candidate | None:
    """FuncnameGetCandidates + MatchNamedCall for one overload."""
    params = sig.params
    positional = nargs - len(named)
    first_default = next(
        (i for i, p in enumerate(params) if p.default is not None), len(params)
    )
    if nargs > len(params) or nargs < first_default:
        return None
    slots: list[int | None] = [None] * len(params)
    for i in range(positional):
        slots[i] = i
    for offset, name in enumerate(named):
        index = next((i for i, p in enumerate(params) if p.name == name), None)
        if index is None or slots[index] is not None:
            return None
        slots[index] = positional + offset
    if any(s is None and i < first_default for i, s in enumerate(slots)):
        return None
    order = sorted((s, i) for i, s in enumerate(slots) if s is not None)
    args = tuple(params[i].type for _, i in order)
    return _Candidate(sig, tuple(slots), args)


def _candidates(name: str, nargs: int, named: Sequence[str]) -> list[_Candidate]:
    found: list[_Candidate] = []
    for sig in overloads(name):
        if sig.kind not in INSTALLED_KINDS:
            continue
        candidate = _bind(sig, nargs, named)
        if candidate is None:
            continue
        twin = next((c for c in found if c.args == candidate.args), None)
        if twin is None:
            found.append(candidate)
        else:
            # Same schema, same expanded types: PostgreSQL keeps one entry and
            # reports the call ambiguous if it is chosen.
            twin.signature = None
    return found


def _category(type_name: str) -> tuple[str, bool]:
    if type_name in _OTHER_CATEGORIES:
        return _OTHER_CATEGORIES[type_name]
    try:
        found = types.lookup(type_name)
    except RewriteError:
        return ("U", False)
    return (found.category, found.preferred)


def _keep_best(
    candidates: list[_Candidate], score: Callable[[_Candidate], int]
) -> list[_Candidate]:
    best = max(score(c) for c in candidates)
    return [c for c in candidates if score(c) == best]


def _exact_score(arg_types: Sequence[str]) -> Callable[[_Candidate], int]:
    def score(c: _Candidate) -> int:
        return sum(
            a != "unknown" and a == p for a, p in zip(arg_types, c.args, strict=True)
        )

    return score


def _preferred_score(arg_types: Sequence[str]) -> Callable[[_Candidate], int]:
    # IsPreferredType: preferred only within the input's own category (7.4 rule).
    def score(c: _Candidate) -> int:
        return sum(
            a != "unknown" and (a == p or _category(p) == (_category(a)[0], True))
            for a, p in zip(arg_types, c.args, strict=True)
        )

    return score


def _unknown_slot(candidates: list[_Candidate], i: int) -> tuple[str, bool] | None:
    """The category an unknown argument takes: STRING wins, else all must agree."""
    category, preferred, conflict = "", False, False
    for c in candidates:
        current, is_preferred = _category(c.args[i])
        if not category:
            category, preferred = current, is_preferred
        elif current == category:
            preferred |= is_preferred
        elif current == "S":
            category, preferred = current, is_preferred
        else:
            conflict = True
    if conflict and category != "S":
        return None
    return category, preferred


def _by_unknowns(
    candidates: list[_Candidate], arg_types: Sequence[str]
) -> list[_Candidate] | None:
    slots: dict[int, tuple[str, bool]] = {}
    for i, arg in enumerate(arg_types):
        if arg != "unknown":
            continue
        slot = _unknown_slot(candidates, i)
        if slot is None:
            return None
        slots[i] = slot
    kept = [
        c
        for c in candidates
        if all(
            _category(c.args[i])[0] == category
            and (not preferred or _category(c.args[i])[1])
            for i, (category, preferred) in slots.items()
        )
    ]
    return kept or candidates


def _by_known_type(
    candidates: list[_Candidate], arg_types: Sequence[str]
) -> _Candidate | None:
    """Last gasp: every known argument has one type; treat the unknowns as it."""
    known = {a for a in arg_types if a != "unknown"}
    if len(known) != 1:
        return None
    assumed = [known.pop()] * len(arg_types)
    fits = [c for c in candidates if _coerces(assumed, c.args)]
    return fits[0] if len(fits) == 1 else None


def _select(
    candidates: list[_Candidate], arg_types: Sequence[str]
) -> _Candidate | None:
    """func_select_candidate: the one best candidate, or None when ambiguous."""
    candidates = _keep_best(candidates, _exact_score(arg_types))
    if len(candidates) == 1:
        return candidates[0]
    candidates = _keep_best(candidates, _preferred_score(arg_types))
    if len(candidates) == 1:
        return candidates[0]
    if "unknown" not in arg_types:
        return None
    narrowed = _by_unknowns(candidates, arg_types)
    if narrowed is not None:
        candidates = narrowed
        if len(candidates) == 1:
            return candidates[0]
    return _by_known_type(candidates, arg_types)


def _coerces(arg_types: Sequence[str], params: Sequence[str]) -> bool:
    return all(
        types.can_coerce_implicitly(a, p)
        for a, p in zip(arg_types, params, strict=True)
    )


def describe_call(name: str, arg_types: Sequence[str], named: Sequence[str]) -> str:
    """func_signature_string: `name(type, ..., argname => type)`."""
    positional = len(arg_types) - len(named)
    shown = list(arg_types[:positional]) + [
        f"{n} => {t}" for n, t in zip(named, arg_types[positional:], strict=True)
    ]
    return f"{name}({', '.join(shown)})"


def _check_call_shape(named: Sequence[str], nargs: int, position: int | None) -> None:
    if nargs > FUNC_MAX_ARGS:
        raise RewriteError(
            "54023",
            f"cannot pass more than {FUNC_MAX_ARGS} arguments to a function",
            position,
        )
    for i, name in enumerate(named):
        if name in named[:i]:
            raise RewriteError(
                "42601", f'argument name "{name}" used more than once', position
            )


def _choose(coercible: list[_Candidate], arg_types: Sequence[str]) -> _Candidate | None:
    """func_get_detail after the exact-match test: the only one, or the best."""
    if len(coercible) == 1:
        return coercible[0]
    return _select(coercible, arg_types)


def resolve(
    name: str,
    arg_types: Sequence[str],
    named: Sequence[str],
    position: int | None,
    *,
    schema: str | None = SCHEMA,
) -> Bound:
    """`arg_types` of all arguments in call order; the last len(named) are named.

    `schema` is the qualification the call was written with (None: unqualified);
    PostgreSQL's messages show the function name as written.
    """
    _check_call_shape(named, len(arg_types), position)
    candidates = _candidates(name, len(arg_types), named)
    shown = describe_call(f"{schema}.{name}" if schema else name, arg_types, named)
    chosen = next((c for c in candidates if list(c.args) == list(arg_types)), None)
    if chosen is None:
        coercible = [c for c in candidates if _coerces(arg_types, c.args)]
        if not coercible:
            raise RewriteError(
                "42883", f"function {shown} does not exist", position, _NO_MATCH
            )
        chosen = _choose(coercible, arg_types)
    if chosen is None or chosen.signature is None:
        raise RewriteError(
            "42725", f"function {shown} is not unique", position, _NOT_UNIQUE
        )
    if named and chosen.signature.language == "aggregate":
        raise RewriteError("0A000", "aggregates cannot use named arguments", position)
    return Bound(chosen.signature, chosen.slots)
