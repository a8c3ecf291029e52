"""The DNS appliance over real sockets with real clients (dnspython, kdig):
UDP/TCP, truncation and TCP retry, pipelining, the no-argument demo run,
reload, metrics, query log and response rate limiting."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from server_helpers import ask, need, off_loop, run_tool, tcp, udp, write_zone, zone_text

from appliances.dns import APPLIANCE
from runtime.ambient import ManualClock
from runtime.testing.harness import start_appliance

ROOT = Path(__file__).resolve().parents[2]
BIG_TXT = "".join(f'big TXT "{i:03d} {"x" * 60}"\n' for i in range(30))


def argv(tmp_path: Path, *extra: str) -> list[str]:
    return ["--listen", "127.0.0.1:0", "--state-dir", str(tmp_path / "state"), *extra]


async def test_udp_and_tcp_answers_with_dnspython(tmp_path: Path) -> None:
    async with start_appliance(APPLIANCE, argv(tmp_path), target="host") as app:
        port = app.address("udp").port
        assert app.address("tcp").port == port  # one port for both (RFC 7766 §5)
        reply = await ask("www.example.test", "A", port)
        assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
        assert [dns.rdatatype.to_text(r.rdtype) for r in reply.answer] == ["CNAME", "CNAME", "A"]
        reply = await tcp(dns.message.make_query("nope.example.test", "A"), port)
        assert reply.rcode() == dns.rcode.NXDOMAIN
        # RFC 8482: ANY gets one RRset
        reply = await tcp(dns.message.make_query("example.test", "ANY"), port)
        assert len(reply.answer) == 1
        reply = await ask("example.org", "A", port)
        assert reply.rcode() == dns.rcode.REFUSED


async def test_kdig_udp_tcp(tmp_path: Path) -> None:
    kdig = need("kdig")
    async with start_appliance(APPLIANCE, argv(tmp_path), target="host") as app:
        port = str(app.address("udp").port)
        out = await run_tool(kdig, "@127.0.0.1", "-p", port, "edge.example.test", "AAAA", "+short")
        assert out.strip() == "2001:db8::80"
        out = await run_tool(kdig, "+tcp", "@127.0.0.1", "-p", port, "example.test", "MX")
        assert "status: NOERROR" in out and "TCP" in out and "mail.example.test." in out


async def test_ipv6_listen(tmp_path: Path) -> None:
    async with start_appliance(
        APPLIANCE, ["--listen", "[::1]:0", "--state-dir", str(tmp_path)], target="host"
    ) as app:
        port = app.address("udp").port
        reply = await udp(dns.message.make_query("ns1.example.test", "A"), port, host="::1")
        assert reply.answer[0][0].address == "192.0.2.53"
        reply = await tcp(dns.message.make_query("ns1.example.test", "AAAA"), port, host="::1")
        assert reply.answer[0][0].address == "2001:db8::53"


async def test_truncation_then_tcp_retry(tmp_path: Path) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    write_zone(zones, "big.test.", 1, BIG_TXT)
    async with start_appliance(APPLIANCE, argv(tmp_path, "--zone-dir", str(zones)), target="host") as app:
        port = app.address("udp").port
        query = dns.message.make_query("big.big.test", "TXT")
        plain = await udp(query, port)
        assert plain.flags & dns.flags.TC and not plain.answer
        reply, used_tcp = await off_loop(
            dns.query.udp_with_fallback, query, "127.0.0.1", port=port, timeout=5
        )
        assert used_tcp and len(reply.answer[0]) == 30
        kdig = need("kdig")
        out = await run_tool(kdig, "@127.0.0.1", "-p", str(port), "+noedns", "big.big.test", "TXT")
        # kdig sees TC over UDP and asks again over TCP
        assert "TCP" in out and out.count("TXT\t") + out.count(" TXT ") >= 30, out


async def test_tcp_pipelining(tmp_path: Path) -> None:
    async with start_appliance(APPLIANCE, argv(tmp_path), target="host") as app:
        port = app.address("tcp").port
        names = ["www", "mail", "ns1", "nope", "edge", "x.apps", "a.b.deep", "chat"]
        queries = [dns.message.make_query(f"{n}.example.test", "A") for n in names]
        wire = b"".join(len(w).to_bytes(2, "big") + w for w in (q.to_wire() for q in queries))

        def exchange() -> list[dns.message.Message]:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(wire)  # all queries in one write
                return [dns.query.receive_tcp(sock, expiration=None)[0] for _ in queries]

        replies = await off_loop(exchange)
        assert [r.id for r in replies] == [q.id for q in queries]
        assert [dns.rcode.to_text(r.rcode()) for r in replies].count("NXDOMAIN") == 1
        assert all(r.question[0].name == q.question[0].name for r, q in zip(replies, queries, strict=True))


async def test_tcp_garbage_and_idle_close(tmp_path: Path) -> None:
    async with start_appliance(APPLIANCE, argv(tmp_path, "--idle-timeout", "0.2"), target="host") as app:
        port = app.address("tcp").port

        def exchange() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"\x00\x05hello" + b"\x00\x0c" + bytes(12))
                data = b""
                while chunk := sock.recv(4096):  # the server closes the idle connection
                    data += chunk
                return data

        data = await off_loop(exchange)
        # "hello" is too short to answer; the empty header gets FORMERR (QDCOUNT 0)
        assert len(data) >= 14 and data[2 + 3] & 0xF == dns.rcode.FORMERR


async def test_default_run_as_subprocess(tmp_path: Path) -> None:
    """``python -m appliances.dns`` with no zone arguments serves the embedded demo."""
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "appliances.dns",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        ready: dict[str, str] = {}
        for _ in range(20):
            line = await asyncio.wait_for(process.stderr.readline(), 30)
            assert line, "the appliance exited before it was ready"
            record = json.loads(line)
            if record["msg"] == "ready":
                ready = record
                break
        assert ready["zones"] == "example.test."
        udp_part = next(p for p in ready["listening"].split(",") if p.startswith("udp/"))
        port = int(udp_part.rsplit(":", 1)[1])
        reply = await ask("mail.example.test", "A", port)
        assert reply.answer[0][0].address == "192.0.2.25"
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0


async def test_zone_file_option_and_bad_zone_not_served(tmp_path: Path) -> None:
    good = write_zone(tmp_path, "good.test.", 3)
    bad = tmp_path / "bad.test.zone"
    bad.write_text(zone_text("bad.test.", 1, "oops A 999.1.1.1\n"))
    # No $ORIGIN: the origin comes from the file name.
    named = tmp_path / "named.test.zone"
    named.write_text("@ 300 SOA ns1 h 5 1 1 100 1\n@ 300 NS ns1\nns1 300 A 192.0.2.9\n")
    args = argv(tmp_path, "--zone", str(good), "--zone", str(bad), "--zone", str(named))
    async with start_appliance(APPLIANCE, args, target="host") as app:
        port = app.address("udp").port
        assert (await ask("www.good.test", "A", port)).answer
        assert (await ask("ns1.named.test", "A", port)).answer[0][0].address == "192.0.2.9"
        assert (await ask("www.bad.test", "A", port)).rcode() == dns.rcode.REFUSED
        assert (await ask("www.example.test", "A", port)).rcode() == dns.rcode.REFUSED  # no demo
        errors = [line for line in app.log_lines() if "zone error" in line]
        assert errors and "bad.test.zone:7" in errors[0]


async def test_reload_is_atomic_and_keeps_broken_zone(tmp_path: Path) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    write_zone(zones, "one.test.", 1)
    write_zone(zones, "two.test.", 1)
    async with start_appliance(APPLIANCE, argv(tmp_path, "--zone-dir", str(zones)), target="host") as app:
        port = app.address("udp").port
        assert (await ask("www.one.test", "A", port)).answer[0][0].address == "192.0.2.3"
        write_zone(zones, "one.test.", 2)
        (zones / "two.test.zone").write_text(zone_text("two.test.", 2, "broken IN A\n"))
        write_zone(zones, "three.test.", 1)
        assert await app.reload() == []
        assert (await ask("www.one.test", "A", port)).answer[0][0].address == "192.0.2.4"
        # the broken file keeps the version loaded before
        assert (await ask("www.two.test", "A", port)).answer[0][0].address == "192.0.2.3"
        assert (await ask("www.three.test", "A", port)).answer
        lines = "\n".join(app.log_lines())
        assert "two.test.zone:7" in lines and "previous version stays served" in lines
        (zones / "one.test.zone").unlink()
        await app.reload()
        assert (await ask("www.one.test", "A", port)).rcode() == dns.rcode.REFUSED


async def test_metrics_and_query_log(tmp_path: Path) -> None:
    async with start_appliance(APPLIANCE, argv(tmp_path, "--query-log"), target="host") as app:
        port = app.address("udp").port
        await ask("www.example.test", "A", port)
        await ask("nope.example.test", "AAAA", port)
        await tcp(dns.message.make_query("example.test", "MX"), port)
        text = app.ctx.metrics.render()
        assert 'dns_queries_total{qtype="A"} 1' in text
        assert 'dns_queries_total{qtype="AAAA"} 1' in text
        assert 'dns_responses_total{rcode="NXDOMAIN"} 1' in text
        assert 'dns_responses_total{rcode="NOERROR"} 2' in text
        logged = [line for line in app.log_lines() if "dns.query" in line]
        assert len(logged) == 3 and "qname=nope.example.test." in logged[1] and "proto=tcp" in logged[2]


async def test_rate_limiting_from_non_exempt_source(tmp_path: Path) -> None:
    clock = ManualClock()  # time stands still: the bucket never refills
    args = argv(tmp_path, "--rrl-rate", "5", "--rrl-exempt", "127.0.0.1/32")
    async with start_appliance(APPLIANCE, args, target="host", clock=clock) as app:
        port = app.address("udp").port
        query = dns.message.make_query("www.example.test", "A")

        def flood() -> tuple[int, int]:
            full = truncated = 0
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind(("127.0.0.2", 0))
                sock.settimeout(5)
                for _ in range(50):
                    sock.sendto(query.to_wire(), ("127.0.0.1", port))
                # 5 answers, then 45 limited: every 2nd of them slips (TC=1), 22 in all
                for _ in range(27):
                    reply = dns.message.from_wire(sock.recv(4096))
                    if reply.flags & dns.flags.TC:
                        assert not reply.answer
                        truncated += 1
                    else:
                        full += 1
            return full, truncated

        assert await off_loop(flood) == (5, 22)
        server_limiter = app.ctx.metrics.render()
        assert 'dns_rrl_total{action="dropped"} 23' in server_limiter
        assert 'dns_rrl_total{action="slipped"} 22' in server_limiter
        # the exempt source is never limited, and a slipped client gets its answer over TCP
        for _ in range(30):
            assert (await ask("www.example.test", "A", port)).answer

        def retry_from_limited() -> tuple[dns.message.Message, bool]:
            return dns.query.udp_with_fallback(query, "127.0.0.1", port=port, timeout=5, source="127.0.0.2")

        reply, used_tcp = await off_loop(retry_from_limited)
        assert reply.answer and used_tcp


@pytest.mark.parametrize("flag", ["--rrl-rate=0"])
async def test_rate_limiting_off(tmp_path: Path, flag: str) -> None:
    async with start_appliance(
        APPLIANCE, argv(tmp_path, flag, "--rrl-exempt", "127.0.0.1/32"), target="host", clock=ManualClock()
    ) as app:
        port = app.address("udp").port
        for _ in range(40):
            assert (await ask("www.example.test", "A", port, source="127.0.0.2")).answer
