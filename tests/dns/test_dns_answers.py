"""Answers from the demo zone (and small extra zones), checked with dnspython's parser."""

from __future__ import annotations

import dns.rcode
from dns_helpers import ask, demo_authority, demo_zones, has_flag, rtypes, texts, zone

from appliances.dns.authority import Authority
from appliances.dns.lookup import MAX_CHAIN

AUTH = demo_authority()
SOA_NEG = (
    "example.test. 300 in soa ns1.example.test. hostmaster.example.test. 2024060101 7200 900 1209600 300"
)


def test_flags_case_and_answer() -> None:
    r = ask(AUTH, "EdGe.Example.TEST", "A")
    assert r.rcode() == dns.rcode.NOERROR
    assert has_flag(r, "QR") and has_flag(r, "AA") and has_flag(r, "RD") and not has_flag(r, "RA")
    assert str(r.question[0].name) == "EdGe.Example.TEST."
    assert [str(rr.name) for rr in r.answer] == ["EdGe.Example.TEST."]  # RFC 4343 §4.1
    assert texts(r.answer) == {"edge.example.test. 3600 in a 192.0.2.80"}
    assert r.authority == [] and r.additional == []
    r = ask(AUTH, "edge.example.test", "A", flags=0)
    assert not has_flag(r, "RD")


def test_nxdomain_with_negative_soa() -> None:
    r = ask(AUTH, "nope.example.test", "AAAA")
    assert r.rcode() == dns.rcode.NXDOMAIN and has_flag(r, "AA")
    assert r.answer == []
    assert texts(r.authority) == {SOA_NEG}  # TTL min(3600, 300): RFC 2308 §3


def test_nodata() -> None:
    r = ask(AUTH, "edge.example.test", "MX")
    assert r.rcode() == dns.rcode.NOERROR and has_flag(r, "AA") and r.answer == []
    assert texts(r.authority) == {SOA_NEG}


def test_empty_non_terminals_are_nodata() -> None:
    for name in ("b.deep.example.test", "deep.example.test", "_tcp.example.test"):
        r = ask(AUTH, name, "A")
        assert r.rcode() == dns.rcode.NOERROR, name
        assert r.answer == [] and texts(r.authority) == {SOA_NEG}
    assert ask(AUTH, "x.b.deep.example.test").rcode() == dns.rcode.NXDOMAIN


def test_cname_chain() -> None:
    r = ask(AUTH, "www.example.test", "AAAA")
    assert texts(r.answer) == {
        "www.example.test. 3600 in cname web.example.test.",
        "web.example.test. 3600 in cname edge.example.test.",
        "edge.example.test. 3600 in aaaa 2001:db8::80",
    }
    assert rtypes(r.answer) == ["CNAME", "CNAME", "AAAA"]
    r = ask(AUTH, "www.example.test", "CNAME")
    assert texts(r.answer) == {"www.example.test. 3600 in cname web.example.test."}
    r = ask(AUTH, "www.example.test", "MX")  # chain ends in NODATA
    assert r.rcode() == dns.rcode.NOERROR and len(r.answer) == 2 and texts(r.authority) == {SOA_NEG}


OTHER = """\
$ORIGIN other.test.
$TTL 60
@ SOA ns hm 5 3600 600 86400 30
@ NS ns.example.test.
into CNAME www.example.test.
dangling CNAME missing.example.test.
away CNAME elsewhere.example.net.
loop1 CNAME loop2
loop2 CNAME loop1
self CNAME self
*.wild CNAME edge.example.test.
*.wl CNAME x.wl
"""


def chain_auth() -> Authority:
    long_chain = "".join(f"c{i} CNAME c{i + 1}\n" for i in range(20)) + "c20 A 192.0.2.99\n"
    return Authority([*demo_zones(), zone(OTHER + long_chain)])


def test_cname_across_zones_and_rfc6604() -> None:
    auth = chain_auth()
    r = ask(auth, "into.other.test", "A")
    assert r.rcode() == dns.rcode.NOERROR and has_flag(r, "AA")
    assert rtypes(r.answer) == ["CNAME", "CNAME", "CNAME", "A"]
    r = ask(auth, "dangling.other.test", "A")
    assert r.rcode() == dns.rcode.NXDOMAIN  # the last name's rcode (RFC 6604 §3)
    assert texts(r.answer) == {"dangling.other.test. 60 in cname missing.example.test."}
    assert texts(r.authority) == {SOA_NEG}  # the SOA of the zone the chain ended in
    r = ask(auth, "away.other.test", "A")  # leaves our zones: stop there
    assert r.rcode() == dns.rcode.NOERROR and rtypes(r.answer) == ["CNAME"] and r.authority == []


