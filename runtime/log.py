"""The log device: structured lines to one output stream (stderr or the serial console).

One ``LogSink`` per process owns the output, the format, the level table and a
ring of recent lines; ``Logger`` objects (the ``Log`` device) are cheap handles
on it, one per component (``dns``, ``dns.zone``...).

Rules:

1. A call below its logger's level costs a few attribute loads and a compare:
   the logger caches its effective level and re-reads it only when the sink's
   generation counter moves (``set_level`` bumps it).  Nothing is formatted.
2. One record is one line.  Message and field values have control characters
   escaped, so nothing a peer sends can forge a record or move a terminal's
   cursor (log injection); only a traceback continues on following lines, each
   indented, so a reader still finds records by their first column.
3. Logging never raises into the caller: a value whose ``str()`` fails is
   written as a placeholder, an output that fails (closed stderr, broken pipe,
   an encoding error) drops the line and counts the drop.

Text format::

    2026-11-28T18:49:31.123Z INFO  dns: serving zone origin=example.org. records=12

JSON format (one object per line)::

    {"ts": "2026-11-28T18:49:31.123Z", "level": "info", "component": "dns", "msg": "serving zone", ...}
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TextIO

__all__ = [
    "LEVELS",
    "LogFormat",
    "LogSink",
    "LogStats",
    "Logger",
    "MemoryLogSink",
    "StdlibCapture",
    "capture_stdlib_logging",
    "parse_level",
]

#: level names, lowest first
LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")

LogFormat = Literal["text", "json"]

_DEBUG, _INFO, _WARNING, _ERROR = 10, 20, 30, 40
_LEVEL_NUMBERS: dict[str, int] = {"debug": _DEBUG, "info": _INFO, "warning": _WARNING, "error": _ERROR}
_LEVEL_NAMES: dict[int, str] = {number: name for name, number in _LEVEL_NUMBERS.items()}
# Five columns so that messages line up; "WARN" is what the text format prints.
_TEXT_LEVELS: dict[int, str] = {_DEBUG: "DEBUG", _INFO: "INFO ", _WARNING: "WARN ", _ERROR: "ERROR"}
# Accepted on input only: the text format prints WARN, so people will type it.
_ALIASES: dict[str, str] = {"warn": "warning"}

#: Lines kept for ``tail``: a screenful of context many times over, ~1 MB at worst with
#: typical ~200-byte lines (each line is bounded further by the two limits below).
DEFAULT_TAIL_LINES = 1000
#: A message or field value longer than this is cut: Docker's json-file driver splits
#: lines at 16 KiB, and a record with a few such values should still fit in one.
MAX_VALUE_CHARS = 4096
#: Tracebacks keep their last (innermost) part up to this size, same reasoning.
MAX_TRACEBACK_CHARS = 16384
#: Components remembered for ``levels()``: names are static in code, so a few dozen is
#: normal; the bound only guards against a child named after each connection.
MAX_KNOWN_COMPONENTS = 1024

# A component is dot-separated segments of visible characters that cannot be confused
# with the "component:" delimiter or a field.
_COMPONENT = re.compile(r"[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*\Z")
_COMPONENT_BAD_CHARS = re.compile(r"[^A-Za-z0-9_\-.]")
# A field value is written bare unless it contains one of these (or is empty/unprintable).
_VALUE_SPECIALS = re.compile(r'[ "=]')
_MESSAGE_SPECIALS = re.compile(r'["=]|^ | $')
_KEY_BAD_CHARS = re.compile(r'[\s="]')
_QUOTED_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})
_CONTROL_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_JSON_CORE_KEYS = frozenset({"ts", "level", "component", "msg", "exc"})


def parse_level(text: str) -> str:
    """Normalise a level name (case-insensitive; ``warn`` means ``warning``).

    Raises ``ValueError`` naming the valid levels.
    """
    name = text.strip().lower()
    name = _ALIASES.get(name, name)
    if name not in _LEVEL_NUMBERS:
        raise ValueError(f"unknown log level {text!r}; expected one of: {', '.join(LEVELS)}")
    return name


def _level_number(level: str) -> int:
    number = _LEVEL_NUMBERS.get(level)
    if number is None:
        number = _LEVEL_NUMBERS[parse_level(level)]
    return number


def _check_component(component: str) -> str:
    if not _COMPONENT.match(component):
        raise ValueError(
            f"bad log component {component!r}: expected dot-separated names of letters, digits, '_' and '-'"
        )
    return component


@dataclass(frozen=True, slots=True)
class LogStats:
    #: records written to the output
    lines: int
    #: records lost because the output failed
    dropped: int


class Logger:
    """The ``Log`` device for one component.  Get one from ``LogSink.logger``."""

    __slots__ = ("_component", "_generation", "_sink", "_threshold")

    def __init__(self, sink: LogSink, component: str) -> None:
        self._sink = sink
        self._component = component
        self._generation = -1  # never equal to the sink's: the first call resolves the level
        self._threshold = _ERROR

    def __repr__(self) -> str:
        return f"<Logger {self._component}>"

    @property
    def component(self) -> str:
        return self._component

    def child(self, name: str) -> Logger:
        return self._sink.logger(f"{self._component}.{name}")

    def _refresh(self) -> int:
        sink = self._sink
        self._threshold = sink.effective_level_number(self._component)
        self._generation = sink._generation
        return self._threshold

    def enabled(self, level: str) -> bool:
        threshold = self._threshold if self._generation == self._sink._generation else self._refresh()
        return _level_number(level) >= threshold

    # The level methods are spelled out rather than sharing a helper: a suppressed call
    # is then four attribute loads and two compares, with no further call.

    def debug(self, msg: str, **fields: Any) -> None:
        threshold = self._threshold if self._generation == self._sink._generation else self._refresh()
        if _DEBUG >= threshold:
            self._sink.emit(_DEBUG, self._component, msg, fields)

    def info(self, msg: str, **fields: Any) -> None:
        threshold = self._threshold if self._generation == self._sink._generation else self._refresh()
        if _INFO >= threshold:
            self._sink.emit(_INFO, self._component, msg, fields)

    def warning(self, msg: str, **fields: Any) -> None:
        threshold = self._threshold if self._generation == self._sink._generation else self._refresh()
        if _WARNING >= threshold:
            self._sink.emit(_WARNING, self._component, msg, fields)

    def error(self, msg: str, **fields: Any) -> None:
        threshold = self._threshold if self._generation == self._sink._generation else self._refresh()
        if _ERROR >= threshold:
            self._sink.emit(_ERROR, self._component, msg, fields)

    def exception(self, msg: str, exc: BaseException, **fields: Any) -> None:
        """Log ``msg`` at error level with the traceback of ``exc``."""
        threshold = self._threshold if self._generation == self._sink._generation else self._refresh()
        if _ERROR >= threshold:
            self._sink.emit(_ERROR, self._component, msg, fields, exc)


class LogSink:
    """The process's log output: stream, format, level table and recent-line ring.

    ``stream`` is a text file object (default ``sys.stderr``, looked up at each
    write so that a replaced stderr is honoured); ``clock`` returns epoch seconds.
    ``level`` is the root level, ``levels`` initial per-component overrides.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        format: LogFormat = "text",
        level: str = "info",
        levels: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        tail_lines: int = DEFAULT_TAIL_LINES,
    ) -> None:
        if format not in ("text", "json"):
            raise ValueError(f"unknown log format {format!r}; expected one of: text, json")
        if tail_lines < 0:
            raise ValueError(f"tail_lines must be >= 0, got {tail_lines}")
        self._stream = stream
        self._format: LogFormat = format
        self._clock = clock
        self._levels: dict[str, int] = {"": _LEVEL_NUMBERS[parse_level(level)]}
        for component, component_level in (levels or {}).items():
            self._levels[_check_component(component)] = _LEVEL_NUMBERS[parse_level(component_level)]
        self._generation = 0
        self._known: dict[str, None] = {}
        #: component prefix -> stream for records routed away from the main output
        self._routes: dict[str, TextIO] = {}
        self._route_cache: dict[str, TextIO | None] = {}
        self._ring: deque[str] = deque(maxlen=tail_lines)
        # Records may arrive from other threads through the stdlib bridge (libraries
        # log from executor threads); the lock keeps a line and its ring entry whole.
        # It is taken only for records that are written, never for suppressed ones.
        self._lock = threading.Lock()
        self._lines = 0
        self._dropped = 0
        # (epoch second, its formatted date and time), swapped as one object so that a
        # thread formatting a record never pairs one second with another's text
        self._second: tuple[int, str] = (-1, "")

    # ----------------------------------------------------------------- levels

    @property
    def format(self) -> LogFormat:
        return self._format

    def logger(self, component: str) -> Logger:
        """The ``Log`` device for ``component`` (dotted: ``dns.zone``)."""
        _check_component(component)
        if component not in self._known and len(self._known) < MAX_KNOWN_COMPONENTS:
            self._known[component] = None
        return Logger(self, component)

    def set_level(self, component: str, level: str | None) -> None:
        """Set the level of ``component`` and, by inheritance, of its children.

        ``component`` ``""`` is the root.  ``level`` ``None`` removes an override
        so the component inherits again (the root always has a level).
        """
        if component:
            _check_component(component)
        if level is None:
            if not component:
                raise ValueError("the root log level cannot be removed, only changed")
            self._levels.pop(component, None)
        else:
            self._levels[component] = _LEVEL_NUMBERS[parse_level(level)]
        self._generation += 1

    def effective_level_number(self, component: str) -> int:
        """The numeric level in force for ``component`` (longest configured prefix)."""
        levels = self._levels
        name = component
        while name:
            number = levels.get(name)
            if number is not None:
                return number
            cut = name.rfind(".")
            name = name[:cut] if cut > 0 else ""
        return levels[""]

    def level_of(self, component: str) -> str:
        """The level name in force for ``component``."""
        return _LEVEL_NAMES[self.effective_level_number(component)]

    def levels(self) -> dict[str, str]:
        """Effective level of the root (``""``), of every configured component and
        of every component a logger was made for, sorted by name."""
        names = set(self._levels) | set(self._known)
        return {name: _LEVEL_NAMES[self.effective_level_number(name)] for name in sorted(names)}

    # ----------------------------------------------------------------- output

    def tail(self, n: int) -> list[str]:
        """The last ``n`` formatted records, oldest first (a record with a traceback
        spans several lines in one entry)."""
        if n <= 0:
            return []
        ring = self._ring
        return list(itertools.islice(ring, max(0, len(ring) - n), None))

    @property
    def dropped(self) -> int:
        return self._dropped

    def statistics(self) -> LogStats:
        return LogStats(lines=self._lines, dropped=self._dropped)

    def emit(
        self,
        level: int,
        component: str,
        msg: str,
        fields: dict[str, Any],
        exc: BaseException | None = None,
    ) -> None:
        """Format and write one record.  Loggers call this after their level check;
        it does no level check of its own."""
        now = self._clock()
        if self._routes:
            cache = self._route_cache
            route = cache[component] if component in cache else self._route_for(component)
            if route is not None:
                self._write_routed(route, now, level, component, msg, fields, exc)
                return
        if self._format == "text":
            line = self._format_text(now, level, component, msg, fields, exc)
        else:
            line = self._format_json(now, level, component, msg, fields, exc)
        with self._lock:
            self._ring.append(line)
            self._deliver(now, level, component, msg, fields, exc, line)

    # ----------------------------------------------------------------- routes

    def route(self, component: str, stream: TextIO | None) -> None:
        """Send the records of ``component`` and its children to ``stream``
        instead of the main output (None removes the route).

        Routed records are written bare, for record streams that carry their
        own time (access logs): in the text format the message and its fields
        only, in JSON the whole record.  They do not enter the ``tail`` ring.
        """
        _check_component(component)
        if stream is None:
            self._routes.pop(component, None)
        else:
            self._routes[component] = stream
        self._route_cache.clear()

    def _route_for(self, component: str) -> TextIO | None:
        name = component
        while True:
            if name in self._routes:
                found: TextIO | None = self._routes[name]
                break
            if "." not in name:
                found = None
                break
            name = name.rpartition(".")[0]
        if len(self._route_cache) < MAX_KNOWN_COMPONENTS:
            self._route_cache[component] = found
        return found

    def _write_routed(
        self,
        stream: TextIO,
        now: float,
        level: int,
        component: str,
        msg: str,
        fields: dict[str, Any],
        exc: BaseException | None,
    ) -> None:
        if self._format == "json":
            line = self._format_json(now, level, component, msg, fields, exc)
        else:
            text = _clip(msg) if type(msg) is str else _clip(_safe_str(msg))
            parts = [text if text.isprintable() else _escape_controls(text)]
            for key, value in fields.items():
                parts += (" ", _text_key(key), "=", _text_value(value))
            line = "".join(parts)
        with self._lock:
            self._write_line(stream, line)

    def _deliver(
        self,
        now: float,
        level: int,
        component: str,
        msg: str,
        fields: dict[str, Any],
        exc: BaseException | None,
        line: str,
    ) -> None:
        self._write_line(self._stream if self._stream is not None else sys.stderr, line)

    def _write_line(self, stream: TextIO, line: str) -> None:
        try:
            stream.write(line + "\n")
            stream.flush()
        except Exception:
            # Closed stderr (ValueError), EPIPE/EIO (OSError), an encoding the console
            # cannot take (UnicodeEncodeError) or a stream that has gone away (None
            # after interpreter teardown): there is nowhere to report it, so count it.
            self._dropped += 1
        else:
            self._lines += 1

    # ----------------------------------------------------------------- formats

    def _timestamp(self, now: float) -> str:
        second, milli = divmod(round(now * 1000), 1000)
        cached = self._second
        if cached[0] != second:
            # Records come in bursts within one second: format the date part once.
            cached = self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return f"{cached[1]}.{milli:03d}Z"

    def _format_text(
        self,
        now: float,
        level: int,
        component: str,
        msg: str,
        fields: dict[str, Any],
        exc: BaseException | None,
    ) -> str:
        msg = _clip(msg) if type(msg) is str else _clip(_safe_str(msg))
        if not msg or not msg.isprintable() or _MESSAGE_SPECIALS.search(msg):
            msg = _quote(msg)
        parts = [self._timestamp(now), " ", _TEXT_LEVELS[level], " ", component, ": ", msg]
        for key, value in fields.items():
            parts += (" ", _text_key(key), "=", _text_value(value))
        if exc is not None:
            for tb_line in _traceback_text(exc).split("\n"):
                parts += ("\n    ", tb_line if tb_line.isprintable() else _escape_controls(tb_line))
        return "".join(parts)

    def _format_json(
        self,
        now: float,
        level: int,
        component: str,
        msg: str,
        fields: dict[str, Any],
        exc: BaseException | None,
    ) -> str:
        record: dict[str, Any] = {
            "ts": self._timestamp(now),
            "level": _LEVEL_NAMES[level],
            "component": component,
            "msg": _clip(msg) if type(msg) is str else _clip(_safe_str(msg)),
        }
        for key, value in fields.items():
            if key in _JSON_CORE_KEYS:
                key += "_"  # a field may not overwrite the record's own keys
            record[key] = _json_value(value)
        if exc is not None:
            record["exc"] = _traceback_text(exc)
        # ASCII only: any console encoding takes it, and no U+2028 or U+0085 inside a
        # string can split the line for a reader that breaks lines the Unicode way.
        return json.dumps(record, allow_nan=False)


