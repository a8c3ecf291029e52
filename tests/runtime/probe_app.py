"""A small appliance built only on the public runtime API, used by the runtime's
own tests (graceful stop, reload, crashes, durability, workers).

Line protocol over TCP:
    echo TEXT     -> TEXT
    slow SECONDS  -> "done" after SECONDS (in-flight work for drain tests)
    crash         -> the handler raises
    put KEY VALUE -> "stored" once durable
    get KEY       -> the value, or "missing"
    reloads       -> how many reloads ran
    worker        -> this process's worker index
UDP: the datagram reversed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from runtime import NET, STORE, Appliance, Call, Command, Context, Reply, Stream, main


class Probe:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.reloads = 0

    def reload(self) -> None:
        self.reloads += 1
        self.ctx.log.info("probe reloaded", count=self.reloads)

    async def answer(self, line: str) -> str:
        verb, _, rest = line.partition(" ")
        if verb == "echo":
            return rest
        if verb == "slow":
            await self.ctx.clock.sleep(float(rest))
            return "done"
        if verb == "crash":
            raise RuntimeError("probe crashed on purpose")
        if verb == "put":
            key, _, value = rest.partition(" ")
            await self.ctx.store.put(key, value.encode())
            return "stored"
        if verb == "get":
            value = self.ctx.store.get(rest)
            return "missing" if value is None else value.decode()
        if verb == "reloads":
            return str(self.reloads)
        if verb == "worker":
            return str(self.ctx.extras.get("worker"))
        return "error: unknown command"

    async def handle(self, stream: Stream) -> None:
        buffer = b""
        while data := await stream.receive():
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                reply = await self.answer(line.decode())
                await stream.send(reply.encode() + b"\n")
            if len(buffer) > 4096:
                return

    def datagram(self, data: bytes, peer: tuple[Any, ...]) -> bytes:
        return data[::-1]


async def serve(ctx: Context) -> None:
    probe = Probe(ctx)
    ctx.on_reload(probe.reload)
    listeners = [await ctx.net.listen_tcp(a) for a in ctx.options.listen]
    endpoints = [await ctx.net.bind_udp(a) for a in ctx.options.listen]
    ctx.ready()
    async with asyncio.TaskGroup() as group:
        for listener in listeners:
            group.create_task(listener.serve(probe.handle))
        for endpoint in endpoints:
            group.create_task(endpoint.serve(probe.datagram))


def _keys(call: Call) -> Reply:
    keys = call.ctx.store.keys()
    return Reply("\n".join(keys), data=keys)


async def _set(call: Call) -> Reply:
    key, value = call.args
    if value == "-":  # the value from standard input, as for a password
        value = call.extras["stdin"].readline().rstrip("\n")
    await call.ctx.store.put(key, value.encode())
    return Reply(f"stored {key}")


COMMANDS = (
    Command("keys", _keys, "list the stored keys"),
    Command(
        "set",
        _set,
        "store VALUE under KEY ('-': read it from stdin)",
        usage="KEY VALUE",
        min_args=2,
        max_args=2,
    ),
)

APPLIANCE = Appliance(
    name="probe",
    summary="runtime test appliance",
    package=__name__,
    main=serve,
    devices=frozenset({NET, STORE}),
    listen=("127.0.0.1:0",),
    workers=True,
    commands=COMMANDS,
)

if __name__ == "__main__":
    main(APPLIANCE)
