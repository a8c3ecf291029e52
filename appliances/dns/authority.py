"""The authoritative server core: query bytes in, answer bytes out, no I/O.

``Authority.handle(query, tcp=...)`` is the one entry point.  It is built for the
common case: a QUERY with one question, no answer/authority records and at most
an OPT is parsed inline and looked up in a cache of whole encoded answers; the
reply is the query's ID, a cached header, the query's own question bytes (so the
client's case comes back, RFC 4343 §4.1, and every name compressed to offset 12
shows it too) and the cached tail.  Anything else takes the strict path
(``wire.parse_query``), which gives every malformed query its answer:

- fewer than 12 bytes: no header, so nothing to answer (``None``);
- QR set: a response, not a query; dropped (``None``), as NSD does, so that two
  servers cannot bounce errors at each other;
- an opcode other than QUERY and NOTIFY: NOTIMP (RFC 1035 §4.1.1);
  NOTIFY (RFC 1996) goes to the ``notify`` hook, NOTIMP without one;
- a query that does not parse: FORMERR, with the question echoed when it parsed;
  also for QUERY with records in the answer section, or in the authority section
  unless the question is IXFR (as NSD);
- EDNS version above 0: BADVERS with our OPT (RFC 6891 §6.1.3);
- class other than IN (CH ``version.bind`` too): REFUSED;
- AXFR over UDP: NOTIMP (RFC 5936 §4.2 leaves AXFR over UDP undefined; REFUSED
  would suggest a policy decision; NSD answers NOTIMP too).  IXFR over UDP: with
  ``transfers=True``, at an apex we serve, our SOA alone, which tells the client
  to use TCP (RFC 1995 §2), NOTAUTH elsewhere; with transfers off (the default),
  REFUSED, as NSD does without ``provide-xfr``.  Over TCP the edge intercepts
  transfers first with ``transfer_request()``; a transfer that reaches
  ``handle()`` is REFUSED.

Sizes (RFC 6891 §6.2.3-5, RFC 1035 §4.2.1, RFC 7766 §8): without EDNS an UDP
answer is at most 512 bytes; with EDNS, the client's size bounded below by 512
and above by ours (1232 by default, the DNS Flag Day 2020 value that avoids IP
fragmentation); over TCP 65535.  An answer that does not fit loses whole RRsets
from the end; TC is set when an answer or authority RRset, or required glue
(RFC 9471 §3), had to go, not when only optional additional data did (RFC 2181 §9).
With EDNS the OPT always stays (RFC 6891 §7).

Caches: whole answers per (lowercase name, type, class, EDNS shape), and shared
"templates" for answers that do not depend on the name beyond its length (names
that do not exist, names under a wildcard, names under a delegation), so that a
random-subdomain flood costs a lookup and a copy, not an encode, and cannot grow
memory.  Both are bounded and simply emptied when full.  An Authority is
immutable apart from its caches: reload by building a new one and swapping the
reference; the old one's caches go with it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from .lookup import NXDOMAIN, Plan, resolve
from .wire import Edns, FormError, Query, Writer, header, opt_record, parse_query
from .zone import Zone

__all__ = [
    "BADVERS",
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_UDP_PAYLOAD",
    "FORMERR",
    "NOERROR",
    "NOTAUTH",
    "NOTIMP",
    "NXDOMAIN",
    "REFUSED",
    "Authority",
    "AuthorityStats",
    "NotifyHandler",
    "NotifyRequest",
    "TransferRequest",
]

#: RFC 8085 / DNS Flag Day 2020: the largest UDP answer that is safe from fragmentation.
DEFAULT_UDP_PAYLOAD = 1232
#: Cached answers per Authority: ~300 bytes each with their keys, so 100,000 is ~30 MB.
DEFAULT_CACHE_SIZE = 100_000
#: Shared answers (negative, wildcard, referral) per Authority.
TEMPLATE_CACHE_SIZE = 20_000
#: Truncated forms kept per cached answer (one per distinct client buffer size).
_MAX_VARIANTS = 8
_TCP_LIMIT = 65535  # RFC 1035 §4.2.2: two-octet length prefix

NOERROR, FORMERR, NOTIMP, REFUSED, NOTAUTH = 0, 1, 4, 5, 9
BADVERS = 16
QUERY, NOTIFY = 0, 4
IXFR, AXFR = 251, 252
_QR, _AA, _TC, _RD = 0x8000, 0x0400, 0x0200, 0x0100
_SHAPE_KEY = (b"\x00", b"\x01", b"\x02", b"\x03")  # bit 0: EDNS, bit 1: DO
_COUNTS = struct.Struct("!5H")


@dataclass(frozen=True, slots=True)
class NotifyRequest:
    """A NOTIFY (RFC 1996 §3.7) for the edge's secondary logic to act upon."""

    id: int
    qname: bytes
    qtype: int
    #: the zone we serve at that name, if any
    zone: Zone | None
    #: the serial from a SOA in the answer section, if the primary sent one (RFC 1996 §3.7)
    serial: int | None
    #: whatever the edge passed as ``peer`` to ``handle()`` (the source address, for the ACL)
    peer: object


