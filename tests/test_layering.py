"""rewriter and keystore never import proxy (DESIGN "Layout")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("package", ["rewriter", "keystore"])
def test_pure_packages_do_not_import_proxy(package: str) -> None:
    offenders = []
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            if any(n == "proxy" or n.startswith("proxy.") for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


@pytest.mark.parametrize("package", ["rewriter", "keystore"])
def test_pure_packages_do_not_log(package: str) -> None:
    for path in (ROOT / package).rglob("*.py"):
        assert "import logging" not in path.read_text(), path