class MemoryLogSink(LogSink):
    """A sink that keeps records as dicts instead of writing them, for tests.

    Each record is ``{"ts": float, "level": "info", "component": "dns", "msg": str,
    "fields": dict, "exc": BaseException | None}`` with field values as given.  The
    text form still goes to the ``tail`` ring.  Levels work as in ``LogSink``.
    """

    #: A test that logs more records than this is asserting on the wrong thing; the
    #: bound keeps a long-running in-memory target from growing without limit.
    DEFAULT_MAX_RECORDS = 10_000

    def __init__(
        self,
        *,
        level: str = "debug",
        levels: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        tail_lines: int = DEFAULT_TAIL_LINES,
        max_records: int = DEFAULT_MAX_RECORDS,
    ) -> None:
        super().__init__(None, format="text", level=level, levels=levels, clock=clock, tail_lines=tail_lines)
        self._records: deque[dict[str, Any]] = deque(maxlen=max_records)

    @property
    def records(self) -> list[dict[str, Any]]:
        """A snapshot of the kept records, oldest first."""
        return list(self._records)

    def clear(self) -> None:
        self._records.clear()
        self._ring.clear()

    def _deliver(
        self,
        now: float,
        level: int,
        component: str,
        msg: str,
        fields: dict[str, Any],
        exc: BaseException | None,
        line: str,
    ) -> None:
        self._records.append(
            {
                "ts": now,
                "level": _LEVEL_NAMES[level],
                "component": component,
                "msg": msg,
                "fields": fields,
                "exc": exc,
            }
        )
        self._lines += 1


