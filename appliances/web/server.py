"""The I/O edge: listeners, and one task per connection driving the sans-IO core.

Rules of a connection (``_connection`` is these rules in code):

1. Read only after the core says NEED_DATA, with the core's deadline as the
   receive timeout: the header timeout for a fresh connection and for a head
   that has started (a slowloris cannot stretch it by trickling bytes), the
   keep-alive timeout between requests, the body timeout between body reads.
   On expiry the connection is closed without an answer (nginx does the same).
2. Every Request and ProtocolError is answered, in order: the core hands out
   the next pipelined request only once the previous one was answered.
3. Graceful stop: once the runtime is stopping, answers carry
   ``Connection: close``; an idle connection reads end-of-stream and closes at
   once; a response being written (a large file) is finished, bounded by the
   runtime's drain timeout.  A head still arriving when the stop comes is
   dropped: once stopping, the runtime's ``receive`` reports end-of-stream
   as soon as nothing is buffered, so there is no way to wait for its rest.
4. Content in memory is written with its head in one ``send``; file segments
   go through ``stream.sendfile`` (bounded memory: the stream's back-pressure).
   A file that vanished or shrank since the site was built cannot meet the
   Content-Length already sent: the connection is closed (nginx does too).

Sites are rebuilt on reload (SIGHUP, console) from the re-read data devices
and swapped in as one new ``App``: a request is answered wholly by the old
or wholly by the new one.  Building happens before the swap, so a reload that
fails leaves the old sites serving.

TLS certificates: the runtime's listener takes its TLS configuration when it
is opened and offers no way to swap it, so a reload re-reads the certificate
and key files and, if they changed, logs that a restart is needed to use
them; existing and new connections keep the certificate the listener opened
with.  Without ``--tls-cert``/``--tls-key`` a self-signed certificate is made
at each start and its SHA-256 fingerprint logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from runtime import (
    ConfigError,
    Context,
    Stream,
    StreamListener,
    TLSConfig,
    certificate_fingerprint,
    make_self_signed,
)

from .accesslog import access_fields, combined_line
from .app import App
from .connection import Connection
from .events import NEED_DATA, ProtocolError, Request
from .options import app_options, http_limits, net_limits, site_options
from .redirect import Redirector
from .response import FileSegment, Response
from .site import Site
from .subdata import SubData, subdirectories

__all__ = ["LATENCY_BUCKETS", "RECEIVE_SIZE", "TLS_ALPN", "Responder", "WebService", "serve"]

#: bytes asked of one receive(): a request head is far smaller, and 64 KiB is
#: what one read of a loopback socket gives at most
RECEIVE_SIZE = 65536
#: RFC 7301: we speak HTTP/1.1 only, and say so in the handshake
TLS_ALPN = ("http/1.1",)
#: latency buckets in seconds: a cached file is answered in tens of microseconds,
#: a large one streamed to a slow client in seconds
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})


class Responder(Protocol):
    """What answers requests on a listener: ``App`` or ``Redirector``."""

    def respond(self, request: Request) -> Response: ...

    def respond_error(self, error: ProtocolError) -> Response: ...


class _Endpoint:
    """What a listener answers with: the web service's current App, or the
    redirector.  ``responder`` is read once per request (the atomic swap)."""

    def __init__(self, responder: Responder) -> None:
        self.responder = responder


class _Stats:
    """The service's metrics; label children are looked up once and kept."""

    def __init__(self, ctx: Context) -> None:
        metrics = ctx.metrics
        self._requests = metrics.counter(
            "web_requests_total", "Responses sent, by status class and status code.", labels=("class", "code")
        )
        self.sent_bytes = metrics.counter("web_sent_bytes_total", "Bytes written: heads and content.")
        self.latency = metrics.histogram(
            "web_request_duration_seconds",
            "From a complete request to its response handed to the transport.",
            buckets=LATENCY_BUCKETS,
        )
        self._connections = metrics.counter(
            "web_connections_total", "Connections accepted, by listener kind.", labels=("listener",)
        )
        self.active = metrics.gauge("web_connections_active", "Connections open now.")
        self._timeouts = metrics.counter(
            "web_timeouts_total",
            "Connections closed for waiting too long, by what was awaited.",
            labels=("phase",),
        )
        self.reloads = metrics.counter("web_reloads_total", "Sites rebuilt on reload.")
        self._by_status: dict[int, Any] = {}

    def status(self, code: int) -> Any:
        child = self._by_status.get(code)
        if child is None:
            child = self._requests.labels(f"{code // 100}xx", str(code))
            self._by_status[code] = child
        return child

    def connections(self, kind: str) -> Any:
        return self._connections.labels(kind)

    def timeout(self, phase: str) -> None:
        self._timeouts.labels(phase).inc()


