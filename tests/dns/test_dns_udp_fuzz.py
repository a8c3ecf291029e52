"""100,000 random and mutated datagrams at the running appliance's UDP socket.

Fixed seed.  Packets go out in batches without waiting for each answer; after
each batch the answers that came are read (a bounded wait).  The invariant: every
answer is a DNS response (QR set, at least a header), the datagram handler never
raised (the endpoint logs every crash), and afterwards the server still answers
a good query correctly.  Mutations: truncation, bit flips, byte runs, bad label
lengths, compression pointers in the question (loops included), huge section
counts, random opcodes, and TSIG-signed queries (the edge's TSIG path) mutated too.
"""

from __future__ import annotations

import random
import socket
import struct
from pathlib import Path

import dns.message
import dns.rcode
from server_helpers import KEY_NAME, KEY_OPTION, KEYRING, ask, off_loop

from appliances.dns import APPLIANCE
from runtime.testing.harness import start_appliance

PACKETS = 100_000
BATCH = 500


def seeds() -> list[bytes]:
    out = []
    for name, rdtype, kwargs in [
        ("www.example.test", "A", {}),
        ("WWW.example.TEST", "AAAA", {"use_edns": 0}),
        ("nope.example.test", "A", {"use_edns": 0, "want_dnssec": True}),
        ("x.apps.example.test", "TXT", {}),
        ("x.child.example.test", "A", {"use_edns": 0, "payload": 600}),
        ("example.test", "ANY", {}),
        ("example.test", "IXFR", {}),
        ("example.org", "A", {}),
    ]:
        out.append(dns.message.make_query(name, rdtype, **kwargs).to_wire())
    signed = dns.message.make_query("www.example.test", "A")
    signed.use_tsig(KEYRING, keyname=KEY_NAME)
    out.append(signed.to_wire())
    notify = dns.message.make_query("example.test", "SOA")
    notify.set_opcode(4)
    out.append(notify.to_wire())
    return out


def mutate(rng: random.Random, packet: bytes) -> bytes:
    data = bytearray(packet)
    kind = rng.randrange(9)
    if kind == 0:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 64)))
    if kind == 1:
        return bytes(data[: rng.randrange(len(data))])
    if kind == 2:
        for _ in range(rng.randrange(1, 6)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif kind == 3:
        i = rng.randrange(len(data))
        data[i : i + rng.randrange(1, 8)] = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 8)))
    elif kind == 4 and len(data) > 13:
        data[12] = rng.choice([64, 100, 0x80, 0xBF, 0xC0, 255])  # bad label length / extended label
    elif kind == 5 and len(data) > 14:
        data[12:14] = b"\xc0\x0c"  # a pointer to itself: the classic loop
    elif kind == 6:
        struct.pack_into("!4H", data, 4, *(rng.choice([0, 1, 2, 0xFFFF]) for _ in range(4)))
    elif kind == 7:
        data[2] = (data[2] & 0x87) | (rng.randrange(16) << 3)  # any opcode
    else:
        data += bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 40)))  # trailing garbage
    return bytes(data)


def blast(port: int) -> tuple[int, int]:
    rng = random.Random(20240601)
    corpus = seeds()
    answers = bad = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.connect(("127.0.0.1", port))
        for _ in range(PACKETS // BATCH):
            for _ in range(BATCH):
                sock.send(mutate(rng, rng.choice(corpus)))
            sock.settimeout(0.05)  # bounded: read until the answers stop coming
            try:
                while True:
                    reply = sock.recv(65535)
                    answers += 1
                    if len(reply) < 12 or not reply[2] & 0x80:
                        bad += 1
            except TimeoutError:
                pass
    return answers, bad


async def test_udp_fuzz_keeps_serving(tmp_path: Path) -> None:
    args = ["--listen", "127.0.0.1:0", "--state-dir", str(tmp_path), "--tsig-key", KEY_OPTION]
    async with start_appliance(APPLIANCE, args, target="host") as app:
        port = app.address("udp").port
        answers, bad = await off_loop(blast, port)
        assert bad == 0
        assert answers > PACKETS // 4  # most packets were looked at and many answered
        assert not [line for line in app.log_lines() if "crashed" in line]
        reply = await ask("www.example.test", "A", port)
        assert reply.rcode() == dns.rcode.NOERROR and reply.answer[-1][0].address == "192.0.2.80"
