"""Callback connections: the stream hot path without a task switch per message.

``listener.serve_connections(factory)`` hands each accepted connection to a
handler object whose methods the runtime calls synchronously from the event
loop (``data_received``, ``eof_received``, ``stopping``, ``connection_lost``),
the way the datagram path works.  A sans-IO core fits here directly: bytes in,
bytes out through ``conn.write``.  The runtime still owns every bound:

1. the connection cap and accept backoff (shared with ``serve``);
2. the idle timeout: one lazily re-armed timer per connection; any data
   received or written counts as activity;
3. back-pressure: ``pause_writing``/``resume_writing`` reach the handler, and a
   connection whose writes stay blocked past the write timeout is aborted;
4. a handler method that raises is logged with its traceback and the
   connection aborted; the listener goes on;
5. on stop, ``stopping()`` is called once on every open connection, which
   should finish what is in flight and close; after the drain timeout the
   rest are aborted.
"""

from __future__ import annotations

import asyncio
from typing import cast

from ..devices import Address, ConnectionFactory, ConnectionHandler, Limits, Log, TLSInfo
from .stream import TransportEnds

__all__ = ["CallbackConnection"]


class CallbackConnection(TransportEnds):
    """The asyncio protocol, and the ``Connection`` device the handler writes to."""

    def __init__(
        self,
        limits: Limits,
        log: Log,
        peer: Address | None,
        local: Address | None,
        factory: ConnectionFactory,
    ) -> None:
        self._factory = factory
        self._limits = limits
        self._log = log
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._handler: ConnectionHandler | None = None
        self._peer = peer
        self._local = local
        self._tls: TLSInfo | None = None
        self.done: asyncio.Future[None] = self._loop.create_future()
        self.crashed = False
        self._timer: asyncio.TimerHandle | None = None
        self._idle_deadline = 0.0
        self._write_blocked_since: float | None = None
        self._stopping = False

    # ------------------------------------------------------------ asyncio side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=self._limits.write_high_water)
        self._learn_ends(transport)
        self._touch()
        # The handler exists before any data can arrive (data_received never
        # precedes connection_made).
        try:
            self._handler = self._factory(self)
        except Exception as exc:
            self._crash(exc)

    def data_received(self, data: bytes) -> None:
        self._idle_deadline = self._loop.time() + self._limits.idle_timeout
        handler = self._handler
        if handler is None:
            return
        try:
            handler.data_received(data)
        except Exception as exc:
            self._crash(exc)

    def eof_received(self) -> bool | None:
        handler = self._handler
        keep_open = False
        if handler is not None:
            try:
                keep_open = bool(handler.eof_received())
            except Exception as exc:
                self._crash(exc)
        # TLS transports cannot stay half-open (asyncio closes them regardless).
        return keep_open and self._tls is None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        handler, self._handler = self._handler, None
        if handler is not None:
            try:
                handler.connection_lost(exc)
            except Exception as error:
                self.crashed = True
                self._log.exception("connection handler crashed", error, peer=str(self.peer))
        if not self.done.done():
            self.done.set_result(None)

    def pause_writing(self) -> None:
        self._write_blocked_since = self._loop.time()
        self._arm(self._write_blocked_since + self._limits.write_timeout)
        if self._handler is not None:
            try:
                self._handler.pause_writing()
            except Exception as exc:
                self._crash(exc)

    def resume_writing(self) -> None:
        self._write_blocked_since = None
        if self._handler is not None:
            try:
                self._handler.resume_writing()
            except Exception as exc:
                self._crash(exc)

    # ------------------------------------------------------------ bounds

    def _touch(self) -> None:
        self._idle_deadline = self._loop.time() + self._limits.idle_timeout
        self._arm(self._idle_deadline)

    def _arm(self, when: float) -> None:
        if self._timer is None or self._timer.when() > when:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._transport is None or self._transport.is_closing():
            return
        now = self._loop.time()
        blocked = self._write_blocked_since
        if blocked is not None and now >= blocked + self._limits.write_timeout:
            self._log.debug("write timeout", peer=str(self.peer))
            self._transport.abort()
            return
        if now >= self._idle_deadline:
            self._log.debug("idle timeout", peer=str(self.peer))
            self._transport.abort()
            return
        deadline = self._idle_deadline
        if blocked is not None:
            deadline = min(deadline, blocked + self._limits.write_timeout)
        self._arm(deadline)

    def _crash(self, exc: Exception) -> None:
        self.crashed = True
        self._log.exception("connection handler crashed", exc, peer=str(self.peer))
        if self._transport is not None:
            self._transport.abort()

    def begin_drain(self) -> None:
        if self._stopping or self._handler is None:
            return
        self._stopping = True
        try:
            self._handler.stopping()
        except Exception as exc:
            self._crash(exc)

    # ------------------------------------------------------------ Connection device

    @property
    def stopping(self) -> bool:
        return self._stopping

    def write(self, data: bytes | bytearray | memoryview) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)
            self._idle_deadline = self._loop.time() + self._limits.idle_timeout

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def pause_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def __repr__(self) -> str:
        return f"<CallbackConnection {self.peer}>"
