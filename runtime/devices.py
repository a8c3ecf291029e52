"""The device API: the only way an appliance touches the world.

Every device is a ``typing.Protocol``.  Targets implement them (``targets/host``
with OS sockets, a directory and an SQLite file; ``targets/memory`` for tests;
the image target later).  An appliance declares the devices it needs in its
``Appliance`` record and receives them through its ``Context``; it never opens a
socket, a file or a clock by itself.

Naming follows the runtime's conventions: ``listen_*``/``bind_*`` return a ready
resource, ``serve`` runs until cancelled, ``aclose()`` releases, a method that
does not wait is not ``async``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, NamedTuple, Protocol, runtime_checkable

__all__ = [
    "Address",
    "Clock",
    "Connection",
    "ConnectionFactory",
    "ConnectionHandler",
    "Data",
    "DataEntry",
    "DataFile",
    "DatagramEndpoint",
    "DatagramHandler",
    "Limits",
    "ListenerStats",
    "Log",
    "Metrics",
    "Net",
    "Random",
    "Store",
    "Stream",
    "StreamHandler",
    "StreamListener",
    "TLSConfig",
    "TLSInfo",
    "format_address",
]


# --------------------------------------------------------------------- addresses


class Address(NamedTuple):
    """An IP endpoint.  ``str()`` gives ``127.0.0.1:53`` or ``[::1]:53``.

    A named tuple, so that the datagram hot path can hand peers around without
    building objects: ``addr[0]`` is the host and ``addr[1]`` the port for this
    and for the raw tuples the OS gives (IPv6 peers carry two more fields).
    """

    host: str
    port: int

    def __str__(self) -> str:
        return format_address(self)

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    @classmethod
    def of(cls, peer: tuple[Any, ...]) -> Address:
        """The Address of a raw OS peer tuple (``(host, port)`` or IPv6's 4-tuple)."""
        return cls(peer[0], peer[1])

    @classmethod
    def parse(cls, text: str, default_port: int | None = None) -> Address:
        """Parse ``HOST:PORT``, ``[V6]:PORT`` or (with a default port) ``HOST``.

        Raises ``ValueError`` with a message fit for an option error.
        """
        text = text.strip()
        host: str
        port_text: str | None
        if text.startswith("["):
            end = text.find("]")
            if end < 0:
                raise ValueError(f"unclosed '[' in {text!r}")
            host = text[1:end]
            rest = text[end + 1 :]
            if rest and not rest.startswith(":"):
                raise ValueError(f"expected ':PORT' after ']' in {text!r}")
            port_text = rest[1:] if rest else None
        elif text.count(":") == 1:
            host, port_text = text.split(":")
        else:
            # A bare name, IPv4 address or IPv6 address without brackets: no port.
            host, port_text = text, None
        if not host:
            raise ValueError(f"missing host in {text!r}")
        if not port_text:
            if default_port is None:
                raise ValueError(f"missing port in {text!r} (expected HOST:PORT or [V6]:PORT)")
            port = default_port
        else:
            if not port_text.isdigit():
                raise ValueError(f"bad port {port_text!r} in {text!r}")
            port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} out of range 0-65535")
        return cls(host, port)


def format_address(peer: tuple[Any, ...]) -> str:
    """``HOST:PORT`` or ``[V6]:PORT`` for an Address or a raw OS peer tuple."""
    host = peer[0]
    return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"


