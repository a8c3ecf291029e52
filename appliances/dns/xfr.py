"""Zone transfers, sans-IO: the messages of an AXFR/IXFR answer, the journal of
zone versions IXFR answers from, and reading a transfer from a primary.

Out (we are the primary):

- AXFR (RFC 5936 §2.2): the SOA, every other record, the SOA again, spread over
  as many messages as needed, each at most ``MESSAGE_SIZE`` octets plus one
  RRset (BIND and NSD also cut at about 16 KB, far below the 65,535 limit, so
  that a TSIG fits and the first bytes leave early).  Every message repeats the
  question (RFC 5936 §2.2.1 allows it; dnspython, NSD and Knot accept it).
- IXFR (RFC 1995 §4): the new SOA, then for each version step the old SOA, the
  deleted records, the new SOA, the added records, and the new SOA at the end.
  A client already at our serial (or newer) gets our SOA alone; a client whose
  serial is not in the journal gets the whole zone in AXFR form (RFC 1995 §4
  "... the server ... may send the entire zone").

The journal keeps, per zone, the differences between the last ``versions``
successive versions, computed when a zone is replaced (reload, or a transfer
from our own primary).  It lives in memory: after a restart, secondaries get
AXFR once, as from BIND without ``ixfr-from-differences`` journals.

In (we are a secondary): ``TransferReader`` takes the records of an AXFR or
IXFR answer as they arrive and yields the new record set (or "up to date").
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from .message import RR, MessageError, read_name, rr_bytes
from .wire import Writer, header
from .zone import SOA, RRset, Zone, build
from .zonefile import Record

__all__ = [
    "MESSAGE_SIZE",
    "Diff",
    "Journal",
    "Rec",
    "TransferError",
    "TransferReader",
    "axfr_messages",
    "decode_records",
    "encode_records",
    "iter_changed",
    "ixfr_messages",
    "records_of",
    "serial_gt",
    "soa_serial",
    "zone_from_records",
]

#: soft size of one transfer message (see the module docstring)
MESSAGE_SIZE = 16 * 1024
_QR_AA = 0x8400
#: one record: (lowercase owner, type, ttl, uncompressed rdata)
Rec = tuple[bytes, int, int, bytes]


class TransferError(Exception):
    """A transfer from a primary that cannot be used (a remote error)."""


def serial_gt(a: int, b: int) -> bool:
    """RFC 1982 §3.2 serial number arithmetic: is ``a`` after ``b``?"""
    return a != b and ((a < b and b - a > 2**31) or (a > b and a - b < 2**31))


def soa_serial(rdata: bytes) -> int:
    return int.from_bytes(rdata[-20:-16], "big")


def records_of(zone: Zone) -> set[Rec]:
    """Every record of ``zone`` except the SOA."""
    return {
        (owner, rrset.rtype, rrset.ttl, rdata)
        for owner, rrset in zone.rrsets()
        if rrset.rtype != SOA
        for rdata in rrset.rdatas
    }


# --------------------------------------------------------------------- journal


@dataclass(frozen=True, slots=True)
class Diff:
    old_soa: RRset
    new_soa: RRset
    deleted: tuple[Rec, ...]
    added: tuple[Rec, ...]

    @property
    def old_serial(self) -> int:
        return soa_serial(self.old_soa.rdatas[0])

    @property
    def new_serial(self) -> int:
        return soa_serial(self.new_soa.rdatas[0])


@dataclass
class Journal:
    """The last ``versions`` differences per zone (by lowercase wire origin)."""

    versions: int = 16
    diffs: dict[bytes, list[Diff]] = field(default_factory=dict)

    def record(self, old: Zone, new: Zone) -> Diff | None:
        """Remember how ``old`` became ``new``.  A change without a newer serial
        cannot be told to secondaries: the zone's history is dropped."""
        if not serial_gt(new.serial, old.serial) or self.versions <= 0:
            self.diffs.pop(new.origin, None)
            return None
        before, after = records_of(old), records_of(new)
        diff = Diff(old.soa, new.soa, tuple(sorted(before - after)), tuple(sorted(after - before)))
        chain = self.diffs.setdefault(new.origin, [])
        if chain and chain[-1].new_serial != old.serial:
            chain.clear()
        chain.append(diff)
        del chain[: -self.versions]
        return diff

    def forget(self, origin: bytes) -> None:
        self.diffs.pop(origin, None)

    def since(self, origin: bytes, serial: int) -> list[Diff] | None:
        """The differences from ``serial`` to now, or None if not kept."""
        chain = self.diffs.get(origin, [])
        for i, diff in enumerate(chain):
            if diff.old_serial == serial:
                return chain[i:]
        return None


