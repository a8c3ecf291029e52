"""``python -m runtime new NAME``: the skeleton of a new appliance.

The skeleton is small but complete and shows the house style: a sans-IO core,
a thin server edge using only the device API, embedded demo data, a durable
counter in the store, a metric, a reload hook, and a test that runs the same
appliance on the memory and the host target.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from string import Template

__all__ = ["ScaffoldError", "write_skeleton"]


class ScaffoldError(ValueError):
    pass


_INIT = '''\
"""$name: a line-based greeting service (replace with your own protocol).

Protocol, one request per line, over TCP (many per connection) or UDP (one
per datagram):

    hello NAME   ->  the greeting from the data device, and a durable visit count
    count        ->  the number of greetings so far
"""

from runtime import NET, STORE, Appliance, DataSpec, Option, SIZE

from .server import serve

APPLIANCE = Appliance(
    name="$name",
    summary="greets clients by name and counts visits",
    package=__name__,
    main=serve,
    devices=frozenset({NET, STORE}),
    data=(DataSpec("content", "the greeting text (greeting.txt)", default="data", option="content"),),
    options=(
        Option("max_line", SIZE, 1024, "longest request line accepted", minimum=16),
    ),
    listen=("127.0.0.1:7070",),
)

__all__ = ["APPLIANCE"]
'''

_MAIN = """\
from runtime import main

from . import APPLIANCE

main(APPLIANCE)
"""

_CORE = '''\
"""The sans-IO core: lines in, replies out.  No sockets, no awaits, no clock."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Greet", "Count", "Invalid", "LineBuffer", "parse_request"]


@dataclass(frozen=True, slots=True)
class Greet:
    who: str


@dataclass(frozen=True, slots=True)
class Count:
    pass


@dataclass(frozen=True, slots=True)
class Invalid:
    reason: str


def parse_request(line: bytes) -> Greet | Count | Invalid:
    try:
        text = line.decode("utf-8").strip()
    except UnicodeDecodeError:
        return Invalid("not UTF-8")
    verb, _, rest = text.partition(" ")
    if verb == "hello" and rest.strip() and rest.strip().isprintable():
        return Greet(rest.strip()[:64])
    if verb == "count" and not rest:
        return Count()
    return Invalid("expected 'hello NAME' or 'count'")


class LineBuffer:
    """Splits a byte stream into lines; a line longer than ``max_line`` is an error."""

    def __init__(self, max_line: int) -> None:
        self._max = max_line
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Complete lines in ``data`` (without the newline); raises ValueError
        when a line grows past the limit."""
        self._buffer += data
        lines = []
        while True:
            end = self._buffer.find(b"\\n")
            if end < 0:
                break
            lines.append(bytes(self._buffer[:end]).rstrip(b"\\r"))
            del self._buffer[: end + 1]
        if len(self._buffer) > self._max:
            raise ValueError("line too long")
        return lines
'''

_SERVER = '''\
"""The I/O edge: wires the core to the devices.  Thin on purpose."""

from __future__ import annotations

import asyncio

from runtime import Context, Stream

from .core import Count, Greet, Invalid, LineBuffer, parse_request

COUNT_KEY = "visits"


class Service:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.greeting = self.load_greeting()
        self.requests = ctx.metrics.counter("${name}_requests_total", "Requests by kind.", labels=("kind",))

    def load_greeting(self) -> str:
        return self.ctx.data("content").read("greeting.txt").decode("utf-8").strip()

    def reload(self) -> None:
        self.greeting = self.load_greeting()
        self.ctx.log.info("greeting reloaded")

    def visits(self) -> int:
        return int(self.ctx.store.get(COUNT_KEY, b"0") or b"0")

    async def answer(self, line: bytes) -> bytes:
        request = parse_request(line)
        if isinstance(request, Greet):
            self.requests.labels("hello").inc()
            # The count is durable before the client hears it.
            visits = self.visits() + 1
            await self.ctx.store.put(COUNT_KEY, str(visits).encode())
            return f"{self.greeting}, {request.who}! (visit {visits})\\n".encode()
        if isinstance(request, Count):
            self.requests.labels("count").inc()
            return f"{self.visits()}\\n".encode()
        assert isinstance(request, Invalid)
        self.requests.labels("invalid").inc()
        return f"error: {request.reason}\\n".encode()

    async def handle_stream(self, stream: Stream) -> None:
        lines = LineBuffer(self.ctx.options.max_line)
        while data := await stream.receive():
            try:
                requests = lines.feed(data)
            except ValueError:
                await stream.send(b"error: line too long\\n")
                return
            for line in requests:
                await stream.send(await self.answer(line))

    def handle_datagram(self, data: bytes, peer: tuple) -> bytes | None:
        # A datagram handler is synchronous; only the read-only request is
        # answered inline, greetings (which write) are refused over UDP.
        request = parse_request(data.rstrip(b"\\r\\n"))
        if isinstance(request, Count):
            self.requests.labels("count").inc()
            return f"{self.visits()}\\n".encode()
        return b"error: only 'count' over UDP\\n"


async def serve(ctx: Context) -> None:
    service = Service(ctx)
    ctx.on_reload(service.reload)
    listeners = [await ctx.net.listen_tcp(address) for address in ctx.options.listen]
    endpoints = [await ctx.net.bind_udp(address) for address in ctx.options.listen]
    ctx.ready()
    async with asyncio.TaskGroup() as group:
        for listener in listeners:
            group.create_task(listener.serve(service.handle_stream))
        for endpoint in endpoints:
            group.create_task(endpoint.serve(service.handle_datagram))
'''

_DATA = "Hello\n"

_TEST = '''\
"""Tests for the $name appliance: the core with bytes, the whole appliance on
the memory target and on the host target, with the same code."""

from __future__ import annotations

import asyncio
import socket

import pytest

from appliances.$name import APPLIANCE
from appliances.$name.core import Count, Greet, Invalid, LineBuffer, parse_request
from runtime.testing.harness import start_appliance


def test_parse_request() -> None:
    assert parse_request(b"hello ada") == Greet("ada")
    assert parse_request(b"count") == Count()
    assert isinstance(parse_request(b"hello"), Invalid)
    assert isinstance(parse_request(b"\\xff"), Invalid)


def test_line_buffer_splits_and_bounds() -> None:
    lines = LineBuffer(16)
    assert lines.feed(b"hel") == []
    assert lines.feed(b"lo a\\r\\ncount\\n") == [b"hello a", b"count"]
    with pytest.raises(ValueError):
        lines.feed(b"x" * 17)


class Lines:
    """Reads whole lines from a stream, keeping what arrives after them."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.buffer = b""

    async def next(self) -> bytes:
        while b"\\n" not in self.buffer:
            chunk = await asyncio.wait_for(self.stream.receive(), 10)
            assert chunk, "connection closed early"
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\\n")
        return line + b"\\n"


