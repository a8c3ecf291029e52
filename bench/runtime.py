"""Overhead of the runtime's net device on the hot path, against bare uvloop.

    python -m bench.runtime [--rounds 3] [--seconds 5] [--no-record]

Four servers, each in its own process pinned to CPU 0, the load generator
pinned to CPU 1, round-robin over several rounds in one run:

    udp-bare    a uvloop DatagramProtocol that sends each datagram back
    udp-device  the runtime: HostNet.bind_udp + a synchronous handler
    tcp-bare    a uvloop Protocol echoing in data_received
    tcp-device  the runtime: HostNet.listen_tcp + a Stream handler
                (receive/send in a task per connection)
    tcp-callback the runtime: HostNet.listen_tcp + serve_connections (a
                ConnectionHandler called synchronously, no task switch)

Reported: requests/s, and server CPU microseconds per request (utime+stime of
the server process from /proc, which survives a noisy shared machine better
than wall-clock rates), with the device/bare ratio of the latter.  Results are
appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench import procstats  # noqa: E402
from bench.procstats import cpu_seconds  # noqa: E402

MODES = ("udp-bare", "udp-device", "tcp-bare", "tcp-device", "tcp-callback")
PAYLOAD = b"x" * 64
UDP_WINDOW = 32
TCP_CONNECTIONS = 32


# ---------------------------------------------------------------- servers


def serve(mode: str, port: int) -> None:
    import uvloop

    async def bare_udp() -> None:
        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                self.transport.sendto(data, addr)

        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", port))
        print("ready", flush=True)
        await asyncio.Event().wait()

    async def bare_tcp() -> None:
        class Echo(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                self.transport.write(data)

        server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", port)
        print("ready", flush=True)
        await server.serve_forever()

    async def device(kind: str) -> None:
        sys.path.insert(0, str(REPO))
        from runtime.devices import Address, ConnectionHandler, Limits
        from runtime.lifecycle import Lifecycle
        from runtime.log import LogSink
        from runtime.net.host import HostNet

        net = HostNet(lifecycle=Lifecycle(), log=LogSink(sys.stderr).logger("bench"))
        if kind == "udp":
            endpoint = await net.bind_udp(Address("127.0.0.1", port))
            print("ready", flush=True)
            await endpoint.serve(lambda data, peer: data)
        elif kind == "tcp":
            listener = await net.listen_tcp(Address("127.0.0.1", port), limits=Limits(max_connections=4096))

            async def echo(stream: Any) -> None:
                while data := await stream.receive():
                    await stream.send(data)

            print("ready", flush=True)
            await listener.serve(echo)
        else:
            listener = await net.listen_tcp(Address("127.0.0.1", port), limits=Limits(max_connections=4096))

            class Echo(ConnectionHandler):
                def __init__(self, conn: Any) -> None:
                    self.write = conn.write

                def data_received(self, data: bytes) -> None:
                    self.write(data)

            print("ready", flush=True)
            await listener.serve_connections(Echo)

    runners = {
        "udp-bare": bare_udp,
        "tcp-bare": bare_tcp,
        "udp-device": lambda: device("udp"),
        "tcp-device": lambda: device("tcp"),
        "tcp-callback": lambda: device("callback"),
    }
    uvloop.run(runners[mode]())


# ---------------------------------------------------------------- load


async def udp_load(port: int, seconds: float) -> int:
    """Keep UDP_WINDOW datagrams in flight; count replies until time is up."""
    loop = asyncio.get_running_loop()
    done = 0
    deadline = loop.time() + seconds

    class Client(asyncio.DatagramProtocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            for _ in range(UDP_WINDOW):
                transport.sendto(PAYLOAD)

        def datagram_received(self, data: bytes, addr: Any) -> None:
            nonlocal done
            done += 1
            if loop.time() < deadline:
                self.transport.sendto(PAYLOAD)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))
    await asyncio.sleep(seconds)
    transport.close()
    return done


async def tcp_load(port: int, seconds: float) -> int:
    """TCP_CONNECTIONS connections, each a ping-pong of 64-byte messages."""
    loop = asyncio.get_running_loop()
    done = 0
    deadline = loop.time() + seconds

    class Client(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.pending = 0
            transport.write(PAYLOAD)

        def data_received(self, data: bytes) -> None:
            nonlocal done
            self.pending += len(data)
            while self.pending >= len(PAYLOAD):
                self.pending -= len(PAYLOAD)
                done += 1
                if loop.time() < deadline:
                    self.transport.write(PAYLOAD)

    transports = []
    for _ in range(TCP_CONNECTIONS):
        transport, _ = await loop.create_connection(Client, "127.0.0.1", port)
        transports.append(transport)
    await asyncio.sleep(seconds)
    for transport in transports:
        transport.close()
    return done


def measure(mode: str, seconds: float) -> tuple[float, float]:
    """(requests/s, server CPU microseconds per request) for one server run."""
    import uvloop

    port = procstats.free_port()
    server = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, __file__, "serve", mode, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{mode} server did not start")
        load = udp_load if mode.startswith("udp") else tcp_load
        uvloop.run(load(port, 0.5))  # warm-up
        before = cpu_seconds(server.pid)
        start = time.perf_counter()
        done = uvloop.run(load(port, seconds))
        wall = time.perf_counter() - start
        used = cpu_seconds(server.pid) - before
    finally:
        server.terminate()
        server.wait(10)
    return done / wall, used / done * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:  # type: ignore[operator]
        os.sched_setaffinity(0, {1})
    results: dict[str, list[tuple[float, float]]] = {m: [] for m in MODES}
    for round_no in range(args.rounds):
        for mode in MODES:
            rate, cost = measure(mode, args.seconds)
            results[mode].append((rate, cost))
            print(f"round {round_no + 1} {mode:<11} {rate:>10,.0f} req/s  {cost:6.2f} us CPU/req", flush=True)

    def median(mode: str, index: int) -> float:
        return statistics.median(r[index] for r in results[mode])

    rows = []
    for mode in MODES:
        bare = mode.split("-")[0] + "-bare"
        ratio = median(mode, 1) / median(bare, 1)
        rows.append(f"| {mode} | {median(mode, 0):,.0f} | {median(mode, 1):.2f} | {ratio:.2f} |")
    table = "\n".join(
        [
            "| server | requests/s | server CPU us/request | CPU per request vs bare |",
            "|---|---|---|---|",
            *rows,
        ]
    )
    print(table)
    if not args.no_record:
        command = "python -m bench.runtime " + " ".join(sys.argv[1:])
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        with open(HERE / "RESULTS.md", "a") as f:
            f.write(
                f"\n## Runtime net device overhead, {stamp}\n\n`{command.strip()}` "
                f"(median of {args.rounds} rounds of {args.seconds:g} s; server on CPU 0, load on CPU 1; "
                f"UDP: {UDP_WINDOW} datagrams in flight; TCP: {TCP_CONNECTIONS} connections ping-ponging "
                f"64 bytes)\n\n{table}\n"
            )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        main()
