"""Helpers for the DNS appliance tests over real sockets: zones on disk, free
ports, tools that must exist, and dnspython calls run off the event loop (the
appliance serves in the test's own loop, so a blocking client would stall it)."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import dns.message
import dns.query
import dns.rdatatype
import dns.tsigkeyring

T = TypeVar("T")

KEY_NAME = "xfr-key."
KEY_SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYg=="  # base64 of 32 bytes
KEY_OPTION = f"xfr-key:hmac-sha256:{KEY_SECRET}"
KEYRING = dns.tsigkeyring.from_text({KEY_NAME: ("hmac-sha256", KEY_SECRET)})
WRONG_KEYRING = dns.tsigkeyring.from_text(
    {KEY_NAME: ("hmac-sha256", "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC0zMmI=")}
)
OTHER_KEYRING = dns.tsigkeyring.from_text({"other-key.": ("hmac-sha256", KEY_SECRET)})


def zone_text(
    origin: str, serial: int, extra: str = "", *, refresh: int = 3600, retry: int = 600, expire: int = 86400
) -> str:
    return (
        f"$ORIGIN {origin}\n$TTL 300\n"
        f"@ SOA ns1 hostmaster {serial} {refresh} {retry} {expire} 60\n"
        "@ NS ns1\n"
        "ns1 A 192.0.2.1\n"
        f"www A 192.0.2.{serial % 250 + 2}\n"
        f"{extra}"
    )


def write_zone(directory: Path, origin: str, serial: int, extra: str = "", **timers: int) -> Path:
    path = directory / f"{origin.rstrip('.')}.zone"
    path.write_text(zone_text(origin, serial, extra, **timers))
    return path


def big_zone_extra(names: int) -> str:
    """Enough records that an AXFR needs several messages."""
    return "".join(
        f'host{i} A 10.0.{i // 250}.{i % 250}\nhost{i} TXT "record number {i} padding"\n'
        for i in range(names)
    )


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return int(port)
    raise RuntimeError("no free port")


def need(tool: str) -> str:
    """The path of ``tool``; fail (never skip) when it is missing: CI installs it."""
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if path is None:
        raise AssertionError(
            f"{tool} is not installed (apt-get install -y nsd knot knot-dnsutils dnsperf); "
            "the DNS tests need it"
        )
    return path


async def off_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


async def udp(
    message: dns.message.Message, port: int, host: str = "127.0.0.1", **kw: Any
) -> dns.message.Message:
    return await off_loop(dns.query.udp, message, host, port=port, timeout=5, **kw)


async def tcp(
    message: dns.message.Message, port: int, host: str = "127.0.0.1", **kw: Any
) -> dns.message.Message:
    return await off_loop(dns.query.tcp, message, host, port=port, timeout=5, **kw)


async def ask(name: str, rdtype: str, port: int, **kw: Any) -> dns.message.Message:
    return await udp(dns.message.make_query(name, rdtype), port, **kw)


async def serial_of(name: str, port: int) -> int | None:
    reply = await ask(name, "SOA", port)
    for rrset in reply.answer:
        if rrset.rdtype == dns.rdatatype.SOA:
            return int(rrset[0].serial)
    return None


async def run_tool(*argv: str, limit: float = 20) -> str:
    process = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), limit)
    return out.decode(errors="replace")


def ready_fields(line: str) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(line)
    return record


async def until(check: Callable[[], Any], *, tries: int = 200, step: float = 0.05) -> Any:
    """Poll an async or sync check until it returns a true value (bounded)."""
    for _ in range(tries):
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(step)
    raise AssertionError("condition not reached")
