"""One appliance, built only on the public API, on the memory and the host
target with the same code (the module runs on both event loops)."""

from __future__ import annotations

import asyncio

import pytest
from probe_app import APPLIANCE

from runtime.ambient import ManualClock
from runtime.testing.harness import start_appliance


async def exchange(stream, request: bytes) -> bytes:
    await stream.send(request + b"\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = await asyncio.wait_for(stream.receive(), 10)
        assert chunk, "closed early"
        data += chunk
    return data.rstrip(b"\n")


@pytest.mark.parametrize("target", ["memory", "host"])
async def test_same_appliance_on_both_targets(target: str, tmp_path) -> None:
    async with start_appliance(APPLIANCE, ["--state-dir", str(tmp_path)], target=target) as app:
        stream = await app.connect_tcp()
        assert await exchange(stream, b"echo hello") == b"hello"
        assert await exchange(stream, b"put colour blue") == b"stored"
        assert await exchange(stream, b"get colour") == b"blue"
        assert await app.reload() == []
        assert await exchange(stream, b"reloads") == b"1"
        await stream.aclose()

        # UDP: the synchronous datagram handler, through the same net device API
        client = await app.client.bind_udp(app.address("udp")._replace(port=0))
        replies: asyncio.Queue[bytes] = asyncio.Queue()
        async with asyncio.TaskGroup() as group:
            serving = group.create_task(client.serve(lambda data, peer: replies.put_nowait(data)))
            await asyncio.sleep(0)
            client.send(b"abc", app.address("udp"))
            assert await asyncio.wait_for(replies.get(), 10) == b"cba"
            serving.cancel()
        await client.aclose()
        assert await app.stop() == 0
    assert any('"ready"' in line or " ready " in line for line in app.log_lines())


async def test_manual_clock_drives_slow_requests_on_memory_target(tmp_path) -> None:
    clock = ManualClock()
    async with start_appliance(APPLIANCE, [], target="memory", clock=clock) as app:
        stream = await app.connect_tcp()
        await stream.send(b"slow 30\n")
        for _ in range(100):  # bounded: wait until the handler sleeps on our clock
            if clock.sleepers:
                break
            await asyncio.sleep(0.01)
        assert clock.sleepers == 1
        clock.advance(30)
        assert await asyncio.wait_for(stream.receive(), 10) == b"done\n"
        await stream.aclose()


async def test_stop_drains_in_flight_on_memory_target() -> None:
    clock = ManualClock()
    async with start_appliance(APPLIANCE, [], target="memory", clock=clock) as app:
        stream = await app.connect_tcp()
        await stream.send(b"slow 5\n")
        for _ in range(100):
            if clock.sleepers:
                break
            await asyncio.sleep(0.01)
        app.ctx.request_stop()
        await asyncio.sleep(0.05)
        assert not app.task.done()
        clock.advance(5)
        assert await asyncio.wait_for(stream.receive(), 10) == b"done\n"
        assert await asyncio.wait_for(app.task, 10) == 0


async def test_wait_stopping_with_a_timeout_says_whether_the_appliance_stops() -> None:
    async with start_appliance(APPLIANCE, [], target="memory") as app:
        assert await app.ctx.wait_stopping(0.01) is False
        waiting = asyncio.ensure_future(app.ctx.wait_stopping(30))
        await asyncio.sleep(0.01)
        app.ctx.request_stop()
        assert await asyncio.wait_for(waiting, 10) is True
        assert await app.ctx.wait_stopping(0) is True
