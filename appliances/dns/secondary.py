"""Secondary zones: pull from a primary on the SOA timers and on NOTIFY.

Per zone, one task runs RFC 1034 §4.3.5's loop:

- every REFRESH seconds (from the zone's SOA) ask the primary for its SOA over
  TCP; if the serial is newer (RFC 1982 arithmetic), transfer the zone on the
  same connection: IXFR with our serial when we hold a version (RFC 1995; the
  primary may answer with the whole zone), AXFR otherwise (RFC 5936);
- a failed attempt is retried after RETRY seconds;
- a NOTIFY from the primary (RFC 1996 §3.7: accepted only from the primary's
  address, and signed when the zone has a key) starts a check at once;
- after EXPIRE seconds without reaching the primary the zone is no longer
  served (RFC 1035 §3.3.13), and is served again after the next transfer.

A transferred zone passes the same checks as a master file, is stored durably
in the store before it is served (so a restart serves it at once, with its
last-refresh time, so expiry goes on counting), and replaces the old version
atomically; the change is recorded for IXFR out and NOTIFY goes out to our own
secondaries.  Before the first transfer (no SOA timers yet) retries wait
``FIRST_RETRY`` seconds, doubling up to ``MAX_RETRY``.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from dataclasses import replace

from runtime import Context, Stream

from . import tsig
from .config import Secondary
from .errors import ZoneError
from .message import Message, MessageError, parse_message
from .xfr import (
    Rec,
    TransferError,
    TransferReader,
    decode_records,
    encode_records,
    records_of,
    serial_gt,
    soa_serial,
    zone_from_records,
)
from .zone import SOA, Zone

__all__ = ["FIRST_RETRY", "MAX_RECORDS", "MAX_RETRY", "SecondaryZone", "soa_timers"]

FIRST_RETRY = 5.0
MAX_RETRY = 300.0
#: a transfer's size bound: a primary cannot make us hold more (NSD has none; 10M is far past real zones)
MAX_RECORDS = 10_000_000
#: one read from the primary (BIND's tcp-idle-timeout-like bound for transfers)
READ_TIMEOUT = 30.0
_IXFR, _AXFR = 251, 252
_STORE_PREFIX = "dns/secondary/"


def soa_timers(zone: Zone) -> tuple[int, int, int]:
    """(refresh, retry, expire) of ``zone``'s SOA (RFC 1035 §3.3.13)."""
    rdata = zone.soa.rdatas[0]
    refresh, retry, expire = struct.unpack("!III", rdata[-16:-4])
    return refresh, retry, expire


