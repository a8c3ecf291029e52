"""The log options of every appliance: ``--log-level`` tables and
``--log-file`` routes, turned into settings of the process's ``LogSink``."""

from __future__ import annotations

from typing import TextIO

from .errors import ConfigError
from .log import LogSink, parse_level

__all__ = ["LogFiles", "parse_log_files", "parse_log_levels"]


class LogFiles:
    """Files that log components are routed to (``--log-file``), reopened on
    reload so that rotating them (rename, then SIGHUP) works as for nginx."""

    def __init__(self, sink: LogSink, routes: list[tuple[str, str]]) -> None:
        self._sink = sink
        self._routes = routes
        self._open: list[TextIO] = []

    def open(self) -> None:
        """(Re)open every file in append mode and route its component to it."""
        fresh: list[TextIO] = [open(path, "a", buffering=1, encoding="utf-8") for _, path in self._routes]
        for (component, _), stream in zip(self._routes, fresh, strict=True):
            self._sink.route(component, stream)
        old, self._open = self._open, fresh
        for stream in old:
            stream.close()

    def close(self) -> None:
        for component, _ in self._routes:
            self._sink.route(component, None)
        for stream in self._open:
            stream.close()
        self._open = []


def parse_log_files(entries: list[str]) -> list[tuple[str, str]]:
    routes = []
    for entry in entries:
        component, eq, path = entry.partition("=")
        if not eq or not component or not path or not all(part for part in component.split(".")):
            raise ConfigError(f"--log-file: expected COMPONENT=FILE, got {entry!r}", option="log_file")
        routes.append((component, path))
    return routes


def parse_log_levels(text: str) -> list[tuple[str, str]]:
    """``info`` or ``dns.zone=debug,warning`` -> [(component, level)] ("" = root)."""
    result: list[tuple[str, str]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        component, eq, level = part.rpartition("=")
        try:
            result.append((component if eq else "", parse_level(level)))
        except ValueError as exc:
            raise ConfigError(f"--log-level: bad value {part!r}: {exc}", option="log_level") from None
    return result
