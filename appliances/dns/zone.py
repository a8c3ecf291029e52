"""An immutable, indexed zone, and the checks a zone must pass before it is served.

The index is one dict from lowercase wire owner name to that node's RRsets
(``{type: RRset}``).  Empty non-terminals are in it too, with no RRsets, so one
dict lookup tells "exists" (RFC 4592 §2.2.2) apart from "does not exist".  Beside
it: the delegation points (NS below the apex) and the parents of wildcard owners.

Checks (errors stop the zone, warnings are returned with it):

- exactly one SOA, at the apex, and NS at the apex (RFC 1035 §5.2, RFC 1034 §4.2.1);
- no record outside the origin;
- CNAME alone at its name and single (RFC 1034 §3.6.2, RFC 2181 §10.1), DNAME single
  (RFC 6672 §2.4);
- warnings: duplicate records (dropped, RFC 2181 §5), differing TTLs in one RRset
  (the lowest wins, RFC 2181 §5.2), data hidden under a delegation (RFC 1034
  §4.2.1: only NS, DS and glue belong at or below a cut), in-zone name servers
  without an address (missing glue, RFC 9471).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from . import names, rdata, zonefile
from .errors import Problem, ZoneError
from .zonefile import Include, Record

__all__ = ["AAAA", "CNAME", "DNAME", "DS", "NS", "SOA", "A", "Loaded", "RRset", "Zone", "build", "load_zone"]

A, NS, CNAME, SOA, MX, AAAA, SRV, DNAME, DS = 1, 2, 5, 6, 15, 28, 33, 39, 43
_RRSIG, _NSEC = 46, 47
#: Types that may share a name with a CNAME (RFC 2181 §10.1, RFC 4035 §2.5).
_CNAME_COMPANIONS = frozenset({CNAME, _RRSIG, _NSEC})
#: Types that belong at a delegation point (RFC 1034 §4.2.1, RFC 4035 §2.4).
_AT_CUT = frozenset({NS, DS, _RRSIG, _NSEC})
_EMPTY: Mapping[int, RRset] = {}


@dataclass(frozen=True, slots=True)
class RRset:
    rtype: int
    ttl: int
    #: uncompressed wire RDATA, in zone-file order
    rdatas: tuple[bytes, ...]


@dataclass(frozen=True, slots=True, eq=False)
class Zone:
    #: lowercase wire form of the apex
    origin: bytes
    #: lowercase wire owner -> {type: RRset}; empty non-terminals map to an empty mapping
    nodes: Mapping[bytes, Mapping[int, RRset]]
    #: delegation points: names below the apex that own NS
    cuts: frozenset[bytes]
    #: names X such that ``*.X`` owns data
    wildcard_parents: frozenset[bytes]
    soa: RRset
    #: the SOA as put in negative answers: TTL = min(SOA TTL, MINIMUM) (RFC 2308 §3)
    negative_soa: RRset
    file: str

    @property
    def name(self) -> str:
        return names.to_text(self.origin)

    @property
    def serial(self) -> int:
        return int.from_bytes(self.soa.rdatas[0][-20:-16], "big")

    def rrsets(self) -> Iterator[tuple[bytes, RRset]]:
        """Every (owner, RRset), the apex first (for transfers and dumps)."""
        apex = self.nodes[self.origin]
        yield from ((self.origin, rrset) for rrset in apex.values())
        for owner, node in self.nodes.items():
            if owner != self.origin:
                yield from ((owner, rrset) for rrset in node.values())


@dataclass(frozen=True, slots=True)
class Loaded:
    zone: Zone
    warnings: tuple[Problem, ...]


def load_zone(
    text: str | bytes,
    origin: str | None = None,
    *,
    filename: str = "<zone>",
    include: Include | None = None,
    default_ttl: int | None = None,
) -> Loaded:
    """Parse and check a master file.  ``origin`` (text, e.g. ``example.test.``) is
    the zone's apex; without it the apex is the owner of the first SOA.  Raises
    ``ZoneError`` listing every error."""
    errors: list[Problem] = []
    origin_wire: bytes | None = None
    if origin is not None:
        try:
            origin_wire = names.from_text(origin if origin.endswith(".") else origin + ".", None)
        except ValueError as e:
            raise ZoneError([Problem(filename, 0, f"bad origin {origin!r}: {e}")]) from None
    stream = zonefile.records(
        text, origin=origin_wire, filename=filename, include=include, default_ttl=default_ttl, errors=errors
    )
    try:
        zone, warnings = build(stream, origin_wire, filename)
    except ZoneError as e:
        errors.extend(e.problems)
    if errors:
        raise ZoneError(errors)
    return Loaded(zone, tuple(warnings))


#: one record inside the index being built: (ttl, rdata, file, line)
_Item = tuple[int, bytes, str, int]


def build(
    records: Iterable[Record], origin: bytes | None, filename: str = "<zone>"
) -> tuple[Zone, list[Problem]]:
    """Index and check the records of one zone; raises ``ZoneError``.

    ``origin`` None: the apex is the owner of the first SOA.  ``records`` is
    consumed once (it may be the parser's generator).
    """
    errors: list[Problem] = []
    warnings: list[Problem] = []
    # owner -> type -> items; RDATA objects are pooled: big zones repeat values a lot.
    groups: dict[bytes, dict[int, list[_Item]]] = {}
    pool: dict[bytes, bytes] = {}
    first: tuple[str, int] = (filename, 1)
    for count, rec in enumerate(records):
        if count == 0:
            first = (rec.file, rec.line)
        if origin is None and rec.rtype == SOA:
            origin = rec.owner
        owner = rec.owner.lower()
        node = groups.get(owner)
        if node is None:
            node = groups[owner] = {}
        item = (rec.ttl, pool.setdefault(rec.rdata, rec.rdata), rec.file, rec.line)
        same = node.get(rec.rtype)
        if same is None:
            node[rec.rtype] = [item]
        elif any(r[1] == rec.rdata for r in same):
            warnings.append(Problem(rec.file, rec.line, "duplicate record dropped (RFC 2181 §5)"))
        else:
            same.append(item)
    if origin is None:
        raise ZoneError([Problem(*first, "no SOA record: the zone has no apex (RFC 1035 §5.2)")])
    origin = origin.lower()
    for owner in [o for o in groups if not names.is_below(o, origin)]:
        for items in groups.pop(owner).values():
            for _, _, file, line in items:
                errors.append(
                    Problem(file, line, f"{names.to_text(owner)} is outside the zone {names.to_text(origin)}")
                )

    apex = groups.get(origin, {})
    soa_items = apex.get(SOA, [])
    where = (soa_items[0][2], soa_items[0][3]) if soa_items else first
    if not soa_items:
        errors.append(Problem(*where, f"no SOA at the apex {names.to_text(origin)}"))
    for _, _, file, line in soa_items[1:]:
        errors.append(Problem(file, line, "more than one SOA record (RFC 1035 §5.2)"))
    if NS not in apex:
        errors.append(Problem(*where, "no NS records at the apex (RFC 1034 §4.2.1)"))

    for owner, node in groups.items():
        if owner != origin and SOA in node:
            for _, _, file, line in node[SOA]:
                errors.append(Problem(file, line, f"SOA at {names.to_text(owner)}, not at the apex"))
        if CNAME in node:
            _, _, file, line = node[CNAME][0]
            others = [(t, items[0]) for t, items in node.items() if t not in _CNAME_COMPANIONS]
            if others:
                rtype, (_, _, ofile, oline) = others[0]
                errors.append(
                    Problem(
                        file,
                        line,
                        f"CNAME at {names.to_text(owner)} next to other data "
                        f"({rdata.type_name(rtype)} at {ofile}:{oline}); RFC 1034 §3.6.2, "
                        "RFC 2181 §10.1",
                    )
                )
            for _, _, file, line in node[CNAME][1:]:
                errors.append(Problem(file, line, "more than one CNAME at one name (RFC 1034 §3.6.2)"))
        for _, _, file, line in node.get(DNAME, [])[1:]:
            errors.append(Problem(file, line, "more than one DNAME at one name (RFC 6672 §2.4)"))
        if NS in node and owner[:2] == b"\x01*":
            _, _, file, line = node[NS][0]
            errors.append(Problem(file, line, "NS at a wildcard owner cannot delegate (RFC 4592 §4.2)"))

    cuts = frozenset(o for o, node in groups.items() if NS in node and o != origin and o[:2] != b"\x01*")
    _check_delegations(groups, origin, cuts, warnings)
    if errors:
        raise ZoneError(errors)

    nodes: dict[bytes, Mapping[int, RRset]] = {}
    for owner, node in groups.items():
        nodes[owner] = {rtype: _rrset(rtype, items, warnings) for rtype, items in node.items()}
        node.clear()  # frees the items now rather than at the end: lower peak memory
    del groups, pool
    for owner in list(nodes):
        up = owner
        while up != origin:
            up = names.parent(up)
            if up in nodes:
                break
            nodes[up] = _EMPTY
    wild = frozenset(names.parent(o) for o in nodes if o[:2] == b"\x01*")
    soa = nodes[origin][SOA]
    minimum = int.from_bytes(soa.rdatas[0][-4:], "big")
    negative = RRset(SOA, min(soa.ttl, minimum), soa.rdatas)
    zone = Zone(origin, nodes, cuts, wild, soa, negative, filename)
    return zone, warnings


def _rrset(rtype: int, items: list[_Item], warnings: list[Problem]) -> RRset:
    ttl = items[0][0]
    for item_ttl, _, file, line in items[1:]:
        if item_ttl != ttl:
            warnings.append(
                Problem(
                    file,
                    line,
                    f"TTL {item_ttl} differs from {ttl} in the same RRset; using the lowest (RFC 2181 §5.2)",
                )
            )
            ttl = min(ttl, item_ttl)
    return RRset(rtype, ttl, tuple(item[1] for item in items))


def _check_delegations(
    groups: dict[bytes, dict[int, list[_Item]]],
    origin: bytes,
    cuts: frozenset[bytes],
    warnings: list[Problem],
) -> None:
    """Missing glue and occluded data (RFC 1034 §4.2.1, RFC 9471)."""
    glue: set[bytes] = set()
    for node in groups.values():
        for _, data, file, line in node.get(NS, ()):
            target = data.lower()
            if not names.is_below(target, origin):
                continue  # out of zone: the resolver finds its address elsewhere
            target_node = groups.get(target, {})
            if A not in target_node and AAAA not in target_node:
                message = f"NS target {names.to_text(target)} is in the zone but has no A/AAAA (missing glue)"
                warnings.append(Problem(file, line, message))
            glue.add(target)
    if not cuts:
        return
    for owner, node in groups.items():
        cut = _cut_above(owner, origin, cuts)
        if cut is None:
            continue
        for rtype, items in node.items():
            if owner == cut and rtype in _AT_CUT:
                continue
            if rtype in (A, AAAA) and owner in glue:
                continue
            _, _, file, line = items[0]
            message = (
                f"{rdata.type_name(rtype)} at {names.to_text(owner)} is hidden by the delegation at "
                f"{names.to_text(cut)} and never served"
            )
            warnings.append(Problem(file, line, message))


def _cut_above(owner: bytes, origin: bytes, cuts: frozenset[bytes]) -> bytes | None:
    """The highest delegation point at or above ``owner`` (None if not delegated)."""
    found = None
    name = owner
    while name != origin and name != names.ROOT:
        if name in cuts:
            found = name
        name = names.parent(name)
    return found
