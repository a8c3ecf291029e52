"""DNS messages on the wire: the strict query parser and the answer writer.

Parsing (RFC 1035 §4.1) is by hand from bytes.  ``parse_query`` is the one strict
parser: it returns a ``Query`` or raises ``FormError``, which carries what a
FORMERR answer needs (RFC 1035 §4.1.1: "the name server was unable to interpret
the query").  In the question, names must be plain: a compression pointer there
can only point back into the header or the question itself, so it is refused
rather than followed (no loops to bound).  Names in the other sections are only
skipped, never followed.

``Writer`` builds answers with name compression (RFC 1035 §4.1.4), compressing
names inside RDATA only for the types RFC 3597 §4 allows.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .names import MAX_LABEL, MAX_NAME
from .rdata import COMPRESSIBLE, SOA
from .zone import RRset

__all__ = [
    "OPT",
    "Edns",
    "FormError",
    "Query",
    "Writer",
    "header",
    "opt_record",
    "parse_query",
]

OPT = 41
_HEADER = struct.Struct("!6H")
_RR_FIXED = struct.Struct("!HHIH")
_POINTER_LIMIT = 0x3FFF  # RFC 1035 §4.1.4: 14-bit offsets


@dataclass(frozen=True, slots=True)
class Edns:
    """The OPT pseudo-record of a query (RFC 6891 §6.1.2)."""

    payload: int
    version: int
    do: bool


@dataclass(frozen=True, slots=True)
class Query:
    id: int
    flags: int
    opcode: int
    #: the question name as received (case kept)
    qname: bytes
    qtype: int
    qclass: int
    #: offset just past the question section
    question_end: int
    edns: Edns | None
    #: serial of a SOA in the answer section (NOTIFY, RFC 1996 §3.7) or authority (IXFR, RFC 1995 §3)
    soa_serial: int | None


class FormError(Exception):
    """A remote error: the query cannot be interpreted; answer FORMERR (RFC 1035 §4.1.1).

    ``question`` is the raw question section when it parsed, to echo back.
    """

    def __init__(self, message: str, question: bytes | None = None) -> None:
        super().__init__(message)
        self.question = question


def _question_name_end(data: bytes, pos: int) -> int:
    """End of the plain (uncompressed) name at ``pos``; raises ``FormError``."""
    start = pos
    n = len(data)
    while True:
        if pos >= n:
            raise FormError("question name runs past the end")
        length = data[pos]
        if length == 0:
            pos += 1
            break
        if length > MAX_LABEL:
            raise FormError(
                "compression pointer or extended label in the question"
                if length >= 0xC0
                else "label longer than 63 octets"
            )
        pos += length + 1
    if pos - start > MAX_NAME:
        raise FormError("question name longer than 255 octets")
    return pos


def _skip_name(data: bytes, pos: int) -> int:
    """End of a possibly compressed name; the pointer is checked, not followed."""
    start = pos
    n = len(data)
    while True:
        if pos >= n:
            raise FormError("name runs past the end")
        length = data[pos]
        if length == 0:
            pos += 1
            break
        if length >= 0xC0:
            if pos + 2 > n:
                raise FormError("name runs past the end")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            # A pointer must point backwards (RFC 1035 §4.1.4 "prior occurrence").
            if target >= start:
                raise FormError("compression pointer does not point backwards")
            pos += 2
            break
        if length > MAX_LABEL:
            raise FormError("extended label type")
        pos += length + 1
    if pos - start > MAX_NAME:
        raise FormError("name longer than 255 octets")
    return pos


def _edns(data: bytes, pos: int, rdlen: int, udp: int, ttl: int) -> Edns:
    """Check the OPT options (RFC 6891 §6.1.2: a sequence of code/length/data)."""
    end = pos + rdlen
    while pos < end:
        if pos + 4 > end:
            raise FormError("malformed EDNS option")
        pos += 4 + ((data[pos + 2] << 8) | data[pos + 3])
    if pos != end:
        raise FormError("malformed EDNS option")
    return Edns(udp, (ttl >> 16) & 0xFF, bool(ttl & 0x8000))


def parse_query(data: bytes) -> Query:
    """Parse a whole query message (at least the 12-byte header is assumed present)."""
    ident, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    opcode = (flags >> 11) & 0xF
    if qdcount != 1:
        raise FormError(f"QDCOUNT is {qdcount}, not 1")
    qname_end = _question_name_end(data, 12)
    pos = qname_end + 4
    if pos > len(data):
        raise FormError("question cut short")
    question = data[12:pos]
    qtype = (data[qname_end] << 8) | data[qname_end + 1]
    qclass = (data[qname_end + 2] << 8) | data[qname_end + 3]
    edns: Edns | None = None
    serial: int | None = None
    try:
        for section, count in ((1, ancount), (2, nscount), (3, arcount)):
            for _ in range(count):
                owner = pos
                pos = _skip_name(data, pos)
                if pos + 10 > len(data):
                    raise FormError("record cut short")
                rtype, rclass, ttl, rdlen = _RR_FIXED.unpack_from(data, pos)
                pos += 10
                if pos + rdlen > len(data):
                    raise FormError("RDATA runs past the end")
                if rtype == OPT:
                    # RFC 6891 §6.1.1: one OPT, in the additional section, owned by the root.
                    if section != 3 or edns is not None or data[owner] != 0:
                        raise FormError("OPT record misplaced, repeated or not owned by the root")
                    edns = _edns(data, pos, rdlen, rclass, ttl)
                elif rtype == SOA and section < 3 and serial is None:
                    rd = _skip_name(data, _skip_name(data, pos))
                    if rd + 20 != pos + rdlen:
                        raise FormError("malformed SOA")
                    serial = int.from_bytes(data[rd : rd + 4], "big")
                pos += rdlen
        if pos != len(data):
            raise FormError(f"{len(data) - pos} octets after the last record")
    except FormError as e:
        e.question = question
        raise
    return Query(ident, flags, opcode, data[12:qname_end], qtype, qclass, qname_end + 4, edns, serial)


def header(ident: int, flags: int, qd: int, an: int, ns: int, ar: int) -> bytes:
    return _HEADER.pack(ident, flags, qd, an, ns, ar)


def opt_record(payload: int, ext_rcode: int = 0, do: bool = False) -> bytes:
    """Our OPT (RFC 6891 §6.1.2-3): root owner, our UDP size, version 0, DO echoed."""
    return b"\x00" + _RR_FIXED.pack(OPT, payload, (ext_rcode << 24) | (0x8000 if do else 0), 0)


class Writer:
    """Appends records to a message with name compression.

    The compression table maps a lowercase name suffix to its offset.  Only names
    written with compression are entered (names inside SRV, NAPTR, SVCB... RDATA
    are written whole and never pointed into).
    """

    __slots__ = ("buf", "table")

    def __init__(self, prefix: bytes | bytearray) -> None:
        self.buf = bytearray(prefix)
        self.table: dict[bytes, int] = {}

    def seed(self, name: bytes, offset: int, *, first: int = 0) -> None:
        """Enter suffixes of lowercase ``name`` written at ``offset``, from label offset ``first`` on."""
        i = first
        while name[i]:
            self.table[name[i:]] = offset + i
            i += name[i] + 1

    def name(self, name: bytes) -> None:
        buf, table = self.buf, self.table
        lower = name.lower()
        i = 0
        while True:
            length = name[i]
            if length == 0:
                buf.append(0)
                return
            suffix = lower[i:]
            at = table.get(suffix)
            if at is not None:
                buf += (0xC000 | at).to_bytes(2, "big")
                return
            if len(buf) <= _POINTER_LIMIT:
                table[suffix] = len(buf)
            buf += name[i : i + length + 1]
            i += length + 1

    def rrset(self, owner: bytes | None, rrset: RRset) -> int:
        """Write every record of ``rrset``; ``owner`` None means "the question name" (offset 12)."""
        buf = self.buf
        rtype = rrset.rtype
        fixed = _RR_FIXED.pack(rtype, 1, rrset.ttl, 0)[:8]
        at = COMPRESSIBLE.get(rtype)
        for data in rrset.rdatas:
            if owner is None:
                buf += b"\xc0\x0c"
            else:
                self.name(owner)
            buf += fixed
            mark = len(buf)
            buf += b"\x00\x00"
            if at is not None:
                buf += data[:at]
                self.name(data[at:])
            elif rtype == SOA:
                mname_end = _plain_end(data, 0)
                rname_end = _plain_end(data, mname_end)
                self.name(data[:mname_end])
                self.name(data[mname_end:rname_end])
                buf += data[rname_end:]
            else:
                buf += data
            rdlen = len(buf) - mark - 2
            buf[mark] = rdlen >> 8
            buf[mark + 1] = rdlen & 0xFF
        return len(rrset.rdatas)


def _plain_end(data: bytes, pos: int) -> int:
    while data[pos]:
        pos += data[pos] + 1
    return pos + 1