#: returns the rcode to answer: NOERROR, REFUSED (unknown primary), NOTAUTH (not our zone)...
NotifyHandler = Callable[[NotifyRequest], int]


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """An AXFR/IXFR over TCP: the edge streams the answer itself."""

    id: int
    qname: bytes
    qtype: int
    zone: Zone | None
    #: IXFR: the client's serial, from the SOA in the authority section (RFC 1995 §3)
    serial: int | None
    edns: Edns | None


@dataclass(frozen=True, slots=True)
class AuthorityStats:
    zones: int
    cached_answers: int
    cached_templates: int
    #: queries that needed a lookup (not answered from the whole-answer cache)
    lookups: int


_BOUND = struct.Struct("!IBIB")  # per RRset: end offset in the tail, section 0-2, records, required
_Headers = tuple[bytes, bytes]  # header words 2-12 without and with RD


class _Entry:
    """One encoded answer: header words and everything after the question.

    Kept small (a cache holds up to 100,000 of them): the RRset boundaries
    needed for truncation are packed in one bytes object, and equal header
    tuples are shared between entries.
    """

    __slots__ = ("bounds", "headers", "opt", "size", "tail", "variants")

    def __init__(self, headers: _Headers, bounds: bytes, tail: bytes, opt: int) -> None:
        self.headers = headers
        self.bounds = bounds
        self.tail = tail
        self.size = len(tail)
        #: length of the OPT record at the end of ``tail`` (0 without EDNS)
        self.opt = opt
        self.variants: dict[int, tuple[_Headers, bytes]] | None = None

    def truncated(self, room: int) -> tuple[_Headers, bytes]:
        """Headers and tail for at most ``room`` bytes after the question."""
        if self.variants is not None and room in self.variants:
            return self.variants[room]
        bounds = list(_BOUND.iter_unpack(self.bounds))
        keep = 0
        while keep < len(bounds) and bounds[keep][0] + self.opt <= room:
            keep += 1
        flags = int.from_bytes(self.headers[0][:2], "big")
        if any(section < 2 or required for _, section, _, required in bounds[keep:]):
            flags |= _TC
        end = bounds[keep - 1][0] if keep else 0
        body_end = self.size - self.opt
        result = (_headers(flags, bounds[:keep], self.opt), self.tail[:end] + self.tail[body_end:])
        if self.variants is None:
            self.variants = {}
        if len(self.variants) < _MAX_VARIANTS:
            self.variants[room] = result
        return result


def _headers(flags: int, bounds: list[tuple[int, int, int, int]], opt: int) -> _Headers:
    counts = [0, 0, 0]
    for _, section, records, _ in bounds:
        counts[section] += records
    an, ns, ar = counts[0], counts[1], counts[2] + (1 if opt else 0)
    return _COUNTS.pack(flags, 1, an, ns, ar), _COUNTS.pack(flags | _RD, 1, an, ns, ar)


