"""Malformed queries, opcodes, EDNS, transfers and truncation, at the byte level."""

from __future__ import annotations

import struct

import dns.edns
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
from dns_helpers import ask, demo_authority, demo_zones, has_flag, query, rtypes, zone

from appliances.dns.authority import REFUSED, Authority, NotifyRequest, TransferRequest

AUTH = demo_authority()
QNAME = b"\x04edge\x07example\x04test\x00"


def raw(
    ident: int = 0x1234,
    flags: int = 0x0100,
    counts: tuple[int, int, int, int] = (1, 0, 0, 0),
    body: bytes = QNAME + b"\x00\x01\x00\x01",
) -> bytes:
    return struct.pack("!6H", ident, flags, *counts) + body


def answer(packet: bytes, *, tcp: bool = False, auth: Authority = AUTH) -> dns.message.Message:
    out = auth.handle(packet, tcp=tcp)
    assert out is not None
    return dns.message.from_wire(out)


def assert_formerr(packet: bytes, *, question: bool) -> None:
    reply = answer(packet)
    assert reply.rcode() == dns.rcode.FORMERR and reply.id == 0x1234
    assert has_flag(reply, "QR") and not has_flag(reply, "AA")
    assert (len(reply.question) == 1) is question


def test_good_query_bytes() -> None:
    reply = answer(raw())
    assert reply.rcode() == dns.rcode.NOERROR and len(reply.answer) == 1


