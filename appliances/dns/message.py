"""Reading whole DNS messages from peers: responses to our SOA queries, zone
transfers, NOTIFY answers, and messages carrying TSIG.

``wire.parse_query`` is the strict parser for queries we answer and never
follows compression pointers.  Here we read what other servers send us, where
names in the answer section are compressed (RFC 1035 §4.1.4), so pointers are
followed, with two bounds that end any loop: every pointer must point strictly
before the place it was read from, and a name may not grow past 255 octets
(RFC 1035 §2.3.4).  Names inside RDATA are decompressed for the types RFC 3597 §4
lists as possibly compressed by older senders (NS, CNAME, SOA, MX, PTR, MINFO,
RP, AFSDB, RT, PX, KX, SRV, NAPTR, DNAME...), so that stored RDATA is always the
uncompressed form the zone index and the answer writer expect.

Every malformed input raises ``MessageError`` (a remote error: the peer's bytes
are wrong), never anything else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .names import MAX_LABEL, MAX_NAME

__all__ = ["RR", "Message", "MessageError", "parse_message", "read_name", "rr_bytes"]

_HEADER = struct.Struct("!6H")
_RR_FIXED = struct.Struct("!HHIH")

# type -> RDATA layout: a list of parts; "n" a (possibly compressed) name, an int
# a fixed run of octets, "s" a character-string (RFC 1035 §3.3).
_LAYOUTS: dict[int, tuple[object, ...]] = {
    2: ("n",),  # NS
    3: ("n",),  # MD
    4: ("n",),  # MF
    5: ("n",),  # CNAME
    6: ("n", "n", 20),  # SOA
    7: ("n",),  # MB
    8: ("n",),  # MG
    9: ("n",),  # MR
    12: ("n",),  # PTR
    14: ("n", "n"),  # MINFO
    15: (2, "n"),  # MX
    17: ("n", "n"),  # RP
    18: (2, "n"),  # AFSDB
    21: (2, "n"),  # RT
    26: (2, "n", "n"),  # PX
    33: (6, "n"),  # SRV
    35: (4, "s", "s", "s", "n"),  # NAPTR
    36: (2, "n"),  # KX
    39: ("n",),  # DNAME
}


class MessageError(ValueError):
    """A message from a peer that cannot be read."""


@dataclass(frozen=True, slots=True)
class RR:
    #: uncompressed wire owner name, case as sent
    owner: bytes
    rtype: int
    rclass: int
    ttl: int
    #: RDATA with names decompressed (see the module docstring)
    rdata: bytes
    #: offset of the record's first octet in the message
    offset: int


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    flags: int
    #: the question name (uncompressed wire), type and class, or None without a question
    question: tuple[bytes, int, int] | None
    answer: tuple[RR, ...]
    authority: tuple[RR, ...]
    additional: tuple[RR, ...]

    @property
    def rcode(self) -> int:
        return self.flags & 0xF

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF


def read_name(data: bytes, pos: int) -> tuple[bytes, int]:
    """The uncompressed name at ``pos`` and the offset just past it (in the original place)."""
    out = bytearray()
    end = -1
    n = len(data)
    limit = pos  # a pointer must point before the place it was read from
    while True:
        if pos >= n:
            raise MessageError("name runs past the end")
        length = data[pos]
        if length >= 0xC0:
            if pos + 2 > n:
                raise MessageError("name runs past the end")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if end < 0:
                end = pos + 2
            if target >= limit:
                raise MessageError("compression pointer does not point backwards")
            limit = target
            pos = target
            continue
        if length > MAX_LABEL:
            raise MessageError("extended label type")
        if pos + 1 + length > n:
            raise MessageError("label runs past the end")
        out += data[pos : pos + 1 + length]
        if len(out) > MAX_NAME:
            raise MessageError("name longer than 255 octets")
        pos += 1 + length
        if length == 0:
            return bytes(out), (end if end >= 0 else pos)


def _rdata(data: bytes, rtype: int, pos: int, rdlen: int) -> bytes:
    end = pos + rdlen
    layout = _LAYOUTS.get(rtype)
    if layout is None:
        return data[pos:end]
    out = bytearray()
    for part in layout:
        if part == "n":
            name, pos = read_name(data, pos)
            out += name
        elif part == "s":
            if pos >= end:
                raise MessageError("character-string runs past the RDATA")
            length = data[pos] + 1
            out += data[pos : pos + length]
            pos += length
        else:
            assert isinstance(part, int)
            out += data[pos : pos + part]
            pos += part
        if pos > end:
            raise MessageError(f"RDATA of type {rtype} runs past its length")
    if pos != end:
        raise MessageError(f"RDATA of type {rtype} has {end - pos} extra octets")
    return bytes(out)


def parse_message(data: bytes) -> Message:
    """Read a whole message; raises ``MessageError``."""
    if len(data) < 12:
        raise MessageError("shorter than a header")
    ident, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    if qd > 1:
        raise MessageError(f"QDCOUNT is {qd}")
    pos = 12
    question = None
    if qd:
        qname, pos = read_name(data, pos)
        if pos + 4 > len(data):
            raise MessageError("question cut short")
        qtype, qclass = struct.unpack_from("!HH", data, pos)
        question = (qname, qtype, qclass)
        pos += 4
    sections: list[list[RR]] = [[], [], []]
    for section, count in zip(sections, (an, ns, ar), strict=True):
        for _ in range(count):
            start = pos
            owner, pos = read_name(data, pos)
            if pos + 10 > len(data):
                raise MessageError("record cut short")
            rtype, rclass, ttl, rdlen = _RR_FIXED.unpack_from(data, pos)
            pos += 10
            if pos + rdlen > len(data):
                raise MessageError("RDATA runs past the end")
            section.append(RR(owner, rtype, rclass, ttl, _rdata(data, rtype, pos, rdlen), start))
            pos += rdlen
    if pos != len(data):
        raise MessageError(f"{len(data) - pos} octets after the last record")
    return Message(ident, flags, question, tuple(sections[0]), tuple(sections[1]), tuple(sections[2]))


def rr_bytes(owner: bytes, rtype: int, ttl: int, rdata: bytes, rclass: int = 1) -> bytes:
    """One record, uncompressed."""
    return owner + _RR_FIXED.pack(rtype, rclass, ttl, len(rdata)) + rdata
