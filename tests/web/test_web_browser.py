"""A real browser: headless Chromium loads the demo site from the appliance.

The appliance's access log is the witness: every request the browser made and
its status.  The page, its stylesheet and its image must all load, nothing may
fail, and the page must render (the DOM dump holds the heading; the screenshot
is kept as a test artifact under ``$TEST_ARTIFACTS``, default tmp_path).
"""

from __future__ import annotations

import asyncio
import os
import struct
from pathlib import Path

import pytest
from web_server_helpers import WAIT, access_records, require_tool, start_web

pytestmark = pytest.mark.slow

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1024,768",
]


async def chromium(profile: Path, *args: str) -> bytes:
    binary = require_tool("chromium")
    process = await asyncio.create_subprocess_exec(
        binary,
        *FLAGS,
        f"--user-data-dir={profile}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), WAIT * 3)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("TEST_ARTIFACTS") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def png_file_size(path: Path) -> tuple[int, int]:
    return png_size(path.read_bytes())


async def test_chromium_loads_the_demo_site(tmp_path: Path, artifacts: Path) -> None:
    screenshot = artifacts / "web-demo-site.png"
    # The security headers are on: the demo site must load under its own CSP.
    async with start_web(["--access-log", "json", "--security-headers"]) as app:
        url = f"http://{app.address('tcp')}/"
        dom = await chromium(tmp_path / "profile-dom", "--dump-dom", url)
        assert b"<h1>web appliance</h1>" in dom
        first = access_records(app)
        await chromium(tmp_path / "profile-shot", f"--screenshot={screenshot}", url)
        records = access_records(app)

    assert first, "the browser made no request"
    loaded = {str(r["target"]): r["status"] for r in records}
    for path in ("/", "/style.css", "/logo.svg"):
        assert loaded.get(path) == 200, (path, records)
    failed = [r for r in records if not 200 <= int(str(r["status"])) < 400]
    assert failed == [], failed
    assert all("HeadlessChrome" in str(r["user_agent"]) for r in records)
    assert png_file_size(screenshot) == (1024, 768)
