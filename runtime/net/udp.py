"""Datagram endpoints: one synchronous handler call per datagram.

The hot path is ``datagram_received`` -> handler -> ``sendto``: no task, no
future, no object built by the runtime.  A handler that raises is counted and
logged (the first time, then every 1,000th, so a poison packet flood cannot
flood the log), and the endpoint goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from ..devices import Address, DatagramHandler, Log
from ..lifecycle import Lifecycle

__all__ = ["DatagramEndpointImpl", "DatagramStats"]


@dataclass(frozen=True, slots=True)
class DatagramStats:
    address: Address
    received: int
    handler_errors: int


class DatagramEndpointImpl(asyncio.DatagramProtocol):
    def __init__(self, lifecycle: Lifecycle, log: Log) -> None:
        self._lifecycle = lifecycle
        self._log = log
        self._handler: DatagramHandler | None = None
        self._transport: Any = None
        self._address = Address("", 0)
        self._errors = 0
        self._received = 0
        self._closed = asyncio.Event()

    # asyncio side -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._address = Address.of(transport.get_extra_info("sockname"))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._received += 1
        handler = self._handler
        if handler is None:
            return
        try:
            reply = handler(data, addr)
        except Exception as exc:
            self._errors += 1
            if self._errors % 1000 == 1:
                self._log.exception(
                    "datagram handler crashed", exc, peer=str(Address.of(addr)), count=self._errors
                )
            return
        if reply is not None:
            self._transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends for earlier replies: the client's
        # problem, not ours.
        self._log.debug("datagram error", error=repr(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed.set()

    # device side ---------------------------------------------------------------

    @property
    def address(self) -> Address:
        return self._address

    def statistics(self) -> DatagramStats:
        return DatagramStats(self._address, self._received, self._errors)

    def serve(self, handler: DatagramHandler) -> Coroutine[Any, Any, None]:
        """Install ``handler`` at once (every datagram from now on is answered,
        even before the returned coroutine first runs) and return the coroutine
        that waits until the runtime stops or the endpoint closes."""
        if self._handler is not None:
            raise RuntimeError(f"datagram endpoint {self._address} is already serving")
        self._handler = handler
        return self._serving()

    async def _serving(self) -> None:
        stopping = asyncio.ensure_future(self._lifecycle.wait_stopping())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait([stopping, closed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            closed.cancel()
            await asyncio.wait([stopping, closed])
            self._handler = None

    def send(self, data: bytes, to: tuple[Any, ...]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(data, to)

    async def aclose(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._closed.set()
