"""Talk to the running web appliance over real loopback sockets.

The appliance runs in the test's own event loop (the runtime's harness), so
clients here never block the loop: raw sockets are asyncio streams, the
stdlib's blocking ``http.client`` and ``ssl`` run in a worker thread, and
``curl`` is an asyncio subprocess.  Every wait has a bound (``WAIT``): a hang
fails the test instead of stalling the run.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import shutil
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from appliances.web import APPLIANCE
from runtime import Address
from runtime.testing.harness import RunningAppliance, start_appliance

__all__ = [
    "WAIT",
    "Fetched",
    "access_records",
    "curl",
    "fetch",
    "fetch_many",
    "log_records",
    "metric_value",
    "raw_exchange",
    "read_until_closed",
    "require_tool",
    "split_head",
    "start_web",
]

#: the bound on any single wait for the server (generous: shared CI machines)
WAIT = 20.0


def require_tool(name: str) -> str:
    """The path of a tool the test needs; a missing tool fails, never skips (CI installs it)."""
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed: apt-get install -y {name} (CI installs it)"
    return path


@asynccontextmanager
async def start_web(argv: Sequence[str] = (), *, listen: bool = True) -> AsyncIterator[RunningAppliance]:
    """The web appliance on the host target, on a free loopback port, JSON log lines."""
    args = ["--listen", "127.0.0.1:0"] if listen else []
    async with start_appliance(APPLIANCE, [*args, "--log-format", "json", *argv], target="host") as app:
        yield app


@dataclass
class Fetched:
    status: int
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def _fetch_blocking(
    address: Address,
    requests: Sequence[tuple[str, str, dict[str, str]]],
    tls: ssl.SSLContext | None,
) -> tuple[list[Fetched], int]:
    if tls is None:
        conn: http.client.HTTPConnection = http.client.HTTPConnection(
            address.host, address.port, timeout=WAIT
        )
    else:
        conn = http.client.HTTPSConnection(address.host, address.port, timeout=WAIT, context=tls)
    results = []
    sockets = set()
    try:
        for method, path, headers in requests:
            conn.request(method, path, headers=headers)
            sockets.add(id(conn.sock))
            response = conn.getresponse()
            body = response.read()
            results.append(Fetched(response.status, {k.lower(): v for k, v in response.getheaders()}, body))
    finally:
        conn.close()
    return results, len(sockets)


async def fetch(
    address: Address,
    path: str = "/",
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    tls: ssl.SSLContext | None = None,
) -> Fetched:
    """One request with the stdlib's http.client."""
    results, _ = await asyncio.to_thread(_fetch_blocking, address, [(method, path, headers or {})], tls)
    return results[0]


async def fetch_many(
    address: Address, requests: Sequence[tuple[str, str, dict[str, str]]]
) -> tuple[list[Fetched], int]:
    """Several requests on one http.client connection; also how many sockets it used."""
    return await asyncio.to_thread(_fetch_blocking, address, requests, None)


async def read_until_closed(reader: asyncio.StreamReader, *, limit: int = 1 << 26) -> bytes:
    """Everything until the server closes (a reset counts as a close)."""
    out = bytearray()
    while len(out) < limit:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), WAIT)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    return bytes(out)


async def raw_exchange(address: Address, data: bytes) -> bytes:
    """Send ``data`` on a fresh connection; everything the server writes before closing."""
    reader, writer = await asyncio.open_connection(address.host, address.port)
    try:
        writer.write(data)
        await writer.drain()
        return await read_until_closed(reader)
    finally:
        writer.close()


async def curl(*args: str) -> tuple[int, bytes, bytes]:
    """Run curl; (exit status, stdout, stderr)."""
    binary = require_tool("curl")
    process = await asyncio.create_subprocess_exec(
        binary,
        "--silent",
        "--show-error",
        "--max-time",
        str(int(WAIT)),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), WAIT + 5)
    assert process.returncode is not None
    return process.returncode, out, err


def log_records(app: RunningAppliance) -> list[dict[str, object]]:
    """The appliance's log so far, one dict per JSON line."""
    return [json.loads(line) for line in app.log_lines() if line.startswith("{")]


def access_records(app: RunningAppliance) -> list[dict[str, object]]:
    return [r for r in log_records(app) if r.get("component") == "web.access"]


def metric_value(app: RunningAppliance, sample: str) -> float:
    """The value of one sample line (``name{labels}``) of the metrics exposition; 0 if absent."""
    for line in app.ctx.metrics.render().splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    return 0.0


def split_head(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, rest) of one response at the start of ``data``."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, f"no complete head in {data[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    m = re.fullmatch(r"HTTP/1\.1 (\d{3}) .*", lines[0])
    assert m is not None, lines[0]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        headers[name.lower()] = value
    return int(m.group(1)), headers, rest