class WebService:
    """The sites, the listeners and the per-connection loop."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.log = ctx.log
        options = ctx.options
        self.limits = http_limits(options)
        self.stats = _Stats(ctx)
        self.web = _Endpoint(self.build_app())
        self.access: Callable[[Request | ProtocolError, Response, str, float], None] | None = None
        access = ctx.log.child("access")
        if options.access_log == "combined":
            self.access = lambda event, response, peer, now: access.info(
                combined_line(event, response, peer, now)
            )
        elif options.access_log == "json":
            self.access = lambda event, response, peer, now: access.info(
                "request", **access_fields(event, response, peer)
            )
        self.tls_files: tuple[bytes, bytes] | None = None
        self.https: list[StreamListener] = []

    # ----------------------------------------------------------------- sites

    def build_app(self) -> App:
        """Every site built from the data devices as they are now."""
        ctx = self.ctx
        opts = site_options(ctx.options)
        default = Site.build(ctx.data("site"), opts)
        hosts = ctx.data("vhosts")
        vhosts = {
            name.lower().rstrip("."): Site.build(SubData(hosts, name), opts) for name in subdirectories(hosts)
        }
        self.log.info(
            "sites built",
            files=len(default.resources),
            root=ctx.options.root or "(embedded demo site)",
            vhosts=",".join(sorted(vhosts)) or "(none)",
        )
        return App(default, vhosts, app_options(ctx.options))

    def reload(self) -> None:
        app = self.build_app()
        self.web.responder = app
        self.stats.reloads.inc()
        if self.tls_files is not None:
            self.reload_tls()

    def reload_tls(self) -> None:
        """New handshakes get the certificate now on disk; open connections
        keep their session.  A pair that does not load keeps the old one."""
        files = self.read_tls_files()
        if files is None or files == self.tls_files:
            return
        config = TLSConfig(files[0], files[1], alpn=TLS_ALPN)
        try:
            # Every listener gets the same pair: if it does not load, the first
            # refuses it and none has changed.
            for listener in self.https:
                listener.set_tls(config)
        except ValueError as exc:
            raise ConfigError(
                f"--tls-cert/--tls-key: {exc}; keeping the old certificate", option="tls_cert"
            ) from None
        self.tls_files = files
        self.log.info("TLS certificate reloaded", sha256=certificate_fingerprint(files[0]))

    # ----------------------------------------------------------------- TLS

    def read_tls_files(self) -> tuple[bytes, bytes] | None:
        certs = self.ctx.data_files("tls_cert")
        keys = self.ctx.data_files("tls_key")
        if bool(certs) != bool(keys):
            raise ConfigError("--tls-cert and --tls-key go together: give both or neither", option="tls_cert")
        if not certs:
            return None
        return certs[0].data.read(certs[0].key), keys[0].data.read(keys[0].key)

    def tls_config(self) -> TLSConfig:
        options = self.ctx.options
        files = self.read_tls_files()
        self.tls_files = files
        if files is not None:
            cert_pem, key_pem = files
            try:
                self.log.info("TLS certificate loaded", sha256=certificate_fingerprint(cert_pem))
            except ValueError as exc:
                raise ConfigError(f"--tls-cert: {exc}", option="tls_cert") from None
            return TLSConfig(cert_pem, key_pem, alpn=TLS_ALPN)
        if options.workers > 1:
            raise ConfigError(
                "--tls-listen with --workers > 1 needs --tls-cert and --tls-key "
                "(each worker would make its own self-signed certificate)",
                option="tls_cert",
            )
        names = list(options.self_signed_name)
        cert_pem, key_pem = make_self_signed(names)
        self.log.warning(
            "no --tls-cert given: made a self-signed certificate for local use (in memory, new each start)",
            names=",".join(names),
            sha256=certificate_fingerprint(cert_pem),
        )
        return TLSConfig(cert_pem, key_pem, alpn=TLS_ALPN)

    # ----------------------------------------------------------------- listeners

    async def open_listeners(self) -> list[tuple[str, StreamListener, _Endpoint]]:
        """(kind, listener, endpoint) per address: kind is http, https or redirect."""
        ctx = self.ctx
        options = ctx.options
        if not options.listen and not options.tls_listen:
            raise ConfigError("nothing to serve on: give --listen or --tls-listen", option="listen")
        if options.redirect_listen and not options.tls_listen:
            raise ConfigError(
                "--redirect-listen redirects to HTTPS: it needs --tls-listen", option="redirect_listen"
            )
        if not options.tls_listen and (options.tls_cert or options.tls_key):
            self.log.warning("--tls-cert/--tls-key given without --tls-listen: not used")
        opened: list[tuple[str, StreamListener, _Endpoint]] = []
        try:
            await self._listen(opened)
        except BaseException:
            for _, listener, _ in opened:
                await listener.aclose()
            raise
        return opened

    async def _listen(self, opened: list[tuple[str, StreamListener, _Endpoint]]) -> None:
        ctx = self.ctx
        options = ctx.options
        limits = net_limits(options)
        for address in options.listen:
            opened.append(("http", await ctx.net.listen_tcp(address, limits=limits), self.web))
        if options.tls_listen:
            tls = self.tls_config()
            https: list[StreamListener] = []
            for address in options.tls_listen:
                try:
                    listener = await ctx.net.listen_tcp(address, tls=tls, limits=limits)
                except ValueError as exc:
                    raise ConfigError(f"--tls-cert/--tls-key: {exc}", option="tls_cert") from None
                https.append(listener)
                opened.append(("https", listener, self.web))
            self.https = https
            first = https[0].address
            host = "localhost" if first.host in _WILDCARDS else first.host
            redirector = Redirector(
                port=first.port,
                fallback_host=f"[{host}]" if ":" in host else host,
                server=app_options(options).server,
                health_path=options.health_path or None,
            )
            endpoint = _Endpoint(redirector)
            for address in options.redirect_listen:
                opened.append(("redirect", await ctx.net.listen_tcp(address, limits=limits), endpoint))

    async def serve(self) -> None:
        ctx = self.ctx
        opened = await self.open_listeners()
        ctx.on_reload(self.reload)
        ctx.provide(self)
        by_kind: dict[str, list[str]] = {}
        for kind, listener, _ in opened:
            by_kind.setdefault(kind, []).append(str(listener.address))
        urls = [f"{kind}://{address}/" for kind in ("http", "https") for address in by_kind.get(kind, [])]
        fields = {"url": " ".join(urls), "site": ctx.options.root or "(embedded demo site)"}
        if "redirect" in by_kind:
            fields["redirect"] = ",".join(by_kind["redirect"])
        ctx.ready(**fields)
        async with asyncio.TaskGroup() as group:
            for kind, listener, endpoint in opened:
                group.create_task(listener.serve(self._handler(kind, endpoint)))

    def _handler(self, kind: str, endpoint: _Endpoint) -> Callable[[Stream], Awaitable[None]]:
        async def handle(stream: Stream) -> None:
            await self._connection(stream, kind, endpoint)

        return handle

    # ----------------------------------------------------------------- one connection

    async def _connection(self, stream: Stream, kind: str, endpoint: _Endpoint) -> None:
        ctx = self.ctx
        clock = ctx.clock
        monotonic = clock.monotonic
        stats = self.stats
        access = self.access
        conn = Connection(is_tls=stream.tls is not None, limits=self.limits)
        stats.connections(kind).inc()
        stats.active.inc()
        try:
            while True:
                event = conn.next_event()
                if event is NEED_DATA:
                    now = monotonic()
                    wait = conn.deadline(now) - now
                    try:
                        if wait <= 0:
                            raise TimeoutError
                        data = await stream.receive(RECEIVE_SIZE, timeout=wait)
                    except TimeoutError:
                        stats.timeout(conn.phase.value)
                        return
                    # b"" is the peer's end of stream, or the runtime stopping
                    # with nothing pending: either way nothing more will come.
                    conn.receive_data(data)
                    continue
                start = monotonic()
                if type(event) is Request:
                    if ctx.stopping:
                        conn.begin_shutdown()
                    response = endpoint.responder.respond(event)
                elif type(event) is ProtocolError:
                    response = endpoint.responder.respond_error(event)
                else:  # CLOSED (PAUSED cannot come: every event is answered first)
                    return
                now_wall = clock.now()
                out = conn.send(response, now_wall)
                await stream.send(out)
                sent = len(out)
                if response.parts:
                    finished, streamed = await self._send_parts(stream, response.parts)
                    sent += streamed
                    if not finished:
                        stats.sent_bytes.inc(sent)
                        return
                stats.status(response.status).inc()
                stats.sent_bytes.inc(sent)
                stats.latency.observe(monotonic() - start)
                if access is not None:
                    access(event, response, stream.peer.host, now_wall)
                if conn.must_close:
                    return
        finally:
            stats.active.dec()

    async def _send_parts(self, stream: Stream, parts: tuple[bytes | FileSegment, ...]) -> tuple[bool, int]:
        """Write ``parts``; (whether all were written, bytes written)."""
        sent = 0
        for part in parts:
            if type(part) is bytes:
                await stream.send(part)
                sent += len(part)
                continue
            assert isinstance(part, FileSegment)
            try:
                file = part.data.open(part.key)
            except (OSError, KeyError) as exc:
                self.log.warning(
                    "file vanished since the site was built; closing", key=part.key, error=repr(exc)
                )
                return False, sent
            try:
                await stream.sendfile(file, part.offset, part.length)
            except EOFError:
                self.log.warning("file shrank since the site was built; closing", key=part.key)
                return False, sent
            finally:
                file.close()
            sent += part.length
        return True, sent


async def serve(ctx: Context) -> None:
    """The appliance's main: build the sites, open the listeners, serve until stopped."""
    await WebService(ctx).serve()
