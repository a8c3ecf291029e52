"""The I/O edge of the DNS appliance: sockets, reload, transfers, NOTIFY, metrics.

Thin on purpose: every answer comes from ``Authority.handle`` (the sans-IO core).

- UDP: the datagram handler is one synchronous call per packet (no task):
  ``Authority.handle`` -> count -> rate limit -> reply.  Only a message that
  carries a TSIG (found by its type/class octets, then parsed) leaves that path.
- TCP (RFC 7766): two-octet length framing (RFC 1035 §4.2.2), many queries per
  connection, pipelined: every complete query in what arrived is answered, in
  order, and the answers written together (§6.2.1.1 allows answering out of
  order; in order is the simple case).  The listener enforces the connection
  cap and idle timeout (``--max-connections``, ``--idle-timeout``; RFC 7766 §6.2.3
  asks for a timeout of a few seconds when busy, so we default to 10 s); a
  message is at most 65,535 octets by its framing, and at most one partial
  message plus one read is buffered.  AXFR/IXFR are answered here (RFC 5936,
  RFC 1995), only to clients the allow-list names.
- UDP and TCP share a port: with ``--listen HOST:0`` the UDP socket takes the
  port the TCP listener got (busy hosts hold many TCP ports in TIME_WAIT, few UDP
  ones, so TCP picks first), since a client retries a truncated answer over TCP
  on the same port (RFC 7766 §5).
- Reload (SIGHUP, console): every zone file is loaded again; a file that fails
  keeps its previous zone (errors logged with file:line); the new set of zones
  is swapped in as one new ``Authority`` (one reference assignment, so a query
  sees the old set or the new one, never a mix); changed zones are recorded in
  the IXFR journal and NOTIFY goes to the configured secondaries.
- Metrics: per-packet counting is one dict update keyed by the question's type
  and the answer's rcode octet; the labelled counters are brought up to date
  when metrics are rendered (a collector) or on ``sync_metrics()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from runtime import Address, ConfigError, Context, DataFile, DeviceError, Limits, Stream

from . import names, rdata, tsig
from .authority import Authority, NotifyRequest, TransferRequest
from .config import Config, Secondary
from .message import MessageError
from .notify import Notifier
from .rrl import DROP, SLIP, RateLimiter, tc_answer
from .secondary import SecondaryZone
from .sources import Loaded, Source, load_sources
from .xfr import Journal, axfr_messages, iter_changed, ixfr_messages, serial_gt
from .zone import Zone

__all__ = ["DnsServer", "serve"]

_TSIG_MARK = b"\x00\xfa\x00\xff"  # type TSIG, class ANY: only a TSIG record has both
_XFR_MARKS = (b"\x00\xfc\x00\x01", b"\x00\xfb\x00\x01")  # AXFR / IXFR, class IN
_RCODES = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
    6: "YXDOMAIN",
    7: "YXRRSET",
    8: "NXRRSET",
    9: "NOTAUTH",
    10: "NOTZONE",
}
_NOTAUTH, _REFUSED = 9, 5
_IXFR = 251
#: tries to find a port free for both UDP and TCP when listening on port 0
_PORT_TRIES = 20
#: how many zone names the ready line lists
_READY_ZONES = 10


def _question_end(message: bytes) -> int:
    """Offset past a plain question, or 12 when there is none that parses."""
    if message[4:6] != b"\x00\x01":
        return 12
    pos, n = 12, len(message)
    while pos < n and 0 < message[pos] < 64:
        pos += message[pos] + 1
    if pos >= n or message[pos] != 0 or pos + 5 > n:
        return 12
    return pos + 5


def _error(message: bytes, rcode: int) -> bytes:
    """Header (QR, AA off, opcode and RD copied) and question, with ``rcode``."""
    end = _question_end(message)
    flags = 0x8000 | (message[2] << 8 & 0x7900) | rcode
    return (
        message[:2]
        + flags.to_bytes(2, "big")
        + (b"\x00\x01" if end > 12 else b"\x00\x00")
        + bytes(6)
        + message[12:end]
    )


class DnsServer:
    def __init__(self, ctx: Context, config: Config) -> None:
        self.ctx = ctx
        self.config = config
        options = ctx.options
        self.log = ctx.log
        self._zone_log = ctx.log.child("zone")
        self._query_logger = ctx.log.child("query")
        self._query_log: bool = options.query_log
        self._udp_payload: int = options.udp_payload
        self._cache_size: int = options.cache_size
        self.journal = Journal(options.ixfr_versions)
        self._primary: dict[str, Zone] = {}
        self._secondary: dict[bytes, Zone] = {}
        self.secondaries = {
            spec.origin: SecondaryZone(ctx, spec, self._install_secondary) for spec in config.secondaries
        }
        self.served: Mapping[bytes, Zone] = {}
        self.auth = Authority(())
        self._handle = self.auth.handle
        rate = options.rrl_rate
        self.limiter = (
            RateLimiter(rate, clock=ctx.clock.monotonic, slip=options.rrl_slip, exempt=config.rrl_exempt)
            if rate > 0
            else None
        )
        self._notifier: Notifier | None = None
        #: the key that signed the message being handled (for the NOTIFY hook)
        self._signed_by: tsig.Key | None = None
        #: (qtype octets + rcode octet) -> count; see the module docstring
        self._counts: dict[bytes, int] = {}
        metrics = ctx.metrics
        self._m_queries = metrics.counter(
            "dns_queries_total", "Queries answered, by question type.", ("qtype",)
        )
        self._m_rcodes = metrics.counter("dns_responses_total", "Answers, by rcode.", ("rcode",))
        self._m_rrl = metrics.counter("dns_rrl_total", "UDP answers rate limited.", ("action",))
        self._m_xfr_out = metrics.counter("dns_transfers_out_total", "Zone transfers served.", ("kind",))
        self._m_xfr_refused = metrics.counter("dns_transfers_refused_total", "Zone transfers refused.")
        self._m_notify_in = metrics.counter("dns_notify_received_total", "NOTIFY received.", ("result",))
        self._m_tsig = metrics.counter("dns_tsig_errors_total", "Messages whose TSIG failed.", ("error",))
        self._m_zones = metrics.gauge("dns_zones", "Zones served.")
        metrics.add_collector(self.sync_metrics)

    # ----------------------------------------------------------------- zones

    def _sources(self) -> list[Source]:
        options = self.ctx.options
        sources: list[Source] = []
        files: list[DataFile] = self.ctx.data_files("zone")
        for item in files:
            sources.append(Source(f"{item.data.name}/{item.key}", item.data, item.key))
        own_dir = options.zone_dir is not None or any(d.startswith("zones=") for d in options.data)
        if own_dir or not (files or self.config.secondaries):
            data = self.ctx.data("zones")
            for key in data.keys():
                if key.endswith(".zone"):
                    sources.append(Source(f"{data.name}:{key}", data, key))
        return sources

    def load(self) -> Loaded:
        """Load primary zones and stored secondary zones; serve them.  Returns
        what to report (logged by the caller, after the ready line)."""
        loaded = load_sources(self._sources())
        self._primary = dict(loaded.zones)
        for sec in self.secondaries.values():
            if sec.spec.origin in {z.origin for z in self._primary.values()}:
                raise ConfigError(
                    f"--secondary: zone {sec.spec.name} is also loaded from a zone file", option="secondary"
                )
            problem = sec.restore()
            if problem:
                self._zone_log.warning("secondary zone not restored", zone=sec.spec.name, problem=problem)
            elif sec.zone is not None:
                self._secondary[sec.spec.origin] = sec.zone
                self._zone_log.info("secondary zone restored", zone=sec.spec.name, serial=sec.zone.serial)
        self._swap(notify=False)
        return loaded

    def report(self, loaded: Loaded, *, reload: bool = False) -> None:
        for problem in loaded.errors:
            self._zone_log.error(
                "zone error", where=f"{problem.file}:{problem.line}", problem=problem.message
            )
        for label in loaded.kept:
            self._zone_log.warning("zone file failed; the previous version stays served", file=label)
        for problem in loaded.warnings:
            self._zone_log.warning(
                "zone warning", where=f"{problem.file}:{problem.line}", problem=problem.message
            )
        if reload:
            self._zone_log.info("zones reloaded", zones=len(self.served), errors=len(loaded.errors))

    def _swap(self, *, notify: bool = True) -> None:
        """Serve the current primary and secondary zones: one new Authority."""
        served: dict[bytes, Zone] = {zone.origin: zone for zone in self._primary.values()}
        for origin, zone in self._secondary.items():
            served.setdefault(origin, zone)
        previous = self.served
        auth = Authority(
            served.values(),
            udp_payload=self._udp_payload,
            cache_size=self._cache_size,
            notify=self._on_notify,
            transfers=bool(self.config.transfer_rules),
        )
        for old, new in iter_changed(previous, served):
            if old is not None:
                diff = self.journal.record(old, new)
                if diff is None and old.serial == new.serial:
                    self._zone_log.warning(
                        "zone changed but its serial did not: secondaries will not see it",
                        zone=new.name,
                        serial=new.serial,
                    )
            if notify and self._notifier is not None:
                self._notifier.zone_changed(new)
        for origin in previous:
            if origin not in served:
                self.journal.forget(origin)
        self.served = served
        self.auth = auth
        self._handle = auth.handle
        self._m_zones.set(len(served))

    async def reload(self) -> None:
        loaded = load_sources(self._sources(), previous=self._primary)
        self._primary = dict(loaded.zones)
        self._swap()
        self.report(loaded, reload=True)

    async def _install_secondary(self, spec: Secondary, zone: Zone | None) -> None:
        if zone is None:
            self._secondary.pop(spec.origin, None)
        else:
            self._secondary[spec.origin] = zone
        self._swap()

    # ----------------------------------------------------------------- UDP hot path

    def on_datagram(self, data: bytes, peer: tuple[Any, ...]) -> bytes | None:
        if _TSIG_MARK in data:
            reply = self._signed(data, peer, tcp=False)
        else:
            reply = self._handle(data, peer=peer)
        if reply is None:
            return None
        end = data.find(b"\x00", 12)
        key = data[end + 1 : end + 3] + reply[3:4]
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1
        limiter = self.limiter
        if limiter is not None:
            action = limiter.check(reply, peer[0])
            if action:
                if action == SLIP:
                    reply = tc_answer(reply)
                elif action == DROP:
                    reply = None
        if self._query_log:
            self._log_query(data, reply, peer, "udp")
        return reply

    def _log_query(self, query: bytes, reply: bytes | None, peer: tuple[Any, ...], proto: str) -> None:
        end = _question_end(query)
        qname = names.to_text(query[12 : end - 4]) if end > 12 else ""
        qtype = rdata.type_name((query[end - 4] << 8) | query[end - 3]) if end > 12 else ""
        self._query_logger.info(
            "query",
            peer=str(Address.of(peer)),
            proto=proto,
            qname=qname,
            qtype=qtype,
            rcode=_RCODES.get(reply[3] & 0xF, str(reply[3] & 0xF)) if reply else "dropped",
            size=len(reply) if reply else 0,
        )

    # ----------------------------------------------------------------- TSIG

    def _verify(self, data: bytes) -> tuple[tsig.TsigRecord | None, tsig.Key | None, bytes | None]:
        """(record, key, error answer): error answer set when the TSIG failed."""
        try:
            record = tsig.find_tsig(data)
        except MessageError:
            return None, None, _error(data, 1) if len(data) >= 12 and not data[2] & 0x80 else None
        if record is None:
            return None, None, None
        now = int(self.ctx.clock.now())
        error, key = tsig.verify(record, self.config.keys, now)
        if error:
            name = {tsig.BADSIG: "BADSIG", tsig.BADKEY: "BADKEY", tsig.BADTIME: "BADTIME"}.get(
                error, str(error)
            )
            self._m_tsig.labels(name).inc()
            self.log.info("tsig check failed", error=name, key=names.to_text(record.key_name))
            if data[2] & 0x80:
                return record, None, b""
            return record, None, tsig.error_response(data, _question_end(data), record, error, key, now)
        return record, key, None

    def _signed(self, data: bytes, peer: tuple[Any, ...], *, tcp: bool) -> bytes | None:
        record, key, failed = self._verify(data)
        if failed is not None:
            return failed or None
        if record is None or key is None:
            return self._handle(data, tcp=tcp, peer=peer)
        self._signed_by = key
        try:
            reply = self._handle(record.unsigned, tcp=tcp, peer=peer)
        finally:
            self._signed_by = None
        if reply is None:
            return None
        signed, _ = tsig.sign(data[:2] + reply[2:], key, int(self.ctx.clock.now()), prior=record.mac)
        return signed

    # ----------------------------------------------------------------- NOTIFY in

    def _on_notify(self, request: NotifyRequest) -> int:
        sec = self.secondaries.get(request.qname.lower())
        if sec is None:
            self._m_notify_in.labels("notauth").inc()
            return _NOTAUTH
        host = request.peer[0] if isinstance(request.peer, tuple) else str(request.peer)
        rcode = sec.notified(host, self._signed_by)
        self._m_notify_in.labels("accepted" if rcode == 0 else "refused").inc()
        self.log.info(
            "notify received", zone=sec.spec.name, peer=host, serial=request.serial, accepted=rcode == 0
        )
        return rcode

    # ----------------------------------------------------------------- TCP

    async def on_stream(self, stream: Stream) -> None:
        peer = stream.peer
        buf = bytearray()
        while True:
            data = await stream.receive()
            if not data:
                return
            buf += data
            out: list[bytes] = []
            while len(buf) >= 2:
                length = (buf[0] << 8) | buf[1]
                if len(buf) < 2 + length:
                    break
                message = bytes(buf[2 : 2 + length])
                del buf[: 2 + length]
                if (_XFR_MARKS[0] in message or _XFR_MARKS[1] in message) and await self._maybe_transfer(
                    stream, message, peer, out
                ):
                    out = []
                    continue
                if _TSIG_MARK in message:
                    reply = self._signed(message, peer, tcp=True)
                else:
                    reply = self._handle(message, tcp=True, peer=peer)
                if reply is None:
                    continue
                end = message.find(b"\x00", 12)
                key = message[end + 1 : end + 3] + reply[3:4]
                self._counts[key] = self._counts.get(key, 0) + 1
                if self._query_log:
                    self._log_query(message, reply, peer, "tcp")
                out.append(len(reply).to_bytes(2, "big") + reply)
            if out:
                await stream.send(b"".join(out))

    async def _maybe_transfer(self, stream: Stream, message: bytes, peer: Address, out: list[bytes]) -> bool:
        """Serve an AXFR/IXFR (after writing ``out``); False if ``message`` is none."""
        record: tsig.TsigRecord | None = None
        key: tsig.Key | None = None
        unsigned = message
        if _TSIG_MARK in message:
            record, key, failed = self._verify(message)
            if failed is not None:
                if out or failed:
                    await stream.send(
                        b"".join(out) + (len(failed).to_bytes(2, "big") + failed if failed else b"")
                    )
                return True
            if record is not None:
                unsigned = record.unsigned
        request = self.auth.transfer_request(unsigned)
        if request is None:
            return False
        if out:
            await stream.send(b"".join(out))
        messages = self._transfer_answer(unsigned, request, peer, key)
        mac = record.mac if record is not None else b""
        for i, answer in enumerate(messages):
            answer = message[:2] + answer[2:]
            if key is not None:
                answer, mac = tsig.sign(answer, key, int(self.ctx.clock.now()), prior=mac, timers_only=i > 0)
            await stream.send(len(answer).to_bytes(2, "big") + answer)
        return True

    def _transfer_answer(
        self, query: bytes, request: TransferRequest, peer: Address, key: tsig.Key | None
    ) -> list[bytes]:
        kind = "ixfr" if request.qtype == _IXFR else "axfr"
        zone = self.served.get(request.qname.lower())
        if zone is None:
            return [_error(query, _NOTAUTH)]
        if not self.config.transfer_allowed(peer.host, key):
            self._m_xfr_refused.inc()
            self.log.warning(
                "transfer refused", zone=zone.name, peer=str(peer), kind=kind, key=key.text if key else None
            )
            return [_error(query, _REFUSED)]
        question = query[12 : _question_end(query)]
        # RFC 1995 §2: a client with our serial or newer gets our SOA alone.
        if request.qtype == _IXFR and request.serial is not None:
            if not serial_gt(zone.serial, request.serial):
                return ixfr_messages(request.id, question, zone, [])
            diffs = self.journal.since(zone.origin, request.serial)
            if diffs is not None:
                self._m_xfr_out.labels("ixfr").inc()
                self.log.info(
                    "transfer",
                    zone=zone.name,
                    kind="ixfr",
                    peer=str(peer),
                    serial=zone.serial,
                    from_serial=request.serial,
                )
                return ixfr_messages(request.id, question, zone, diffs)
        self._m_xfr_out.labels("axfr").inc()
        self.log.info("transfer", zone=zone.name, kind="axfr", peer=str(peer), serial=zone.serial, asked=kind)
        return axfr_messages(request.id, question, zone)

    # ----------------------------------------------------------------- metrics

    def sync_metrics(self) -> None:
        """Bring the labelled counters up to date with the hot path's tallies."""
        qtypes: dict[str, int] = {}
        rcodes: dict[str, int] = {}
        for key, count in list(self._counts.items()):
            rcode = key[2] & 0xF if len(key) == 3 else 1
            qtype = (
                rdata.type_name(int.from_bytes(key[:2], "big")) if rcode != 1 and len(key) == 3 else "invalid"
            )
            qtypes[qtype] = qtypes.get(qtype, 0) + count
            name = _RCODES.get(rcode, str(rcode))
            rcodes[name] = rcodes.get(name, 0) + count
        for name, count in qtypes.items():
            self._m_queries.labels(name).set_total(count)
        for name, count in rcodes.items():
            self._m_rcodes.labels(name).set_total(count)
        if self.limiter is not None:
            self._m_rrl.labels("dropped").set_total(self.limiter.dropped)
            self._m_rrl.labels("slipped").set_total(self.limiter.slipped)

    # ----------------------------------------------------------------- serving

    async def bind(self) -> tuple[list[Any], list[Any]]:
        """UDP endpoint and TCP listener per --listen address, on one port each."""
        options = self.ctx.options
        limits = Limits(max_connections=options.max_connections, idle_timeout=options.idle_timeout)
        endpoints, listeners = [], []
        for address in options.listen:
            for attempt in range(_PORT_TRIES):
                listener = await self.ctx.net.listen_tcp(address, limits=limits)
                try:
                    endpoint = await self.ctx.net.bind_udp(Address(address.host, listener.address.port))
                except (OSError, DeviceError):
                    await listener.aclose()
                    if address.port != 0 or attempt == _PORT_TRIES - 1:
                        raise
                    continue
                endpoints.append(endpoint)
                listeners.append(listener)
                break
        return endpoints, listeners

    async def run_background(self) -> None:
        """NOTIFY out and secondary zones, until cancelled."""
        async with asyncio.TaskGroup() as group:
            if self.config.notify and self.ctx.extras.get("worker") in (None, 0):
                self._notifier = Notifier(self.ctx, self.config.notify, group)
            for sec in self.secondaries.values():
                group.create_task(sec.run(), name=f"dns.secondary.{sec.spec.name}")
            await asyncio.Event().wait()