# --------------------------------------------------------------------- value formatting


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception as exc:
        return f"<unprintable {type(value).__name__}: {type(exc).__name__}>"


def _clip(text: str) -> str:
    if len(text) <= MAX_VALUE_CHARS:
        return text
    return f"{text[:MAX_VALUE_CHARS]}...[+{len(text) - MAX_VALUE_CHARS} chars]"


def _escape_controls(text: str) -> str:
    """Escape what ``str.isprintable`` rejects (controls, line and paragraph
    separators, non-ASCII spaces) the way Python literals do."""
    out = []
    for char in text:
        if char.isprintable():
            out.append(char)
        elif char in _CONTROL_ESCAPES:
            out.append(_CONTROL_ESCAPES[char])
        else:
            code = ord(char)
            if code < 0x100:
                out.append(f"\\x{code:02x}")
            elif code < 0x10000:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
    return "".join(out)


def _quote(text: str) -> str:
    text = text.translate(_QUOTED_ESCAPES)
    if not text.isprintable():
        text = _escape_controls(text)
    return f'"{text}"'


def _text_key(key: str) -> str:
    if key.isidentifier():
        return key
    key = _KEY_BAD_CHARS.sub("_", key)
    return _escape_controls(key) if key else "_"


def _text_value(value: object) -> str:
    kind = type(value)
    if kind is str:
        text: str = value  # type: ignore[assignment]
    elif kind is bool:
        return "true" if value else "false"
    elif kind is int or kind is float:
        return str(value)
    elif value is None:
        return "null"
    else:
        text = _safe_str(value)
    text = _clip(text)
    if text and text.isprintable() and not _VALUE_SPECIALS.search(text):
        return text
    return _quote(text)


