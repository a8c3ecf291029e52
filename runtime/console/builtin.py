"""The runtime's own console commands, shared by every appliance:
``help``, ``status``, ``stats``, ``log level``, ``log tail``, ``reload``,
``config`` and ``stop``.

What they need besides the context comes in ``Call.extras``: ``sink`` (the
``LogSink``), ``reload`` (queues the runtime's reload and returns its problem
lines), ``sessions`` (the console's open sessions), ``commands`` (the table,
for ``help``), ``stop`` (asks the session to stop the appliance once its
answer is out).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any

from ..log import DEFAULT_TAIL_LINES, LEVELS
from .command import EXIT_FAILED, Call, Command, Reply, UsageError, table_text

__all__ = ["BUILTIN_COMMANDS", "parse_exposition", "process_rss"]

#: ``log tail`` without N
_TAIL_DEFAULT = 20

# One sample line of the Prometheus text format: name, optional {labels}, value.
_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:\\.|[^"\\])*)"')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse_exposition(text: str) -> list[tuple[str, dict[str, str], str]]:
    """(name, labels, value) of each sample in Prometheus text format 0.0.4."""
    samples: list[tuple[str, dict[str, str], str]] = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = {
            key: re.sub(r"\\.", lambda m: _UNESCAPE.get(m.group(0), m.group(0)), value)
            for key, value in _LABEL.findall(match.group(2) or "")
        }
        samples.append((match.group(1), labels, match.group(3)))
    return samples


def process_rss() -> int | None:
    """Resident memory of this process in bytes (``/proc/self/statm``, field 2
    in pages; proc(5)), or None where there is no /proc."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _duration(seconds: float) -> str:
    whole = int(max(seconds, 0))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{days}d{text}" if days else text


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    return f"{n} B"


# --------------------------------------------------------------------- help


def _help(call: Call) -> Reply:
    commands: list[Command] = list(call.extras.get("commands", ()))
    rows = [(command.usage_line, command.help) for command in commands]
    data = [{"usage": command.usage_line, "help": command.help} for command in commands]
    footer = "\nAdd --json for JSON.  Interactive sessions end with 'exit' or Ctrl-D."
    return Reply(table_text(rows) + "\n" + footer, data)


# --------------------------------------------------------------------- status


def _status(call: Call) -> Reply:
    ctx = call.ctx
    devices = ctx.extras.get("devices")
    started = ctx.extras.get("started")
    uptime = ctx.clock.now() - started if isinstance(started, float) else None
    listeners = [f"{kind}/{address}" for kind, address in getattr(devices, "bound", [])]
    service_net = getattr(devices, "service_net", None)
    service = [f"{kind}/{address}" for kind, address in getattr(service_net, "bound", [])]
    rss = process_rss()
    tasks = len(asyncio.all_tasks())
    sessions_of: Callable[[], list[dict[str, Any]]] | None = call.extras.get("sessions")
    sessions = sessions_of() if sessions_of is not None else []
    data = {
        "appliance": ctx.appliance.name,
        "version": ctx.appliance.version,
        "pid": os.getpid(),
        "worker": ctx.extras.get("worker"),
        "uptime_seconds": round(uptime, 3) if uptime is not None else None,
        "ready": ctx.is_ready,
        "stopping": ctx.stopping,
        "listeners": listeners,
        "service_listeners": service,
        "rss_bytes": rss,
        "tasks": tasks,
        "console_sessions": sessions,
    }
    rows = [
        ("appliance", f"{ctx.appliance.name} {ctx.appliance.version}"),
        ("pid", str(data["pid"]) + (f" (worker {data['worker']})" if data["worker"] is not None else "")),
        ("uptime", _duration(uptime) if uptime is not None else "unknown"),
        ("state", "stopping" if ctx.stopping else "ready" if ctx.is_ready else "starting"),
        ("listeners", " ".join(listeners) or "(none)"),
        ("runtime", " ".join(service) or "(none)"),
        ("memory", f"RSS {_size(rss)}" if rss is not None else "unknown"),
        ("tasks", str(tasks)),
        ("sessions", ", ".join(f"{s['user']}@{s['peer']}" for s in sessions) or "(none)"),
    ]
    return Reply(table_text(rows), data)


# --------------------------------------------------------------------- stats