# --------------------------------------------------------------------- out


class _Messages:
    """Packs RRsets into messages of about ``MESSAGE_SIZE`` octets."""

    def __init__(self, ident: int, question: bytes) -> None:
        self._ident = ident
        self._question = question
        self._out: list[bytes] = []
        self._new()

    def _new(self) -> None:
        self._writer = Writer(bytes(12) + self._question)
        self._writer.seed(self._question[:-4].lower(), 12)
        self._count = 0

    def _flush(self) -> None:
        buf = self._writer.buf
        buf[:12] = header(self._ident, _QR_AA, 1, self._count, 0, 0)
        self._out.append(bytes(buf))
        self._new()

    def add(self, owner: bytes, rrset: RRset) -> None:
        self._count += self._writer.rrset(owner, rrset)
        if len(self._writer.buf) >= MESSAGE_SIZE:
            self._flush()

    def add_records(self, records: Iterable[Rec]) -> None:
        for owner, rtype, ttl, rdata in records:
            self.add(owner, RRset(rtype, ttl, (rdata,)))

    def done(self) -> list[bytes]:
        if self._count or not self._out:
            self._flush()
        return self._out


def axfr_messages(ident: int, question: bytes, zone: Zone) -> list[bytes]:
    """The whole zone (RFC 5936 §2.2).  ``question``: the query's question section."""
    out = _Messages(ident, question)
    out.add(zone.origin, zone.soa)
    for owner, rrset in zone.rrsets():
        if rrset.rtype != SOA:
            out.add(owner, rrset)
    out.add(zone.origin, zone.soa)
    return out.done()


def ixfr_messages(ident: int, question: bytes, zone: Zone, diffs: list[Diff]) -> list[bytes]:
    """RFC 1995 §4 incremental form; ``diffs`` empty: the SOA alone (up to date)."""
    out = _Messages(ident, question)
    out.add(zone.origin, zone.soa)
    for diff in diffs:
        out.add(zone.origin, diff.old_soa)
        out.add_records(diff.deleted)
        out.add(zone.origin, diff.new_soa)
        out.add_records(diff.added)
    if diffs:
        out.add(zone.origin, zone.soa)
    return out.done()


# --------------------------------------------------------------------- in


