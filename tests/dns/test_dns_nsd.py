"""Differential test: the same zone files in NSD and in our appliance, a few
thousand generated queries to both, answers compared (rcode, flags, EDNS, and
each section as a set of records, names compared case-insensitively).

NSD runs with ``minimal-responses: yes``.  Every difference that remains is
deliberate, and ``deliberate()`` below names each with its reason; a difference
it does not explain fails the test:

1. NSD's default (``minimal-responses: no``) puts the apex NS RRset in the
   authority section of positive answers; we give minimal responses (smaller
   answers, less truncation, nothing a resolver needs).  NSD is run with
   ``minimal-responses: yes`` here, so this one does not show.
2. With ``minimal-responses: yes`` NSD also leaves out the addresses of MX and
   SRV targets from the additional section; we keep them (RFC 1035 §3.3.9 and
   RFC 2782 ask for them: they save the resolver a round trip).
3. NSD synthesises a CNAME from a DNAME (RFC 6672 §3.1) for names below it; we
   answer the DNAME alone with NOERROR and leave the rewrite to the resolver
   (every resolver since RFC 6672 understands DNAME; synthesis on the
   authoritative side is what the core chose not to do).
4. ANY: we answer with one RRset (RFC 8482 §4.2); NSD (``refuse-any: no``)
   returns every RRset at the name, except at the apex where it returns the SOA
   alone, while we pick the first RRset of the name.
5. Messages with trailing garbage after the last record: NSD answers them, we
   answer FORMERR (RFC 1035 §4.1.1: a message we cannot interpret).
6. FORMERR answers: NSD sends them with an empty question section, we echo the
   question when it parsed (RFC 6891 §7 and common practice), which helps the
   client match the answer.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from dns_helpers import DATA, demo_zones
from peers import run_nsd
from server_helpers import off_loop

from appliances.dns import APPLIANCE, names
from runtime.testing.harness import start_appliance

QUERIES = 3000
TYPES = [
    "A",
    "AAAA",
    "MX",
    "TXT",
    "NS",
    "SOA",
    "CNAME",
    "SRV",
    "DS",
    "PTR",
    "NAPTR",
    "HTTPS",
    "CAA",
    "SSHFP",
    "TLSA",
    "DNAME",
    "TYPE65534",
    "ANY",
    "RRSIG",
    "NSEC",
]
ORIGIN = "example.test."
DNAME_OWNERS = ("old.example.test.",)


def generate(seed: int = 8482) -> list[dns.message.Message]:
    rng = random.Random(seed)
    zone = demo_zones()[0]
    owners = [names.to_text(owner) for owner in zone.nodes]
    special = [
        "x.apps.example.test.",
        "deep.x.apps.example.test.",
        "b.deep.example.test.",
        "host.child.example.test.",
        "child.example.test.",
        "a.old.example.test.",
        "nope.example.test.",
        "a.nope.example.test.",
        "www.example.org.",
        "example.test.",
    ]
    queries = []
    for _ in range(QUERIES):
        roll = rng.random()
        if roll < 0.55:
            name = rng.choice(owners)
        elif roll < 0.75:
            name = rng.choice(special)
        else:
            name = f"n{rng.randrange(10**6)}." + rng.choice(
                [
                    ORIGIN,
                    "apps.example.test.",
                    "child.example.test.",
                    "b.deep.example.test.",
                    "deep.example.test.",
                ]
            )
        name = "".join(c.upper() if rng.random() < 0.3 else c for c in name)  # case variations
        edns = rng.choice([None, 0, 0, 0])
        query = dns.message.make_query(
            name,
            rng.choice(TYPES),
            use_edns=edns,
            payload=rng.choice([512, 1232, 4096]) if edns is not None else 1232,
            want_dnssec=edns is not None and rng.random() < 0.3,
        )
        query.flags &= ~dns.flags.RD if rng.random() < 0.5 else 0xFFFF
        queries.append(query)
    return queries


def shape(reply: dns.message.Message) -> dict[str, object]:
    def records(section: list[dns.rrset.RRset]) -> frozenset[str]:
        return frozenset(line.lower() for rrset in section for line in rrset.to_text().splitlines())

    return {
        "rcode": dns.rcode.to_text(reply.rcode()),
        "flags": dns.flags.to_text(reply.flags),
        "edns": (
            reply.edns,
            reply.payload if reply.edns >= 0 else None,
            bool(reply.ednsflags & dns.flags.DO),
        ),
        "answer": records(reply.answer),
        "authority": records(reply.authority),
        "additional": records(reply.additional),
    }


def deliberate(query: dns.message.Message, ours: dict[str, object], nsd: dict[str, object]) -> str | None:
    """The reason for a known, deliberate difference, or None."""
    qname = query.question[0].name
    qtype = query.question[0].rdtype
    if any(
        qname.is_subdomain(dns.name.from_text(o)) and qname != dns.name.from_text(o) for o in DNAME_OWNERS
    ):
        answer = nsd["answer"]
        assert isinstance(answer, frozenset)
        if ours["answer"] <= answer and any(" cname " in line for line in answer):  # type: ignore[operator]
            return "DNAME: NSD synthesises the CNAME, we send the DNAME alone"
    same = {key for key in ours if ours[key] == nsd[key]}
    if qtype == dns.rdatatype.ANY and same >= {"rcode", "flags", "edns"} and ours["rcode"] == "NOERROR":
        if len({line.split()[3] for line in ours["answer"]}) == 1:  # type: ignore[attr-defined]
            return (
                "ANY: one RRset (RFC 8482 §4.2); NSD sends all of them, or another one (the SOA at the apex)"
            )
    if same == {"rcode", "flags", "edns", "answer", "authority"} and qtype in (
        dns.rdatatype.MX,
        dns.rdatatype.SRV,
    ):
        extra = ours["additional"] - nsd["additional"]  # type: ignore[operator]
        if not nsd["additional"] - ours["additional"] and all(  # type: ignore[operator]
            line.split()[3] in ("a", "aaaa") for line in extra
        ):
            return "MX/SRV target addresses in additional (RFC 1035 §3.3.9, RFC 2782); NSD minimal omits them"
    return None


@pytest.mark.slow
async def test_same_answers_as_nsd(tmp_path: Path) -> None:
    zonefiles = tmp_path / "zones"
    zonefiles.mkdir()
    for path in DATA.iterdir():
        (zonefiles / path.name).write_bytes(path.read_bytes())
    zone_clause = f"name: example.test\nzonefile: {zonefiles}/example.test.zone"
    queries = generate()
    args = ["--listen", "127.0.0.1:0", "--state-dir", str(tmp_path / "state"), "--zone-dir", str(zonefiles)]
    async with (
        run_nsd(tmp_path / "nsd", [zone_clause], probe="example.test", zonesdir=zonefiles) as nsd,
        start_appliance(APPLIANCE, args, target="host") as app,
    ):
        port = app.address("udp").port

        def ask_both() -> list[tuple[dns.message.Message, dns.message.Message, dns.message.Message]]:
            out = []
            for query in queries:
                ours = dns.query.udp(query, "127.0.0.1", port=port, timeout=5)
                theirs = dns.query.udp(query, "127.0.0.1", port=nsd.port, timeout=5)
                out.append((query, ours, theirs))
            return out

        results = await off_loop(ask_both)

    reasons: Counter[str] = Counter()
    unexplained = []
    for query, ours, theirs in results:
        a, b = shape(ours), shape(theirs)
        if a == b:
            reasons["same"] += 1
            continue
        reason = deliberate(query, a, b)
        if reason is None:
            diff = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
            unexplained.append(f"{query.question[0]} edns={query.edns} do={query.want_dnssec()}: {diff}")
        else:
            reasons[reason] += 1
    assert not unexplained, f"{len(unexplained)} unexplained differences, e.g.:\n" + "\n".join(
        unexplained[:10]
    )
    assert reasons["same"] > QUERIES * 0.8, reasons


@pytest.mark.slow
async def test_malformed_queries_differ_on_purpose(tmp_path: Path) -> None:
    """Differences 5 and 6 of the module docstring, shown."""
    zonefiles = tmp_path / "zones"
    zonefiles.mkdir()
    for path in DATA.iterdir():
        (zonefiles / path.name).write_bytes(path.read_bytes())
    zone_clause = f"name: example.test\nzonefile: {zonefiles}/example.test.zone"
    args = ["--listen", "127.0.0.1:0", "--state-dir", str(tmp_path / "state"), "--zone-dir", str(zonefiles)]
    async with (
        run_nsd(tmp_path / "nsd", [zone_clause], probe="example.test", zonesdir=zonefiles) as nsd,
        start_appliance(APPLIANCE, args, target="host") as app,
    ):
        port = app.address("udp").port
        garbage = dns.message.make_query("www.example.test", "A").to_wire() + b"\x01\x02\x03"

        def raw(where: int) -> bytes:
            import socket

            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(5)
                sock.sendto(garbage, ("127.0.0.1", where))
                return sock.recv(4096)

        ours, theirs = await off_loop(raw, port), await off_loop(raw, nsd.port)
        assert ours[3] & 0xF == dns.rcode.FORMERR and ours[4:6] == b"\x00\x01"  # question echoed
        assert theirs[3] & 0xF in (dns.rcode.NOERROR, dns.rcode.FORMERR)
        if theirs[3] & 0xF == dns.rcode.FORMERR:
            assert theirs[4:6] == b"\x00\x00"  # NSD: FORMERR with an empty question