def _json_value(value: object) -> object:
    kind = type(value)
    if kind is str:
        return _clip(value)  # type: ignore[arg-type]
    if kind is int or kind is bool or value is None:
        return value
    if kind is float:
        # NaN and infinities are not JSON; keep them readable instead.
        return value if value - value == 0 else str(value)  # type: ignore[operator]
    if isinstance(value, (list, tuple, dict)):
        try:
            json.dumps(value, default=_safe_str, allow_nan=False)
        except (ValueError, TypeError, RecursionError):
            return _clip(_safe_str(value))
        return value
    return _clip(_safe_str(value))


def _traceback_text(exc: BaseException) -> str:
    try:
        text = "".join(traceback.format_exception(exc)).rstrip("\n")
    except Exception:
        text = f"{type(exc).__name__}: {_safe_str(exc)}"
    if len(text) > MAX_TRACEBACK_CHARS:
        # Keep the end: the innermost frames and the exception line say the most.
        text = f"...[{len(text) - MAX_TRACEBACK_CHARS} chars cut]\n" + text[-MAX_TRACEBACK_CHARS:]
    return text


# --------------------------------------------------------------------- stdlib bridge


def _from_stdlib_level(levelno: int) -> int:
    if levelno >= logging.ERROR:
        return _ERROR
    if levelno >= logging.WARNING:
        return _WARNING
    if levelno >= logging.INFO:
        return _INFO
    return _DEBUG


