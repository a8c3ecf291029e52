"""Zone loading problems: each one names the file and line it is about."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Problem", "ZoneError"]


@dataclass(frozen=True, slots=True)
class Problem:
    """An error or a warning found while loading a zone."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class ZoneError(ValueError):
    """A zone (or set of zones) that cannot be served; ``problems`` lists every error found.

    This is a local error in the sense of the project style: the operator's zone
    data is wrong, nothing is answered from it, and the previous Authority (if any)
    keeps serving.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        lines = [str(p) for p in self.problems]
        count = len(lines)
        super().__init__(f"{count} error{'s' if count != 1 else ''} in zone data:\n  " + "\n  ".join(lines))
