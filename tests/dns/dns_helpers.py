"""Shared helpers for the DNS core tests: the demo zone, and queries through dnspython."""

from __future__ import annotations

from pathlib import Path

import dns.flags
import dns.message
import dns.rdatatype
import dns.rrset

from appliances.dns.authority import Authority
from appliances.dns.loader import load_zones
from appliances.dns.zone import Zone, load_zone
from runtime.kv.memory import MemoryData

DATA = Path(__file__).resolve().parents[2] / "appliances" / "dns" / "data"

SMALL = """\
$ORIGIN small.test.
$TTL 300
@        SOA  ns1 hostmaster 7 3600 600 86400 60
@        NS   ns1
ns1      A    192.0.2.1
www      A    192.0.2.2
"""


def demo_data() -> MemoryData:
    return MemoryData({p.name: p.read_bytes() for p in DATA.iterdir() if p.is_file()})


def demo_zones() -> tuple[Zone, ...]:
    return load_zones(demo_data()).zones


def demo_authority(**kwargs: object) -> Authority:
    return Authority(demo_zones(), **kwargs)  # type: ignore[arg-type]


def zone(text: str, origin: str | None = None) -> Zone:
    return load_zone(text, origin).zone


def query(name: str, rdtype: str | int = "A", **kwargs: object) -> dns.message.QueryMessage:
    return dns.message.make_query(name, rdtype, **kwargs)  # type: ignore[arg-type]


def ask(
    auth: Authority, name: str, rdtype: str | int = "A", *, tcp: bool = False, **kwargs: object
) -> dns.message.Message:
    q = query(name, rdtype, **kwargs)
    raw = auth.handle(q.to_wire(), tcp=tcp)
    assert raw is not None
    reply = dns.message.from_wire(raw)
    assert reply.id == q.id
    return reply


def texts(section: list[dns.rrset.RRset]) -> set[str]:
    """Every record of a section as 'owner ttl IN TYPE rdata', lowercase."""
    return {line.lower() for rrset in section for line in rrset.to_text().splitlines()}


def has_flag(message: dns.message.Message, flag: str) -> bool:
    return bool(message.flags & dns.flags.from_text(flag))


def rtypes(section: list[dns.rrset.RRset]) -> list[str]:
    return [dns.rdatatype.to_text(r.rdtype) for r in section]
