"""Appliance commands from the command line: work on an appliance's state
without serving it.

    python -m appliances.xmpp user add alice@localhost --password PW
    python -m appliances.xmpp --state-dir /var/lib/xmpp user list --json

An appliance declares them as ``Appliance(commands=(Command(...), ...))`` with
the same ``Command``/``Call``/``Reply`` as its console commands (and they are
offered in the console too).  The first word that is not an option starts the
command; appliance options may stand before or after it and are taken out;
everything else is the command's.  The declared devices are opened as for
serving (the store is safe to share with a running server: SQLite arbitrates),
nothing listens, and the command's reply goes to stdout (``--json`` for JSON),
its error to stderr, its status is the exit status.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from collections.abc import Sequence
from typing import TextIO

from .ambient import SystemClock, SystemRandom
from .appliance import Appliance, Context
from .console.command import Call, CommandTable, UsageError, execute, write_reply
from .errors import EXIT_CONFIG, EXIT_STARTUP, ConfigError, StartupError
from .lifecycle import Lifecycle
from .log import LogSink
from .metrics import Registry
from .options import BOOL, Options

__all__ = ["run_offline", "split_command"]


def split_command(appliance: Appliance, argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """(the appliance's option arguments, the command's words and arguments or
    None when the line names no command)."""
    if not appliance.commands:
        return list(argv), None
    flags = {option.flag: option for option in appliance.all_options()}
    options: list[str] = []
    command: list[str] | None = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, _ = arg.partition("=")
        option = flags.get(name) if arg.startswith("--") else None
        if option is not None:
            options.append(arg)
            if option.kind is not BOOL and not eq and i + 1 < len(argv):
                options.append(argv[i + 1])
                i += 1
        elif command is None and not arg.startswith("-"):
            command = [arg]
        elif command is not None:
            command.append(arg)
        else:
            options.append(arg)  # an unknown option: the option parser says so
        i += 1
    return options, command


def run_offline(
    appliance: Appliance,
    options: Options,
    words: Sequence[str],
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run one appliance command on the host target; returns its exit status."""
    from .targets.host import open_host_devices

    out, err = stdout or sys.stdout, stderr or sys.stderr
    if not any(command.words[0] == words[0] for command in appliance.commands):
        err.write(f"{appliance.name}: unknown command {words[0]!r} (see --help)\n")
        return EXIT_CONFIG
    try:
        parsed = CommandTable(appliance.commands).parse(shlex.join(words))
    except UsageError as exc:
        err.write(f"{appliance.name}: {exc}\n")
        return EXIT_CONFIG
    if parsed is None:
        return EXIT_CONFIG
    sink = LogSink(err, format=options.get("log_format"), level="warning")
    log = sink.logger(appliance.name)

    async def go() -> int:
        lifecycle = Lifecycle()
        try:
            devices = await open_host_devices(appliance, options, lifecycle=lifecycle, log=log)
        except StartupError as exc:
            for problem in exc.problems:
                err.write(f"{appliance.name}: {problem}\n")
            return EXIT_STARTUP
        ctx = Context(
            appliance,
            options,
            lifecycle=lifecycle,
            log=log,
            metrics=Registry(),
            clock=SystemClock(),
            random=SystemRandom(),
            net=devices.net,
            store=devices.store,
            data=devices.data,
            extras={"devices": devices, "stdin": stdin or sys.stdin, "offline": True},
        )
        call = Call(ctx, parsed.args, parsed.json, user="command line", peer="local", extras=ctx.extras)
        try:
            reply = await execute(parsed, call)
        except ConfigError as exc:
            err.write(f"{appliance.name}: {exc}\n")
            return EXIT_CONFIG
        finally:
            await devices.aclose()
        write_reply(reply, json_mode=parsed.json, out=out, err=err)
        return reply.status

    return asyncio.run(go())
