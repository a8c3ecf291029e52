"""NOTIFY out (RFC 1996): tell secondaries that a zone changed.

One message per zone and target: opcode NOTIFY, AA, the question ``ZONE SOA IN``
and our SOA in the answer section (§3.7 allows it, and NSD and Knot use its serial).
It goes over UDP from an ephemeral port and is retried until a NOTIFY response
with the same ID comes back from the target (§3.6 "the master ... periodically
retransmits the NOTIFY until a response is received"): ``ATTEMPTS`` times,
waiting ``FIRST_WAIT`` seconds, doubling (BIND retries 5 times too).  A newer
change of the same zone replaces a NOTIFY still being retried.  Waits use the
clock device, so tests can drive them with a manual clock.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from runtime import Address, Context, DatagramEndpoint

from . import tsig
from .config import Target
from .wire import Writer, header
from .zone import Zone

__all__ = ["ATTEMPTS", "FIRST_WAIT", "Notifier", "notify_message"]

ATTEMPTS = 5
FIRST_WAIT = 2.0
_NOTIFY_AA = (4 << 11) | 0x0400


def notify_message(ident: int, zone: Zone) -> bytes:
    question = zone.origin + struct.pack("!HH", 6, 1)
    writer = Writer(header(ident, _NOTIFY_AA, 1, 1, 0, 0) + question)
    writer.seed(zone.origin, 12)
    writer.rrset(zone.origin, zone.soa)
    return bytes(writer.buf)


class Notifier:
    def __init__(self, ctx: Context, targets: tuple[Target, ...], group: asyncio.TaskGroup) -> None:
        self._ctx = ctx
        self._targets = targets
        self._group = group
        self._log = ctx.log.child("notify")
        self._endpoints: dict[bool, DatagramEndpoint] = {}
        self._pending: dict[tuple[int, str, int], asyncio.Future[bytes]] = {}
        self._tasks: dict[tuple[bytes, Target], asyncio.Task[None]] = {}
        self.sent = ctx.metrics.counter("dns_notify_sent_total", "NOTIFY messages sent (with retries).")
        self.answered = ctx.metrics.counter(
            "dns_notify_answered_total", "NOTIFY acknowledged by a secondary."
        )
        self.failed = ctx.metrics.counter("dns_notify_failed_total", "NOTIFY never acknowledged.")

    async def _endpoint(self, v6: bool) -> DatagramEndpoint:
        endpoint = self._endpoints.get(v6)
        if endpoint is None:
            endpoint = await self._ctx.net.bind_udp(Address("::" if v6 else "0.0.0.0", 0))
            self._endpoints[v6] = endpoint
            self._group.create_task(endpoint.serve(self._on_response))
        return endpoint

    def _on_response(self, data: bytes, peer: tuple[Any, ...]) -> None:
        if len(data) < 12 or not data[2] & 0x80:
            return None
        waiter = self._pending.get(((data[0] << 8) | data[1], peer[0], peer[1]))
        if waiter is not None and not waiter.done():
            waiter.set_result(data)
        return None

    def zone_changed(self, zone: Zone) -> None:
        """NOTIFY every target about ``zone`` (replacing older NOTIFYs of it)."""
        for target in self._targets:
            key = (zone.origin, target)
            old = self._tasks.pop(key, None)
            if old is not None:
                old.cancel()
            task = self._group.create_task(self._notify(zone, target))
            self._tasks[key] = task
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        for key, running in list(self._tasks.items()):
            if running is task:
                del self._tasks[key]

    async def _notify(self, zone: Zone, target: Target) -> None:
        ident = self._ctx.random.below(65536)
        message = notify_message(ident, zone)
        mac = b""
        if target.key is not None:
            message, mac = tsig.sign(message, target.key, int(self._ctx.clock.now()))
        address = target.address
        endpoint = await self._endpoint(address.is_ipv6)
        slot = (ident, address.host, address.port)
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[slot] = waiter
        wait = FIRST_WAIT
        try:
            for attempt in range(1, ATTEMPTS + 1):
                endpoint.send(message, (address.host, address.port))
                self.sent.inc()
                sleeper: asyncio.Future[None] = asyncio.ensure_future(self._ctx.clock.sleep(wait))
                try:
                    both: list[asyncio.Future[Any]] = [waiter, sleeper]
                    await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    sleeper.cancel()
                if waiter.done():
                    reply = waiter.result()
                    rcode = reply[3] & 0xF
                    if target.key is not None:
                        rcode = rcode or self._check_signature(reply, target, mac)
                    self.answered.inc()
                    self._log.info(
                        "notify answered",
                        zone=zone.name,
                        serial=zone.serial,
                        target=str(address),
                        rcode=rcode,
                        attempt=attempt,
                    )
                    return
                wait *= 2
            self.failed.inc()
            self._log.warning(
                "notify not answered",
                zone=zone.name,
                serial=zone.serial,
                target=str(address),
                attempts=ATTEMPTS,
            )
        finally:
            self._pending.pop(slot, None)

    def _check_signature(self, reply: bytes, target: Target, mac: bytes) -> int:
        assert target.key is not None
        try:
            record = tsig.find_tsig(reply)
        except ValueError:
            return tsig.BADSIG
        if record is None:
            return tsig.BADSIG
        error, _ = tsig.verify(record, {target.key.name: target.key}, int(self._ctx.clock.now()), prior=mac)
        return error
