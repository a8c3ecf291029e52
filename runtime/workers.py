"""``--workers N``: several processes of one appliance sharing its listeners.

The supervisor forks the workers before any event loop exists; each binds
the same ports with SO_REUSEPORT and the kernel spreads clients over them.
SIGTERM, SIGINT and SIGHUP are passed on; a worker that crashes is restarted,
at most five times a minute; a worker that stopped on purpose, or cannot start,
stops them all.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any, TextIO

from .appliance import Appliance
from .errors import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_STARTUP
from .options import Options

__all__ = ["supervise"]


#: worker restarts allowed per minute before the supervisor gives up
_MAX_RESTARTS_PER_MINUTE = 5

#: runs one worker process to its exit status
WorkerRun = Callable[[Appliance, Options, TextIO, int], int]


def supervise(
    appliance: Appliance, options: Options, workers: int, err: TextIO, run_worker: WorkerRun
) -> int:
    """Fork ``workers`` processes sharing the listeners (SO_REUSEPORT), pass
    SIGTERM/SIGINT/SIGHUP on, restart a crashed worker (at most five a minute)."""
    children: dict[int, int] = {}
    stopping = False
    restarts: list[float] = []
    status = EXIT_OK

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)
            code = EXIT_FAILURE
            try:
                code = run_worker(appliance, options, err, index)
            finally:
                err.flush()
                os._exit(code)
        children[pid] = index

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        for index in range(workers):
            spawn(index)
        while children:
            try:
                pid, wait_status = os.wait()
            except ChildProcessError:
                break
            index = children.pop(pid)
            code = os.waitstatus_to_exitcode(wait_status)
            if stopping:
                status = max(status, code if code > 0 else 0)
                continue
            if code in (EXIT_OK, EXIT_CONFIG, EXIT_STARTUP):
                # A worker that stopped on purpose or cannot start: stop them all.
                status = max(status, code)
                stopping = True
                forward(signal.SIGTERM, None)
                continue
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < 60.0] + [now]
            if len(restarts) > _MAX_RESTARTS_PER_MINUTE:
                print(f"{appliance.name}: workers keep failing; stopping", file=err)
                status = EXIT_FAILURE
                stopping = True
                forward(signal.SIGTERM, None)
                continue
            print(f"{appliance.name}: worker {index} exited with status {code}; restarting", file=err)
            spawn(index)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return status