def test_cname_loops_and_length_bound() -> None:
    auth = chain_auth()
    r = ask(auth, "loop1.other.test", "A")
    assert r.rcode() == dns.rcode.NOERROR and rtypes(r.answer) == ["CNAME", "CNAME"]
    r = ask(auth, "self.other.test", "A")
    assert rtypes(r.answer) == ["CNAME"]
    r = ask(auth, "c0.other.test", "A")
    assert rtypes(r.answer) == ["CNAME"] * (MAX_CHAIN + 1)


def test_wildcards() -> None:
    r = ask(AUTH, "Foo.apps.example.test", "A")
    assert r.rcode() == dns.rcode.NOERROR and has_flag(r, "AA")
    assert [str(rr.name) for rr in r.answer] == ["Foo.apps.example.test."]  # owner = qname (RFC 4592 §3.3.1)
    assert texts(r.answer) == {"foo.apps.example.test. 3600 in a 192.0.2.100"}
    r = ask(AUTH, "a.b.c.apps.example.test", "TXT")  # several labels below the closest encloser
    assert texts(r.answer) == {'a.b.c.apps.example.test. 3600 in txt "served by the wildcard"'}
    r = ask(AUTH, "foo.apps.example.test", "MX")  # wildcard NODATA
    assert r.rcode() == dns.rcode.NOERROR and r.answer == [] and texts(r.authority) == {SOA_NEG}
    r = ask(AUTH, "static.apps.example.test", "A")  # exists: no wildcard
    assert rtypes(r.answer) == ["CNAME", "CNAME", "A"]
    r = ask(AUTH, "x.static.apps.example.test", "A")  # closest encloser is static.apps: no *.static.apps
    assert r.rcode() == dns.rcode.NXDOMAIN
    r = ask(AUTH, "*.apps.example.test", "A")
    assert texts(r.answer) == {"*.apps.example.test. 3600 in a 192.0.2.100"}


def test_wildcard_blocked_by_empty_non_terminal() -> None:
    auth = Authority(
        [
            zone(
                "$ORIGIN w.test.\n$TTL 1\n@ SOA ns hm 1 1 1 1 1\n@ NS ns\nns A 192.0.2.1\n"
                "* A 192.0.2.2\nx.ent A 192.0.2.3\n"
            )
        ]
    )
    assert ask(auth, "anything.w.test").rcode() == dns.rcode.NOERROR
    r = ask(auth, "ent.w.test")  # exists (empty non-terminal): no synthesis, NODATA
    assert r.rcode() == dns.rcode.NOERROR and r.answer == []
    assert ask(auth, "y.ent.w.test").rcode() == dns.rcode.NXDOMAIN  # closest encloser ent.w.test has no *


def test_wildcard_cname() -> None:
    auth = chain_auth()
    r = ask(auth, "Anything.wild.other.test", "A")
    assert next(str(rr.name) for rr in r.answer) == "Anything.wild.other.test."
    assert rtypes(r.answer) == ["CNAME", "A"]
    r = ask(auth, "q.wl.other.test", "A")  # wildcard CNAME into itself: stops, x.wl repeats
    assert rtypes(r.answer) == ["CNAME", "CNAME"]
    r = ask(auth, "x.wl.other.test", "A")  # the chain comes back to the question name
    assert rtypes(r.answer) == ["CNAME"]


def test_referrals() -> None:
    for name, rdtype in (
        ("x.child.example.test", "A"),
        ("child.example.test", "A"),
        ("child.example.test", "NS"),
        ("ns1.child.example.test", "A"),
        ("deep.x.child.example.test", "DS"),
    ):
        r = ask(AUTH, name, rdtype)
        assert r.rcode() == dns.rcode.NOERROR, name
        assert not has_flag(r, "AA") and r.answer == []
        assert texts(r.authority) == {
            "child.example.test. 3600 in ns ns1.child.example.test.",
            "child.example.test. 3600 in ns ns.other.invalid.",
        }
        assert texts(r.additional) == {"ns1.child.example.test. 3600 in a 192.0.2.153"}


def test_ds_at_the_cut_is_parent_side() -> None:
    r = ask(AUTH, "child.example.test", "DS")
    assert has_flag(r, "AA") and rtypes(r.answer) == ["DS"]
    auth = Authority(
        [
            zone(
                "$ORIGIN p.test.\n$TTL 1\n@ SOA ns hm 1 1 1 1 1\n@ NS ns\nns A 192.0.2.1\n"
                "kid NS ns.kid\nns.kid A 192.0.2.2\n"
            )
        ]
    )
    r = ask(auth, "kid.p.test", "DS")
    assert r.rcode() == dns.rcode.NOERROR and has_flag(r, "AA") and r.answer == []
    assert rtypes(r.authority) == ["SOA"]