@pytest.mark.parametrize("target", ["memory", "host"])
async def test_greets_and_counts(target: str, tmp_path) -> None:
    argv = ["--listen", "127.0.0.1:0", "--state-dir", str(tmp_path)]
    async with start_appliance(APPLIANCE, argv, target=target) as app:
        stream = await app.connect_tcp()
        lines = Lines(stream)
        await stream.send(b"hello ada\\nhello bob\\n")
        assert await lines.next() == b"Hello, ada! (visit 1)\\n"
        assert await lines.next() == b"Hello, bob! (visit 2)\\n"
        await stream.send(b"count\\n")
        assert await lines.next() == b"2\\n"
        await stream.send(b"nonsense\\n")
        assert (await lines.next()).startswith(b"error:")
        await stream.aclose()
        assert await app.stop() == 0


def _udp_exchange(host: str, port: int, request: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.sendto(request, (host, port))
        return sock.recv(100)


async def test_udp_count_on_host(tmp_path) -> None:
    argv = ["--listen", "127.0.0.1:0", "--state-dir", str(tmp_path)]
    async with start_appliance(APPLIANCE, argv, target="host") as app:
        address = app.address("udp")
        # A real client in a thread: the appliance runs in this test's event loop.
        reply = await asyncio.to_thread(_udp_exchange, address.host, address.port, b"count\\n")
        assert reply == b"0\\n"
'''


def write_skeleton(name: str, directory: str | Path = ".") -> list[Path]:
    """Write appliances/NAME and tests/NAME under ``directory``; never overwrite."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,30}", name) or keyword.iskeyword(name):
        raise ScaffoldError(f"bad name {name!r}: use lowercase letters, digits and _, starting with a letter")
    root = Path(directory)
    package = root / "appliances" / name
    tests = root / "tests" / name
    if package.exists() or tests.exists():
        raise ScaffoldError(f"{package} or {tests} already exists; not overwriting")
    files = {
        package / "__init__.py": _INIT,
        package / "__main__.py": _MAIN,
        package / "core.py": _CORE,
        package / "server.py": _SERVER,
        package / "data" / "greeting.txt": _DATA,
        tests / f"test_{name}.py": _TEST,
    }
    namespace = root / "appliances" / "__init__.py"
    if not namespace.exists():
        files[namespace] = '"""Appliances: one package each."""\n'
    written = []
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(template).substitute(name=name))
        written.append(path)
    return written