class _SinkHandler(logging.Handler):
    def __init__(self, sink: LogSink, level: int) -> None:
        super().__init__(level)
        self._sink = sink
        # One logger per stdlib logger name; the stdlib keeps every named logger for
        # the life of the process anyway, so this is no larger than its own registry.
        self._loggers: dict[str, Logger] = {}

    def emit(self, record: logging.LogRecord) -> None:
        logger = self._loggers.get(record.name)
        if logger is None:
            name = _COMPONENT_BAD_CHARS.sub("_", record.name).strip(".") or "root"
            name = re.sub(r"\.{2,}", ".", name)
            logger = self._loggers[record.name] = self._sink.logger(f"lib.{name}")
        level = _from_stdlib_level(record.levelno)
        if not logger.enabled(_LEVEL_NAMES[level]):
            return
        try:
            msg = record.getMessage()
        except Exception:
            # A bad %-format in a library call: keep what it meant to say.
            msg = f"{_safe_str(record.msg)} {_safe_str(record.args)}"
        exc = record.exc_info[1] if record.exc_info else None
        self._sink.emit(level, logger.component, msg, {}, exc)


class StdlibCapture:
    """Routes stdlib ``logging`` records into a sink until ``close()``."""

    def __init__(self, sink: LogSink, level: str) -> None:
        number = _LEVEL_NUMBERS[parse_level(level)]
        stdlib_level = {_DEBUG: logging.DEBUG, _INFO: logging.INFO, _WARNING: logging.WARNING}.get(
            number, logging.ERROR
        )
        self._handler = _SinkHandler(sink, stdlib_level)
        self._root = logging.getLogger()
        self._saved_level = self._root.level
        self._root.addHandler(self._handler)
        # The root's level filters before any handler sees a record: lower it if it
        # would hide what was asked for, and put it back on close.
        if self._root.level > stdlib_level:
            self._root.setLevel(stdlib_level)
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._root.removeHandler(self._handler)
        self._root.setLevel(self._saved_level)
        self._handler.close()

    def __enter__(self) -> StdlibCapture:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def capture_stdlib_logging(sink: LogSink, level: str = "warning") -> StdlibCapture:
    """Send stdlib ``logging`` records at ``level`` and above to ``sink``, under the
    component ``lib.<logger name>`` (so ``set_level("lib.asyncssh", ...)`` applies on
    top).  Call ``close()`` on the result (or use it as a context manager) to undo."""
    return StdlibCapture(sink, level)