async def serve(ctx: Context) -> None:
    # A ConfigError here (options that refer to each other, e.g. an unknown key
    # named by --allow-transfer) is reported by the runtime as one line, exit 2.
    config = Config.from_options(ctx.options)
    server = DnsServer(ctx, config)
    loaded = server.load()
    ctx.on_reload(server.reload)
    ctx.provide(server)
    endpoints, listeners = await server.bind()
    zones = sorted(zone.name for zone in server.served.values())
    shown = ",".join(zones[:_READY_ZONES]) + (
        f",+{len(zones) - _READY_ZONES} more" if len(zones) > 10 else ""
    )
    async with asyncio.TaskGroup() as group:
        background = group.create_task(server.run_background(), name="dns.background")
        serving = [group.create_task(endpoint.serve(server.on_datagram)) for endpoint in endpoints]
        serving += [group.create_task(listener.serve(server.on_stream)) for listener in listeners]
        # endpoint.serve() installs its handler at once: "ready" is true now.
        ctx.ready(
            zones=shown or "(none)",
            secondaries=len(config.secondaries),
            rrl=f"{ctx.options.rrl_rate}/s" if server.limiter else "off",
            transfers="allowed" if config.transfer_rules else "off",
        )
        server.report(loaded)
        await ctx.wait_stopping()
        await asyncio.wait(serving)
        background.cancel()
