"""A byte stream over an asyncio transport, with the runtime's bounds built in.

Not asyncio's StreamReader/StreamWriter: those buffer without a read bound, have
no idle or write timeouts and cost an extra layer per read.  Here one protocol
object holds the received chunks and at most one waiting reader; reading pauses
the transport above ``READ_HIGH_WATER`` so a fast sender cannot fill memory, and
``send`` waits (bounded) while the transport's write buffer is above the
listener's high-water mark.
"""

from __future__ import annotations

import asyncio
import io
import os
import ssl
from typing import Any, BinaryIO, cast

from ..devices import Address, Limits, TLSConfig, TLSInfo
from .tls import client_context, server_context, server_end_point

__all__ = ["READ_HIGH_WATER", "TransportStream"]

#: received-but-unread bytes before we stop reading from the socket; 256 KiB is
#: the same order as Linux's default TCP receive window.
READ_HIGH_WATER = 256 * 1024

#: bytes per chunk when sendfile falls back to read-and-write
_SENDFILE_CHUNK = 256 * 1024
#: bytes per os.sendfile() call on the zero-copy path: the kernel sends what fits
#: the socket buffer anyway; the bound only keeps one call from running long
_SENDFILE_NATIVE_CHUNK = 4 * 1024 * 1024


class TransportEnds(asyncio.Protocol):
    """What both stream flavours know of their transport: the two addresses and
    the TLS session, learnt at ``connection_made`` unless given (memory net)."""

    _peer: Address | None
    _local: Address | None
    _tls: TLSInfo | None = None

    def _learn_ends(self, transport: asyncio.Transport) -> None:
        if self._peer is None:
            peer = transport.get_extra_info("peername")
            self._peer = Address.of(peer) if isinstance(peer, tuple) else Address("", 0)
        if self._local is None:
            sock = transport.get_extra_info("sockname")
            self._local = Address.of(sock) if isinstance(sock, tuple) else Address("", 0)
        self._tls = _tls_info(transport)

    @property
    def peer(self) -> Address:
        return self._peer or Address("", 0)

    @property
    def local(self) -> Address:
        return self._local or Address("", 0)

    @property
    def tls(self) -> TLSInfo | None:
        return self._tls


