"""CPU cost of the DNS core's ``Authority.handle()``: no sockets, one core.

    python3 bench/dns/core.py [--names 2000] [--seconds 2]

Zone: ~N names (A, AAAA, MX, TXT, CNAME, a wildcard, a delegation).  Queries:
90% existing names (A/AAAA/MX/TXT, mixed case, half with EDNS), 10% names that do
not exist.  Printed: calls/s and µs/call for

- hit:   the steady state, every answer already cached (the 10% NXDOMAIN
         answers come from the shared negative template, after a lookup);
- hit-only: the same without the NXDOMAIN queries;
- nx:    a random-subdomain flood (every name new, under the zone: NXDOMAIN);
- miss:  a fresh Authority per pass, so every query is looked up and encoded;
- refused: random names outside every zone.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from appliances.dns.authority import Authority
from appliances.dns.zone import load_zone

TYPES = {"A": 1, "AAAA": 28, "MX": 15, "TXT": 16}


def make_zone(n: int) -> str:
    lines = [
        "$ORIGIN bench.test.",
        "$TTL 300",
        "@ SOA ns1 hostmaster 1 3600 600 86400 300",
        "@ NS ns1",
        "@ NS ns2",
        "ns1 A 192.0.2.1",
        "ns2 A 192.0.2.2",
        "@ MX 10 mail",
        "mail A 192.0.2.3",
        "*.wild A 192.0.2.4",
        "sub NS ns.sub",
        "ns.sub A 192.0.2.5",
    ]
    for i in range(n):
        kind = i % 10
        if kind < 6:
            lines.append(f"h{i} A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
            lines.append(f"h{i} AAAA 2001:db8::{i >> 16:x}:{i & 0xFFFF:x}")
        elif kind < 8:
            lines.append(f"h{i} CNAME h{i - 1}")
        elif kind == 8:
            lines.append(f'h{i} TXT "host {i}" "second string"')
        else:
            lines.append(f"h{i} MX 10 mail")
    return "\n".join(lines) + "\n"


def wire_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\x00"


def make_query(ident: int, name: str, qtype: int, edns: bool) -> bytes:
    q = struct.pack("!6H", ident, 0x0100, 1, 0, 0, 1 if edns else 0)
    q += wire_name(name) + struct.pack("!HH", qtype, 1)
    if edns:
        q += b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
    return q


def mixed_case(rng: random.Random, name: str) -> str:
    return "".join(c.upper() if rng.random() < 0.3 else c for c in name)


def timed(auth: Authority, queries: list[bytes], seconds: float) -> tuple[float, int]:
    handle = auth.handle
    calls = 0
    start = time.perf_counter()
    while True:
        for q in queries:
            handle(q)
        calls += len(queries)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls / elapsed, calls


def report(label: str, rate: float) -> None:
    print(f"{label:<9} {rate:>10,.0f} calls/s  {1e6 / rate:6.2f} µs/call")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--names", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    rng = random.Random(1)
    t0 = time.perf_counter()
    zone = load_zone(make_zone(args.names), "bench.test.").zone
    print(f"zone: {len(zone.nodes)} names, loaded in {time.perf_counter() - t0:.2f} s")

    specs = []
    for _ in range(20_000):
        if rng.random() < 0.1:
            specs.append((f"nx{rng.randrange(10**9)}.bench.test", 1))
        else:
            specs.append((f"h{rng.randrange(args.names)}.bench.test", TYPES[rng.choice(list(TYPES))]))
    queries = [
        make_query(i & 0xFFFF, mixed_case(rng, name), qtype, rng.random() < 0.5)
        for i, (name, qtype) in enumerate(specs)
    ]

    auth = Authority([zone])
    for q in queries:
        assert auth.handle(q) is not None
    rate, _ = timed(auth, queries, args.seconds)
    report("hit", rate)
    positive = [q for q, (name, _) in zip(queries, specs, strict=True) if not name.startswith("nx")]
    rate, _ = timed(auth, positive, args.seconds)
    report("hit-only", rate)

    flood = [make_query(i, f"r{rng.randrange(10**12)}.bench.test", 1, True) for i in range(50_000)]
    rate, _ = timed(Authority([zone]), flood, args.seconds)
    report("nx", rate)

    # every (name, type) once, existing names only: each call looks up and encodes
    unique = sorted({spec for spec in specs if not spec[0].startswith("nx")})
    miss_queries = [make_query(i & 0xFFFF, name, qtype, False) for i, (name, qtype) in enumerate(unique)]
    miss_rate_calls = 0
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        fresh = Authority([zone])
        for q in miss_queries:
            fresh.handle(q)
        miss_rate_calls += len(miss_queries)
    report("miss", miss_rate_calls / (time.perf_counter() - start))

    refused = [make_query(i, f"x{rng.randrange(10**9)}.example.org", 1, False) for i in range(50_000)]
    rate, _ = timed(Authority([zone]), refused, args.seconds)
    report("refused", rate)


if __name__ == "__main__":
    main()
