"""What to answer: RFC 1034 §4.3.2's algorithm over our zones, as a ``Plan`` of RRsets.

The steps, as in RFC 1034 §4.3.2 (with RFC 4592 for wildcards, RFC 2308 for
negative answers and RFC 6604 for the rcode after a CNAME chain):

1. Pick the zone: the deepest of ours that contains the name.  None -> REFUSED.
   A DS question at a zone's apex belongs to the parent side (RFC 4035 §3.1.4.1),
   so if we also serve the parent, the parent answers it.
2. Walk down from the apex: a delegation point (NS below the apex) at or above the
   name ends the search in a referral (AA clear, NS in authority, glue in
   additional).  DS at the cut itself is parent-side data and is answered.
3. The name exists (possibly as an empty non-terminal): answer the type, or follow
   a CNAME, or say NODATA (NOERROR, SOA in authority).
4. It does not: find the closest encloser; if ``*.<closest encloser>`` exists its
   RRsets are synthesised with the question name as owner (RFC 4592 §3.3.1);
   otherwise NXDOMAIN with the SOA.
5. A CNAME restarts the search at its target in any of our zones, at most
   ``MAX_CHAIN`` times and never twice at one name.  Leaving our zones ends the
   chain there: the rest is the resolver's job.  The rcode is the one of the last
   name looked up (RFC 6604 §3), AA stays that of the first step (RFC 1035 §4.1.1).

A plan also says how widely its encoded form can be reused (``template``): an
answer built for one name under a wildcard, under a delegation or for a name that
does not exist is the same for every such name of the same length, as long as the
encoder only compresses against the part of the question name from ``anchor`` on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .names import is_below, label_offsets
from .zone import AAAA, CNAME, DS, MX, NS, SRV, A, RRset, Zone

__all__ = ["ANY", "MAX_CHAIN", "NXDOMAIN", "Plan", "find_zone", "resolve"]

ANY = 255
NXDOMAIN = 3
#: CNAME links followed for one answer.  RFC 1034 sets no bound; BIND stops at 16
#: and resolvers restart their own lookup from where we stop, so a short bound costs
#: nothing and keeps a hostile zone from making answers expensive.
MAX_CHAIN = 8

Owner = bytes | None  # None: the question name itself (written as a pointer to offset 12)


@dataclass(slots=True)
class Plan:
    rcode: int = 0
    aa: bool = True
    answer: list[tuple[Owner, RRset]] = field(default_factory=list)
    authority: list[tuple[Owner, RRset]] = field(default_factory=list)
    #: (owner, RRset, required): required glue must fit or the answer is truncated (RFC 9471)
    additional: list[tuple[bytes, RRset, bool]] = field(default_factory=list)
    #: None: the answer is for this exact name; else a key shared by every name it fits
    template: bytes | None = None
    #: label offset in the question name from which suffixes may be compression targets
    anchor: int = 0
    #: the CNAME chain came back to the question name: the answer fits no other name
    self_loop: bool = False


def find_zone(zones: Mapping[bytes, Zone], name: bytes, offsets: list[int]) -> tuple[Zone, int] | None:
    """The deepest zone containing lowercase ``name``, and the index of its apex in ``offsets``."""
    for k, off in enumerate(offsets):
        zone = zones.get(name[off:])
        if zone is not None:
            return zone, k
    return None


def _cut(zone: Zone, name: bytes, offsets: list[int], k: int, qtype: int) -> int:
    """Index in ``offsets`` of the highest delegation point at or above ``name``, or -1."""
    cuts = zone.cuts
    if cuts:
        for i in range(k - 1, -1, -1):
            if name[offsets[i] :] in cuts:
                # DS at the cut itself is answered from the parent side (RFC 4035 §3.1.4.1).
                if i == 0 and qtype == DS:
                    return -1
                return i
    return -1


def resolve(zones: Mapping[bytes, Zone], qname: bytes, qtype: int) -> Plan | None:
    """Plan the answer for lowercase ``qname``; None when no zone of ours holds it."""
    offsets = label_offsets(qname)
    found = find_zone(zones, qname, offsets)
    if found is None:
        return None
    zone, k = found
    if qtype == DS and k == 0 and len(offsets) > 1:
        parent = find_zone(zones, qname, offsets[1:])
        if parent is not None:
            zone, k = parent[0], parent[1] + 1
    plan = Plan()
    seen: set[bytes] = set()
    name, owner = qname, None
    visited = {qname}
    first = True
    while True:
        i = _cut(zone, name, offsets, k, qtype)
        if i >= 0:
            cut = name[offsets[i] :]
            _referral(zones, zone, cut, None if first and i == 0 else cut, plan, seen)
            if first:
                plan.aa = False
                plan.template, plan.anchor = b"R" + cut, offsets[i]
            break
        node = zone.nodes.get(name)
        if node is None:
            i = 1
            while name[offsets[i] :] not in zone.nodes:
                i += 1
            encloser = name[offsets[i] :]
            if encloser in zone.wildcard_parents:
                source = b"\x01*" + encloser
                node = zone.nodes[source]
                if first:
                    plan.template, plan.anchor = b"W" + qtype.to_bytes(2, "big") + source, offsets[i]
            else:
                plan.rcode = NXDOMAIN
                plan.authority.append((zone.origin, zone.negative_soa))
                if first:
                    plan.template, plan.anchor = b"N" + zone.origin, offsets[k]
                break
        if qtype == ANY and node:
            # RFC 8482 §4.1: answer with one RRset, the same over UDP and TCP (simple,
            # cacheable, and ANY is a debugging aid, not a way to fetch a whole name).
            # A CNAME is the answer at its name; otherwise the lowest type code.
            rrset = node.get(CNAME) or node[min(node)]
            plan.answer.append((owner, rrset))
            _additional(zones, rrset, plan, seen)
            break
        found_rrset = node.get(qtype) if node else None
        if found_rrset is not None:
            plan.answer.append((owner, found_rrset))
            _additional(zones, found_rrset, plan, seen)
            break
        cname = node.get(CNAME) if node else None
        if cname is None:
            plan.authority.append((zone.origin, zone.negative_soa))  # NODATA (RFC 2308 §2.2)
            break
        plan.answer.append((owner, cname))
        target = cname.rdatas[0]
        lower = target.lower()
        if lower in visited or len(visited) > MAX_CHAIN:
            plan.self_loop = lower == qname
            break
        visited.add(lower)
        offsets = label_offsets(lower)
        found = find_zone(zones, lower, offsets)
        if found is None:
            break
        zone, k = found
        name, owner, first = lower, target, False
    plan.additional.sort(key=lambda item: not item[2])
    return plan


def _referral(
    zones: Mapping[bytes, Zone], zone: Zone, cut: bytes, owner: Owner, plan: Plan, seen: set[bytes]
) -> None:
    """NS of the cut in authority, glue in additional (RFC 1034 §4.3.2 step 3b)."""
    ns = zone.nodes[cut][NS]
    plan.authority.append((owner, ns))
    for data in ns.rdatas:
        target = data.lower()
        if target in seen:
            continue
        if is_below(target, cut):
            # In-domain glue is required (RFC 9471 §2.1); it lives below the cut.
            seen.add(target)
            node = zone.nodes.get(target, {})
            for rtype in (A, AAAA):
                rrset = node.get(rtype)
                if rrset is not None:
                    plan.additional.append((data, rrset, True))
        else:
            _addresses(zones, data, plan, seen, sibling_glue=True)


def _additional(zones: Mapping[bytes, Zone], rrset: RRset, plan: Plan, seen: set[bytes]) -> None:
    """Addresses of NS, MX and SRV targets that we hold (RFC 1034 §4.3.2 step 6)."""
    rtype = rrset.rtype
    if rtype == NS:
        skip = 0
    elif rtype == MX:
        skip = 2
    elif rtype == SRV:
        skip = 6
    else:
        return
    for data in rrset.rdatas:
        _addresses(zones, data[skip:], plan, seen, sibling_glue=False)


def _addresses(
    zones: Mapping[bytes, Zone], target: bytes, plan: Plan, seen: set[bytes], *, sibling_glue: bool
) -> None:
    lower = target.lower()
    if lower in seen:
        return
    seen.add(lower)
    offsets = label_offsets(lower)
    found = find_zone(zones, lower, offsets)
    if found is None:
        return
    zone, k = found
    # Below a cut the addresses are glue, not our data: only a referral may carry
    # them (sibling glue, RFC 9471 §2.2, optional).
    if _cut(zone, lower, offsets, k, 0) >= 0 and not sibling_glue:
        return
    node = zone.nodes.get(lower)
    if node:
        for rtype in (A, AAAA):
            rrset = node.get(rtype)
            if rrset is not None:
                plan.additional.append((target, rrset, False))
