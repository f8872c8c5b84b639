"""Dependencies point one way: protocols <- policies <- gateway, and only gateway does I/O.

Inside ``gateway`` the proxy core knows no plug-in: ``gateway/proxy/`` imports only itself,
the settings and the shared ``errors``/``clock``; plug-ins plug into ``proxy/hooks.py``; only
the assembly (``cli.py``, ``service.py``) sees everything. Walks the AST of every module, so an
import hidden in a function (or under TYPE_CHECKING) counts too.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IO_MODULES = {"asyncio", "socket", "ssl", "selectors"}
FORBIDDEN = {
    "protocols": IO_MODULES | {"gateway", "policies"},
    "policies": {"gateway", "asyncio", "socket"},
}


# What each wing of gateway/ may import from gateway/ (besides itself).
SHARED = {"gateway.errors", "gateway.clock"}
ASSEMBLY = {"gateway.cli", "gateway.service"}
WING_MAY_IMPORT = {
    "gateway.proxy": SHARED | {"gateway.settings"},
    "gateway.settings": SHARED | {"gateway.journal.settings", "gateway.alerts.settings",
                                  "gateway.sso.settings", "gateway.access.settings",
                                  "gateway.archive.settings", "gateway.drill.settings",
                                  "gateway.masking.settings", "gateway.console.settings"},
}


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Absolute name of every module ``source`` imports from (``from x import y`` gives x)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.add(node.module or "")
                continue
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - node.level + 1]
            found.add(".".join(base + ([node.module] if node.module else [])))
    return found


def wing_of(module: str) -> str:
    """``gateway.proxy.relay`` → ``gateway.proxy``; a top-level module is its own wing."""
    parts = module.split(".")
    return ".".join(parts[:2])


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
    ("from . import decoder", {"protocols"}),
    ("from ...gateway import x", {"gateway"}),
])
def test_imported_roots(source: str, expected: set[str]) -> None:
    assert imported_roots(source, "protocols.postgres.decoder") == expected


def _gateway_modules() -> list[tuple[str, bool, Path]]:
    return [(module_name(p).removesuffix(".__init__"), p.name == "__init__.py", p)
            for p in modules("gateway")]


@pytest.mark.parametrize("name", [m for m, _, _ in _gateway_modules()])
def test_every_module_imports(name: str) -> None:
    importlib.import_module(name)


def test_proxy_core_imports_no_plug_in() -> None:
    offenders = {}
    for module, is_package, path in _gateway_modules():
        wing = wing_of(module)
        if wing not in WING_MAY_IMPORT:
            continue
        allowed = WING_MAY_IMPORT[wing]
        for target in imported_modules(path.read_text(encoding="utf-8"), module, is_package):
            if not target.startswith("gateway") or wing_of(target) == wing or target == "gateway":
                continue
            if not any(target == a or target.startswith(a + ".") for a in allowed):
                offenders.setdefault(module, []).append(target)
    assert not offenders, f"core wings import what they must not: {offenders}"


def test_only_the_assembly_imports_the_assembly() -> None:
    offenders = {}
    for module, is_package, path in _gateway_modules():
        if module in ASSEMBLY or module == "gateway.demo.demo":  # the demo runs a gateway
            continue
        targets = imported_modules(path.read_text(encoding="utf-8"), module, is_package)
        if bad := targets & ASSEMBLY:
            offenders[module] = sorted(bad)
    assert not offenders, f"only cli.py and service.py may import the assembly: {offenders}"


@pytest.mark.parametrize(("source", "module", "expected"), [
    ("from .hooks import Hook", "gateway.proxy.relay", {"gateway.proxy.hooks"}),
    ("from ..settings.config import X", "gateway.proxy.relay", {"gateway.settings.config"}),
    ("from . import Journal", "gateway.journal.hook", {"gateway.journal"}),
    ("import gateway.proxy.hooks", "gateway.cli", {"gateway.proxy.hooks"}),
])
def test_imported_modules(source: str, module: str, expected: set[str]) -> None:
    assert imported_modules(source, module, False) == expected
