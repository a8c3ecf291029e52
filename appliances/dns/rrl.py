"""Response rate limiting (RRL) for UDP answers: a token bucket per client
prefix and kind of answer, sans-IO (the caller passes the time).

Why: an authoritative server answers anyone, so spoofed queries can make it
reflect (and amplify) traffic at a victim.  Limiting identical answers per
client network keeps that small, and "slip" keeps real clients working: every
``slip``-th answer that would be dropped is sent instead as an empty TC=1
answer, which a real resolver retries over TCP, where the source address is
proven and nothing is limited (the scheme of BIND's and Knot's RRL; see
"DNS Response Rate Limiting", Vixie & Schryver, 2012, and RFC 8906 §4.2 on
not silently dropping).

Choices, with their reasons:

- clients are grouped by /24 (IPv4) and /56 (IPv6), BIND's defaults
  (``ipv4-prefix-length 24``, ``ipv6-prefix-length 56``): one spoofer rarely
  holds a whole /24, one customer usually holds a /56;
- an answer's kind is what BIND keys on too: a positive answer by its question
  (lowercase name and type), a negative answer (NXDOMAIN, and REFUSED and other
  errors) by its rcode alone, so that a random-subdomain flood is one bucket;
- the default rate is 20 answers per second per bucket, with a burst of one
  second's worth: ``responses-per-second 20`` is a setting common in BIND
  deployments (BIND's manual suggests 5-20); a real resolver asks one
  question of one network far less often, because it caches;
- ``slip`` 2: BIND's default; every other dropped answer becomes TC=1;
- loopback is exempt by default, so local tools and benchmarks are not limited.

Memory is bounded: the table is emptied when it holds ``max_buckets`` entries
(a flood from many prefixes then starts everyone with a full bucket, which only
errs on the side of answering).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

__all__ = ["DEFAULT_RATE", "DEFAULT_SLIP", "DROP", "SEND", "SLIP", "RateLimiter", "parse_prefix", "tc_answer"]

DEFAULT_RATE = 20
DEFAULT_SLIP = 2
#: Buckets kept before the table is emptied (~150 bytes each: ~15 MB).
MAX_BUCKETS = 100_000
#: Cached per-address decisions (exempt or the prefix key), emptied when full.
_MAX_ADDRESSES = 100_000

SEND, DROP, SLIP = 0, 1, 2

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_prefix(text: str) -> Network:
    """``192.0.2.0/24``, ``2001:db8::/32`` or a single address; ValueError if bad."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"expected an address or prefix such as 192.0.2.0/24, got {text!r}") from None


def tc_answer(reply: bytes) -> bytes:
    """The slipped form of ``reply``: header with TC=1, the question, nothing else
    (RFC 1035 §4.1.1 TC; the client retries over TCP, RFC 7766 §5)."""
    pos = 12
    if reply[4:6] == b"\x00\x01":
        n = len(reply)
        while pos < n and reply[pos] and reply[pos] < 0xC0:
            pos += reply[pos] + 1
        pos = min(pos + 5, n)
        qd = b"\x00\x01"
    else:
        qd = b"\x00\x00"
    return reply[:2] + bytes([reply[2] | 0x02, reply[3] & 0xF0]) + qd + bytes(6) + reply[12:pos]


class RateLimiter:
    """``check(reply, host)`` -> SEND, DROP or SLIP.  ``clock`` gives monotonic
    seconds; it is only asked for clients that are not exempt."""

    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        *,
        clock: Callable[[], float],
        slip: int = DEFAULT_SLIP,
        exempt: Iterable[Network] = (),
        max_buckets: int = MAX_BUCKETS,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive (a rate of 0 means: no RateLimiter)")
        self.rate = float(rate)
        self._clock = clock
        #: a bucket holds at most one second's worth of answers
        self.burst = float(rate)
        self.slip = slip
        self._exempt = tuple(exempt)
        self._max = max_buckets
        #: key -> [tokens, last refill time, dropped since the last slip]
        self._buckets: dict[tuple[str, bytes], list[float]] = {}
        #: host text -> prefix text, or "" when exempt
        self._prefixes: dict[str, str] = {}
        self.dropped = 0
        self.slipped = 0

    def _prefix(self, host: str) -> str:
        prefix = self._prefixes.get(host)
        if prefix is not None:
            return prefix
        try:
            address = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            prefix = host
        else:
            if any(address in net for net in self._exempt):
                prefix = ""
            elif address.version == 4:
                prefix = str(ipaddress.ip_network(f"{address}/24", strict=False))
            else:
                prefix = str(ipaddress.ip_network(f"{address}/56", strict=False))
        if len(self._prefixes) >= _MAX_ADDRESSES:
            self._prefixes.clear()
        self._prefixes[host] = prefix
        return prefix

    def exempt(self, host: str) -> bool:
        return self._prefix(host) == ""

    def check(self, reply: bytes, host: str) -> int:
        prefix = self._prefixes.get(host)
        if prefix is None:
            prefix = self._prefix(host)
        if not prefix:
            return SEND
        now = self._clock()
        rcode = reply[3] & 0xF
        if rcode == 0 and reply[6:8] != b"\x00\x00":
            # Positive answer: keyed by the question (name lowercased, type).
            end = reply.find(b"\x00", 12) + 3
            kind = reply[12:end].lower()
        else:
            kind = bytes((rcode,))
        key = (prefix, kind)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max:
                self._buckets.clear()
            self._buckets[key] = [self.burst - 1.0, now, 0.0]
            return SEND
        tokens = bucket[0] + (now - bucket[1]) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return SEND
        bucket[0] = tokens
        if self.slip:
            bucket[2] += 1
            if bucket[2] >= self.slip:
                bucket[2] = 0.0
                self.slipped += 1
                return SLIP
        self.dropped += 1
        return DROP
