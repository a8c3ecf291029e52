"""The in-memory net device: an in-process network for tests.

Addresses are only names in a ``MemoryNetwork`` (nothing is bound on the host,
so tests cannot collide on ports).  Datagrams are delivered by the event loop
(``call_soon``), never re-entrantly.  A TCP connection is a kernel socketpair
handed to the same listener code as on the host, so limits, TLS and
back-pressure behave exactly as there.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import Any

from ..devices import Address, DatagramEndpoint, Limits, Log, Stream, StreamListener, TLSConfig
from ..errors import DeviceError
from ..lifecycle import Lifecycle
from .listener import StreamListenerImpl
from .owner import EndpointOwner
from .stream import TransportStream
from .tls import client_context, server_context
from .udp import DatagramEndpointImpl

__all__ = ["MemoryNet", "MemoryNetwork"]

#: pending connections per listener, like a listen(2) backlog
_BACKLOG = 128
_WILDCARDS = ("0.0.0.0", "::", "")


class MemoryNetwork:
    """The shared medium: every ``MemoryNet`` on it can reach the others."""

    def __init__(self) -> None:
        self.tcp: dict[Address, _QueueAcceptSource] = {}
        self.udp: dict[Address, _MemoryDatagramTransport] = {}
        self._next_port = 20000

    def allocate(self, host: str, port: int, table: dict[Address, Any]) -> Address:
        if port == 0:
            while Address(host, self._next_port) in table:
                self._next_port += 1
            port = self._next_port
            self._next_port += 1
        address = Address(host, port)
        if address in table:
            raise DeviceError(f"cannot bind {address}: address already in use")
        return address

    def find(self, table: dict[Address, Any], address: Address) -> Any:
        found = table.get(address)
        if found is None:
            for wildcard in _WILDCARDS:
                found = table.get(Address(wildcard, address.port))
                if found is not None:
                    break
        return found


class _QueueAcceptSource:
    def __init__(self, network: MemoryNetwork, address: Address) -> None:
        self._network = network
        self._address = address
        self._pending: deque[tuple[socket.socket, Address]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    @property
    def address(self) -> Address:
        return self._address

    def offer(self, sock: socket.socket, peer: Address) -> None:
        if self._closed or len(self._pending) >= _BACKLOG:
            sock.close()
            raise ConnectionRefusedError(f"connection refused: {self._address}")
        self._pending.append((sock, peer))
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def accept(self) -> tuple[socket.socket, Address | None]:
        while not self._pending:
            if self._closed:
                raise OSError(9, "listener closed")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._pending.popleft()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._network.tcp.get(self._address) is self:
            del self._network.tcp[self._address]
        while self._pending:
            self._pending.popleft()[0].close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class _MemoryDatagramTransport(asyncio.DatagramTransport):
    """Just enough of a datagram transport for DatagramEndpointImpl."""

    def __init__(self, network: MemoryNetwork, address: Address, protocol: DatagramEndpointImpl) -> None:
        super().__init__()
        self._network = network
        self._address = address
        self._protocol = protocol
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return tuple(self._address) if name == "sockname" else default

    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._closing or addr is None:
            return
        target = self._network.find(self._network.udp, Address.of(addr))
        if target is not None:
            payload = bytes(data)
            asyncio.get_running_loop().call_soon(target.deliver, payload, tuple(self._address))

    def deliver(self, data: bytes, source: tuple[Any, ...]) -> None:
        if not self._closing:
            self._protocol.datagram_received(data, source)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._network.udp.get(self._address) is self:
            del self._network.udp[self._address]
        asyncio.get_running_loop().call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()


class MemoryNet(EndpointOwner):
    """A host on a ``MemoryNetwork``; ``host`` is the address peers see."""

    def __init__(
        self, network: MemoryNetwork, *, lifecycle: Lifecycle, log: Log, host: str = "127.0.0.1"
    ) -> None:
        self._network = network
        self._lifecycle = lifecycle
        self._log = log
        super().__init__()
        self._host = host

    @property
    def network(self) -> MemoryNetwork:
        return self._network

    async def listen_tcp(
        self, address: Address, *, tls: TLSConfig | None = None, limits: Limits | None = None
    ) -> StreamListener:
        context = server_context(tls) if tls is not None else None
        bound = self._network.allocate(address.host, address.port, self._network.tcp)
        source = _QueueAcceptSource(self._network, bound)
        self._network.tcp[bound] = source
        listener = StreamListenerImpl(
            source, limits=limits or Limits(), lifecycle=self._lifecycle, log=self._log, tls=context
        )
        self._own(listener)
        return listener

    async def bind_udp(self, address: Address) -> DatagramEndpoint:
        bound = self._network.allocate(address.host, address.port, self._network.udp)
        endpoint = DatagramEndpointImpl(self._lifecycle, self._log)
        transport = _MemoryDatagramTransport(self._network, bound, endpoint)
        self._network.udp[bound] = transport
        endpoint.connection_made(transport)
        self._own(endpoint)
        return endpoint

    async def connect_tcp(
        self, address: Address, *, tls: TLSConfig | None = None, timeout: float = 10.0
    ) -> Stream:
        source = self._network.find(self._network.tcp, address)
        if source is None:
            raise ConnectionRefusedError(f"connection refused: {address}")
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        theirs.setblocking(False)
        me = self._network.allocate(self._host, 0, {})
        try:
            source.offer(theirs, me)
        except ConnectionRefusedError:
            ours.close()
            raise
        stream = TransportStream(Limits(), peer=source.address, local=me, client=True)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            if tls is None:
                await loop.connect_accepted_socket(lambda: stream, ours)
            else:
                await loop.create_connection(
                    lambda: stream,
                    sock=ours,
                    ssl=client_context(tls),
                    server_hostname=tls.server_hostname or address.host,
                )
        return stream
