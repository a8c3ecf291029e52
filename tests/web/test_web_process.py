"""``python -m appliances.web`` as an operator runs it: a real process serving
the embedded demo site, found through its ``ready`` log line, reloaded with
SIGHUP and stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import json
import re
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


async def test_access_log_to_a_file_is_reopened_on_sighup(tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "appliances.web",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--access-log",
        "json",
        "--log-file",
        f"web.access={access}",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    seen: list[dict[str, object]] = []
    try:
        ready = await _next_record(process.stderr, "ready", seen)
        address = Address.parse(str(ready["listening"]).partition("/")[2])
        assert (await fetch(address, "/style.css")).status == 200
        # Rotate as logrotate does: rename, then SIGHUP; later lines go to a new file.
        rotated = tmp_path / "access.log.1"
        access.rename(rotated)
        process.send_signal(signal.SIGHUP)
        await _next_record(process.stderr, "reloaded", seen)
        assert (await fetch(address, "/missing")).status == 404
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), WAIT) == 0
        rest = await asyncio.wait_for(process.stderr.read(), WAIT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    # Bare JSON records in the files; none of them on stderr.
    first = [json.loads(line) for line in rotated.read_text().splitlines()]
    second = [json.loads(line) for line in access.read_text().splitlines()]
    assert [(r["component"], r["status"]) for r in first] == [("web.access", 200)]
    assert [(r["component"], r["status"]) for r in second] == [("web.access", 404)]
    stderr_records = [*seen, *(json.loads(line) for line in rest.splitlines() if line.strip())]
    assert not [r for r in stderr_records if r["component"] == "web.access"]


async def test_combined_access_log_file_has_bare_lines(tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliances.web", "--listen", "127.0.0.1:0",
        "--log-file", f"web.access={access}",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        for _ in range(100):  # the text "ready" line names the listener
            line = (await asyncio.wait_for(process.stderr.readline(), WAIT)).decode()
            assert line, "the process ended before it was ready"
            if " ready " in line:
                break
        bound = line.split("listening=tcp/")[1].split()[0]
        assert (await fetch(Address.parse(bound), "/", headers={"User-Agent": "probe/1"})).status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), WAIT)
    # A bare Combined Log Format line, as log analysers expect it.
    lines = access.read_text().splitlines()
    assert len(lines) == 1
    assert re.fullmatch(r'127\.0\.0\.1 - - \[[^]]+\] "GET / HTTP/1\.1" 200 \d+ "-" "probe/1"', lines[0]), (
        lines
    )