class TransportStream(TransportEnds):
    """Both the asyncio protocol and the ``Stream`` device handed to handlers."""

    def __init__(
        self,
        limits: Limits,
        peer: Address | None = None,
        local: Address | None = None,
        *,
        client: bool = False,
    ) -> None:
        self._limits = limits
        self._client = client
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        #: received, not yet read; a bytearray only once chunks pile up
        self._data: bytes | bytearray = b""
        self._closing = False
        self._eof = False
        self._draining = False
        self._lost: BaseException | None = None
        self._closed = False
        self._reader: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._writer: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False
        self._peer = peer
        self._local = local
        self._tls: TLSInfo | None = None
        self._made = self._loop.create_future()

    # ------------------------------------------------------------ asyncio side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        transport.set_write_buffer_limits(high=self._limits.write_high_water)
        self._learn_ends(transport)
        if not self._made.done():
            self._made.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._data:
            if isinstance(self._data, bytes):
                self._data = bytearray(self._data)
            self._data += data
        else:
            self._data = data
        if len(self._data) > READ_HIGH_WATER and not self._read_paused and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    def eof_received(self) -> bool | None:
        self._eof = True
        self._wake_reader()
        # An accepted stream stays half-open so that a client that sent its
        # request and shut its sending side still gets the answer; the
        # listener closes it when the handler ends.  TLS transports cannot stay
        # half-open (asyncio closes them regardless); our own client streams
        # close at the peer's end.
        return not self._client and self._tls is None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._eof = True
        self._closed = True
        self._lost = exc
        self._wake_reader()
        writer = self._writer
        if writer is not None and not writer.done():
            writer.set_result(None)
        if not self._made.done():
            self._made.set_exception(exc or ConnectionResetError("connection lost"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        writer = self._writer
        if writer is not None and not writer.done():
            writer.set_result(None)

    def _wake_reader(self) -> None:
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    # ------------------------------------------------------------ runtime side

    def begin_drain(self) -> None:
        """The runtime is stopping: an idle reader sees end-of-stream."""
        self._draining = True
        self._wake_reader()

    async def wait_made(self) -> None:
        await self._made

    # ------------------------------------------------------------ Stream device

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._transport

    async def receive(self, max_bytes: int = 65536, *, timeout: float | None = None) -> bytes:
        if not self._data:
            if self._eof or self._draining:
                return b""
            await self._wait_readable(self._limits.idle_timeout if timeout is None else timeout)
            if not self._data:
                return b""
        data = self._data
        if len(data) <= max_bytes:
            self._data = b""
        else:
            self._data = data[max_bytes:]
            data = data[:max_bytes]
        if self._read_paused and len(self._data) <= READ_HIGH_WATER // 2 and self._transport is not None:
            self._read_paused = False
            self._transport.resume_reading()
        return data if isinstance(data, bytes) else bytes(data)

    async def _wait_readable(self, timeout: float) -> None:
        # One lazily re-armed timer per stream instead of a timer per read: a
        # read only moves the deadline; the timer, when it fires early, re-arms
        # itself for the deadline.  Busy connections then cost no timer at all.
        loop = self._loop
        reader = loop.create_future()
        self._reader = reader
        self._deadline = loop.time() + timeout
        timer = self._timer
        if timer is None or timer.when() > self._deadline:
            # (a shorter timeout than the one armed before must not wait for it)
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(self._deadline, self._on_timer)
        try:
            await reader
        finally:
            self._reader = None

    def _on_timer(self) -> None:
        self._timer = None
        reader = self._reader
        if reader is None or reader.done():
            return
        if self._loop.time() >= self._deadline:
            reader.set_exception(TimeoutError("idle timeout"))
        else:
            self._timer = self._loop.call_at(self._deadline, self._on_timer)

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        self.write(data)
        if self._write_paused:
            await self._wait_writable()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        transport = self._transport
        if self._closed or self._closing or transport is None:
            raise ConnectionResetError("stream is closed")
        transport.write(data)

    @property
    def buffered(self) -> int:
        transport = self._transport
        return 0 if transport is None else transport.get_write_buffer_size()

    async def _wait_writable(self) -> None:
        while self._write_paused and not self._closed:
            writer = self._loop.create_future()
            self._writer = writer
            timer = self._loop.call_later(self._limits.write_timeout, _expire, writer)
            try:
                await writer
            finally:
                timer.cancel()
                self._writer = None
        if self._closed:
            raise ConnectionResetError("peer went away while we were sending")

    async def sendfile(self, file: BinaryIO, offset: int, count: int) -> None:
        transport = self._transport
        if self._closed or transport is None:
            raise ConnectionResetError("stream is closed")
        if self._tls is None:
            try:
                await self._loop.sendfile(transport, file, offset, count, fallback=False)
                return
            except (NotImplementedError, asyncio.SendfileNotAvailableError, AttributeError):
                pass
            if await self._sendfile_native(transport, file, offset, count):
                return
        file.seek(offset)
        remaining = count
        while remaining > 0:
            chunk = file.read(min(_SENDFILE_CHUNK, remaining))
            if not chunk:
                raise EOFError(f"file ended {remaining} bytes early")
            remaining -= len(chunk)
            await self.send(chunk)

    async def _sendfile_native(
        self, transport: asyncio.Transport, file: BinaryIO, offset: int, count: int
    ) -> bool:
        """Zero-copy ``os.sendfile`` for plain TCP on loops without ``loop.sendfile``
        (uvloop).  Returns False, having sent nothing, when it cannot be used.

        Bytes already queued in the transport go first: we wait until its buffer
        is empty, then write to (a duplicate of) its socket directly; a full
        socket buffer is waited for with the write timeout, as ``send`` does."""
        native = getattr(os, "sendfile", None)
        sock = transport.get_extra_info("socket")
        if native is None or sock is None:
            return False
        try:
            in_fd = file.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            return False
        if transport.get_write_buffer_size():
            # Pause at any queued byte and resume only once all are written.
            transport.set_write_buffer_limits(high=0, low=0)
            try:
                await self._wait_writable()
            finally:
                transport.set_write_buffer_limits(high=self._limits.write_high_water)
        # The transport owns its descriptor (the loop refuses a second watcher on
        # it); a duplicate can be watched for writability on its own.
        out_fd = os.dup(sock.fileno())
        try:
            while count > 0:
                if self._closed or transport.is_closing():
                    raise ConnectionResetError("peer went away while we were sending")
                try:
                    sent = native(out_fd, in_fd, offset, min(count, _SENDFILE_NATIVE_CHUNK))
                except BlockingIOError:
                    await self._wait_fd_writable(out_fd)
                    continue
                except (BrokenPipeError, ConnectionResetError) as exc:
                    raise ConnectionResetError(f"peer went away while we were sending: {exc}") from None
                if sent == 0:
                    raise EOFError(f"file ended {count} bytes early")
                offset += sent
                count -= sent
                if count:
                    await asyncio.sleep(0)  # one large file must not hold the loop
        finally:
            os.close(out_fd)
        return True

    async def _wait_fd_writable(self, fd: int) -> None:
        waiter = self._loop.create_future()
        self._loop.add_writer(fd, _wake, waiter)
        timer = self._loop.call_later(self._limits.write_timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._loop.remove_writer(fd)

    async def start_tls(self, tls: TLSConfig, *, preface: bytes = b"") -> None:
        transport = self._transport
        if transport is None or self._closed:
            raise ConnectionResetError("stream is closed")
        if self._data:
            # RFC 6120 §5.4.3.3 and RFC 3207 §4: nothing may follow the STARTTLS
            # request in the clear; data that did is an attack, not a handshake.
            raise ConnectionError("cleartext data received before the TLS handshake")
        if preface:
            # Reading stays off from here to the handshake (the loop's start_tls
            # resumes it under TLS): the peer answers the preface with its
            # ClientHello, which must reach the TLS layer, not our buffer.
            transport.pause_reading()
            transport.write(preface)
        if self._client:
            context = client_context(tls)
            hostname = tls.server_hostname or self.peer.host
        else:
            context, hostname = server_context(tls), None
        new = await self._loop.start_tls(
            transport,
            self,
            context,
            server_side=not self._client,
            server_hostname=hostname,
            ssl_handshake_timeout=self._limits.handshake_timeout,
        )
        if new is None:
            raise ConnectionResetError("connection closed during the TLS handshake")
        self._transport = new
        new.set_write_buffer_limits(high=self._limits.write_high_water)
        self._tls = _tls_info(new)

    def close(self) -> None:
        self._closing = True
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
        self._wake_reader()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    async def aclose(self) -> None:
        self.close()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError("timed out"))


def _tls_info(transport: asyncio.BaseTransport) -> TLSInfo | None:
    obj: Any = transport.get_extra_info("ssl_object")
    if obj is None or not isinstance(obj, (ssl.SSLObject, ssl.SSLSocket)):
        return None
    cipher = obj.cipher()
    # A client can compute the server's RFC 5929 end-point binding from the
    # certificate it was shown; the server side computes its own from the
    # certificate it holds (``tls.server_end_point``).
    peer_cert = None if obj.server_side else obj.getpeercert(binary_form=True)
    return TLSInfo(
        version=obj.version() or "",
        cipher=cipher[0] if cipher else "",
        alpn=obj.selected_alpn_protocol(),
        server_end_point=server_end_point(peer_cert) if peer_cert else None,
    )