# --------------------------------------------------------------------- net


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on a stream listener, enforced by the net device (not by appliances).

    Defaults follow common server practice: nginx's keepalive_timeout is 75 s and
    client_header_timeout 60 s; 1,024 connections is nginx's worker_connections
    default.  The high-water mark bounds what one slow reader can make us buffer.
    """

    max_connections: int = 1024
    #: a receive() with nothing arriving for this long raises TimeoutError
    idle_timeout: float = 60.0
    #: a send() that cannot get below the high-water mark for this long raises TimeoutError
    write_timeout: float = 30.0
    #: bytes queued in the kernel-side transport before send() waits
    write_high_water: int = 256 * 1024
    #: on stop, connections get this long to finish in-flight work
    drain_timeout: float = 10.0
    #: TLS handshake bound (RFC-less; common servers use 10-60 s)
    handshake_timeout: float = 15.0


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """A server or client TLS setting built from PEM bytes (never from paths).

    Appliances read certificate and key through the data device or the store and
    hand the bytes here; the net device builds the context.  TLS 1.2 is the floor.
    """

    cert_pem: bytes = b""
    key_pem: bytes = b""
    alpn: tuple[str, ...] = ()
    #: for client use: verify the peer against the system CAs (or ``ca_pem``)
    verify: bool = True
    ca_pem: bytes = b""
    server_hostname: str | None = None


@dataclass(frozen=True, slots=True)
class TLSInfo:
    version: str
    cipher: str
    alpn: str | None
    #: RFC 5929 tls-server-end-point binding data (hash of our certificate), if known
    server_end_point: bytes | None = None


@runtime_checkable
class Stream(Protocol):
    """One reliable byte stream (TCP, optionally TLS)."""

    @property
    def peer(self) -> Address: ...

    @property
    def local(self) -> Address: ...

    @property
    def tls(self) -> TLSInfo | None: ...

    async def receive(self, max_bytes: int = 65536, *, timeout: float | None = None) -> bytes:
        """Next bytes, ``b""`` at end of stream or when the runtime is stopping and
        nothing is pending.  Raises ``TimeoutError`` after ``timeout`` (default:
        the listener's idle timeout) with nothing received."""
        ...

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data``; waits while the write buffer is above its high-water
        mark (back-pressure).  Raises ``TimeoutError`` if it stays there past the
        write timeout, ``ConnectionError`` once the peer is gone."""
        ...

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` without waiting: for a caller that bounds what it
        queues itself (``buffered``) instead of waiting on back-pressure.
        Raises ``ConnectionError`` once the stream is closed."""
        ...

    @property
    def buffered(self) -> int:
        """Bytes queued and not yet taken by the kernel."""
        ...

    async def sendfile(self, file: BinaryIO, offset: int, count: int) -> None:
        """Send ``count`` bytes of ``file`` from ``offset`` (zero-copy where possible)."""
        ...

    async def start_tls(self, tls: TLSConfig, *, preface: bytes = b"") -> None:
        """Upgrade to TLS in place (STARTTLS): as the server on an accepted
        stream, as the client on one we connected.

        ``preface``: the last cleartext bytes (a server's "go ahead", such as
        XMPP's ``<proceed/>``), sent with reading stopped and the upgrade
        following at once, so the peer's handshake can never be read as
        cleartext.  A server that sends its go-ahead with ``send`` and then
        yields to the loop before ``start_tls`` races the peer's ClientHello."""
        ...

    def close(self) -> None:
        """Close now (buffered data is still flushed by the transport)."""
        ...

    async def aclose(self) -> None: ...

    @property
    def closed(self) -> bool: ...


StreamHandler = Callable[[Stream], Awaitable[None]]


@runtime_checkable
class Connection(Protocol):
    """The runtime's side of a callback connection (see ``serve_connections``)."""

    @property
    def peer(self) -> Address: ...

    @property
    def local(self) -> Address: ...

    @property
    def tls(self) -> TLSInfo | None: ...

    @property
    def stopping(self) -> bool: ...

    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    def close(self) -> None:
        """Close once the written data is flushed."""
        ...

    def abort(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class ConnectionHandler:
    """What a callback connection's owner implements; every method is called
    synchronously from the event loop and must not block.  The defaults do
    nothing."""

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        """The peer will send no more.  Return True to keep our side open until
        ``close()`` (to finish answering); the default False closes once what
        was written is flushed."""
        return False

    def pause_writing(self) -> None:
        """The write buffer is above the high-water mark: stop producing."""

    def resume_writing(self) -> None:
        """The write buffer drained below the low-water mark."""

    def stopping(self) -> None:
        """The runtime is stopping: finish what is in flight, then close."""

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection is gone (``exc`` says why, None for a clean close)."""


ConnectionFactory = Callable[[Connection], ConnectionHandler]


@runtime_checkable
class StreamListener(Protocol):
    @property
    def address(self) -> Address: ...

    async def serve(self, handler: StreamHandler) -> None:
        """Accept until cancelled or stopped, one task per connection, under the
        listener's limits.  A handler that raises is logged; the listener goes on."""
        ...

    async def serve_connections(self, factory: ConnectionFactory) -> None:
        """Like ``serve``, but each connection is a ``ConnectionHandler`` whose
        methods are called synchronously (no task switch per message), for hot
        paths driving a sans-IO core.  Same limits, same crash and stop rules."""
        ...

    def set_tls(self, tls: TLSConfig) -> None:
        """Use ``tls`` for connections accepted from now on (certificate reload
        without dropping open connections)."""
        ...

    def statistics(self) -> ListenerStats: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ListenerStats:
    address: Address
    active: int
    accepted: int
    rejected: int
    handler_errors: int
    accept_errors: int


#: datagram and raw peer tuple in (``peer[0]`` host, ``peer[1]`` port; see
#: ``Address.of``), reply bytes (or None for no reply) out.  Called synchronously
#: from the datagram callback: no task, no await, per packet.
DatagramHandler = Callable[[bytes, tuple[Any, ...]], "bytes | None"]


@runtime_checkable
class DatagramEndpoint(Protocol):
    @property
    def address(self) -> Address: ...

    def serve(self, handler: DatagramHandler) -> Coroutine[Any, Any, None]:
        """Install the handler at once (every datagram is then one synchronous
        call, even before the returned coroutine runs) and return a coroutine
        that waits until the runtime stops or it is cancelled:
        ``group.create_task(endpoint.serve(handler)); ctx.ready()`` answers
        from the first datagram."""
        ...

    def send(self, data: bytes, to: tuple[Any, ...]) -> None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Net(Protocol):
    async def listen_tcp(
        self, address: Address, *, tls: TLSConfig | None = None, limits: Limits | None = None
    ) -> StreamListener: ...

    async def bind_udp(self, address: Address) -> DatagramEndpoint: ...

    async def connect_tcp(
        self, address: Address, *, tls: TLSConfig | None = None, timeout: float = 10.0
    ) -> Stream: ...


# --------------------------------------------------------------------- data (read-only)


@dataclass(frozen=True, slots=True)
class DataEntry:
    key: str
    size: int
    #: seconds since the epoch
    mtime: float
    #: hex SHA-256 of the content
    sha256: str


class DataFile(NamedTuple):
    """A file named by an option (``--zone FILE``): its data device and key.
    On the host the device is the file's directory, so relative references
    (``$INCLUDE``) stay confined there."""

    data: Data
    key: str


@runtime_checkable
class Data(Protocol):
    """Read-only files given at build or start time.  Keys are ``/``-separated
    relative paths without ``.``/``..`` segments; nothing outside the root is
    reachable (symlinks pointing out are not keys)."""

    @property
    def name(self) -> str: ...

    def keys(self, prefix: str = "") -> list[str]:
        """Sorted keys of regular files under ``prefix`` (a directory prefix)."""
        ...

    def stat(self, key: str) -> DataEntry:
        """Raises ``KeyError`` for a missing key."""
        ...

    def read(self, key: str) -> bytes: ...

    def open(self, key: str) -> BinaryIO:
        """A binary file object (for streaming large content with sendfile)."""
        ...

    def __contains__(self, key: object) -> bool: ...


# --------------------------------------------------------------------- store (durable)


@runtime_checkable
class Store(Protocol):
    """Durable key/value and SQL (SQLite's dialect).  Reads do not wait; writes
    return only once durable (committed and synced).  Concurrent writes are
    grouped into one commit, each in its own savepoint: one caller's failing
    statement fails only that caller.

    Errors: a bad argument raises ``TypeError``/``ValueError`` at the call; the
    caller's SQL failing raises the ``sqlite3`` exception (``IntegrityError``,
    ``OperationalError``...), a statement the store refuses (a write in
    ``query``, transaction control, pragmas, ATTACH, writing the store's own
    ``store_*`` tables) ``sqlite3.ProgrammingError``; ``runtime.store.StoreError``
    means the store itself is at fault (its file is corrupt, locked, full...,
    or it was closed).  A write whose caller is cancelled may still be applied.
    """

    def get(self, key: str, default: bytes | None = None) -> bytes | None:
        """The value of ``key``, or ``default``.  Sees every acknowledged write."""
        ...

    def keys(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix`` (plain text, not a pattern), sorted by code point."""
        ...

    def items(self, prefix: str = "") -> list[tuple[str, bytes]]:
        """``(key, value)`` pairs of ``keys(prefix)``, in the same order."""
        ...

    async def put(self, key: str, value: bytes) -> None:
        """Set ``key`` (any str) to ``value`` (bytes-like; read back as bytes)."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""
        ...

    async def write(self, changes: Iterable[tuple[str, bytes | None]]) -> None:
        """Apply puts (value) and deletes (None) atomically, in order."""
        ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one read-only statement; all its rows."""
        ...

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one writing statement; returns the rowcount."""
        ...

    async def transaction(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> None:
        """Run statements atomically (all or none)."""
        ...

    async def migrate(self, name: str, steps: Sequence[str]) -> None:
        """Apply schema steps not yet applied for ``name`` (tracked in the store),
        in order, all in one transaction.  A step is SQL text of one or more
        statements.  Applied steps must never change (their hash is checked) and
        are never dropped: append new steps instead."""
        ...

    async def aclose(self) -> None:
        """Finish submitted writes, then release everything; idempotent."""
        ...


# --------------------------------------------------------------------- ambient devices


@runtime_checkable
class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock seconds since the epoch."""
        ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


@runtime_checkable
class Random(Protocol):
    def bytes(self, n: int) -> bytes: ...

    def below(self, n: int) -> int:
        """Uniform integer in ``[0, n)``."""
        ...

    def token(self, n: int = 16) -> str:
        """URL-safe text carrying ``n`` random bytes."""
        ...


@runtime_checkable
class Log(Protocol):
    """Structured log lines for one component (``dns``, ``dns.zone``...)."""

    @property
    def component(self) -> str: ...

    def child(self, name: str) -> Log: ...

    def enabled(self, level: str) -> bool: ...

    def debug(self, msg: str, **fields: Any) -> None: ...

    def info(self, msg: str, **fields: Any) -> None: ...

    def warning(self, msg: str, **fields: Any) -> None: ...

    def error(self, msg: str, **fields: Any) -> None: ...

    def exception(self, msg: str, exc: BaseException, **fields: Any) -> None:
        """Log ``msg`` at error level with the traceback of ``exc``."""
        ...


class Counter(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class Gauge(Protocol):
    def set(self, value: float) -> None: ...

    def inc(self, amount: float = 1) -> None: ...

    def dec(self, amount: float = 1) -> None: ...


class Histogram(Protocol):
    def observe(self, value: float) -> None: ...


@runtime_checkable
class Metrics(Protocol):
    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Any:
        """A counter (or, with ``labels``, a family: ``.labels(*values)`` gives one)."""
        ...

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Any: ...

    def histogram(
        self, name: str, help: str, labels: Sequence[str] = (), buckets: Sequence[float] = ()
    ) -> Any: ...

    def add_collector(self, collector: Callable[[], None]) -> None:
        """Call ``collector`` before each render, to refresh values that are
        cheaper to read then than to count on a hot path."""
        ...

    def render(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        ...
