"""Errors the runtime reports to operators: one line each, no traceback."""

from __future__ import annotations

__all__ = ["ConfigError", "DeviceError", "StartupError"]


class ConfigError(ValueError):
    """A bad option value or config file: the operator's to fix.

    ``str()`` is one line naming the option and what was expected.
    """

    def __init__(self, message: str, *, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


class DeviceError(RuntimeError):
    """A device could not be opened or used as declared (port in use, store
    locked, data directory missing, device not declared)."""


class StartupError(RuntimeError):
    """Start-up failed; ``problems`` holds one line per missing or broken piece."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
