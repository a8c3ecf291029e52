"""The DNS appliance's console commands (``zones``, ``zone show``, ``zone reload``,
``notify``) over SSH.  The commands are wired into a copy of the DNS
declaration here (``console=COMMANDS``), as the appliance will declare them."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from console_helpers import client, make_keys
from proc import BOUND

from appliances.dns import APPLIANCE
from appliances.dns.console import COMMANDS, rdata_text
from runtime.testing.harness import start_appliance

pytestmark = pytest.mark.slow

DEMO = Path(__file__).resolve().parents[2] / "appliances" / "dns" / "data" / "example.test.zone"


class _Secondary(asyncio.DatagramProtocol):
    """A stand-in secondary: keeps the NOTIFY messages it receives."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.put_nowait(data)


def test_rdata_text_known_and_generic() -> None:
    assert rdata_text(1, bytes([192, 0, 2, 1])) == "192.0.2.1"
    assert rdata_text(15, b"\x00\x0a\x04mail\x07example\x00") == "10 mail.example."
    assert rdata_text(16, b'\x05a "b"') == '"a \\"b\\""'
    assert rdata_text(99, b"\x01\x02") == "\\# 2 0102"


async def test_zone_commands(tmp_path: Path) -> None:
    keys = make_keys(tmp_path / "keys")
    zone_file = tmp_path / "example.test.zone"
    zone_file.write_text(DEMO.read_text())
    hosts = DEMO.with_name("example.test.hosts")  # the demo zone's $INCLUDE
    (tmp_path / hosts.name).write_text(hosts.read_text())
    loop = asyncio.get_running_loop()
    secondary = _Secondary()
    transport, _ = await loop.create_datagram_endpoint(lambda: secondary, local_addr=("127.0.0.1", 0))
    notify_port = transport.get_extra_info("sockname")[1]
    appliance = dataclasses.replace(APPLIANCE, console=COMMANDS)
    argv = [
        "--listen", "127.0.0.1:0", "--zone", str(zone_file), "--notify", f"127.0.0.1:{notify_port}",
        "--console-listen", "127.0.0.1:0", "--console-keys", str(keys.authorized),
        "--state-dir", str(tmp_path / "state"), "--log-format", "json",
    ]  # fmt: skip
    try:
        async with start_appliance(appliance, argv, target="host") as app:
            line = next(json.loads(raw) for raw in app.log_lines() if '"msg": "console"' in raw)
            port = int(line["listen"].rpartition(":")[2])
            async with client(port, keys.alice) as conn:
                zones = json.loads(str((await conn.run("zones --json", timeout=BOUND)).stdout))
                assert [(z["zone"], z["kind"], z["serial"]) for z in zones] == [
                    ("example.test.", "primary", 2024060101)
                ]
                assert zones[0]["records"] > 10

                shown = await conn.run("zone show example.test", timeout=BOUND)
                assert shown.exit_status == 0
                text = str(shown.stdout)
                assert (
                    "example.test. 3600 IN SOA ns1.example.test. hostmaster.example.test. "
                    "2024060101 7200 900 1209600 300"
                ) in text
                assert "example.test. 3600 IN MX 10 mail.example.test." in text

                missing = await conn.run("zone show nowhere.test", timeout=BOUND)
                assert missing.exit_status == 1 and "no zone nowhere.test." in str(missing.stderr)
                assert (await conn.run("zone show", timeout=BOUND)).exit_status == 2

                sent = await conn.run("notify example.test.", timeout=BOUND)
                assert sent.exit_status == 0, sent.stderr
                notify = await asyncio.wait_for(secondary.received.get(), BOUND)
                assert (notify[2] >> 3) & 0xF == 4  # opcode NOTIFY (RFC 1996 §3)
                assert b"\x07example\x04test\x00" in notify

                zone_file.write_text(DEMO.read_text().replace("2024060101", "2024060102"))
                reloaded = await conn.run("zone reload example.test", timeout=BOUND)
                assert reloaded.exit_status == 0
                assert "serial 2024060101 -> 2024060102" in str(reloaded.stdout)
                zones = json.loads(str((await conn.run("zones --json", timeout=BOUND)).stdout))
                assert zones[0]["serial"] == 2024060102
    finally:
        transport.close()
