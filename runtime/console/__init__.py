"""The SSH admin console: a fixed command set per appliance, public-key only.

An appliance adds its own commands to the runtime's (``help``, ``status``,
``stats``, ``log level``, ``log tail``, ``reload``, ``config``, ``stop``)::

    from runtime import Call, Command, Reply

    def _zones(call: Call) -> Reply:
        ...

    APPLIANCE = Appliance(..., console=(Command("zones", _zones, "zones served"),))

The console runs when ``--console-listen ADDR:PORT`` and ``--console-keys FILE``
are given (see ``ssh`` for the SSH side and its bounds, ``throttle`` for the
failed-login throttle, ``keys`` for keys).  This module does not import
asyncssh: an appliance that declares commands pays for SSH only when its
console is switched on.
"""

from __future__ import annotations

from typing import TypeVar

from ..appliance import Context
from .command import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Call, Command, Reply, UsageError, table_text

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Call",
    "Command",
    "Reply",
    "UsageError",
    "find_service",
    "table_text",
]

T = TypeVar("T")


def find_service(ctx: Context, kind: type[T]) -> T | None:
    """The appliance's running service object of class ``kind``, as it
    announced it with ``ctx.provide(service)``; None before it has started."""
    return ctx.service(kind)
