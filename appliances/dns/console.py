"""The DNS appliance's console commands, next to the runtime's own.

- ``zones``: every zone served, primary or secondary, with serial and records;
- ``zone show NAME``: the zone as master-file text (RFC 1035 §5): the common
  types in their usual presentation, others in the generic form of RFC 3597 §5;
- ``zone reload NAME``: a primary zone: the zone files are re-read (all of them,
  as on SIGHUP: the server swaps its zone set as one, so a query never sees a
  mix) and the zone's serial before and after is shown; a secondary zone: a
  refresh from its primary is started now, as a NOTIFY would (RFC 1996 §3.7);
- ``notify NAME``: send NOTIFY for the zone to the ``--notify`` targets now.

The commands read the running ``DnsServer`` (found through its reload hook).
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

from runtime import Call, Command, Reply, UsageError, find_service, table_text

from . import names, rdata
from .server import DnsServer
from .zone import Zone

__all__ = ["COMMANDS", "rdata_text"]

# Type codes (RFC 1035 §3.2.2, RFC 3596, RFC 2782)
_A, _NS, _CNAME, _SOA, _PTR, _MX, _TXT, _AAAA, _SRV, _DNAME = 1, 2, 5, 6, 12, 15, 16, 28, 33, 39
_NAME_ONLY = frozenset({_NS, _CNAME, _PTR, _DNAME})
#: ``zone show`` stops after this many records (the text goes over an SSH channel)
_SHOW_MAX = 100_000


def _character_string(data: bytes) -> str:
    out = []
    for b in data:
        if b in (0x22, 0x5C):
            out.append("\\" + chr(b))
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    return '"' + "".join(out) + '"'


def rdata_text(rtype: int, data: bytes) -> str:
    """Presentation form of uncompressed wire RDATA (generic for types not known here)."""
    try:
        if rtype == _A and len(data) == 4:
            return str(ipaddress.IPv4Address(data))
        if rtype == _AAAA and len(data) == 16:
            return str(ipaddress.IPv6Address(data))
        if rtype in _NAME_ONLY:
            return names.to_text(data)
        if rtype == _MX:
            return f"{struct.unpack('!H', data[:2])[0]} {names.to_text(data[2:])}"
        if rtype == _SRV:
            priority, weight, port = struct.unpack("!HHH", data[:6])
            return f"{priority} {weight} {port} {names.to_text(data[6:])}"
        if rtype == _SOA:
            mname_end = names.name_end(data, 0)
            rname_end = names.name_end(data, mname_end)
            numbers = struct.unpack("!5I", data[rname_end : rname_end + 20])
            return " ".join(
                [names.to_text(data[:mname_end]), names.to_text(data[mname_end:rname_end])]
                + [str(n) for n in numbers]
            )
        if rtype == _TXT:
            parts, i = [], 0
            while i < len(data):
                n = data[i]
                parts.append(_character_string(data[i + 1 : i + 1 + n]))
                i += 1 + n
            return " ".join(parts)
    except (ValueError, IndexError, struct.error):
        pass
    return f"\\# {len(data)} {data.hex()}" if data else "\\# 0"


def _server(call: Call) -> DnsServer | None:
    return find_service(call.ctx, DnsServer)


def _not_started() -> Reply:
    return Reply.failed("the DNS server has not loaded its zones yet")


def _origin(text: str) -> bytes:
    try:
        return names.from_text(text if text.endswith(".") else text + ".", None).lower()
    except ValueError as exc:
        raise _BadName(str(exc)) from None


class _BadName(Exception):
    pass


def _find(call: Call, server: DnsServer) -> tuple[Zone | None, Reply | None]:
    name = call.args[0]
    try:
        origin = _origin(name)
    except _BadName as exc:
        raise UsageError(f"bad zone name {name!r}: {exc}") from None
    zone = server.served.get(origin)
    if zone is None and origin not in server.secondaries:
        return None, Reply.failed(f"no zone {names.to_text(origin)} here (see 'zones')")
    return zone, None


def _records(zone: Zone) -> int:
    return sum(len(rrset.rdatas) for _, rrset in zone.rrsets())


def _zones(call: Call) -> Reply:
    server = _server(call)
    if server is None:
        return _not_started()
    rows: list[tuple[str, ...]] = []
    data: list[dict[str, Any]] = []
    for origin in sorted(set(server.served) | set(server.secondaries), key=names.to_text):
        zone = server.served.get(origin)
        secondary = server.secondaries.get(origin)
        kind = "secondary" if secondary is not None else "primary"
        source = f"primary {secondary.spec.primary}" if secondary is not None else zone.file if zone else ""
        entry = {
            "zone": names.to_text(origin),
            "kind": kind,
            "serial": zone.serial if zone else None,
            "records": _records(zone) if zone else 0,
            "source": source,
            "served": zone is not None,
        }
        data.append(entry)
        rows.append(
            (
                names.to_text(origin),
                kind,
                str(entry["serial"]) if zone else "(not served yet)",
                str(entry["records"]),
                source,
            )
        )
    return Reply(table_text(rows, ("zone", "kind", "serial", "records", "source")), data)


def _zone_show(call: Call) -> Reply:
    server = _server(call)
    if server is None:
        return _not_started()
    zone, problem = _find(call, server)
    if problem is not None:
        return problem
    if zone is None:
        return Reply.failed(f"{call.args[0]}: not transferred from its primary yet")
    lines: list[str] = [f"$ORIGIN {zone.name}"]
    records: list[dict[str, Any]] = []
    for owner, rrset in zone.rrsets():
        owner_text = names.to_text(owner)
        type_text = rdata.type_name(rrset.rtype)
        for item in rrset.rdatas:
            text = rdata_text(rrset.rtype, item)
            lines.append(f"{owner_text} {rrset.ttl} IN {type_text} {text}")
            records.append({"name": owner_text, "ttl": rrset.ttl, "type": type_text, "data": text})
            if len(records) >= _SHOW_MAX:
                lines.append(f"; cut after {_SHOW_MAX} records")
                return Reply("\n".join(lines), {"zone": zone.name, "records": records, "cut": True})
    return Reply("\n".join(lines), {"zone": zone.name, "serial": zone.serial, "records": records})


async def _zone_reload(call: Call) -> Reply:
    server = _server(call)
    if server is None:
        return _not_started()
    zone, problem = _find(call, server)
    if problem is not None:
        return problem
    origin = _origin(call.args[0])
    secondary = server.secondaries.get(origin)
    if secondary is not None:
        # What a NOTIFY from the primary does: wake the refresh loop (RFC 1996 §3.7).
        secondary.notified(secondary.spec.primary.host, secondary.spec.key)
        text = f"{secondary.spec.name}: refresh from {secondary.spec.primary} started"
        return Reply(text, {"zone": secondary.spec.name, "refresh": "started"})
    before = zone.serial if zone is not None else None
    await server.reload()
    after_zone = server.served.get(origin)
    after = after_zone.serial if after_zone is not None else None
    name = names.to_text(origin)
    data = {"zone": name, "serial_before": before, "serial_after": after, "changed": after_zone is not zone}
    if after_zone is None:
        return Reply.failed(f"{name}: no longer served after the reload (see 'log tail')", data=data)
    if after_zone is zone:
        return Reply(f"{name}: unchanged, serial {after} (zone files are re-read together)", data)
    return Reply(f"{name}: reloaded, serial {before} -> {after}", data)


def _notify(call: Call) -> Reply:
    server = _server(call)
    if server is None:
        return _not_started()
    zone, problem = _find(call, server)
    if problem is not None:
        return problem
    if zone is None:
        return Reply.failed(f"{call.args[0]}: not served yet, nothing to announce")
    targets = server.config.notify
    # The notifier exists only in the worker that sends NOTIFY (the first).
    notifier = getattr(server, "_notifier", None)
    if not targets:
        return Reply.failed("no --notify targets configured")
    if notifier is None:
        return Reply.failed("this worker does not send NOTIFY (worker 0 does)")
    notifier.zone_changed(zone)
    shown = [str(target.address) for target in targets]
    return Reply(
        f"{zone.name}: NOTIFY (serial {zone.serial}) sent to {', '.join(shown)}",
        {"zone": zone.name, "serial": zone.serial, "targets": shown},
    )


COMMANDS: tuple[Command, ...] = (
    Command("zones", _zones, "the zones served: kind, serial, records, source"),
    Command("zone show", _zone_show, "the zone's records as master-file text", "NAME", 1, 1),
    Command("zone reload", _zone_reload, "re-read a primary zone, or refresh a secondary now", "NAME", 1, 1),
    Command("notify", _notify, "send NOTIFY for the zone to the --notify targets now", "NAME", 1, 1),
)