class TransferReader:
    """Records of an AXFR/IXFR answer in, the new zone content out.

    After ``finish()``: ``up_to_date`` (the primary has nothing newer), or ``soa``
    and ``records`` (the full new content, SOA apart).  ``incremental`` says
    whether the primary answered with differences.
    """

    def __init__(self, origin: bytes, *, serial: int | None = None, current: Iterable[Rec] = ()) -> None:
        self.origin = origin.lower()
        self._serial = serial
        self._current = set(current)
        self.records: set[Rec] = set()
        self.soa: RRset | None = None
        self.up_to_date = False
        self.incremental = False
        self.done = False
        self._count = 0
        self._state = "start"
        self._new_serial = 0
        self._step_serial = 0

    def feed(self, rrs: Iterable[RR]) -> bool:
        """Take one message's answer records; True once the transfer is complete."""
        for rr in rrs:
            if self.done:
                raise TransferError("records after the closing SOA")
            self._one(rr)
        return self.done

    def end_of_message(self) -> bool:
        """An IXFR answer of one SOA only, at or before our serial: up to date (RFC 1995 §4)."""
        if self._state == "first" and self._serial is not None:
            if not serial_gt(self._new_serial, self._serial):
                self.up_to_date = True
                self.done = True
        return self.done

    def _one(self, rr: RR) -> None:
        self._count += 1
        owner = rr.owner.lower()
        rec = (owner, rr.rtype, rr.ttl, rr.rdata)
        is_soa = rr.rtype == SOA and owner == self.origin
        if rr.rclass != 1:
            raise TransferError(f"record of class {rr.rclass} in the transfer")
        if self._state == "start":
            if not is_soa:
                raise TransferError("the transfer does not start with the zone's SOA (RFC 5936 §2.2)")
            self.soa = RRset(SOA, rr.ttl, (rr.rdata,))
            self._new_serial = soa_serial(rr.rdata)
            self._state = "first"
            return
        if self._state == "first":
            if (
                is_soa
                and self._serial is not None
                and soa_serial(rr.rdata) == self._serial
                and serial_gt(self._new_serial, self._serial)
            ):
                self.incremental = True
                self.records = set(self._current)
                self._state = "delete"
                return
            if is_soa:
                # The closing SOA right after the opening one: a zone of nothing but its SOA.
                raise TransferError("the transfer holds no records (NS are required, RFC 1034 §4.2.1)")
            self._state = "axfr"
        if self._state == "axfr":
            if is_soa:
                if soa_serial(rr.rdata) != self._new_serial:
                    raise TransferError("the closing SOA differs from the opening one")
                self.done = True
                return
            self.records.add(rec)
            return
        if self._state == "delete":
            if is_soa:
                self._step_serial = soa_serial(rr.rdata)
                self._state = "add"
                return
            self.records.discard(rec)
            return
        # state "add"
        if is_soa:
            serial = soa_serial(rr.rdata)
            if serial == self._new_serial and self._step_serial == self._new_serial:
                self.done = True
                return
            if serial != self._step_serial:
                raise TransferError("IXFR steps do not follow each other (RFC 1995 §4)")
            self._state = "delete"
            return
        self.records.add(rec)

    def finish(self) -> None:
        if not self.done:
            raise TransferError("the transfer ended before its closing SOA")


def zone_from_records(origin: bytes, soa: RRset, records: Iterable[Rec], source: str) -> Zone:
    """Index and check transferred records (the same checks as a master file)."""
    recs = [Record(origin, SOA, soa.ttl, soa.rdatas[0], source, 0)]
    recs.extend(Record(owner, rtype, ttl, rdata, source, 0) for owner, rtype, ttl, rdata in records)
    zone, _ = build(recs, origin, source)
    return zone


# --------------------------------------------------------------------- persistence

_MAGIC = b"DNSZONE1"


def encode_records(soa: RRset, records: Iterable[Rec], origin: bytes) -> bytes:
    """A zone's records as bytes for the store: the SOA first, uncompressed RRs."""
    parts = [_MAGIC, rr_bytes(origin, SOA, soa.ttl, soa.rdatas[0])]
    parts.extend(rr_bytes(owner, rtype, ttl, rdata) for owner, rtype, ttl, rdata in sorted(records))
    return b"".join(parts)


def decode_records(data: bytes) -> tuple[RRset, list[Rec]]:
    """The inverse of ``encode_records``; raises ``MessageError`` if damaged."""
    if not data.startswith(_MAGIC):
        raise MessageError("not a stored zone")
    pos = len(_MAGIC)
    soa: RRset | None = None
    records: list[Rec] = []
    while pos < len(data):
        owner, pos = read_name(data, pos)
        if pos + 10 > len(data):
            raise MessageError("record cut short")
        rtype, _, ttl, rdlen = struct.unpack_from("!HHIH", data, pos)
        pos += 10
        rdata = data[pos : pos + rdlen]
        pos += rdlen
        if soa is None:
            soa = RRset(SOA, ttl, (rdata,))
        else:
            records.append((owner, rtype, ttl, rdata))
    if soa is None or pos != len(data):
        raise MessageError("stored zone cut short")
    return soa, records


def iter_changed(old: Mapping[bytes, Zone], new: Mapping[bytes, Zone]) -> Iterator[tuple[Zone | None, Zone]]:
    """(old or None, new) for every zone of ``new`` that is new or differs from ``old``."""
    for origin, zone in new.items():
        before = old.get(origin)
        if before is None or (
            before is not zone and (before.serial != zone.serial or records_of(before) != records_of(zone))
        ):
            yield before, zone