def _stats(call: Call) -> Reply:
    text = call.ctx.metrics.render()
    samples = parse_exposition(text)
    if call.args and call.args[0] == "--raw":
        return Reply(text.rstrip("\n"), {"exposition": text})
    prefix = call.args[0] if call.args else ""
    chosen = [s for s in samples if s[0].startswith(prefix) and not s[0].endswith("_bucket")]
    if prefix and not chosen:
        return Reply.failed(f"no metric starts with {prefix!r}")
    rows = []
    for name, labels, value in chosen:
        shown = ",".join(f"{k}={v}" for k, v in labels.items())
        rows.append((f"{name}{{{shown}}}" if shown else name, value))
    data: dict[str, list[dict[str, Any]]] = {}
    for name, labels, value in chosen:
        try:
            number: float | str = float(value)
        except ValueError:
            number = value
        data.setdefault(name, []).append({"labels": labels, "value": number})
    return Reply(table_text(rows), data)


# --------------------------------------------------------------------- log


def _log_level(call: Call) -> Reply:
    sink = call.extras.get("sink")
    if sink is None:
        return Reply.failed("this runtime has no log sink to change")
    args = call.args
    if args:
        component, level = ("", args[0]) if len(args) == 1 else (args[0], args[1])
        if component in ("root", "-"):
            component = ""
        try:
            if level.lower() in ("inherit", "default"):
                sink.set_level(component, None)
            else:
                sink.set_level(component, level)
        except ValueError as exc:
            raise UsageError(f"{exc} (or 'inherit' to drop a component's own level)") from None
    levels: dict[str, str] = sink.levels()
    rows = [(component or "(root)", level) for component, level in levels.items()]
    return Reply(table_text(rows, ("component", "level")), {name or "": lvl for name, lvl in levels.items()})


def _log_tail(call: Call) -> Reply:
    sink = call.extras.get("sink")
    if sink is None:
        return Reply.failed("this runtime keeps no log lines")
    count = _TAIL_DEFAULT
    if call.args:
        if not call.args[0].isdigit():
            raise UsageError("usage: log tail [N]  (N a whole number)")
        count = min(int(call.args[0]), DEFAULT_TAIL_LINES)
    lines: list[str] = sink.tail(count)
    return Reply("\n".join(lines), {"lines": lines})


# --------------------------------------------------------------------- reload, config, stop


async def _reload(call: Call) -> Reply:
    run: Callable[[], Awaitable[list[str]]] | None = call.extras.get("reload")
    if run is None:
        return Reply.failed("reload is not available here")
    problems = await run()
    if problems:
        text = "reload finished with problems:\n" + "\n".join(f"  {p}" for p in problems)
        return Reply(text, {"reloaded": False, "problems": problems}, status=EXIT_FAILED)
    return Reply("reloaded", {"reloaded": True, "problems": []})


def _config(call: Call) -> Reply:
    rows = call.ctx.options.table()
    data = [{"option": flag, "value": value, "source": source} for flag, value, source in rows]
    return Reply(table_text(rows, ("option", "value", "source")), data)


def _stop(call: Call) -> Reply:
    stop: Callable[[], None] | None = call.extras.get("stop")
    if stop is None:
        call.ctx.request_stop()
    else:
        stop()
    return Reply("stopping (graceful: in-flight work gets --drain-timeout)", {"stopping": True})


BUILTIN_COMMANDS: tuple[Command, ...] = (
    Command("help", _help, "this list"),
    Command("status", _status, "name, version, uptime, listeners, memory, tasks, sessions"),
    Command(
        "stats",
        _stats,
        "the appliance's metrics (PREFIX: only those; --raw: Prometheus text)",
        usage="[PREFIX|--raw]",
        max_args=1,
    ),
    Command(
        "log level",
        _log_level,
        f"show log levels, or set one ({', '.join(LEVELS)}, inherit)",
        usage="[[COMPONENT] LEVEL]",
        max_args=2,
    ),
    Command(
        "log tail", _log_tail, f"the last N log lines (default {_TAIL_DEFAULT})", usage="[N]", max_args=1
    ),
    Command("reload", _reload, "re-read data and run the reload hooks (exit 1 on problems)"),
    Command("config", _config, "effective options and where each comes from (secrets redacted)"),
    Command("stop", _stop, "stop the appliance gracefully"),
)
