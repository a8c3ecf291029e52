"""``build --report``: every file in the image with its size (a frozen
module by its dotted name), largest first, with totals per kind."""

from __future__ import annotations

import re
from collections import defaultdict

from .tree import Tree

__all__ = ["size_report"]


def size_report(tree: Tree, compressed: dict[str, int] | None = None) -> str:
    rows: list[tuple[int, str, str]] = []
    totals: dict[str, int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    for entry in tree.files():
        role = entry.role or "file"
        rows.append((len(entry.data), _label(entry.path, role), role))
        totals[role] += len(entry.data)
        counts[role] += 1
    rows.sort(key=lambda row: (-row[0], row[1]))
    lines = [f"{'bytes':>10}  {'kind':<14} path"]
    lines += [f"{size:>10,}  {role:<14} {path}" for size, path, role in rows]
    lines.append("")
    lines.append("totals:")
    for role in sorted(totals, key=lambda r: -totals[r]):
        lines.append(f"{totals[role]:>12,}  {counts[role]:>5} x {role}")
    files = tree.files()
    lines.append(f"{sum(len(e.data) for e in files):>12,}  {len(files):>5} files in the image (uncompressed)")
    for name, size in sorted((compressed or {}).items()):
        lines.append(f"{size:>12,}  {name}")
    return "\n".join(lines) + "\n"


def _label(path: str, role: str) -> str:
    """``/path``, or a module's dotted name (``usr/lib/python3.X/a/b.pyc`` is ``a.b``)."""
    if role == "module":
        module = re.sub(r"^usr/lib/python\d+\.\d+/", "", path).removesuffix(".pyc").removesuffix("/__init__")
        return module.replace("/", ".")
    return f"/{path}"
