"""An appliance for the Xen shutdown test: sent ``poweroff`` over TCP, it does
inside the guest what Linux does on Xen's shutdown request, without Xen.

Linux (drivers/xen/manage.c ``do_poweroff``) calls ``orderly_poweroff``,
which runs ``/proc/sys/kernel/poweroff_cmd`` as a usermode helper
(kernel/reboot.c ``run_cmd``): the string split at whitespace
(``argv_split``), the environment ``HOME=/ PATH=/sbin:/bin:/usr/sbin:/usr/bin``,
no open file descriptors, default signal dispositions, an empty signal mask,
root, in ``/``.  This appliance reads the same sysctl and starts the command
the same way, then answers with the argv it ran.
"""

from __future__ import annotations

import asyncio
import os
import signal

from runtime import NET, Appliance, Context, Stream

__all__ = ["APPLIANCE"]

POWEROFF_CMD = "/proc/sys/kernel/poweroff_cmd"
#: kernel/reboot.c run_cmd()
UMH_ENV = {"HOME": "/", "PATH": "/sbin:/bin:/usr/sbin:/usr/bin"}


def run_poweroff_cmd() -> list[str]:
    with open(POWEROFF_CMD) as f:
        argv = f.read().split()
    os.posix_spawn(
        argv[0],
        argv,
        UMH_ENV,
        file_actions=[(os.POSIX_SPAWN_CLOSE, fd) for fd in (0, 1, 2)],
        setsigmask=(),
        setsigdef=signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP},
    )
    return argv


async def serve(ctx: Context) -> None:
    async def handle(stream: Stream) -> None:
        line = b""
        while b"\n" not in line and len(line) < 64:
            data = await stream.receive()
            if not data:
                return
            line += data
        if line.strip() == b"poweroff":
            argv = run_poweroff_cmd()
            await stream.send(("ran " + " ".join(argv) + "\n").encode())

    listeners = [await ctx.net.listen_tcp(address) for address in ctx.options.listen]
    ctx.ready()
    async with asyncio.TaskGroup() as group:
        for listener in listeners:
            group.create_task(listener.serve(handle))


APPLIANCE = Appliance(
    name="poweroff",
    summary="image test appliance that runs the kernel's poweroff_cmd",
    package=__name__,
    main=serve,
    devices=frozenset({NET}),
    listen=("127.0.0.1:7001",),
)