def test_too_short_and_responses_get_nothing() -> None:
    assert AUTH.handle(b"") is None
    assert AUTH.handle(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00") is None  # 11 bytes: no header
    assert AUTH.handle(raw(flags=0x8100)) is None  # QR set: a response (dropped, like NSD)


def test_formerr_cases() -> None:
    assert_formerr(raw(counts=(0, 0, 0, 0), body=b""), question=False)
    assert_formerr(raw(counts=(2, 0, 0, 0), body=(QNAME + b"\x00\x01\x00\x01") * 2), question=False)
    assert_formerr(raw(body=b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01"), question=False)  # label 64
    long_name = b"".join(b"\x3f" + b"a" * 63 for _ in range(4)) + b"\x00"  # 257 octets
    assert_formerr(raw(body=long_name + b"\x00\x01\x00\x01"), question=False)
    assert_formerr(raw(body=b"\xc0\x0c\x00\x01\x00\x01"), question=False)  # pointer to itself
    assert_formerr(raw(body=b"\x01a\xc0\x0c\x00\x01\x00\x01"), question=False)  # pointer loop
    assert_formerr(raw(body=b"\x01a\x80\x00\x01\x00\x01"), question=False)  # extended label type
    assert_formerr(raw(body=QNAME[:-3]), question=False)  # name cut short
    assert_formerr(raw(body=QNAME + b"\x00\x01\x00"), question=False)  # type/class cut short
    assert_formerr(raw(body=QNAME + b"\x00\x01\x00\x01junk"), question=True)  # trailing garbage
    assert_formerr(raw(counts=(1, 0, 0, 5)), question=True)  # counts beyond the data
    assert_formerr(
        raw(
            counts=(1, 1, 0, 0),
            body=QNAME
            + b"\x00\x01\x00\x01"
            + b"\xc0\x0c\x00\x01\x00\x01"
            + b"\x00\x00\x00\x00\x00\x04\xc0\x00\x02\x01",
        ),
        question=True,
    )  # answer in a query


OPT = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"


def test_opt_rules() -> None:
    q = QNAME + b"\x00\x01\x00\x01"
    assert answer(raw(counts=(1, 0, 0, 1), body=q + OPT)).rcode() == dns.rcode.NOERROR
    assert_formerr(raw(counts=(1, 0, 0, 2), body=q + OPT + OPT), question=True)  # two OPT
    not_root = b"\x01a\x00" + OPT[1:]
    assert_formerr(raw(counts=(1, 0, 0, 1), body=q + not_root), question=True)
    assert_formerr(raw(counts=(1, 0, 1, 0), body=q + OPT), question=True)  # OPT in authority
    bad_option = OPT[:-2] + b"\x00\x05" + b"\x00\x0a\x00\x09\x00"  # option longer than RDATA
    assert_formerr(raw(counts=(1, 0, 0, 1), body=q + bad_option), question=True)
    with_cookie = OPT[:-2] + b"\x00\x0c" + b"\x00\x0a\x00\x08" + b"12345678"  # unknown options: ignored
    assert answer(raw(counts=(1, 0, 0, 1), body=q + with_cookie)).rcode() == dns.rcode.NOERROR
    # a record other than OPT in the additional section is skipped (no TSIG support)
    extra = b"\xc0\x0c\x00\x10\x00\x01\x00\x00\x00\x00\x00\x02\x01x"
    assert answer(raw(counts=(1, 0, 0, 2), body=q + extra + OPT)).rcode() == dns.rcode.NOERROR


def test_badvers() -> None:
    q = query("edge.example.test", "A", use_edns=1)
    out = AUTH.handle(q.to_wire())
    assert out is not None
    reply = dns.message.from_wire(out)
    assert reply.rcode() == dns.rcode.BADVERS and reply.edns == 0 and reply.answer == []
    assert (reply.ednsflags >> 24) == 1  # upper eight bits of 16 (RFC 6891 §6.1.3)


def test_opcodes() -> None:
    for opcode in (1, 2, 5, 6, 15):
        reply = answer(raw(flags=opcode << 11, body=QNAME + b"\x00\x06\x00\x01"))  # UPDATE's zone is a SOA
        assert reply.rcode() == dns.rcode.NOTIMP and reply.opcode() == opcode
    reply = answer(raw(flags=5 << 11, counts=(0, 3, 0, 0), body=b"x"))  # unparseable UPDATE: still NOTIMP
    assert reply.rcode() == dns.rcode.NOTIMP and reply.question == []


def notify_packet(serial: int | None) -> bytes:
    body = b"\x07example\x04test\x00\x00\x06\x00\x01"
    if serial is None:
        return raw(flags=4 << 11 | 0x0400, body=body)
    soa = b"\xc0\x0c\x00\x06\x00\x01\x00\x00\x0e\x10\x00\x1c\x01a\xc0\x0c\x01b\xc0\x0c" + struct.pack(
        "!5I", serial, 1, 2, 3, 4
    )
    return raw(flags=4 << 11 | 0x0400, counts=(1, 1, 0, 0), body=body + soa)


def test_notify_hook() -> None:
    assert answer(notify_packet(None)).rcode() == dns.rcode.NOTIMP
    seen: list[NotifyRequest] = []

    def hook(request: NotifyRequest) -> int:
        seen.append(request)
        return 0

    auth = Authority(demo_zones(), notify=hook)
    reply = answer(notify_packet(77), auth=auth)
    assert reply.opcode() == dns.opcode.NOTIFY and reply.rcode() == dns.rcode.NOERROR
    assert has_flag(reply, "AA") and len(reply.question) == 1
    assert seen[0].serial == 77 and seen[0].zone is not None and seen[0].qtype == 6 and seen[0].peer is None
    reply = dns.message.from_wire(auth.handle(notify_packet(None), peer=("192.0.2.1", 53)) or b"")
    assert seen[1].serial is None and seen[1].peer == ("192.0.2.1", 53)


def test_zone_transfers() -> None:
    r = ask(AUTH, "example.test", "AXFR")
    assert r.rcode() == dns.rcode.NOTIMP  # RFC 5936 §4.2: not over UDP
    assert ask(AUTH, "example.test", "IXFR").rcode() == dns.rcode.REFUSED  # transfers off (as NSD)
    with_transfers = Authority(demo_zones(), transfers=True)
    r = ask(with_transfers, "example.test", "IXFR")
    assert r.rcode() == dns.rcode.NOERROR and rtypes(r.answer) == ["SOA"]  # RFC 1995 §2: "use TCP"
    assert ask(with_transfers, "www.example.test", "IXFR").rcode() == dns.rcode.NOTAUTH
    assert ask(with_transfers, "example.test", "IXFR", tcp=True).rcode() == dns.rcode.REFUSED
    assert ask(AUTH, "example.test", "AXFR", tcp=True).rcode() == dns.rcode.REFUSED
    request = AUTH.transfer_request(query("Example.test", "AXFR").to_wire())
    assert isinstance(request, TransferRequest)
    assert request.qtype == 252 and request.zone is not None and request.qname == b"\x07Example\x04test\x00"
    ixfr = dns.message.make_query("example.test", "IXFR")
    ixfr.authority.append(dns.rrset.from_text("example.test.", 0, "IN", "SOA", "a. b. 41 1 1 1 1"))
    request = AUTH.transfer_request(ixfr.to_wire())
    assert request is not None and request.serial == 41
    assert AUTH.handle(ixfr.to_wire(), tcp=True) is not None  # IXFR with authority SOA parses
    assert AUTH.transfer_request(query("example.test", "A").to_wire()) is None
    assert AUTH.transfer_request(b"garbage") is None


def big_zone() -> Authority:
    text = "$ORIGIN big.test.\n$TTL 60\n@ SOA ns hm 1 1 1 1 1\n@ NS ns\nns A 192.0.2.1\n"
    text += "".join(f'txt TXT "{i:03d} {"x" * 90}"\n' for i in range(30))  # ~3 KB RRset
    text += "".join(f"many A 192.0.2.{i}\n" for i in range(1, 41))  # 40 x 16 bytes = 640 bytes
    text += "".join(f"@ MX {i} mx{i}\nmx{i} A 192.0.2.{i}\nmx{i} AAAA 2001:db8::{i}\n" for i in range(20))
    text += "".join(
        f"kid NS ns{i}.kid\nns{i}.kid A 192.0.2.{i}\nns{i}.kid AAAA 2001:db8::{i}\n" for i in range(12)
    )
    return Authority([zone(text)])


def test_truncation_keeps_whole_rrsets() -> None:
    auth = big_zone()
    udp = answer(query("txt.big.test", "TXT").to_wire(), auth=auth)
    assert has_flag(udp, "TC") and udp.answer == []  # the one RRset does not fit in 512
    full = answer(query("txt.big.test", "TXT").to_wire(), auth=auth, tcp=True)
    assert not has_flag(full, "TC") and len(full.answer[0]) == 30
    edns = answer(query("txt.big.test", "TXT", use_edns=0, payload=4096).to_wire(), auth=auth)
    assert has_flag(edns, "TC") and edns.edns == 0  # 1232 is our ceiling; OPT stays
    many = answer(query("many.big.test", "A").to_wire(), auth=auth)
    assert has_flag(many, "TC") and many.answer == []
    many = answer(query("many.big.test", "A", use_edns=0, payload=1232).to_wire(), auth=auth)
    assert not has_flag(many, "TC") and len(many.answer[0]) == 40


def test_additional_dropped_without_tc() -> None:
    auth = big_zone()
    mx = answer(query("big.test", "MX").to_wire(), auth=auth)
    assert not has_flag(mx, "TC") and len(mx.answer[0]) == 20  # RFC 2181 §9: extra data is optional
    full = answer(query("big.test", "MX").to_wire(), auth=auth, tcp=True)
    assert len(full.additional) > len(mx.additional)
    out = auth.handle(query("big.test", "MX").to_wire())
    assert out is not None and len(out) <= 512


def test_referral_glue_is_required() -> None:
    auth = big_zone()
    small = answer(query("x.kid.big.test", "A").to_wire(), auth=auth)
    assert has_flag(small, "TC") and not has_flag(small, "AA")  # RFC 9471 §3: glue did not fit
    large = answer(query("x.kid.big.test", "A", use_edns=0, payload=1232).to_wire(), auth=auth)
    assert not has_flag(large, "TC") and len(large.additional) == 24


def test_client_size_floor_is_512() -> None:
    auth = big_zone()
    tiny = answer(query("many.big.test", "A", use_edns=0, payload=100).to_wire(), auth=auth)
    assert has_flag(tiny, "TC")
    out = auth.handle(query("big.test", "MX", use_edns=0, payload=100).to_wire())
    assert out is not None and 400 < len(out) <= 512


def test_rd_and_id_from_each_query_on_cache_hits() -> None:
    auth = demo_authority()
    for ident, flags in ((1, 0x0100), (2, 0x0000), (3, 0x0100)):
        reply = answer(raw(ident=ident, flags=flags), auth=auth)
        assert reply.id == ident and has_flag(reply, "RD") == bool(flags)
    assert auth.statistics().lookups == 1


def test_https_type_does_not_collide_in_cache() -> None:
    # 65 (HTTPS) is 0x0041 ('A'): the cache key must not lowercase the type.
    auth = demo_authority()
    assert rtypes(ask(auth, "example.test", 97).answer) == []
    assert rtypes(ask(auth, "example.test", "HTTPS").answer) == ["HTTPS"]


def test_swap_and_statistics() -> None:
    auth = demo_authority()
    ask(auth, "edge.example.test")
    ask(auth, "random1.example.test")
    ask(auth, "random2.example.test")
    stats = auth.statistics()
    assert (
        stats.zones == 1 and stats.cached_answers == 1 and stats.cached_templates == 1 and stats.lookups == 3
    )
    replacement = Authority(
        [
            zone(
                "$ORIGIN example.test.\n$TTL 5\n@ SOA ns hm 2 1 1 1 1\n@ NS ns\n"
                "ns A 192.0.2.1\nedge A 192.0.2.222\n"
            )
        ]
    )
    assert {rr.to_text() for rr in ask(replacement, "edge.example.test").answer[0]} == {"192.0.2.222"}
    assert REFUSED == dns.rcode.REFUSED


def test_answer_larger_than_any_message() -> None:
    text = "$ORIGIN huge.test.\n$TTL 60\n@ SOA ns hm 1 1 1 1 1\n@ NS ns\nns A 192.0.2.1\n"
    text += "".join(f't TXT "{i:05d}{"y" * 200}"\n' for i in range(400))  # ~83 KB
    auth = Authority([zone(text)])
    out = auth.handle(query("t.huge.test", "TXT").to_wire(), tcp=True)
    assert out is not None and len(out) <= 65535
    reply = dns.message.from_wire(out)
    assert has_flag(reply, "TC") and reply.answer == []
