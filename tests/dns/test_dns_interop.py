"""Replication with NSD both ways, with and without TSIG.

- NSD primary -> our secondary: we pull AXFR at start; NSD reloads a changed
  file (SIGHUP), builds IXFR data from the difference (``create-ixfr``) and
  NOTIFYs us; we pull IXFR and serve the new serial.
- our primary -> NSD secondary: NSD pulls AXFR at start; we reload a changed
  file, NOTIFY NSD, NSD pulls (IXFR from our journal) and answers the new serial.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable
from pathlib import Path

import dns.rcode
import pytest
from peers import run_nsd
from server_helpers import KEY_NAME, KEY_OPTION, ask, free_port, serial_of, until, write_zone

from appliances.dns import APPLIANCE
from runtime.testing.harness import start_appliance


async def _equals(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


@pytest.mark.slow
@pytest.mark.parametrize("signed", [False, True], ids=["nokey", "tsig"])
async def test_nsd_primary_our_secondary(tmp_path: Path, signed: bool) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    write_zone(zones, "nsd.test.", 1, "a A 10.0.0.1\nb A 10.0.0.2\n")
    our_port = free_port()
    key = KEY_NAME if signed else "NOKEY"
    clause = (
        f"name: nsd.test\nzonefile: {zones}/nsd.test.zone\nprovide-xfr: 127.0.0.0/8 {key}\n"
        f"notify: 127.0.0.1@{our_port} {key}\nstore-ixfr: yes\ncreate-ixfr: yes\n"
    )
    async with run_nsd(tmp_path / "nsd", [clause], probe="nsd.test", tsig=signed, zonesdir=zones) as nsd:
        suffix = f"@{KEY_NAME}" if signed else ""
        args = [
            "--listen",
            f"127.0.0.1:{our_port}",
            "--state-dir",
            str(tmp_path / "state"),
            "--secondary",
            f"nsd.test=127.0.0.1:{nsd.port}{suffix}",
        ]
        if signed:
            args += ["--tsig-key", KEY_OPTION]
        async with start_appliance(APPLIANCE, args, target="host") as app:
            assert await until(lambda: _equals(serial_of("nsd.test", our_port), 1))
            assert (await ask("b.nsd.test", "A", our_port)).answer[0][0].address == "10.0.0.2"
            write_zone(zones, "nsd.test.", 2, "a A 10.0.0.1\nc A 10.0.0.3\n")
            nsd.process.send_signal(signal.SIGHUP)  # NSD re-reads the file, then NOTIFYs us
            assert await until(lambda: _equals(serial_of("nsd.test", our_port), 2), tries=400)
            assert (await ask("b.nsd.test", "A", our_port)).rcode() == dns.rcode.NXDOMAIN
            assert (await ask("c.nsd.test", "A", our_port)).answer[0][0].address == "10.0.0.3"
            metrics = app.ctx.metrics.render()
            assert 'dns_transfers_in_total{kind="axfr"} 1' in metrics
            assert 'dns_transfers_in_total{kind="ixfr"} 1' in metrics, metrics + nsd.log()
            assert 'dns_notify_received_total{result="accepted"}' in metrics


@pytest.mark.slow
@pytest.mark.parametrize("signed", [False, True], ids=["nokey", "tsig"])
async def test_our_primary_nsd_secondary(tmp_path: Path, signed: bool) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    write_zone(zones, "ours.test.", 1, "a A 10.0.0.1\nb A 10.0.0.2\n")
    nsd_port = free_port()
    suffix = f"@{KEY_NAME}" if signed else ""
    args = [
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        str(tmp_path / "state"),
        "--zone-dir",
        str(zones),
        "--allow-transfer",
        f"127.0.0.1{suffix}",
        "--notify",
        f"127.0.0.1:{nsd_port}{suffix}",
    ]
    if signed:
        args += ["--tsig-key", KEY_OPTION]
    async with start_appliance(APPLIANCE, args, target="host") as app:
        port = app.address("tcp").port
        key = KEY_NAME if signed else "NOKEY"
        clause = (
            f"name: ours.test\nzonefile: {tmp_path}/nsd/ours.test.zone\n"
            f"request-xfr: 127.0.0.1@{port} {key}\nallow-notify: 127.0.0.1 {key}\n"
        )
        async with run_nsd(tmp_path / "nsd", [clause], probe="ours.test", tsig=signed, port=nsd_port) as nsd:
            assert await until(lambda: _equals(serial_of("ours.test", nsd.port), 1), tries=400), nsd.log()
            write_zone(zones, "ours.test.", 2, "a A 10.0.0.9\nb A 10.0.0.2\n")
            assert await app.reload() == []  # -> NOTIFY -> NSD asks us for IXFR
            assert await until(lambda: _equals(serial_of("ours.test", nsd.port), 2), tries=400), nsd.log()
            assert (await ask("a.ours.test", "A", nsd.port)).answer[0][0].address == "10.0.0.9"
            # NSD answers the NOTIFY from its transfer process, possibly after it has pulled
            await until(lambda: "dns_notify_answered_total 1" in app.ctx.metrics.render())
            metrics = app.ctx.metrics.render()
            assert 'dns_transfers_out_total{kind="axfr"} 1' in metrics
            assert 'dns_transfers_out_total{kind="ixfr"} 1' in metrics, metrics + nsd.log()
