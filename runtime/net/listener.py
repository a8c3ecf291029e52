"""Serving a stream listener: the one place that owns accept, caps, backoff,
per-connection tasks, crash logging and the graceful drain.

Rules:
1. A connection slot is taken *before* accepting, so at the cap new clients wait
   in the kernel's backlog instead of being accepted and starved.
2. Accept errors that mean "out of a resource" (EMFILE, ENFILE, ENOBUFS, ENOMEM)
   back off exponentially, 10 ms doubling to 1 s (asyncio itself waits a flat
   1 s; trio's serve_listeners 100 ms); other transient errors are skipped.
3. Every connection task belongs to the listener's TaskGroup.  A handler that
   raises is logged with its traceback and counted; it never stops the listener.
   Timeouts and resets are the peer's doing and are logged at debug level.
4. On stop: stop accepting, tell each stream to read end-of-stream once idle,
   give the connections ``drain_timeout`` to finish, then cancel what is left.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from ..devices import Address, ConnectionFactory, Limits, ListenerStats, Log, StreamHandler, TLSConfig
from ..lifecycle import Lifecycle
from .callbacks import CallbackConnection
from .stream import TransportStream
from .tls import server_context

__all__ = ["RESOURCE_ERRNOS", "AcceptSource", "StreamListenerImpl"]

#: accept() errors that mean we ran out of something and should wait a little
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: accept() errors caused by a peer that gave up before we accepted
_TRANSIENT_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ECONNRESET})

#: runs one accepted connection to its end
_Runner = Callable[[socket.socket, "Address | None"], Coroutine[Any, Any, None]]

_BACKOFF_FIRST = 0.01
_BACKOFF_MAX = 1.0


class AcceptSource(Protocol):
    """Where accepted sockets come from: a listening socket or an in-memory hub."""

    @property
    def address(self) -> Address: ...

    async def accept(self) -> tuple[socket.socket, Address | None]: ...

    def close(self) -> None: ...


class StreamListenerImpl:
    def __init__(
        self,
        source: AcceptSource,
        *,
        limits: Limits,
        lifecycle: Lifecycle,
        log: Log,
        tls: ssl.SSLContext | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._source = source
        self._limits = limits
        self._lifecycle = lifecycle
        self._log = log
        self._tls = tls
        self._sleep = sleep
        self._slots = asyncio.Semaphore(limits.max_connections)
        self._streams: set[TransportStream | CallbackConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._closed = False
        self._serving = False
        self._accepted = 0
        self._rejected = 0
        self._handler_errors = 0
        self._accept_errors = 0
        self._unsubscribe = lifecycle.on_stop(self._stop.set)

    @property
    def address(self) -> Address:
        return self._source.address

    def set_tls(self, tls: TLSConfig) -> None:
        """Serve connections accepted from now on with ``tls`` (a certificate
        reload); connections already open keep their session."""
        if self._tls is None:
            raise RuntimeError(f"listener {self.address} does not serve TLS")
        self._tls = server_context(tls)

    def statistics(self) -> ListenerStats:
        return ListenerStats(
            address=self.address,
            active=len(self._streams),
            accepted=self._accepted,
            rejected=self._rejected,
            handler_errors=self._handler_errors,
            accept_errors=self._accept_errors,
        )

    async def serve(self, handler: StreamHandler) -> None:
        await self._serve_with(lambda sock, peer: self._run_stream(handler, sock, peer))

    async def serve_connections(self, factory: ConnectionFactory) -> None:
        await self._serve_with(lambda sock, peer: self._run_callbacks(factory, sock, peer))

    async def _serve_with(self, run: _Runner) -> None:
        if self._closed or self._serving:
            raise RuntimeError(f"listener {self.address} is closed or already serving")
        self._serving = True
        try:
            async with asyncio.TaskGroup() as group:
                accepting = group.create_task(self._accept_loop(run, group))
                await self._stop.wait()
                accepting.cancel()
                await asyncio.wait([accepting])
                await self._drain()
        finally:
            self._serving = False
            self._close_now()

    async def _accept_loop(self, run: _Runner, group: asyncio.TaskGroup) -> None:
        backoff = _BACKOFF_FIRST
        while True:
            await self._slots.acquire()
            try:
                sock, peer = await self._source.accept()
            except OSError as exc:
                self._slots.release()
                self._accept_errors += 1
                if exc.errno in RESOURCE_ERRNOS:
                    self._log.warning(
                        "accept failed, backing off",
                        listener=str(self.address),
                        error=errno.errorcode.get(exc.errno or 0, str(exc)),
                        retry_in=backoff,
                    )
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, _BACKOFF_MAX)
                    continue
                if exc.errno in _TRANSIENT_ERRNOS:
                    continue
                raise
            except BaseException:
                self._slots.release()
                raise
            backoff = _BACKOFF_FIRST
            self._accepted += 1
            task = group.create_task(run(sock, peer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run_stream(self, handler: StreamHandler, sock: socket.socket, peer: Address | None) -> None:
        loop = asyncio.get_running_loop()
        stream = TransportStream(self._limits, peer=peer, local=self._source.address if peer else None)
        try:
            try:
                await loop.connect_accepted_socket(
                    lambda: stream,
                    sock,
                    ssl=self._tls,
                    ssl_handshake_timeout=self._limits.handshake_timeout if self._tls else None,
                )
                await stream.wait_made()
            except (OSError, ssl.SSLError, TimeoutError) as exc:
                self._rejected += 1
                self._log.debug("connection setup failed", peer=str(peer) if peer else "", error=repr(exc))
                sock.close()
                return
            self._streams.add(stream)
            if self._lifecycle.stopping or self._stop.is_set():
                stream.begin_drain()
            try:
                await handler(stream)
            except (TimeoutError, ConnectionError, EOFError) as exc:
                self._log.debug("connection ended", peer=str(stream.peer), reason=type(exc).__name__)
            except Exception as exc:
                self._handler_errors += 1
                self._log.exception("connection handler crashed", exc, peer=str(stream.peer))
        finally:
            self._streams.discard(stream)
            stream.close()
            self._slots.release()

    async def _run_callbacks(
        self, factory: ConnectionFactory, sock: socket.socket, peer: Address | None
    ) -> None:
        loop = asyncio.get_running_loop()
        local = self._source.address if peer else None
        conn = CallbackConnection(self._limits, self._log, peer, local, factory)
        try:
            try:
                await loop.connect_accepted_socket(
                    lambda: conn,
                    sock,
                    ssl=self._tls,
                    ssl_handshake_timeout=self._limits.handshake_timeout if self._tls else None,
                )
            except (OSError, ssl.SSLError, TimeoutError) as exc:
                self._rejected += 1
                self._log.debug("connection setup failed", peer=str(peer) if peer else "", error=repr(exc))
                sock.close()
                return
            self._streams.add(conn)
            if self._lifecycle.stopping or self._stop.is_set():
                conn.begin_drain()
            await asyncio.shield(conn.done)
        finally:
            self._streams.discard(conn)
            if conn.crashed:
                self._handler_errors += 1
            if not conn.done.done():
                conn.abort()
            self._slots.release()

    async def _drain(self) -> None:
        self._source.close()
        for stream in list(self._streams):
            stream.begin_drain()
        pending = {t for t in self._tasks if not t.done()}
        if not pending:
            return
        self._log.info("draining connections", listener=str(self.address), active=len(pending))
        _, still = await asyncio.wait(pending, timeout=self._limits.drain_timeout)
        for task in still:
            task.cancel()
        if still:
            self._log.warning("drain timeout, connections cut", listener=str(self.address), cut=len(still))

    async def aclose(self) -> None:
        """Stop this listener: while serving, the same drain as a runtime stop."""
        if self._serving:
            self._stop.set()
        else:
            self._close_now()

    def _close_now(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._unsubscribe()
        self._source.close()
        for stream in list(self._streams):
            stream.abort()
