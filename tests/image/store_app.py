"""A small appliance with a store, for the data-disk test: ``put KEY VALUE``
answers ``stored`` once the value is durable, ``get KEY`` answers the value
(or ``missing``), one line each over TCP."""

from __future__ import annotations

import asyncio

from runtime import NET, STORE, Appliance, Context, Stream

__all__ = ["APPLIANCE"]


async def serve(ctx: Context) -> None:
    async def handle(stream: Stream) -> None:
        buffer = b""
        while data := await stream.receive():
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                verb, _, rest = line.decode().partition(" ")
                if verb == "put":
                    key, _, value = rest.partition(" ")
                    await ctx.store.put(key, value.encode())
                    reply = "stored"
                else:
                    value_bytes = ctx.store.get(rest)
                    reply = "missing" if value_bytes is None else value_bytes.decode()
                await stream.send(reply.encode() + b"\n")
            if len(buffer) > 4096:
                return

    listeners = [await ctx.net.listen_tcp(address) for address in ctx.options.listen]
    ctx.ready()
    async with asyncio.TaskGroup() as group:
        for listener in listeners:
            group.create_task(listener.serve(handle))


APPLIANCE = Appliance(
    name="store",
    summary="image test appliance with a store",
    package=__name__,
    main=serve,
    devices=frozenset({NET, STORE}),
    listen=("127.0.0.1:7000",),
)