class Authority:
    """Our zones and the caches of answers built from them."""

    def __init__(
        self,
        zones: Iterable[Zone],
        *,
        udp_payload: int = DEFAULT_UDP_PAYLOAD,
        cache_size: int = DEFAULT_CACHE_SIZE,
        notify: NotifyHandler | None = None,
        transfers: bool = False,
    ) -> None:
        table: dict[bytes, Zone] = {}
        for zone in zones:
            if zone.origin in table:
                raise ValueError(f"zone {zone.name} given twice")
            table[zone.origin] = zone
        if not 512 <= udp_payload <= 65535:
            raise ValueError("udp_payload must be within 512-65535 (RFC 6891 §6.2.5)")
        self._zones: Mapping[bytes, Zone] = table
        self._udp = udp_payload
        self._cache_size = cache_size
        self._notify = notify
        self._transfers = transfers
        self._cache: dict[bytes, _Entry] = {}
        self._templates: dict[tuple[bytes, int, int], _Entry] = {}
        #: equal header tuples, shared between cache entries
        self._shared: dict[_Headers, _Headers] = {}
        self._lookups = 0

    @property
    def zones(self) -> Mapping[bytes, Zone]:
        """Zones by lowercase wire origin."""
        return self._zones

    def statistics(self) -> AuthorityStats:
        return AuthorityStats(len(self._zones), len(self._cache), len(self._templates), self._lookups)

    # ----------------------------------------------------------------- hot path

    def handle(self, query: bytes, *, tcp: bool = False, peer: object = None) -> bytes | None:
        """The answer to one DNS message, or None when nothing should be sent.

        ``tcp``: the message came over TCP (RFC 7766): answers up to 65535 bytes.
        ``peer``: anything identifying the sender (e.g. its ``Address``); it is only
        handed to the NOTIFY hook.
        """
        n = len(query)
        # Common shape: QR=0, QUERY, QDCOUNT=1, AN=NS=0, AR<=1.
        if n < 17 or query[2] & 0xF8 or query[4:11] != b"\x00\x01\x00\x00\x00\x00\x00" or query[11] > 1:
            return self._strict(query, tcp, peer)
        i = 12
        length = query[12]
        while length:
            if length > 63:
                return self._strict(query, tcp, peer)
            i += length + 1
            if i >= n:
                return self._strict(query, tcp, peer)
            length = query[i]
        qend = i + 5
        if qend > n or i > 266:  # name over 255 octets
            return self._strict(query, tcp, peer)
        if query[11]:
            # One additional record: take it on this path only if it is a plain OPT.
            if query[qend : qend + 3] != b"\x00\x00\x29" or qend + 11 > n or query[qend + 6]:
                return self._strict(query, tcp, peer)
            j = qend + 11
            if j + ((query[j - 2] << 8) | query[j - 1]) != n:
                return self._strict(query, tcp, peer)
            while j < n:
                if j + 4 > n:
                    return self._strict(query, tcp, peer)
                j += 4 + ((query[j + 2] << 8) | query[j + 3])
            if j != n:
                return self._strict(query, tcp, peer)
            shape = 3 if query[qend + 7] & 0x80 else 1
            payload = (query[qend + 3] << 8) | query[qend + 4]
            limit = 512 if payload < 512 else payload if payload < self._udp else self._udp
        else:
            if qend != n:
                return self._strict(query, tcp, peer)
            shape = 0
            limit = 512
        if tcp:
            limit = _TCP_LIMIT
        key = query[12 : qend - 4].lower() + query[qend - 4 : qend] + _SHAPE_KEY[shape]
        entry = self._cache.get(key)
        if entry is not None:
            if qend + entry.size <= limit:
                return query[:2] + entry.headers[query[2] & 1] + query[12:qend] + entry.tail
            return self._reply(query, qend, entry, limit)
        return self._miss(query, qend, key, shape, limit, tcp)

    def _reply(self, query: bytes, qend: int, entry: _Entry, limit: int) -> bytes:
        if qend + entry.size <= limit:
            headers, tail = entry.headers, entry.tail
        else:
            headers, tail = entry.truncated(limit - qend)
        return query[:2] + headers[query[2] & 1] + query[12:qend] + tail

    # ----------------------------------------------------------------- lookups

    def _miss(self, query: bytes, qend: int, key: bytes, shape: int, limit: int, tcp: bool) -> bytes:
        self._lookups += 1
        qtype = (query[qend - 4] << 8) | query[qend - 3]
        qclass = (query[qend - 2] << 8) | query[qend - 1]
        if qclass != 1:
            return self._simple(query, qend, REFUSED, shape)
        qname = query[12 : qend - 4].lower()
        if qtype == AXFR or qtype == IXFR:
            return self._transfer_by_query(query, qend, qname, qtype, shape, limit, tcp)
        plan = resolve(self._zones, qname, qtype)
        if plan is None:
            return self._simple(query, qend, REFUSED, shape)
        if plan.template is None:
            entry = self._encode(plan, qname, shape)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[key] = entry
        elif plan.self_loop:
            entry = self._encode(plan, qname, shape)  # fits this name only: not shared, not kept
        else:
            tkey = (plan.template, len(qname), shape)
            found = self._templates.get(tkey)
            if found is None:
                found = self._encode(plan, qname, shape)
                if len(self._templates) >= TEMPLATE_CACHE_SIZE:
                    self._templates.clear()
                self._templates[tkey] = found
            entry = found
        return self._reply(query, qend, entry, limit)

    def _encode(self, plan: Plan, qname: bytes, shape: int) -> _Entry:
        base = 12 + len(qname) + 4
        writer = Writer(bytes(12) + qname + bytes(4))
        writer.seed(qname, 12, first=plan.anchor)
        bounds: list[tuple[int, int, int, int]] = []
        sections = (
            [(owner, rrset, 0, True) for owner, rrset in plan.answer]
            + [(owner, rrset, 1, True) for owner, rrset in plan.authority]
            + [(owner, rrset, 2, required) for owner, rrset, required in plan.additional]
        )
        for owner, rrset, section, required in sections:
            writer.rrset(owner, rrset)
            bounds.append((len(writer.buf) - base, section, len(rrset.rdatas), int(required)))
            if len(writer.buf) > _TCP_LIMIT:
                break  # no message can carry more (RFC 1035 §4.2.2)
        opt = opt_record(self._udp, 0, bool(shape & 2)) if shape & 1 else b""
        headers = _headers(_QR | (_AA if plan.aa else 0) | plan.rcode, bounds, len(opt))
        if len(self._shared) >= TEMPLATE_CACHE_SIZE:
            self._shared.clear()
        headers = self._shared.setdefault(headers, headers)
        packed = b"".join(_BOUND.pack(*b) for b in bounds)
        return _Entry(headers, packed, bytes(writer.buf[base:]) + opt, len(opt))

    # ----------------------------------------------------------------- the strict path

    def _simple(
        self, query: bytes, qend: int, rcode: int, shape: int, *, flags: int = 0, question: bool = True
    ) -> bytes:
        """Header (+ question) (+ OPT) with ``rcode``; extended rcodes go in the OPT."""
        word = _QR | flags | (query[2] << 8 & 0x7900) | (rcode & 0xF)
        opt = opt_record(self._udp, rcode >> 4, bool(shape & 2)) if shape & 1 else b""
        qd = question and qend > 12
        return (
            header(int.from_bytes(query[:2], "big"), word, int(qd), 0, 0, 1 if opt else 0)
            + (query[12:qend] if qd else b"")
            + opt
        )

    def _strict(self, query: bytes, tcp: bool, peer: object) -> bytes | None:
        if len(query) < 12 or query[2] & 0x80:
            return None
        opcode = (query[2] >> 3) & 0xF
        try:
            q = parse_query(query)
        except FormError as e:
            if opcode != QUERY and opcode != NOTIFY:
                return self._simple(query, 12, NOTIMP, 0, question=False)
            qend = 12 + len(e.question) if e.question is not None else 12
            return self._simple(query, qend, FORMERR, 0)
        qend = q.question_end
        shape = 0 if q.edns is None else (3 if q.edns.do else 1)
        if opcode != QUERY and opcode != NOTIFY:
            return self._simple(query, qend, NOTIMP, shape)
        if q.edns is not None and q.edns.version > 0:
            return self._simple(query, qend, BADVERS, shape)
        if opcode == NOTIFY:
            return self._notify_reply(query, q, shape, peer)
        if query[6:8] != b"\x00\x00" or (query[8:10] != b"\x00\x00" and q.qtype != IXFR):
            return self._simple(query, qend, FORMERR, 0)
        if tcp:
            limit = _TCP_LIMIT
        elif q.edns is None:
            limit = 512
        else:
            limit = min(max(q.edns.payload, 512), self._udp)
        key = query[12 : qend - 4].lower() + query[qend - 4 : qend] + _SHAPE_KEY[shape]
        entry = self._cache.get(key)
        if entry is not None:
            return self._reply(query, qend, entry, limit)
        return self._miss(query, qend, key, shape, limit, tcp)

    def _notify_reply(self, query: bytes, q: Query, shape: int, peer: object) -> bytes:
        qend = q.question_end
        if self._notify is None:
            return self._simple(query, qend, NOTIMP, shape)
        zone = self._zones.get(q.qname.lower())
        rcode = self._notify(NotifyRequest(q.id, q.qname, q.qtype, zone, q.soa_serial, peer))
        return self._simple(query, qend, rcode, shape, flags=_AA if zone is not None else 0)

    # ----------------------------------------------------------------- transfers

    def _transfer_by_query(
        self, query: bytes, qend: int, qname: bytes, qtype: int, shape: int, limit: int, tcp: bool
    ) -> bytes:
        if qtype == AXFR and not tcp:
            return self._simple(query, qend, NOTIMP, shape)
        if tcp or not self._transfers:
            return self._simple(query, qend, REFUSED, shape)
        zone = self._zones.get(qname)
        if zone is None:
            return self._simple(query, qend, NOTAUTH, shape)
        plan = Plan(answer=[(None, zone.soa)])
        return self._reply(query, qend, self._encode(plan, qname, shape), limit)

    def transfer_request(self, query: bytes) -> TransferRequest | None:
        """For the TCP edge, before ``handle()``: an AXFR/IXFR it should serve itself.

        None for anything else (including malformed queries: ``handle()`` answers those).
        """
        if len(query) < 12 or query[2] & 0xF8:
            return None
        try:
            q = parse_query(query)
        except FormError:
            return None
        if q.qtype not in (AXFR, IXFR) or q.qclass != 1 or query[6:8] != b"\x00\x00":
            return None
        zone = self._zones.get(q.qname.lower())
        serial = q.soa_serial if q.qtype == IXFR else None
        return TransferRequest(q.id, q.qname, q.qtype, zone, serial, q.edns)
