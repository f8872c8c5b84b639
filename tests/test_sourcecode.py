"""Dependencies point one way: protocols <- policies <- gateway, and only gateway does I/O.

Walks the AST of every module, so an import hidden in a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IO_MODULES = {"asyncio", "socket", "ssl", "selectors"}
FORBIDDEN = {
    "protocols": IO_MODULES | {"gateway", "policies"},
    "policies": {"gateway", "asyncio", "socket"},
}


def imported_roots(source: str, module: str) -> set[str]:
    """Top-level package of every import in ``source``, relative ones resolved from ``module``."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                roots.add((node.module or "").split(".")[0])
            else:
                base = module.split(".")[: -node.level] or [""]
                roots.add(base[0] if base[0] else (node.module or "").split(".")[0])
    return roots


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_stay_in_their_layer(package: str) -> None:
    paths = modules(package)
    assert paths, f"no modules found under {package}/"
    offenders = {}
    for path in paths:
        roots = imported_roots(path.read_text(encoding="utf-8"), module_name(path))
        if bad := roots & FORBIDDEN[package]:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert not offenders, f"{package}/ must not import {sorted(FORBIDDEN[package])}: {offenders}"


@pytest.mark.parametrize(("source", "expected"), [
    ("import asyncio", {"asyncio"}),
    ("import os.path, socket as s", {"os", "socket"}),
    ("from ssl import SSLContext", {"ssl"}),
    ("def f():\n    import selectors", {"selectors"}),
    ("from gateway.relay import Relay", {"gateway"}),
    ("from . import codec", {"protocols"}),
    ("from ...gateway import x", {"gateway"}),
])
def test_imported_roots(source: str, expected: set[str]) -> None:
    assert imported_roots(source, "protocols.postgres.codec") == expected
