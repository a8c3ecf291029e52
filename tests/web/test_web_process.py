"""``python -m appliances.web`` as an operator runs it: a real process serving
the embedded demo site, found through its ``ready`` log line, reloaded with
SIGHUP and stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from web_server_helpers import WAIT, fetch

from runtime import Address

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "appliances" / "web" / "data" / "site"


async def _next_record(
    stream: asyncio.StreamReader, msg: str, seen: list[dict[str, object]]
) -> dict[str, object]:
    """Read JSON log lines until one with ``msg``; every line must be JSON."""
    for _ in range(1000):
        line = await asyncio.wait_for(stream.readline(), WAIT)
        assert line, f"the process ended before logging {msg!r}: {seen}"
        record = json.loads(line)
        seen.append(record)
        if record["msg"] == msg:
            return record
    raise AssertionError(f"no {msg!r} in {seen}")


async def test_default_run_serves_the_demo_site_reloads_and_stops() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "appliances.web",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None and process.stdout is not None
    seen: list[dict[str, object]] = []
    try:
        ready = await _next_record(process.stderr, "ready", seen)
        kind, _, bound = str(ready["listening"]).partition("/")
        assert kind == "tcp"
        address = Address.parse(bound)
        assert address.host == "127.0.0.1" and address.port != 0
        assert ready["site"] == "(embedded demo site)"

        page = await fetch(address, "/")
        assert page.status == 200
        assert page.body == (DEMO / "index.html").read_bytes()
        assert b"web appliance" in page.body

        process.send_signal(signal.SIGHUP)
        await _next_record(process.stderr, "reloaded", seen)
        assert (await fetch(address, "/style.css")).status == 200

        process.send_signal(signal.SIGTERM)
        await _next_record(process.stderr, "stopped", seen)
        assert await asyncio.wait_for(process.wait(), WAIT) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    logged = [r for r in seen if r.get("component") == "web.access"]
    assert logged and str(logged[0]["msg"]).endswith('"GET / HTTP/1.1" 200 2267 "-" "-"')
    assert await process.stdout.read() == b""  # everything goes through the log device
