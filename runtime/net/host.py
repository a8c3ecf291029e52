"""The host net device: OS sockets on the event loop."""

from __future__ import annotations

import asyncio
import socket

from ..devices import Address, DatagramEndpoint, Limits, Log, Stream, StreamListener, TLSConfig
from ..errors import DeviceError
from ..lifecycle import Lifecycle
from .listener import StreamListenerImpl
from .owner import EndpointOwner
from .stream import TransportStream
from .tls import client_context, server_context
from .udp import DatagramEndpointImpl

__all__ = ["HostNet", "SocketAcceptSource"]

#: listen(2) backlog: the kernel caps it at net.core.somaxconn (4096 on Linux >= 5.4)
_BACKLOG = 4096


class SocketAcceptSource:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._address = Address.of(sock.getsockname())

    @property
    def address(self) -> Address:
        return self._address

    async def accept(self) -> tuple[socket.socket, Address | None]:
        sock, _ = await asyncio.get_running_loop().sock_accept(self._sock)
        # The transport reads both ends' addresses itself (the local one is
        # concrete even when we listen on a wildcard).
        return sock, None

    def close(self) -> None:
        self._sock.close()


class HostNet(EndpointOwner):
    """``reuse_port`` is set in multi-worker mode so that every worker binds the
    same address and the kernel spreads clients over them (SO_REUSEPORT)."""

    def __init__(self, *, lifecycle: Lifecycle, log: Log, reuse_port: bool = False) -> None:
        self._lifecycle = lifecycle
        self._log = log
        super().__init__()
        self._reuse_port = reuse_port

    def _socket(self, address: Address, kind: socket.SocketKind) -> socket.socket:
        what = "listen on" if kind == socket.SOCK_STREAM else "bind UDP"
        # An ASCII host goes as bytes: given a str, getaddrinfo runs it through
        # the "idna" codec first, which costs encodings.idna, stringprep and
        # unicodedata (1.1 MB in an image) even for "0.0.0.0", and is the
        # identity for ASCII names (its label-length check aside).
        host: str | bytes = address.host.encode() if address.host.isascii() else address.host
        try:
            infos = socket.getaddrinfo(host, address.port, type=kind, flags=socket.AI_PASSIVE)
        except OSError as exc:
            raise DeviceError(f"cannot {what} {address}: {exc.strerror or exc}") from None
        family, socktype, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, socktype, proto)
        try:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self._reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                # One socket, one family: [::]:53 must not swallow IPv4.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise DeviceError(f"cannot {what} {address}: {exc.strerror or exc}") from None
        except BaseException:
            sock.close()
            raise
        return sock

    async def listen_tcp(
        self, address: Address, *, tls: TLSConfig | None = None, limits: Limits | None = None
    ) -> StreamListener:
        context = server_context(tls) if tls is not None else None
        sock = self._socket(address, socket.SOCK_STREAM)
        sock.listen(_BACKLOG)
        source = SocketAcceptSource(sock)
        listener = StreamListenerImpl(
            source,
            limits=limits or Limits(),
            lifecycle=self._lifecycle,
            log=self._log,
            tls=context,
        )
        self._own(listener)
        return listener

    async def bind_udp(self, address: Address) -> DatagramEndpoint:
        sock = self._socket(address, socket.SOCK_DGRAM)
        endpoint = DatagramEndpointImpl(self._lifecycle, self._log)
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: endpoint, sock=sock)
        self._own(endpoint)
        return endpoint

    async def connect_tcp(
        self, address: Address, *, tls: TLSConfig | None = None, timeout: float = 10.0
    ) -> Stream:
        loop = asyncio.get_running_loop()
        stream = TransportStream(Limits(), client=True)
        context = client_context(tls) if tls is not None else None
        async with asyncio.timeout(timeout):
            await loop.create_connection(
                lambda: stream,
                address.host,
                address.port,
                ssl=context,
                server_hostname=(tls.server_hostname or address.host) if tls is not None else None,
            )
        return stream
