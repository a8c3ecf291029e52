"""``build --report``: every file in the image and every module in the frozen
archive with its size, largest first, with totals per kind."""

from __future__ import annotations

import io
import zipfile
from collections import defaultdict

from .tree import Tree

__all__ = ["size_report"]


def size_report(tree: Tree, archive_path: str, compressed: dict[str, int] | None = None) -> str:
    rows: list[tuple[int, str, str]] = []
    totals: dict[str, int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    for entry in tree.files():
        role = entry.role or "file"
        rows.append((len(entry.data), f"/{entry.path}", role))
        totals[role] += len(entry.data)
        counts[role] += 1
        if entry.path == archive_path:
            with zipfile.ZipFile(io.BytesIO(entry.data)) as archive:
                for info in archive.infolist():
                    module = info.filename.removesuffix(".pyc").removesuffix("/__init__").replace("/", ".")
                    rows.append((info.file_size, f"  {module}", "module"))
                    totals["module (in archive)"] += info.file_size
                    counts["module (in archive)"] += 1
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
