"""Errors the runtime reports to operators: one line each, no traceback."""

from __future__ import annotations

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_STARTUP",
    "ConfigError",
    "DeviceError",
    "StartupError",
]

#: Exit statuses, for supervisors (systemd ``RestartPreventExitStatus=2 3``):
#: stopped as asked; failed while running; bad configuration or command line;
#: a device could not be opened at start.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_STARTUP = 3


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
