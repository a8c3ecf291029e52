"""Zone checks at load time, the index, and loading from a data device."""

from __future__ import annotations

import pytest
from dns_helpers import demo_data

from appliances.dns import names
from appliances.dns.errors import ZoneError
from appliances.dns.loader import load_zones
from appliances.dns.zone import load_zone
from runtime.kv.memory import MemoryData

HEAD = "$ORIGIN z.test.\n$TTL 300\n@ SOA ns1 hm 1 3600 600 86400 60\n@ NS ns1\nns1 A 192.0.2.1\n"


def problems(text: str, origin: str | None = "z.test.") -> list[str]:
    with pytest.raises(ZoneError) as info:
        load_zone(text, origin, filename="z.zone")
    return [str(p) for p in info.value.problems]


def warnings(text: str) -> list[str]:
    return [str(w) for w in load_zone(text, "z.test.", filename="z.zone").warnings]


def test_missing_soa_and_ns() -> None:
    assert problems("$ORIGIN z.test.\n$TTL 1\n@ NS ns1\nns1 A 192.0.2.1\n") == [
        "z.zone:3: no SOA at the apex z.test."
    ]
    assert problems("$ORIGIN z.test.\n$TTL 1\n@ SOA a b 1 2 3 4 5\n") == [
        "z.zone:3: no NS records at the apex (RFC 1034 §4.2.1)"
    ]
    assert problems("$TTL 1\na.b. A 192.0.2.1\n", None) == [
        "z.zone:2: no SOA record: the zone has no apex (RFC 1035 §5.2)"
    ]


def test_soa_rules() -> None:
    assert problems(HEAD + "@ SOA ns2 hm 2 3600 600 86400 60\n") == [
        "z.zone:6: more than one SOA record (RFC 1035 §5.2)"
    ]
    assert problems(HEAD + "sub SOA ns1 hm 1 3600 600 86400 60\n") == [
        "z.zone:6: SOA at sub.z.test., not at the apex"
    ]


def test_origin_from_first_soa() -> None:
    zone = load_zone(HEAD, None).zone
    assert zone.name == "z.test." and zone.serial == 1


def test_records_outside_the_zone() -> None:
    assert problems(HEAD + "www.other.test. A 192.0.2.9\n$ORIGIN test.\nq A 192.0.2.8\n") == [
        "z.zone:6: www.other.test. is outside the zone z.test.",
        "z.zone:8: q.test. is outside the zone z.test.",
    ]


def test_cname_and_other_data() -> None:
    assert problems(HEAD + "www CNAME a\nwww A 192.0.2.3\n") == [
        "z.zone:6: CNAME at www.z.test. next to other data (A at z.zone:7); RFC 1034 §3.6.2, RFC 2181 §10.1"
    ]
    assert problems(HEAD + "www CNAME a\nwww CNAME b\n") == [
        "z.zone:7: more than one CNAME at one name (RFC 1034 §3.6.2)"
    ]
    assert problems(HEAD + "@ CNAME x\n")[0].startswith("z.zone:6: CNAME at z.test. next to other data")
    assert problems(HEAD + "d DNAME a\nd DNAME b\n") == [
        "z.zone:7: more than one DNAME at one name (RFC 6672 §2.4)"
    ]


def test_all_errors_together() -> None:
    got = problems(HEAD + "x A bad\nwww CNAME a\nwww TXT t\nfar.example. A 192.0.2.1\n")
    assert len(got) == 3 and got[0] == "z.zone:6: bad IPv4 address 'bad'"


def test_warnings() -> None:
    text = HEAD + (
        "dup A 192.0.2.5\ndup A 192.0.2.5\n"
        "ttl 100 A 192.0.2.6\nttl 50 A 192.0.2.7\n"
        "child NS ns.child\nchild NS ns2.child\nns.child A 192.0.2.10\n"
        "child TXT hidden\nfoo.child A 192.0.2.11\n"
        "@ NS nsx\n"
    )
    assert warnings(text) == [
        "z.zone:7: duplicate record dropped (RFC 2181 §5)",
        "z.zone:15: NS target nsx.z.test. is in the zone but has no A/AAAA (missing glue)",
        "z.zone:11: NS target ns2.child.z.test. is in the zone but has no A/AAAA (missing glue)",
        "z.zone:13: TXT at child.z.test. is hidden by the delegation at child.z.test. and never served",
        "z.zone:14: A at foo.child.z.test. is hidden by the delegation at child.z.test. and never served",
        "z.zone:9: TTL 50 differs from 100 in the same RRset; using the lowest (RFC 2181 §5.2)",
    ]
    zone = load_zone(text, "z.test.").zone
    key = names.from_text("ttl.z.test.", None)
    assert zone.nodes[key][1].ttl == 50
    assert len(zone.nodes[names.from_text("dup.z.test.", None)][1].rdatas) == 1


def test_index() -> None:
    zone = load_zone(
        HEAD + "a.b.c A 192.0.2.1\n*.w A 192.0.2.2\nkid NS ns.kid\nns.kid A 192.0.2.3\n", "Z.TEST"
    ).zone
    key = names.from_text
    assert zone.origin == key("z.test.", None)
    assert zone.nodes[key("b.c.z.test.", None)] == {}  # empty non-terminals
    assert zone.nodes[key("c.z.test.", None)] == {}
    assert zone.cuts == {key("kid.z.test.", None)}
    assert zone.wildcard_parents == {key("w.z.test.", None)}
    assert zone.negative_soa.ttl == 60 and zone.soa.ttl == 300  # RFC 2308 §3
    assert sum(1 for _ in zone.rrsets()) == 7


def test_load_zones_from_data_device_with_includes() -> None:
    loaded = load_zones(demo_data())
    assert [z.name for z in loaded.zones] == ["example.test."]
    assert loaded.warnings == ()
    assert names.from_text("printer.example.test.", None) in loaded.zones[0].nodes


def test_includes_are_confined() -> None:
    data = MemoryData(
        {
            "zones/a.test.zone": HEAD.replace("z.test.", "a.test.").encode() + b"$INCLUDE ../secret\n",
            "secret": b"x A 192.0.2.1\n",
        }
    )
    with pytest.raises(ZoneError) as info:
        load_zones(data, "zones")
    assert [str(p) for p in info.value.problems] == [
        "zones/a.test.zone:6: cannot include '../secret': outside the zone's directory"
    ]
    b_head = HEAD.replace("z.test.", "b.test.").encode()
    data = MemoryData(
        {"zones/sub/x": b"", "zones/b.test.zone": b_head + b"$INCLUDE sub/x\n$INCLUDE /etc/passwd\n"}
    )
    with pytest.raises(ZoneError) as info:
        load_zones(data, "zones")
    assert [str(p) for p in info.value.problems] == [
        "zones/b.test.zone:7: cannot include '/etc/passwd': outside the zone's directory"
    ]


def test_zone_set_errors_name_every_file() -> None:
    data = MemoryData({"a.test.zone": b"$TTL 1\n@ A bad\n", "b.test.zone": b"$TTL 1\n@ NS x.\n"})
    with pytest.raises(ZoneError) as info:
        load_zones(data)
    assert [str(p) for p in info.value.problems] == [
        "a.test.zone:2: bad IPv4 address 'bad'",
        "a.test.zone:1: no SOA at the apex a.test.",
        "a.test.zone:1: no NS records at the apex (RFC 1034 §4.2.1)",
        "b.test.zone:2: no SOA at the apex b.test.",
    ]
