"""Every pgsodium C function the proxy evaluates, keyed by pgsodium's C symbol name.

Each implementation is called as `impl(env, *args)`: `env` is a `keystore.derive.Env`
(root-key derivation), `args` are the SQL arguments in declaration order with defaults
already applied and SQL NULL as None. It returns the SQL value (bytes, bool, int, str,
a tuple for composites, or None) or raises `keystore.errors.PgsodiumError`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

Implementation = Callable[..., Any]

_MODULES = (
    "keystore.primitives.derivation",
    "keystore.primitives.aead",
    "keystore.primitives.mac",
    "keystore.primitives.secretbox",
    "keystore.primitives.stream",
    "keystore.primitives.box",
    "keystore.primitives.sign",
    "keystore.primitives.kx",
    "keystore.primitives.pwhash",
    "keystore.primitives.misc",
    "keystore.primitives.ipcrypt",
    "keystore.primitives.signcrypt",
)


def _load() -> dict[str, Implementation]:
    table: dict[str, Implementation] = {}
    for name in _MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        overlap = table.keys() & module.IMPLEMENTATIONS.keys()
        if overlap:
            raise RuntimeError(f"{name} redefines {sorted(overlap)}")
        table.update(module.IMPLEMENTATIONS)
    return table


IMPLEMENTATIONS: dict[str, Implementation] = _load()