def test_parent_and_child_both_served() -> None:
    child = zone(
        "$ORIGIN child.example.test.\n$TTL 60\n@ SOA ns1 hm 9 1 1 1 1\n@ NS ns1\nns1 A 192.0.2.153\n"
        "www A 192.0.2.154\n"
    )
    auth = Authority([*demo_zones(), child])
    r = ask(auth, "www.child.example.test")
    assert has_flag(r, "AA") and texts(r.answer) == {"www.child.example.test. 60 in a 192.0.2.154"}
    r = ask(auth, "child.example.test", "DS")  # from the parent (RFC 4035 §3.1.4.1)
    assert has_flag(r, "AA") and rtypes(r.answer) == ["DS"]
    r = ask(auth, "child.example.test", "SOA")
    assert texts(r.answer) == {
        "child.example.test. 60 in soa ns1.child.example.test. hm.child.example.test. 9 1 1 1 1"
    }


def test_additional_section() -> None:
    r = ask(AUTH, "example.test", "MX")
    assert texts(r.additional) == {
        "mail.example.test. 3600 in a 192.0.2.25",
        "mail.example.test. 3600 in aaaa 2001:db8::25",
    }
    r = ask(AUTH, "example.test", "NS")
    assert texts(r.additional) == {
        "ns1.example.test. 3600 in a 192.0.2.53",
        "ns1.example.test. 3600 in aaaa 2001:db8::53",
        "ns2.example.test. 1800 in a 198.51.100.53",
    }
    r = ask(AUTH, "_xmpp-client._tcp.example.test", "SRV")
    assert texts(r.additional) == {"chat.example.test. 3600 in a 192.0.2.52"}
    auth = Authority(
        [
            zone(
                "$ORIGIN m.test.\n$TTL 1\n@ SOA ns hm 1 1 1 1 1\n@ NS ns\nns A 192.0.2.1\n"
                "@ MX 1 mx.kid\nkid NS ns\nmx.kid A 192.0.2.9\n"
            )
        ]
    )
    assert ask(auth, "m.test", "MX").additional == []  # below a cut: not our data


def test_any_is_one_rrset() -> None:
    r = ask(AUTH, "mail.example.test", "ANY")
    assert rtypes(r.answer) == ["A"]  # RFC 8482 §4.1: the lowest type
    assert ask(AUTH, "www.example.test", "ANY", tcp=True).answer[0].rdtype == 5  # CNAME, same over TCP
    assert ask(AUTH, "b.deep.example.test", "ANY").answer == []


def test_refused_outside_our_zones_and_other_classes() -> None:
    for name, rdclass in (("www.example.org", "IN"), ("version.bind", "CH"), ("example.test", "CH")):
        r = ask(AUTH, name, "TXT" if rdclass == "CH" else "A", rdclass=rdclass)
        assert r.rcode() == dns.rcode.REFUSED and not has_flag(r, "AA"), name
        assert r.answer == r.authority == r.additional == []
        assert str(r.question[0].name).rstrip(".") == name


def test_unknown_and_generic_types() -> None:
    r = ask(AUTH, "blob.example.test", 65534)
    assert texts(r.answer) == {"blob.example.test. 3600 in type65534 \\# 3 abcdef"}
    assert texts(ask(AUTH, "blob.example.test", "A").answer) == {"blob.example.test. 3600 in a 192.0.2.9"}


def test_compression_and_case_from_cache() -> None:
    auth = demo_authority()
    first = ask(auth, "WWW.EXAMPLE.TEST", "A")
    again = ask(auth, "www.example.test", "A")
    assert (
        str(first.question[0].name) == "WWW.EXAMPLE.TEST."
        and str(again.question[0].name) == "www.example.test."
    )
    assert (
        str(first.answer[0].name) == "WWW.EXAMPLE.TEST." and str(again.answer[0].name) == "www.example.test."
    )
    raw = auth.handle(ask.__globals__["query"]("www.example.test", "A").to_wire())
    assert raw is not None and raw.count(b"\xc0\x0c") >= 1 and len(raw) < 110


def test_edns_answers() -> None:
    r = ask(AUTH, "edge.example.test", "A", use_edns=0, payload=4096)
    assert r.edns == 0 and r.payload == 1232 and not r.ednsflags & 0x8000
    r = ask(AUTH, "edge.example.test", "A", use_edns=0, want_dnssec=True)
    assert r.ednsflags & 0x8000  # DO echoed (RFC 3225 §3)
    assert ask(AUTH, "edge.example.test", "A").edns == -1
    r = ask(AUTH, "nope.example.test", "A", use_edns=0)
    assert r.edns == 0 and r.rcode() == dns.rcode.NXDOMAIN
    r = ask(AUTH, "nope.example.org", "A", use_edns=0)
    assert r.edns == 0 and r.rcode() == dns.rcode.REFUSED
