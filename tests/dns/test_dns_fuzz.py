"""100,000 random and mutated packets through ``handle()`` (fixed seed).

Invariant (STYLE: one invariant per parser, fuzzed): the answer is None or a
well-formed DNS response carrying the query's ID; nothing raises; the inline fast
path and the strict path agree; and the server still answers correctly after.
"""

from __future__ import annotations

import random
import struct

import dns.exception
import dns.message
import dns.rcode
from dns_helpers import demo_zones, query

from appliances.dns.authority import Authority

ZONES = demo_zones()

SEEDS = [
    query(name, rdtype, **kwargs).to_wire()
    for name, rdtype, kwargs in [
        ("www.example.test", "A", {}),
        ("WWW.example.TEST", "AAAA", {"use_edns": 0}),
        ("nope.example.test", "A", {"use_edns": 0, "want_dnssec": True}),
        ("x.apps.example.test", "TXT", {}),
        ("x.child.example.test", "A", {"use_edns": 0, "payload": 600}),
        ("example.test", "MX", {}),
        ("example.test", "ANY", {}),
        ("example.test", "AXFR", {}),
        ("example.test", "IXFR", {}),
        ("example.org", "A", {}),
        ("b.deep.example.test", "NS", {}),
        ("example.test", "SOA", {"use_edns": 1}),
    ]
]


def mutate(rng: random.Random, packet: bytes) -> bytes:
    data = bytearray(packet)
    if len(data) < 14:
        return packet + rng.randbytes(rng.randrange(0, 20))
    kind = rng.randrange(8)
    if kind == 0:  # truncation
        return bytes(data[: rng.randrange(len(data) + 1)])
    if kind == 1:  # bit flips
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        return bytes(data)
    if kind == 2:  # huge or odd counts
        struct.pack_into(
            "!H", data, rng.choice((4, 6, 8, 10)), rng.choice((0, 1, 2, 0xFFFF, rng.randrange(65536)))
        )
        return bytes(data)
    if kind == 3:  # compression pointers and loops in the question
        i = rng.randrange(12, len(data))
        data[i : i + 2] = rng.choice((b"\xc0\x0c", b"\xc0" + bytes([i & 0xFF]), b"\xff\xff", b"\x40\x00"))
        return bytes(data)
    if kind == 4:  # garbage appended
        return bytes(data) + rng.randbytes(rng.randrange(1, 30))
    if kind == 5:  # bytes inserted or deleted
        i = rng.randrange(len(data))
        if rng.random() < 0.5:
            del data[i : i + rng.randrange(1, 4)]
        else:
            data[i:i] = rng.randbytes(rng.randrange(1, 4))
        return bytes(data)
    if kind == 6:  # header flags (opcode, QR, Z...)
        data[2], data[3] = rng.randrange(256), rng.randrange(256)
        return bytes(data)
    return rng.randbytes(rng.randrange(0, 80))  # plain noise


def check_reply(packet: bytes, reply: bytes) -> None:
    assert len(reply) >= 12 and reply[:2] == packet[:2]
    assert reply[2] & 0x80  # QR
    opcode = (reply[2] >> 3) & 0xF
    if opcode == 5:
        return  # dnspython reads UPDATE zone sections with other rules; the header is what we check
    try:
        message = dns.message.from_wire(reply)
    except dns.exception.DNSException as e:  # pragma: no cover - the failure message is the point
        raise AssertionError(f"unparseable reply {reply.hex()} to {packet.hex()}: {e}") from None
    assert message.rcode() in (0, 1, 3, 4, 5, 9, 16)


def test_fuzz_handle() -> None:
    rng = random.Random(20240601)
    auth = Authority(ZONES)
    strict = Authority(ZONES)
    replies = 0
    for n in range(100_000):
        packet = mutate(rng, rng.choice(SEEDS))
        if n % 7 == 0:
            packet = mutate(rng, packet)  # two mutations
        tcp = n % 5 == 0
        reply = auth.handle(packet, tcp=tcp)
        # The inline path must agree with the strict parser on every input.
        assert reply == strict._strict(packet, tcp, None), packet.hex()
        if reply is None:
            assert len(packet) < 12 or packet[2] & 0x80
            continue
        replies += 1
        check_reply(packet, reply)
    assert replies > 50_000
    good = dns.message.from_wire(auth.handle(SEEDS[0]) or b"")
    assert good.rcode() == dns.rcode.NOERROR and len(good.answer) == 3
