"""The architecture, checked: appliances reach the world only through the
runtime's public API (DESIGN.md, "Layers"), and the runtime never imports an
appliance."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: what an appliance may not import: the world (the runtime's devices are the
#: way there) and the runtime's insides (only ``runtime`` itself is public)
FORBIDDEN = {
    *("socket", "ssl", "select", "selectors"),
    *("os", "time", "signal", "subprocess", "threading", "sqlite3"),
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _modules(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "/data/" not in str(p))


@pytest.mark.parametrize("path", _modules("appliances"), ids=lambda p: str(p.relative_to(ROOT)))
def test_appliances_use_only_the_public_runtime(path: Path) -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line}: imports {name}"
        for line, name in _imports(path)
        if name.split(".")[0] in FORBIDDEN or name.startswith("runtime.")
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path", _modules("runtime"), ids=lambda p: str(p.relative_to(ROOT)))
def test_runtime_never_imports_an_appliance(path: Path) -> None:
    bad = [name for _, name in _imports(path) if name.split(".")[0] == "appliances"]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
