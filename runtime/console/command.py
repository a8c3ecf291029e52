"""Console commands: what an appliance (and the runtime) declares, and how a
line becomes a call.

A command is a fixed name of one or more words (``status``, ``zone show``),
a usage text, a help line, bounds on its argument count and a function from a
``Call`` to a ``Reply``.  There is no evaluation of any kind: a line is split
into words (shell quoting, no expansion), the longest command name that
prefixes it is chosen, the rest are its arguments.  ``--json`` anywhere asks
for the reply's JSON form.

Exit statuses (what ``ssh host COMMAND`` returns): 0 done, 1 the command ran
and failed (a reload with problems, an unknown zone), 2 the line was wrong
(unknown command, wrong arguments), as with shell builtins.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from ..appliance import Context

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "MAX_LINE",
    "Call",
    "Command",
    "CommandTable",
    "Parsed",
    "Reply",
    "UsageError",
    "execute",
    "table_text",
    "write_reply",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

#: longest command line taken (asyncssh's line editor default is 1,024 too)
MAX_LINE = 1024


class UsageError(Exception):
    """The line is wrong (not the command's run): exit status 2, and the usage."""


@dataclass(frozen=True, slots=True)
class Reply:
    """What a command answers.  ``text`` goes to stdout in plain mode, ``data``
    (any JSON value) with ``--json``; ``error`` goes to stderr."""

    text: str = ""
    data: Any = None
    status: int = EXIT_OK
    error: str = ""

    @classmethod
    def failed(cls, error: str, status: int = EXIT_FAILED, data: Any = None) -> Reply:
        return cls(status=status, error=error, data=data if data is not None else {"error": error})


@dataclass(frozen=True, slots=True)
class Call:
    """One command run: the context, the arguments, who asked and from where."""

    ctx: Context
    args: tuple[str, ...]
    json: bool = False
    #: the comment of the authorized key that logged in
    user: str = ""
    #: the peer address, ``HOST:PORT``
    peer: str = ""
    #: runtime facts the built-in commands use (log sink, reload, sessions)
    extras: Mapping[str, Any] = field(default_factory=dict)


CommandRun = Callable[[Call], "Reply | Awaitable[Reply]"]


@dataclass(frozen=True, slots=True)
class Command:
    #: one or more words: ``"status"``, ``"zone show"``
    name: str
    run: CommandRun
    help: str
    #: what follows the name in the usage line: ``"NAME"``, ``"[N]"``
    usage: str = ""
    min_args: int = 0
    #: None: any number
    max_args: int | None = 0

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(self.name.split())

    @property
    def usage_line(self) -> str:
        return f"{self.name} {self.usage}".rstrip()

    def check_args(self, args: Sequence[str]) -> None:
        if len(args) < self.min_args or (self.max_args is not None and len(args) > self.max_args):
            raise UsageError(f"usage: {self.usage_line}")


@dataclass(frozen=True, slots=True)
class Parsed:
    command: Command
    args: tuple[str, ...]
    json: bool


class CommandTable:
    """The runtime's commands plus the appliance's, looked up by word prefix."""

    def __init__(self, commands: Iterable[Command]) -> None:
        self._by_words: dict[tuple[str, ...], Command] = {}
        for command in commands:
            if not command.words:
                raise ValueError("a console command needs a name")
            if command.words in self._by_words:
                raise ValueError(f"console command {command.name!r} is declared twice")
            self._by_words[command.words] = command
        self._longest = max((len(words) for words in self._by_words), default=0)

    def __iter__(self) -> Any:
        return iter(self._by_words.values())

    def parse(self, line: str) -> Parsed | None:
        """The command and arguments of ``line``; None for an empty line.
        Raises ``UsageError`` for a line naming no command."""
        if len(line) > MAX_LINE:
            raise UsageError(f"line too long (at most {MAX_LINE} characters)")
        try:
            words = shlex.split(line, comments=False, posix=True)
        except ValueError as exc:
            raise UsageError(f"cannot split the line: {exc}") from None
        want_json = "--json" in words
        words = [word for word in words if word != "--json"]
        if not words:
            return None
        for size in range(min(self._longest, len(words)), 0, -1):
            command = self._by_words.get(tuple(words[:size]))
            if command is not None:
                args = tuple(words[size:])
                command.check_args(args)
                return Parsed(command, args, want_json)
        group = [c.usage_line for c in self._by_words.values() if c.words[0] == words[0]]
        if group:
            raise UsageError("usage: " + " | ".join(group))
        raise UsageError(f"unknown command {words[0]!r} (type 'help' for the list)")


async def execute(parsed: Parsed, call: Call) -> Reply:
    """Run a parsed command; a UsageError it raises becomes its reply."""
    try:
        result = parsed.command.run(call)
        return await result if isinstance(result, Awaitable) else result
    except UsageError as exc:
        return Reply.failed(str(exc), EXIT_USAGE)


def write_reply(reply: Reply, *, json_mode: bool, out: TextIO, err: TextIO) -> None:
    """Output in plain text or JSON, the error line apart."""
    if json_mode:
        data = reply.data if reply.data is not None else {"output": reply.text}
        out.write(json.dumps(data, default=str, sort_keys=True) + "\n")
    elif reply.text:
        out.write(reply.text + "\n")
    if reply.error:
        err.write(reply.error + "\n")


def table_text(rows: Sequence[Sequence[str]], header: Sequence[str] | None = None) -> str:
    """Left-aligned columns, two spaces apart; the last column is not padded."""
    all_rows = [list(header)] if header else []
    all_rows += [list(row) for row in rows]
    if not all_rows:
        return ""
    widths = [max(len(row[i]) for row in all_rows if i < len(row)) for i in range(len(all_rows[0]))]
    lines = []
    for row in all_rows:
        cells = [cell.ljust(widths[i]) if i < len(row) - 1 else cell for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