class SecondaryZone:
    def __init__(
        self,
        ctx: Context,
        spec: Secondary,
        install: Callable[[Secondary, Zone | None], Awaitable[None]],
    ) -> None:
        self._ctx = ctx
        self.spec = spec
        self._install = install
        self._log = ctx.log.child("secondary")
        self._wake = asyncio.Event()
        self.zone: Zone | None = None
        #: wall-clock time of the last contact with the primary that confirmed our version
        self.refreshed_at = 0.0
        self.transfers = ctx.metrics.counter("dns_transfers_in_total", "Zone transfers received.", ("kind",))
        self.failures = ctx.metrics.counter("dns_refresh_failures_total", "Failed refreshes from a primary.")

    # ----------------------------------------------------------------- store

    @property
    def _key(self) -> str:
        return _STORE_PREFIX + self.spec.name

    def restore(self) -> str | None:
        """Load the stored version (before serving); returns a problem text or None."""
        raw = self._ctx.store.get(self._key)
        stamp = self._ctx.store.get(self._key + "/refreshed")
        if raw is None:
            return None
        try:
            soa, records = decode_records(raw)
            zone = zone_from_records(self.spec.origin, soa, records, f"store:{self._key}")
        except (MessageError, ZoneError) as e:
            return f"stored copy of {self.spec.name} is unusable: {e}"
        self.refreshed_at = float(stamp or b"0")
        _, _, expire = soa_timers(zone)
        if self._ctx.clock.now() - self.refreshed_at >= expire:
            return f"stored copy of {self.spec.name} has expired; waiting for a transfer"
        self.zone = zone
        return None

    async def _save(self, zone: Zone, records: set[Rec] | None) -> None:
        data = encode_records(zone.soa, records if records is not None else records_of(zone), zone.origin)
        await self._ctx.store.write([(self._key, data), (self._key + "/refreshed", self._stamp())])

    def _stamp(self) -> bytes:
        return repr(self.refreshed_at).encode()

    # ----------------------------------------------------------------- NOTIFY in

    def notified(self, host: str, key: tsig.Key | None) -> int:
        """A NOTIFY for this zone arrived (RFC 1996 §3.7); the rcode to answer."""
        if host.partition("%")[0] != self.spec.primary.host:
            return 5  # REFUSED: not our primary
        if self.spec.key is not None and (key is None or key.name != self.spec.key.name):
            return 5
        self._wake.set()
        return 0

    # ----------------------------------------------------------------- the loop

    async def run(self) -> None:
        failures = 0
        while True:
            self._wake.clear()
            try:
                await self.refresh()
            except (OSError, TimeoutError, MessageError, TransferError, ZoneError, EOFError) as e:
                failures += 1
                self.failures.inc()
                self._log.warning(
                    "refresh failed",
                    zone=self.spec.name,
                    primary=str(self.spec.primary),
                    error=str(e) or type(e).__name__,
                )
            else:
                failures = 0
            if self.zone is None:
                wait = min(FIRST_RETRY * 2 ** min(failures, 16), MAX_RETRY) if failures else MAX_RETRY
            else:
                refresh, retry, expire = soa_timers(self.zone)
                wait = float(refresh if not failures else retry)
                left = self.refreshed_at + expire - self._ctx.clock.now()
                if left <= 0:
                    self._log.warning(
                        "zone expired: no longer served",
                        zone=self.spec.name,
                        primary=str(self.spec.primary),
                        expire=expire,
                    )
                    self.zone = None
                    await self._install(self.spec, None)
                    wait = float(retry)
                else:
                    wait = min(wait, left)
            await self._sleep_or_wake(max(wait, 1.0))

    async def _sleep_or_wake(self, seconds: float) -> None:
        sleeper = asyncio.ensure_future(self._ctx.clock.sleep(seconds))
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait([sleeper, woken], return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            woken.cancel()
            await asyncio.wait([sleeper, woken])

    async def refresh(self) -> None:
        """One check with the primary, and a transfer if it has a newer serial."""
        stream = await self._ctx.net.connect_tcp(self.spec.primary, timeout=READ_TIMEOUT)
        try:
            reader = _Reader(stream)
            soa = await self._exchange(stream, reader, 6)
            serial = next((soa_serial(rr.rdata) for rr in soa.answer if rr.rtype == SOA), None)
            if serial is None:
                raise TransferError(f"no SOA in the primary's answer (rcode {soa.rcode})")
            if self.zone is not None and not serial_gt(serial, self.zone.serial):
                self.refreshed_at = self._ctx.clock.now()
                await self._ctx.store.put(self._key + "/refreshed", self._stamp())
                return
            await self._transfer(stream, reader)
        finally:
            await stream.aclose()

    def _query(self, qtype: int) -> bytes:
        ident = self._ctx.random.below(65536)
        out = struct.pack("!6H", ident, 0, 1, 0, 1 if qtype == _IXFR else 0, 0)
        out += self.spec.origin + struct.pack("!HH", qtype, 1)
        if qtype == _IXFR:
            assert self.zone is not None
            # RFC 1995 §3: our SOA in the authority section says which version we hold.
            rdata = self.zone.soa.rdatas[0]
            out += self.spec.origin + struct.pack("!HHIH", SOA, 1, self.zone.soa.ttl, len(rdata)) + rdata
        return out

    async def _exchange(self, stream: Stream, reader: _Reader, qtype: int) -> Message:
        query = self._query(qtype)
        signer = _Signer(self.spec.key, self._ctx)
        await stream.send(len(signer.sign(query)).to_bytes(2, "big") + signer.signed)
        return signer.check(await reader.message(), query)

    async def _transfer(self, stream: Stream, reader: _Reader) -> None:
        qtype = _IXFR if self.zone is not None else _AXFR
        query = self._query(qtype)
        signer = _Signer(self.spec.key, self._ctx)
        await stream.send(len(signer.sign(query)).to_bytes(2, "big") + signer.signed)
        current = records_of(self.zone) if self.zone is not None else set()
        serial = self.zone.serial if self.zone is not None else None
        transfer = TransferReader(self.spec.origin, serial=serial, current=current)
        count = 0
        while True:
            message = signer.check(await reader.message(), query)
            count += len(message.answer)
            if count > MAX_RECORDS:
                raise TransferError(f"more than {MAX_RECORDS} records")
            if transfer.feed(message.answer) or transfer.end_of_message():
                break
        signer.finish()
        if transfer.up_to_date:
            self.refreshed_at = self._ctx.clock.now()
            return
        assert transfer.soa is not None
        source = f"{'ixfr' if transfer.incremental else 'axfr'} from {self.spec.primary}"
        zone = zone_from_records(self.spec.origin, transfer.soa, transfer.records, source)
        self.refreshed_at = self._ctx.clock.now()
        await self._save(zone, transfer.records)
        old = self.zone
        self.zone = zone
        self.transfers.labels("ixfr" if transfer.incremental else "axfr").inc()
        self._log.info(
            "zone transferred",
            zone=self.spec.name,
            serial=zone.serial,
            old_serial=old.serial if old else None,
            kind="ixfr" if transfer.incremental else "axfr",
            records=len(transfer.records) + 1,
        )
        await self._install(self.spec, zone)


class _Reader:
    """RFC 1035 §4.2.2 / RFC 7766 §8: two-octet length, then the message."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self._buf = bytearray()

    async def _need(self, n: int) -> None:
        while len(self._buf) < n:
            data = await self._stream.receive(timeout=READ_TIMEOUT)
            if not data:
                raise EOFError("the primary closed the connection")
            self._buf += data

    async def message(self) -> bytes:
        await self._need(2)
        length = (self._buf[0] << 8) | self._buf[1]
        await self._need(2 + length)
        data = bytes(self._buf[2 : 2 + length])
        del self._buf[: 2 + length]
        return data


class _Signer:
    """TSIG for one exchange: sign the query, check each answer (RFC 8945 §5.3.1:
    the first answer over the request MAC, the later ones over the previous MAC
    and any unsigned messages between, timers only)."""

    def __init__(self, key: tsig.Key | None, ctx: Context) -> None:
        self._key = key
        self._ctx = ctx
        self._mac = b""
        self._first = True
        self._unsigned = b""
        self.signed = b""

    def sign(self, query: bytes) -> bytes:
        if self._key is None:
            self.signed = query
        else:
            self.signed, self._mac = tsig.sign(query, self._key, int(self._ctx.clock.now()))
        return self.signed

    def check(self, data: bytes, query: bytes) -> Message:
        message = parse_message(data)
        if message.id != (query[0] << 8 | query[1]) or not message.flags & 0x8000:
            raise TransferError("answer with another ID, or not an answer")
        if message.rcode:
            raise TransferError(f"the primary answered rcode {message.rcode}")
        if self._key is None:
            return message
        record = tsig.find_tsig(data)
        if record is None:
            if self._first:
                raise TransferError("the primary's answer is not signed")
            self._unsigned += data
            return message
        record = _with_prefix(record, self._unsigned)
        error, _ = tsig.verify(
            record,
            {self._key.name: self._key},
            int(self._ctx.clock.now()),
            prior=self._mac,
            timers_only=not self._first,
        )
        if error:
            raise TransferError(f"TSIG check of the primary's answer failed (error {error})")
        self._mac = record.mac
        self._first = False
        self._unsigned = b""
        return message

    def finish(self) -> None:
        if self._key is not None and self._unsigned:
            raise TransferError("the last message of the transfer is not signed (RFC 8945 §5.3.1)")


def _with_prefix(record: tsig.TsigRecord, prefix: bytes) -> tsig.TsigRecord:
    return replace(record, unsigned=prefix + record.unsigned) if prefix else record
