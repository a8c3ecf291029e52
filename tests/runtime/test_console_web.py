"""The web appliance's console commands (``sites``, ``cache``) over SSH, with the
appliance running on the host target in the test's loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from console_helpers import client, make_keys
from proc import BOUND

from appliances.web import APPLIANCE
from runtime.testing.harness import start_appliance

pytestmark = pytest.mark.slow


def _site(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text("<!doctype html><title>hi</title>" + "<p>text</p>" * 200)
    (root / "logo.bin").write_bytes(bytes(range(256)) * 4)
    vhosts = tmp_path / "vhosts"
    (vhosts / "example.test").mkdir(parents=True)
    (vhosts / "example.test" / "index.html").write_text("<p>example</p>")
    return root, vhosts


async def test_sites_and_cache(tmp_path: Path) -> None:
    keys = make_keys(tmp_path / "keys")
    root, vhosts = _site(tmp_path)
    argv = [
        "--listen", "127.0.0.1:0", "--root", str(root), "--vhosts-root", str(vhosts),
        "--console-listen", "127.0.0.1:0", "--console-keys", str(keys.authorized),
        "--state-dir", str(tmp_path / "state"), "--log-format", "json",
    ]  # fmt: skip
    async with start_appliance(APPLIANCE, argv, target="host") as app:
        line = next(json.loads(raw) for raw in app.log_lines() if '"msg": "console"' in raw)
        port = int(line["listen"].rpartition(":")[2])
        async with client(port, keys.alice) as conn:
            helped = await conn.run("help", timeout=BOUND)
            assert "sites" in str(helped.stdout) and "cache" in str(helped.stdout)

            sites = await conn.run("sites", timeout=BOUND)
            assert sites.exit_status == 0
            rows = [row.split() for row in str(sites.stdout).splitlines()]
            assert rows[0] == ["site", "files", "bytes", "source"]
            assert rows[1][:2] == ["(default)", "2"] and rows[1][3] == str(root)
            assert rows[2][:2] == ["example.test", "1"]

            cache = json.loads(str((await conn.run("cache --json", timeout=BOUND)).stdout))
            default = cache["sites"][0]
            assert default["site"] == "(default)" and default["resources"] == 2
            assert default["in_memory"] == 2 and default["streamed"] == 0
            assert default["gzip_variants"] == 1  # index.html; the binary file is not compressible
            index_size = (root / "index.html").stat().st_size
            assert default["bytes"] > index_size + 1024  # both bodies and the gzip variant
            assert cache["total"]["resources"] == 3
            text = await conn.run("cache", timeout=BOUND)
            assert "total: 3 resources" in str(text.stdout)

            # A file added on disk shows up after the console's reload.
            (vhosts / "example.test" / "about.html").write_text("<p>about</p>")
            assert (await conn.run("reload", timeout=BOUND)).exit_status == 0
            data = json.loads(str((await conn.run("sites --json", timeout=BOUND)).stdout))
            assert {entry["site"]: entry["files"] for entry in data} == {"(default)": 2, "example.test": 2}
