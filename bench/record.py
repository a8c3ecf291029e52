"""Where every benchmark puts its results: a dated section appended to
``bench/RESULTS.md`` (created with its heading if missing)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["RESULTS", "append"]

RESULTS = Path(__file__).resolve().with_name("RESULTS.md")
HEADING = "# Benchmark results\n\nAppended by the scripts under bench/; newest last.\n\n"


def append(lines: Sequence[str]) -> Path:
    """Append ``lines`` (one section, its own ``##`` heading first) and say where."""
    with RESULTS.open("a") as f:
        if f.tell() == 0:
            f.write(HEADING)
        f.write("\n" + "\n".join(lines).rstrip("\n") + "\n")
    print(f"\nappended to {RESULTS}")
    return RESULTS
