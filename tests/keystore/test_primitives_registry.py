"""The primitive modules against pgsodium's catalogue: every C symbol and argument."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

from keystore.derive import Env
from keystore.errors import PgsodiumError

MODULES = (
    "derivation",
    "aead",
    "mac",
    "secretbox",
    "stream",
    "box",
    "sign",
    "kx",
    "pwhash",
    "misc",
)
# Families implemented in other modules.
ELSEWHERE = ("pgsodium_crypto_ipcrypt_", "pgsodium_crypto_signcrypt_")
CATALOGUE = Path(__file__).parents[1] / "data" / "pgsodium-3.1.11-functions.tsv"


def _c_functions() -> dict[str, tuple[int, bool]]:
    """C symbol -> (number of SQL arguments, STRICT), from pgsodium's catalogue."""
    found: dict[str, tuple[int, bool]] = {}
    for line in CATALOGUE.read_text("utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        signature, _result, flags, implementation, _grants = line.split("\t")
        if not implementation.startswith("C "):
            continue
        symbol = implementation.removeprefix("C ").strip()
        inside = signature[signature.index("(") + 1 : signature.rindex(")")]
        found[symbol] = (_count_arguments(inside), "STRICT" in flags)
    return found


def _count_arguments(arguments: str) -> int:
    """Top-level commas only: defaults may hold quotes and calls (decode('x', 'y'))."""
    flat = re.sub(r"'[^']*'", "''", arguments)
    while re.search(r"\([^()]*\)", flat):
        flat = re.sub(r"\([^()]*\)", "", flat)
    return len(flat.split(",")) if flat.strip() else 0


C_FUNCTIONS = {
    symbol: shape
    for symbol, shape in _c_functions().items()
    if not symbol.startswith(ELSEWHERE)
}
IMPLEMENTATIONS: dict[str, object] = {}
for _name in MODULES:
    _module = importlib.import_module(f"keystore.primitives.{_name}")
    assert not IMPLEMENTATIONS.keys() & _module.IMPLEMENTATIONS.keys()
    IMPLEMENTATIONS.update(_module.IMPLEMENTATIONS)


def test_every_c_symbol_of_these_families_has_exactly_one_implementation() -> None:
    assert len(C_FUNCTIONS) == 89
    assert set(IMPLEMENTATIONS) == set(C_FUNCTIONS)


def test_the_merged_registry_holds_these_implementations() -> None:
    from keystore.implementations import IMPLEMENTATIONS as merged

    for symbol, impl in IMPLEMENTATIONS.items():
        assert merged[symbol] is impl


@pytest.mark.parametrize("symbol", sorted(C_FUNCTIONS))
def test_implementation_takes_env_and_every_sql_argument(symbol: str) -> None:
    arity, _strict = C_FUNCTIONS[symbol]
    parameters = inspect.signature(IMPLEMENTATIONS[symbol]).parameters  # type: ignore[arg-type]

    assert len(parameters) == 1 + arity


@pytest.mark.parametrize(
    "symbol",
    sorted(s for s, (arity, strict) in C_FUNCTIONS.items() if arity and not strict),
)
def test_non_strict_function_refuses_all_null_arguments_with_22000(symbol: str) -> None:
    arity, _strict = C_FUNCTIONS[symbol]

    with pytest.raises(PgsodiumError) as info:
        IMPLEMENTATIONS[symbol](Env(None), *([None] * arity))  # type: ignore[operator]

    assert info.value.sqlstate == "22000"
    assert info.value.message.startswith(f"{symbol}: ")
    assert info.value.message.endswith("cannot be NULL")
