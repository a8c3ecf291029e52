"""Run an appliance inside the test's own event loop, on the memory or the
host target, and talk to it.

    async with start_appliance(APPLIANCE, ["--listen", "127.0.0.1:0"], target="host") as app:
        stream = await app.connect_tcp(app.address("tcp"))
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from ..appliance import Appliance, Context
from ..devices import Address, Data, Net, Stream
from ..errors import StartupError
from ..lifecycle import Lifecycle
from ..log import LogSink
from ..metrics import Registry
from ..net.host import HostNet
from ..net.memory import MemoryNet, MemoryNetwork
from ..run import configure, reload, serve_appliance
from ..targets.base import Devices

__all__ = ["RunningAppliance", "start_appliance"]

#: how long start_appliance waits for ctx.ready(); generous for shared machines
READY_TIMEOUT = 30.0


class RunningAppliance:
    def __init__(
        self,
        ctx: Context,
        devices: Devices,
        task: asyncio.Task[int],
        client: Net,
        sink: LogSink,
        output: io.StringIO,
        network: MemoryNetwork | None,
    ) -> None:
        self.ctx = ctx
        self.devices = devices
        self.task = task
        self.client = client
        self.sink = sink
        self.output = output
        self.network = network

    def address(self, kind: str = "tcp", index: int = 0) -> Address:
        """The ``index``-th bound endpoint of ``kind`` (port 0 resolved)."""
        found = [address for k, address in self.devices.bound if k == kind]
        return found[index]

    async def connect_tcp(self, address: Address | None = None, **kwargs: Any) -> Stream:
        return await self.client.connect_tcp(address or self.address("tcp"), **kwargs)

    async def reload(self) -> list[str]:
        return await reload(self.ctx)

    def log_lines(self) -> list[str]:
        return self.output.getvalue().splitlines()

    async def stop(self) -> int:
        """Graceful stop, as on SIGTERM; returns the exit status."""
        self.ctx.request_stop()
        return await self.task


@asynccontextmanager
async def start_appliance(
    appliance: Appliance,
    argv: Sequence[str] = (),
    *,
    target: str = "memory",
    environ: Mapping[str, str] | None = None,
    data: Mapping[str, Data | Mapping[str, bytes]] | None = None,
    clock: Any = None,
    random: Any = None,
) -> AsyncIterator[RunningAppliance]:
    options = configure(appliance, list(argv), environ or {})
    output = io.StringIO()
    sink = LogSink(output, format=options.get("log_format"))
    sink.set_level("", "debug")
    log = sink.logger(appliance.name)
    lifecycle = Lifecycle()
    network: MemoryNetwork | None = None
    if target == "memory":
        from ..targets.memory import open_memory_devices

        network = MemoryNetwork()
        devices = await open_memory_devices(
            appliance, options, lifecycle=lifecycle, log=log, network=network, data=data
        )
        client: Net = MemoryNet(network, lifecycle=Lifecycle(), log=log.child("client"), host="127.0.0.2")
    elif target == "host":
        from ..targets.host import open_host_devices

        if data:
            raise StartupError(["the host target reads data from directories: pass --data NAME=DIR"])
        devices = await open_host_devices(appliance, options, lifecycle=lifecycle, log=log)
        client = HostNet(lifecycle=Lifecycle(), log=log.child("client"))
    else:
        raise ValueError(f"unknown target {target!r}")

    contexts: list[Context] = []
    task = asyncio.ensure_future(
        serve_appliance(
            appliance,
            options,
            devices,
            lifecycle,
            log,
            sink=sink,
            metrics=Registry(),
            clock=clock,
            random=random,
            signals=False,
            on_context=contexts.append,
        )
    )
    try:
        ctx = contexts[0] if contexts else None
        while ctx is None:
            await asyncio.sleep(0)
            if task.done():
                break
            ctx = contexts[0] if contexts else None
        if ctx is None:
            raise RuntimeError(f"{appliance.name} ended before it started:\n{output.getvalue()}")
        ready = asyncio.ensure_future(ctx.wait_ready())
        await asyncio.wait([ready, task], timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            raise RuntimeError(f"{appliance.name} did not become ready:\n{output.getvalue()}")
        yield RunningAppliance(ctx, devices, task, client, sink, output, network)
    finally:
        if not task.done():
            lifecycle.request_stop()
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=READY_TIMEOUT)
            except TimeoutError:
                task.cancel()
        if not task.cancelled():
            task.exception()  # retrieved, so it is never "never retrieved"
