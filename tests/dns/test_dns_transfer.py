"""Replication between real sockets: AXFR and IXFR out (dnspython, kdig), TSIG,
NOTIFY out and in, secondary zones with their timers (on a manual clock), the
store, and expiry."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path

import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.zone
import pytest
from server_helpers import (
    KEY_NAME,
    KEY_OPTION,
    KEY_SECRET,
    KEYRING,
    OTHER_KEYRING,
    WRONG_KEYRING,
    ask,
    big_zone_extra,
    free_port,
    need,
    off_loop,
    run_tool,
    serial_of,
    tcp,
    until,
    write_zone,
)

from appliances.dns import APPLIANCE
from runtime.ambient import ManualClock
from runtime.testing.harness import start_appliance


def primary_args(tmp_path: Path, zones: Path, *extra: str, port: int = 0) -> list[str]:
    return [
        "--listen",
        f"127.0.0.1:{port}",
        "--state-dir",
        str(tmp_path / "primary"),
        "--zone-dir",
        str(zones),
        *extra,
    ]


def axfr(port: int, zone: str, **kw: object) -> dns.zone.Zone:
    return dns.zone.from_xfr(dns.query.xfr("127.0.0.1", zone, port=port, timeout=5, lifetime=20, **kw))


def ixfr_messages(port: int, zone: str, serial: int) -> list[dns.message.Message]:
    return list(
        dns.query.xfr(
            "127.0.0.1", zone, rdtype=dns.rdatatype.IXFR, serial=serial, port=port, timeout=5, lifetime=20
        )
    )


async def test_axfr_allowed_and_refused(tmp_path: Path) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    write_zone(zones, "big.test.", 1, big_zone_extra(800))  # several 16 KB messages
    async with start_appliance(
        APPLIANCE, primary_args(tmp_path, zones, "--allow-transfer", "127.0.0.1/32"), target="host"
    ) as app:
        port = app.address("tcp").port
        zone = await off_loop(axfr, port, "big.test")
        assert zone.get_rdataset("host799", "TXT") is not None
        assert len(list(zone.iterate_rdatas())) == 3 + 1600 + 1  # SOA, NS, 2 A, 1,600 host records
        kdig = need("kdig")
        out = await run_tool(kdig, "@127.0.0.1", "-p", str(port), "big.test", "AXFR")
        assert "host799.big.test." in out and out.count("SOA") >= 2
        # AXFR over UDP: NOTIMP (RFC 5936 §4.2)
        reply = await off_loop(
            dns.query.udp, dns.message.make_query("big.test", "AXFR"), "127.0.0.1", port=port, timeout=5
        )
        assert reply.rcode() == dns.rcode.NOTIMP
        # a zone we do not serve
        with pytest.raises(dns.query.TransferError) as error:
            await off_loop(axfr, port, "other.test")
        assert error.value.rcode == dns.rcode.NOTAUTH
        assert 'dns_transfers_out_total{kind="axfr"} 2' in app.ctx.metrics.render()

    async with start_appliance(
        APPLIANCE, primary_args(tmp_path, zones, "--allow-transfer", "10.0.0.0/8"), target="host"
    ) as app:
        with pytest.raises(dns.query.TransferError) as error:
            await off_loop(axfr, app.address("tcp").port, "big.test")
        assert error.value.rcode == dns.rcode.REFUSED


async def test_ixfr_after_reload(tmp_path: Path) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    write_zone(zones, "inc.test.", 1, "a A 10.0.0.1\nb A 10.0.0.2\n")
    async with start_appliance(
        APPLIANCE, primary_args(tmp_path, zones, "--allow-transfer", "127.0.0.1"), target="host"
    ) as app:
        port = app.address("tcp").port
        # Nothing newer: our SOA alone (RFC 1995 §2)
        messages = await off_loop(ixfr_messages, port, "inc.test", 1)
        assert [r.rdtype for m in messages for r in m.answer] == [dns.rdatatype.SOA]
        write_zone(zones, "inc.test.", 2, "a A 10.0.0.1\nc A 10.0.0.3\n")
        await app.reload()
        write_zone(zones, "inc.test.", 3, "a A 10.0.0.9\nc A 10.0.0.3\n")
        await app.reload()
        messages = await off_loop(ixfr_messages, port, "inc.test", 1)
        records = [
            (str(r.name), dns.rdatatype.to_text(r.rdtype), str(rd))
            for m in messages
            for r in m.answer
            for rd in r
        ]
        soas = [rec for rec in records if rec[1] == "SOA"]
        assert [s[2].split()[2] for s in soas] == ["3", "1", "2", "2", "3", "3"]
        assert ("b", "A", "10.0.0.2") in records  # deleted in 1 -> 2
        assert ("a", "A", "10.0.0.9") in records  # added in 2 -> 3
        kdig = need("kdig")
        out = await run_tool(kdig, "@127.0.0.1", "-p", str(port), "inc.test", "IXFR=2")
        assert "10.0.0.9" in out and "10.0.0.2" not in out
        # A serial the journal does not know: the whole zone, AXFR style (RFC 1995 §4)
        messages = await off_loop(ixfr_messages, port, "inc.test", 0)
        types = [r.rdtype for m in messages for r in m.answer]
        assert types[0] == types[-1] == dns.rdatatype.SOA and types[1] != dns.rdatatype.SOA


async def test_tsig_transfers(tmp_path: Path) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    write_zone(zones, "signed.test.", 1, big_zone_extra(600))
    args = primary_args(
        tmp_path, zones, "--tsig-key", KEY_OPTION, "--allow-transfer", f"127.0.0.0/8@{KEY_NAME}"
    )
    async with start_appliance(APPLIANCE, args, target="host") as app:
        port = app.address("tcp").port
        # dnspython checks the TSIG of every message of the multi-message answer
        zone = await off_loop(axfr, port, "signed.test", keyring=KEYRING, keyname=KEY_NAME)
        assert zone.get_rdataset("host599", "A") is not None
        with pytest.raises(dns.tsig.PeerBadSignature):
            await off_loop(axfr, port, "signed.test", keyring=WRONG_KEYRING, keyname=KEY_NAME)
        with pytest.raises(dns.tsig.PeerBadKey):
            await off_loop(axfr, port, "signed.test", keyring=OTHER_KEYRING, keyname="other-key.")
        with pytest.raises(dns.query.TransferError) as error:
            await off_loop(axfr, port, "signed.test")  # the rule asks for the key
        assert error.value.rcode == dns.rcode.REFUSED
        # signed ordinary queries get signed answers, over UDP and TCP
        query = dns.message.make_query("www.signed.test", "A")
        query.use_tsig(KEYRING, keyname=KEY_NAME)
        assert (await off_loop(dns.query.udp, query, "127.0.0.1", port=port, timeout=5)).had_tsig
        assert (await tcp(query, port)).had_tsig
        query.use_tsig(WRONG_KEYRING, keyname=KEY_NAME)
        with pytest.raises(dns.tsig.PeerBadSignature):
            await off_loop(dns.query.udp, query, "127.0.0.1", port=port, timeout=5)
        kdig = need("kdig")
        out = await run_tool(
            kdig,
            "@127.0.0.1",
            "-p",
            str(port),
            "-y",
            f"hmac-sha256:xfr-key:{KEY_SECRET}",
            "signed.test",
            "AXFR",
        )
        assert "host599.signed.test." in out and "NOERROR" in out.upper() and "TSIG" in out
        metrics = app.ctx.metrics.render()
        assert 'dns_tsig_errors_total{error="BADSIG"} 2' in metrics
        assert 'dns_tsig_errors_total{error="BADKEY"} 1' in metrics


async def test_notify_triggers_refresh_and_ixfr(tmp_path: Path) -> None:
    """Our secondary, our primary: NOTIFY wakes the secondary (its timers never
    fire: the clock is manual), which pulls AXFR, then IXFR; a restart serves the
    stored copy at once; expiry stops serving."""
    zones = tmp_path / "zones"
    zones.mkdir()
    write_zone(zones, "rep.test.", 1, refresh=3600, retry=600, expire=7200)
    primary_port = free_port()
    clock = ManualClock()
    secondary_args = [
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        str(tmp_path / "secondary"),
        "--tsig-key",
        KEY_OPTION,
        "--secondary",
        f"rep.test=127.0.0.1:{primary_port}@{KEY_NAME}",
    ]
    async with start_appliance(APPLIANCE, secondary_args, target="host", clock=clock) as secondary:
        sport = secondary.address("udp").port
        # the primary is not up yet: the first attempt failed, and nothing is served
        await until(lambda: any("refresh failed" in line for line in secondary.log_lines()))
        assert (await ask("www.rep.test", "A", sport)).rcode() == dns.rcode.REFUSED
        args = primary_args(
            tmp_path,
            zones,
            "--tsig-key",
            KEY_OPTION,
            "--allow-transfer",
            f"127.0.0.1@{KEY_NAME}",
            "--notify",
            f"127.0.0.1:{sport}@{KEY_NAME}",
            port=primary_port,
        )
        async with start_appliance(APPLIANCE, args, target="host", clock=clock) as primary:
            write_zone(zones, "rep.test.", 2, refresh=3600, retry=600, expire=7200)
            await primary.reload()  # -> NOTIFY -> AXFR (nothing held yet)
            assert await until(lambda: _equals(serial_of("rep.test", sport), 2))
            write_zone(zones, "rep.test.", 3, "new A 10.1.1.1\n", refresh=3600, retry=600, expire=7200)
            await primary.reload()  # -> NOTIFY -> IXFR 2 -> 3
            assert await until(lambda: _equals(serial_of("rep.test", sport), 3))
            assert (await ask("new.rep.test", "A", sport)).answer[0][0].address == "10.1.1.1"
            metrics = secondary.ctx.metrics.render()
            assert 'dns_transfers_in_total{kind="axfr"} 1' in metrics
            assert 'dns_transfers_in_total{kind="ixfr"} 1' in metrics
            assert 'dns_notify_received_total{result="accepted"} 2' in metrics
            assert "dns_notify_answered_total 2" in primary.ctx.metrics.render()
            # a NOTIFY from anyone but the primary is refused (RFC 1996 §3.10)
            notify = dns.message.make_query("rep.test", "SOA")
            notify.set_opcode(dns.opcode.NOTIFY)
            reply = await off_loop(
                dns.query.udp, notify, "127.0.0.1", port=sport, timeout=5, source="127.0.0.3"
            )
            assert reply.rcode() == dns.rcode.REFUSED
            # ... and so is an unsigned one from the primary's address, since the zone has a key
            reply = await off_loop(dns.query.udp, notify, "127.0.0.1", port=sport, timeout=5)
            assert reply.rcode() == dns.rcode.REFUSED

    # Restart without the primary: the stored copy is served at once.
    async with start_appliance(APPLIANCE, secondary_args, target="host", clock=clock) as secondary:
        sport = secondary.address("udp").port
        assert await serial_of("rep.test", sport) == 3
        await until(lambda: any("refresh failed" in line for line in secondary.log_lines()))
        # The primary comes back with serial 4 and sends no NOTIFY: the RETRY timer finds it.
        write_zone(zones, "rep.test.", 4, refresh=3600, retry=600, expire=7200)
        quiet = primary_args(
            tmp_path,
            zones,
            "--tsig-key",
            KEY_OPTION,
            "--allow-transfer",
            f"127.0.0.1@{KEY_NAME}",
            port=primary_port,
        )
        async with start_appliance(APPLIANCE, quiet, target="host", clock=clock):
            clock.advance(600)
            assert await until(lambda: _equals(serial_of("rep.test", sport), 4))
        # The primary is gone for good: after EXPIRE the zone is no longer served (RFC 1035 §3.3.13).
        for _ in range(13):
            clock.advance(600)
            await asyncio.sleep(0.05)
        await until(lambda: any("zone expired" in line for line in secondary.log_lines()))
        assert (await ask("www.rep.test", "A", sport)).rcode() == dns.rcode.REFUSED


async def _equals(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


def test_tsig_key_option_errors() -> None:
    from runtime.errors import ConfigError
    from runtime.run import configure

    with pytest.raises(ConfigError, match="--tsig-key"):
        configure(APPLIANCE, ["--tsig-key", "k:hmac-sha999:AAAA"], {})
    with pytest.raises(ConfigError, match="--secondary"):
        configure(APPLIANCE, ["--secondary", "example.org"], {})
    with pytest.raises(ConfigError, match="--allow-transfer"):
        configure(APPLIANCE, ["--allow-transfer", "not-a-prefix"], {})
