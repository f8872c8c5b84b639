"""``policies`` is pure: no ``gateway`` imports, nothing that does I/O or reads a clock."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "policies"
FORBIDDEN = {"gateway", "asyncio", "socket", "os", "subprocess", "time", "pathlib", "shutil",
             "signal", "threading", "urllib", "http", "io", "tempfile", "logging"}
FORBIDDEN_CALLS = {"open", "now", "utcnow", "today", "time", "perf_counter", "monotonic"}


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_module_is_pure(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert ast.get_docstring(tree) or not tree.body, f"{path.name} needs a module docstring"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            names = []
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            assert called not in FORBIDDEN_CALLS, f"{path.name} calls {called}()"
