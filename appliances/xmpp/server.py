"""The I/O edge: listeners, one task per connection driving ``C2SStream``, and
one writer task per connection draining its outbox.

Rules of a connection:

1. Everything we send goes through the connection's outbox, written by its
   writer task in order; other sessions deliver into it without waiting.
   The outbox is bounded (``--max-send-buffer``): a reader too slow to take
   what it is sent is closed with ``resource-constraint`` instead of making
   us buffer without limit; the writer's ``send`` waits on the transport's
   high-water mark (the runtime's back-pressure).
2. STARTTLS: what is queued is flushed, then ``<proceed/>`` is sent with
   reading stopped and the stream upgraded in place (the client's
   ClientHello must not be read as cleartext);
   Direct TLS listeners (XEP-0368) start in the secure state.
3. Stanzas of one connection are handled one after the other, each to its end
   (store writes included) before the next is read: a reply after a message
   means the message was routed or stored durably.
4. Keepalive: a bound session quiet for ``--ping-interval`` gets an XEP-0199
   ping; nothing within ``--ping-timeout`` more is ``connection-timeout``.
   Before binding, the runtime's idle timeout applies.
5. On stop, every stream gets ``system-shutdown``; an ended connection of an
   available session broadcasts unavailable presence (RFC 6121 §4.5.2).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from runtime import (
    ConfigError,
    Context,
    Limits,
    Stream,
    StreamListener,
    TLSConfig,
    certificate_fingerprint,
    make_self_signed,
    tls_server_end_point,
)

from .c2s import C2SSettings, C2SStream, Incoming, Nonza, Send, StartTLS, Throttle, stream_error
from .im import IMServer, Session
from .jid import JID
from .services import ServerServices
from .storage import Storage
from .xmlstream import Element

__all__ = ["Connection", "XMPPService", "serve"]

RECEIVE_SIZE = 65536
CERT_KEY = "xmpp/tls/cert.pem"
KEY_KEY = "xmpp/tls/key.pem"
SECRET_KEY = "xmpp/secret"


class Connection:
    """One client connection: its outbox and writer (the ``Sink`` of its session)."""

    def __init__(self, stream: Stream, max_pending: int) -> None:
        self.stream = stream
        self.max_pending = max_pending
        self._queue: deque[bytes] = deque()
        self._pending = 0
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self.closing = False
        self.session: Session | None = None

    def deliver(self, data: bytes) -> None:
        if self.closing:
            return
        if self._pending + len(data) > self.max_pending:
            self.kick("resource-constraint", "the client does not read what it is sent")
            return
        self._queue.append(data)
        self._pending += len(data)
        self._drained.clear()
        self._wake.set()

    def kick(self, condition: str, text: str = "") -> None:
        if self.closing:
            return
        self._queue.append(stream_error(condition, text))
        self.close()

    def close(self) -> None:
        """Flush what is queued, then close the stream."""
        self.closing = True
        self._wake.set()

    async def drained(self) -> None:
        await self._drained.wait()

    async def write_loop(self) -> None:
        stream = self.stream
        try:
            while True:
                if not self._queue:
                    self._drained.set()
                    if self.closing:
                        break
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                data = b"".join(self._queue)
                self._queue.clear()
                self._pending = 0
                await stream.send(data)
        except (ConnectionError, TimeoutError):
            self.closing = True
        finally:
            self._drained.set()
            stream.close()


class XMPPService:
    def __init__(self, ctx: Context, storage: Storage, secret: bytes, tls: TLSConfig) -> None:
        self.ctx = ctx
        options = ctx.options
        self.domain = str(JID.parse(options.domain))
        self.storage = storage
        self.secret = secret
        self.tls = tls
        self.cb_data = tls_server_end_point(tls.cert_pem)
        self.throttle = Throttle(limit=options.auth_failures, window=60.0)
        self.im = IMServer(
            self.domain,
            storage,
            log=ctx.log,
            now=ctx.clock.now,
            token=lambda: ctx.random.token(9),
            max_offline=options.max_offline,
        )
        self.services = ServerServices(self.im, version=ctx.appliance.version if options.version_iq else None)
        self.im.services = self.services
        features = self.services.caps_feature()
        features += b"<ver xmlns='urn:xmpp:features:rosterver'/>"
        features += b"<sub xmlns='urn:xmpp:features:pre-approval'/>"
        features += b"<csi xmlns='urn:xmpp:csi:0'/>"
        self.settings = C2SSettings(
            domain=self.domain, max_stanza=options.max_stanza, bound_features=features
        )
        metrics = ctx.metrics
        self.active = metrics.gauge("xmpp_connections_active", "Client connections open now.")
        self.logins = metrics.counter("xmpp_logins_total", "Sessions bound.")
        self.stanzas = metrics.counter("xmpp_stanzas_total", "Stanzas received from bound sessions.")
        self.errors = metrics.counter("xmpp_stream_errors_total", "Streams ended by our stream error.")

    async def serve(self) -> None:
        ctx = self.ctx
        options = ctx.options
        limits = Limits(
            max_connections=options.max_connections,
            idle_timeout=options.idle_timeout,
            drain_timeout=options.drain_timeout,
        )
        listeners: list[tuple[StreamListener, bool]] = []
        try:
            for address in options.listen:
                listeners.append((await ctx.net.listen_tcp(address, limits=limits), False))
            for address in options.tls_listen:
                try:
                    listener = await ctx.net.listen_tcp(address, tls=self.tls, limits=limits)
                except ValueError as exc:
                    raise ConfigError(f"--tls-cert/--tls-key: {exc}", option="tls_cert") from None
                listeners.append((listener, True))
        except BaseException:
            for listener, _ in listeners:
                await listener.aclose()
            raise
        if not listeners:
            raise ConfigError("nothing to serve on: give --listen or --tls-listen", option="listen")
        accounts = len(self.storage.accounts())
        ctx.ready(domain=self.domain, accounts=accounts)
        if accounts == 0:
            ctx.log.info(
                "no accounts yet; add one with: python -m appliances.xmpp user add USER@"
                + self.domain
                + " (it asks for the password)"
            )
        async with asyncio.TaskGroup() as group:
            for listener, direct in listeners:
                group.create_task(listener.serve(self._handler(direct)))

    def _handler(self, direct_tls: bool) -> Callable[[Stream], Awaitable[None]]:
        async def handle(stream: Stream) -> None:
            await self.connection(stream, direct_tls)

        return handle

    async def connection(self, stream: Stream, direct_tls: bool) -> None:
        conn = Connection(stream, self.ctx.options.max_send_buffer)
        self.active.inc()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(conn.write_loop())
                try:
                    await self._read_loop(conn, stream, direct_tls)
                finally:
                    conn.close()
                    if conn.session is not None:
                        await self.im.unbind(conn.session)
        finally:
            self.active.dec()

    def _bind(self, conn: Connection, bare: JID, resource: str, core: C2SStream) -> JID:
        session = self.im.bind(bare, resource, conn)
        conn.session = session
        self.logins.inc()
        tls = conn.stream.tls
        self.ctx.log.debug(
            "bound", jid=str(session.jid), mechanism=core.mechanism, tls=tls.version if tls else "none"
        )
        return session.jid

    async def _read_loop(self, conn: Connection, stream: Stream, direct_tls: bool) -> None:
        ctx = self.ctx
        options = ctx.options
        core = C2SStream(
            self.settings,
            peer_host=stream.peer.host,
            tls=direct_tls,
            cb_data=self.cb_data,
            lookup=self.storage.credential,
            bind=lambda bare, resource: self._bind(conn, bare, resource, core),
            throttle=self.throttle,
            secret=self.secret,
            random_token=lambda: ctx.random.token(12),
            now=ctx.clock.monotonic,
        )
        # One receive timeout for the whole connection: the runtime's stream
        # re-arms its timer only forward, so a timeout shorter than an earlier
        # one would wait for the earlier deadline.  Idle time is counted here.
        clock = ctx.clock
        tick = min(options.ping_interval, options.ping_timeout, options.idle_timeout)
        last = clock.monotonic()
        pinged_at: float | None = None
        while not conn.closing:
            try:
                data = await stream.receive(RECEIVE_SIZE, timeout=tick)
            except TimeoutError:
                now = clock.monotonic()
                if conn.session is None:
                    if now - last < options.idle_timeout:
                        continue
                elif pinged_at is None:
                    if now - last >= options.ping_interval:
                        pinged_at = now
                        ping = f"<iq type='get' id='ping{ctx.random.token(6)}' from='{self.domain}'>"
                        conn.deliver(ping.encode() + b"<ping xmlns='urn:xmpp:ping'/></iq>")
                    continue
                elif now - pinged_at < options.ping_timeout:
                    continue
                actions = core.fail("connection-timeout", "no data received in time")
            else:
                last = clock.monotonic()
                pinged_at = None
                if not data and ctx.stopping and not stream.closed:
                    actions = core.fail("system-shutdown", "the server is stopping")
                else:
                    actions = core.receive(data)
            for action in actions:
                if isinstance(action, Send):
                    conn.deliver(action.data)
                elif isinstance(action, Incoming):
                    self.stanzas.inc()
                    assert conn.session is not None
                    await self.im.handle(conn.session, action.element, action.raw)
                elif isinstance(action, Nonza):
                    self._nonza(conn, action.element)
                elif isinstance(action, StartTLS):
                    await conn.drained()
                    try:
                        await stream.start_tls(self.tls, preface=action.proceed)
                    except (ConnectionError, TimeoutError, OSError):
                        conn.closing = True
                        return
                    core.tls_started(self.cb_data)
                else:
                    return  # Close

    def _nonza(self, conn: Connection, element: Element) -> None:
        session = conn.session
        assert session is not None
        if element.ns == "urn:xmpp:csi:0" and element.name in ("active", "inactive"):
            # XEP-0352: hold presence updates while inactive
            session.set_active(element.name == "active")
        elif element.ns == "urn:xmpp:sm:3" and element.name == "enable":
            conn.deliver(
                b"<failed xmlns='urn:xmpp:sm:3'><feature-not-implemented"
                b" xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>"
            )


async def load_tls(ctx: Context, domain: str) -> TLSConfig:
    """--tls-cert/--tls-key through the data device, else a self-signed pair made
    once and kept in the store (clients that pinned it keep working)."""
    certs = ctx.data_files("tls_cert")
    keys = ctx.data_files("tls_key")
    if bool(certs) != bool(keys):
        raise ConfigError("--tls-cert and --tls-key go together: give both or neither", option="tls_cert")
    if certs:
        cert_pem = certs[0].data.read(certs[0].key)
        key_pem = keys[0].data.read(keys[0].key)
        try:
            ctx.log.info("TLS certificate loaded", sha256=certificate_fingerprint(cert_pem))
        except ValueError as exc:
            raise ConfigError(f"--tls-cert: {exc}", option="tls_cert") from None
        return TLSConfig(cert_pem, key_pem)
    store = ctx.store
    stored_cert = store.get(CERT_KEY)
    stored_key = store.get(KEY_KEY)
    if stored_cert is not None and stored_key is not None:
        ctx.log.info("self-signed certificate from the store", sha256=certificate_fingerprint(stored_cert))
        return TLSConfig(stored_cert, stored_key)
    cert_pem, key_pem = make_self_signed([domain])
    await store.write([(CERT_KEY, cert_pem), (KEY_KEY, key_pem)])
    ctx.log.warning(
        "no --tls-cert given: made a self-signed certificate (kept in the store)",
        name=domain,
        sha256=certificate_fingerprint(cert_pem),
    )
    return TLSConfig(cert_pem, key_pem)


async def load_secret(ctx: Context) -> bytes:
    secret = ctx.store.get(SECRET_KEY)
    if secret is None:
        secret = ctx.random.bytes(32)
        await ctx.store.put(SECRET_KEY, secret)
    return secret


async def serve(ctx: Context) -> None:
    """The appliance's main: the store's schema, TLS, then serve until stopped."""
    storage = Storage(ctx.store)
    await storage.migrate()
    domain = str(JID.parse(ctx.options.domain))
    tls = await load_tls(ctx, domain)
    secret = await load_secret(ctx)
    await XMPPService(ctx, storage, secret, tls).serve()
