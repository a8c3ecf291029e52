"""The I/O edge: listeners, one task per connection driving ``C2SStream``,
and each connection's outbox.

Rules of a connection:

1. Everything we send goes through the connection's outbox, in order; other
   sessions deliver into it without waiting, and what one turn of the event
   loop delivers goes out in one write.  What is queued (outbox and the
   transport's buffer) is bounded (``--max-send-buffer``): a reader too slow
   to take what it is sent is closed with ``resource-constraint`` instead of
   making us buffer without limit.
2. STARTTLS: what is queued is flushed, then ``<proceed/>`` is sent with
   reading stopped and the stream upgraded in place (the client's
   ClientHello must not be read as cleartext);
   Direct TLS listeners (XEP-0368) start in the secure state.
3. Stanzas of one connection are handled one after the other, each to its end
   (store writes included) before the next is read: a reply after a message
   means the message was routed or stored durably.
4. ``--receive-rate``: a client sending faster is not read until its budget
   is back (``ReceiveBudget``).
5. Keepalive: a bound session quiet for ``--ping-interval`` gets an XEP-0199
   ping; nothing within ``--ping-timeout`` more is ``connection-timeout``.
   Before binding, the runtime's idle timeout applies.
6. On stop, every stream gets ``system-shutdown``; an ended connection of an
   available session broadcasts unavailable presence (RFC 6121 §4.5.2).
7. XEP-0198: a session whose client enabled resumable stream management
   and whose connection broke (no ``</stream:stream>`` from the client, no
   stream error from us but ``connection-timeout``) hibernates for the
   resumption timeout: it stays bound and available, stanzas for it queue
   in its ``StreamManagement``; ``<resume/>`` on a new connection takes it
   over (a connection still attached is closed with ``conflict``).  A
   session that ends for good hands what its client never acknowledged to
   ``IMServer.undelivered`` (messages to other resources or offline storage).
8. Memory: after each read that ends between stanzas the XML parser drops its
   expat parser (``XMLStreamParser.compact``, about 10 KiB a connection); the
   next read starts a fresh one (a few microseconds), so an idle connection
   holds none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from runtime import (
    ConfigError,
    Context,
    Limits,
    Stream,
    StreamListener,
    TLSConfig,
    certificate_fingerprint,
    check_tls,
    format_address,
    make_self_signed,
    tls_server_end_point,
)

from .c2s import (
    Action,
    C2SSettings,
    C2SStream,
    Close,
    Incoming,
    Nonza,
    PreAuth,
    Send,
    StartTLS,
    Throttle,
    stream_error,
)
from .component import ComponentStream, parse_component
from .im import IMServer, Session
from .jid import JID
from .register import Registration
from .services import ServerServices
from .sm import (
    ACK_REQUEST,
    NS_SM,
    AckError,
    StreamManagement,
    answer,
    enabled,
    failed,
    parse_h,
    resumed,
)
from .storage import Storage
from .xmlstream import Element

__all__ = ["Connection", "XMPPService", "serve"]

RECEIVE_SIZE = 65536
#: how often the server looks for accounts deleted or re-keyed by another process
CHANGES_POLL = 2.0
CERT_KEY = "xmpp/tls/cert.pem"
KEY_KEY = "xmpp/tls/key.pem"
SECRET_KEY = "xmpp/secret"


class Connection:
    """One client connection: its outbox (the ``Sink`` of its session).

    What is delivered in one turn of the event loop goes out in one write at
    the end of the turn (one TLS record, one system call); no task waits per
    connection, so an idle connection costs only its objects."""

    def __init__(self, stream: Stream, max_pending: int) -> None:
        self.stream = stream
        self.max_pending = max_pending
        self._loop = asyncio.get_running_loop()
        self._outbox: list[bytes] = []
        self._outbox_size = 0
        self.closing = False
        self.session: Session | None = None
        self.core: C2SStream | None = None
        #: the stream error condition we ended the connection with, if any
        self.error: str | None = None

    def deliver(self, data: bytes) -> None:
        if self.closing:
            return
        if self.stream.buffered + self._outbox_size + len(data) > self.max_pending:
            self.kick("resource-constraint", "the client does not read what it is sent")
            return
        if not self._outbox:
            self._loop.call_soon(self.flush)
        self._outbox.append(data)
        self._outbox_size += len(data)

    def flush(self) -> None:
        """Write what is queued now (also before a STARTTLS upgrade)."""
        if not self._outbox:
            return
        data = b"".join(self._outbox)
        self._outbox.clear()
        self._outbox_size = 0
        try:
            self.stream.write(data)
        except ConnectionError:
            self.closing = True

    def kick(self, condition: str, text: str = "") -> None:
        if self.closing:
            return
        self.error = condition
        self._outbox.append(stream_error(condition, text))
        self.close()

    def ended_abruptly(self) -> bool:
        """No clean close from the client and no stream error from us but a
        timeout: the client may come back to resume (XEP-0198)."""
        core = self.core
        if core is None or core.peer_closed:
            return False
        condition = self.error or core.error
        return condition is None or condition == "connection-timeout"

    def close(self) -> None:
        """Write what is queued, then close the stream (its transport sends
        what it still holds before closing)."""
        self.closing = True
        self.flush()
        self.stream.close()


class ReceiveBudget:
    """A token bucket on the bytes one client sends (``--receive-rate``, with a
    burst of four seconds' worth): over it, the connection is not read until
    the budget is back, so TCP slows the client down and one flooding
    client cannot take the server from the others."""

    def __init__(self, rate: int, now: float) -> None:
        self.rate = rate
        self.burst = 4 * rate
        self.allowance = float(self.burst)
        self.stamp = now

    def spend(self, size: int, now: float) -> float:
        """Count ``size`` bytes; how long to wait before reading again."""
        self.allowance = min(self.burst, self.allowance + (now - self.stamp) * self.rate) - size
        self.stamp = now
        return -self.allowance / self.rate if self.allowance < 0 else 0.0


class Hibernating:
    """The sink of a resumable session without a connection (XEP-0198 §5):
    stanzas wait in the session's queue; the session ends when the timer
    runs out, when too much waits, or when a new bind replaces it."""

    def __init__(self, service: XMPPService, session: Session, timeout: float) -> None:
        self.service = service
        self.session = session
        self._timer = asyncio.get_running_loop().call_later(timeout, self.expire)

    def deliver(self, data: bytes) -> None:
        pass  # kept in session.sm.unacked, sent again on resumption

    def kick(self, condition: str, text: str = "") -> None:
        self.expire()

    def cancel(self) -> None:
        self._timer.cancel()

    def expire(self) -> None:
        self._timer.cancel()
        if self.session.sink is self:
            self.service.end_later(self.session)


class XMPPService:
    def __init__(self, ctx: Context, storage: Storage, secret: bytes, tls: TLSConfig) -> None:
        self.ctx = ctx
        options = ctx.options
        self.domain = str(JID.parse(options.domain))
        self.storage = storage
        self.secret = secret
        self.tls = tls
        self.cb_data = tls_server_end_point(tls.cert_pem)
        #: the Direct TLS listeners (XEP-0368), for a certificate reload
        self.tls_listeners: list[StreamListener] = []
        self.throttle = Throttle(limit=options.auth_failures, window=60.0)
        self.im = IMServer(
            self.domain,
            storage,
            log=ctx.log,
            now=ctx.clock.now,
            token=lambda: ctx.random.token(9),
            max_offline=options.max_offline,
        )
        self.registration = Registration(
            self.domain, storage, random=ctx.random, now=ctx.clock.now, limit=options.register_limit
        )
        self.services = ServerServices(
            self.im,
            version=ctx.appliance.version if options.version_iq else None,
            registration=self.registration,
            account_changed=lambda session: self.apply_account_changes(keep=session),
        )
        self.im.services = self.services
        features = self.services.caps_feature()
        features += b"<ver xmlns='urn:xmpp:features:rosterver'/>"
        features += b"<sub xmlns='urn:xmpp:features:pre-approval'/>"
        features += b"<csi xmlns='urn:xmpp:csi:0'/>"
        features += f"<sm xmlns='{NS_SM}'/>".encode()
        self.settings = C2SSettings(
            domain=self.domain,
            max_stanza=options.max_stanza,
            bound_features=features,
            register=options.register,
        )
        metrics = ctx.metrics
        self.active = metrics.gauge("xmpp_connections_active", "Client connections open now.")
        self.logins = metrics.counter("xmpp_logins_total", "Sessions bound.")
        self.stanzas = metrics.counter("xmpp_stanzas_total", "Stanzas received from bound sessions.")
        self.errors = metrics.counter("xmpp_stream_errors_total", "Streams ended by our stream error.")
        self.hibernating = metrics.gauge(
            "xmpp_sessions_hibernating", "Resumable sessions waiting for their client (XEP-0198)."
        )
        self.resumptions = metrics.counter("xmpp_resumptions_total", "Sessions resumed (XEP-0198).")
        self.components = metrics.gauge(
            "xmpp_components_connected", "External components connected (XEP-0114)."
        )
        self.component_secrets = dict(parse_component(text) for text in options.component)
        self.im.component_domains = frozenset(self.component_secrets)
        self._ending: set[asyncio.Task[None]] = set()
        self._seen_change = storage.last_change()

    async def serve(self) -> None:
        ctx = self.ctx
        options = ctx.options
        limits = Limits(
            max_connections=options.max_connections,
            idle_timeout=options.idle_timeout,
            drain_timeout=options.drain_timeout,
        )
        if options.component_listen and not self.component_secrets:
            raise ConfigError("--component-listen needs a --component NAME=SECRET", option="component")
        listeners: list[tuple[StreamListener, bool]] = []
        component_listeners: list[StreamListener] = []
        try:
            for address in options.listen:
                listeners.append((await ctx.net.listen_tcp(address, limits=limits), False))
            for address in options.tls_listen:
                try:
                    listener = await ctx.net.listen_tcp(address, tls=direct_tls(self.tls), limits=limits)
                except ValueError as exc:
                    raise ConfigError(f"--tls-cert/--tls-key: {exc}", option="tls_cert") from None
                listeners.append((listener, True))
            for address in options.component_listen:
                component_listeners.append(await ctx.net.listen_tcp(address, limits=limits))
        except BaseException:
            for listener in [listener for listener, _ in listeners] + component_listeners:
                await listener.aclose()
            raise
        if not listeners:
            raise ConfigError("nothing to serve on: give --listen or --tls-listen", option="listen")
        self.tls_listeners = [listener for listener, direct in listeners if direct]
        ctx.on_reload(self.reload_tls)
        accounts = len(self.storage.accounts())
        ctx.provide(self)
        ctx.ready(domain=self.domain, accounts=accounts)
        if accounts == 0:
            ctx.log.info(
                "no accounts yet; add one with: python -m appliances.xmpp user add USER@"
                + self.domain
                + " (it asks for the password)"
            )
        try:
            async with asyncio.TaskGroup() as group:
                for listener, direct in listeners:
                    group.create_task(listener.serve(self._handler(direct)))
                for component_listener in component_listeners:
                    group.create_task(component_listener.serve(self.component_connection))
                group.create_task(self._watch_accounts())
        finally:
            # Hibernating sessions end with the server: what their clients
            # never acknowledged goes to offline storage before we exit.
            for sessions in list(self.im.sessions.values()):
                for session in list(sessions.values()):
                    if isinstance(session.sink, Hibernating):
                        session.sink.cancel()
                        await self.end(session)
            if self._ending:
                await asyncio.gather(*self._ending, return_exceptions=True)

    def reload_tls(self) -> None:
        """SIGHUP or the console's ``reload``: new handshakes (STARTTLS and
        Direct TLS) get the certificate now in --tls-cert; open connections
        keep their session.  A pair that does not load keeps the old one."""
        try:
            config = read_tls_files(self.ctx)
        except ConfigError as exc:
            raise ConfigError(f"{exc}; keeping the old certificate", option="tls_cert") from None
        if config is None or config == self.tls:
            return
        for listener in self.tls_listeners:
            listener.set_tls(direct_tls(config))
        self.tls = config
        self.cb_data = tls_server_end_point(config.cert_pem)
        self.ctx.log.info("TLS certificate reloaded", sha256=certificate_fingerprint(config.cert_pem))

    async def _watch_accounts(self) -> None:
        """Close the sessions of accounts deleted or given a new password,
        by a console command here or ``user ...`` from another process."""
        ctx = self.ctx
        while not await ctx.wait_stopping(CHANGES_POLL):
            self.apply_account_changes()

    def apply_account_changes(self, keep: Session | None = None) -> None:
        """Close the sessions of accounts changed since the last look (but
        ``keep``, the session that changed its own password in-band)."""
        for seq, jid, what in self.storage.changes(self._seen_change):
            self._seen_change = seq
            if what == "deleted":
                self.close_account(jid, "not-authorized", "the account was deleted")
            else:
                # RFC 6120 §4.9.3.16: the credentials of the stream changed
                self.close_account(jid, "reset", "the password was changed", keep=keep)

    def close_account(self, bare: str, condition: str, text: str, keep: Session | None = None) -> int:
        """End every session of ``bare`` (live ones with a stream error)."""
        sessions = [session for session in self.im.resources(bare) if session is not keep]
        for session in sessions:
            session.sink.kick(condition, text)
        if sessions:
            self.ctx.log.info("sessions closed", jid=bare, count=len(sessions), reason=text)
        return len(sessions)

    def kick(self, jid: JID) -> int:
        """The console's ``kick``: one session (full JID) or all of an account."""
        if not jid.resource:
            return self.close_account(str(jid), "policy-violation", "closed by an administrator")
        session = self.im.session(jid)
        if session is None:
            return 0
        session.sink.kick("policy-violation", "closed by an administrator")
        self.ctx.log.info("sessions closed", jid=str(jid), count=1, reason="closed by an administrator")
        return 1

    def session_rows(self) -> list[dict[str, object]]:
        """The console's ``sessions``: every bound session, by JID."""
        now = self.ctx.clock.now()
        rows: list[dict[str, object]] = []
        for bare in sorted(self.im.sessions):
            resources = self.im.sessions[bare]
            for session in [resources[name] for name in sorted(resources)]:
                sink = session.sink
                sm = session.sm
                row: dict[str, object] = {
                    "jid": str(session.jid),
                    "state": "hibernating" if isinstance(sink, Hibernating) else "connected",
                    "presence": "available" if session.available else "unavailable",
                    "priority": session.priority,
                    "seconds": round(now - session.since, 1),
                    "address": "",
                    "tls": "",
                    "sm": "off" if sm is None else ("resumable" if sm.resumable else "on"),
                    "unacked": len(sm.unacked) if sm is not None else 0,
                }
                if isinstance(sink, Connection):
                    row["address"] = format_address(sink.stream.peer)
                    tls = sink.stream.tls
                    row["tls"] = tls.version if tls is not None else ""
                rows.append(row)
        return rows

    async def component_connection(self, stream: Stream) -> None:
        """An XEP-0114 component: the handshake, then its stanzas routed."""
        ctx = self.ctx
        options = ctx.options
        conn = Connection(stream, options.max_send_buffer)
        attached = ""

        def attach(domain: str) -> str | None:
            nonlocal attached
            if domain in self.im.components:
                return "conflict"
            self.im.components[domain] = conn
            attached = domain
            self.components.inc()
            ctx.log.info("component connected", domain=domain, peer=stream.peer.host)
            return None

        core = ComponentStream(
            self.component_secrets,
            max_stanza=options.max_stanza,
            random_token=lambda: ctx.random.token(12),
            attach=attach,
        )
        try:
            await self._component_loop(conn, core)
        finally:
            conn.close()
            core.parser.close()
            if attached and self.im.components.get(attached) is conn:
                del self.im.components[attached]
                self.components.dec()
                ctx.log.info("component disconnected", domain=attached)

    def _received(self, core: C2SStream | ComponentStream, stream: Stream, data: bytes) -> list[Action]:
        """The core's actions for ``data``; the end of input that the runtime
        gives a stream when we stop becomes our ``system-shutdown``."""
        if not data and self.ctx.stopping and not stream.closed:
            return core.fail("system-shutdown", "the server is stopping")
        return core.receive(data)

    async def _component_loop(self, conn: Connection, core: ComponentStream) -> None:
        ctx = self.ctx
        options = ctx.options
        stream = conn.stream
        while not conn.closing:
            try:
                # before the handshake the idle timeout applies; after it a
                # quiet component gets whitespace keepalives (RFC 6120 §4.6.1)
                data = await stream.receive(RECEIVE_SIZE, timeout=options.idle_timeout)
            except TimeoutError:
                if core.authenticated:
                    conn.deliver(b" ")
                    continue
                actions = core.fail("connection-timeout", "no handshake in time")
            else:
                actions = self._received(core, stream, data)
            for action in actions:
                if isinstance(action, Send):
                    conn.deliver(action.data)
                elif isinstance(action, Incoming):
                    element = action.element
                    await self.im.from_component(element, JID.parse(element.attrs["from"]), conn)
                elif isinstance(action, Close):
                    return
            core.parser.compact()

    def _handler(self, direct_tls: bool) -> Callable[[Stream], Awaitable[None]]:
        async def handle(stream: Stream) -> None:
            await self.connection(stream, direct_tls)

        return handle

    async def connection(self, stream: Stream, direct_tls: bool) -> None:
        conn = Connection(stream, self.ctx.options.max_send_buffer)
        self.active.inc()
        try:
            await self._read_loop(conn, stream, direct_tls)
        finally:
            conn.close()
            abrupt = conn.ended_abruptly()
            if conn.core is not None:
                conn.core.parser.close()
            session = conn.session
            # The core's callbacks and the session point back at the
            # connection: without these cycles it is freed at once, not when
            # the cycle collector comes.
            conn.core = None
            conn.session = None
            try:
                if session is not None and session.sink is conn:
                    sm = session.sm
                    resumable = sm is not None and sm.resumable and not self.ctx.stopping
                    if sm is not None and resumable and abrupt:
                        session.sink = Hibernating(self, session, sm.timeout)
                        self.hibernating.inc()
                    else:
                        await self.end(session)
            finally:
                self.active.dec()

    async def end(self, session: Session) -> None:
        """The session is over: unavailable to whoever saw it, then what its
        client never acknowledged is handled as undelivered."""
        if isinstance(session.sink, Hibernating):
            self.hibernating.dec()
        await self.im.unbind(session)
        sm = session.sm
        if sm is not None and sm.unacked:
            unacked = list(sm.unacked)
            sm.unacked.clear()
            await self.im.undelivered(session, unacked)

    def end_later(self, session: Session) -> None:
        task = asyncio.get_running_loop().create_task(self.end(session))
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    def _resume(self, conn: Connection, bare: JID, element: Element) -> tuple[JID | None, bytes]:
        """XEP-0198 §5: take over the session ``previd`` of the same account."""
        session = self.im.resumable.get(element.get("previd", "") or "")
        sm = session.sm if session is not None else None
        if session is None or sm is None or session.jid.bare != bare:
            return None, failed("item-not-found")
        try:
            again = sm.resume(parse_h(element.get("h")))
        except AckError:
            return None, failed("undefined-condition", sm.handled)
        old = session.sink
        if isinstance(old, Hibernating):
            old.cancel()
            self.hibernating.dec()
        else:
            old.kick("conflict", "the session was resumed on another connection")
        session.sink = conn
        conn.session = session
        self.resumptions.inc()
        reply = resumed(sm) + b"".join(again)
        if again:
            sm.requested = True
            reply += ACK_REQUEST
        self.ctx.log.debug("resumed", jid=str(session.jid), resent=len(again))
        return session.jid, reply

    def _bind(self, conn: Connection, bare: JID, resource: str) -> JID | None:
        resources = self.im.sessions.get(str(bare), {})
        if len(resources) >= self.ctx.options.max_resources and resource not in resources:
            return None
        session = self.im.bind(bare, resource, conn)
        session.since = self.ctx.clock.now()
        conn.session = session
        self.logins.inc()
        tls = conn.stream.tls
        self.ctx.log.debug(
            "bound",
            jid=str(session.jid),
            mechanism=conn.core.mechanism if conn.core is not None else "",
            tls=tls.version if tls else "none",
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
            bind=lambda bare, resource: self._bind(conn, bare, resource),
            resume=lambda bare, element: self._resume(conn, bare, element),
            throttle=self.throttle,
            secret=self.secret,
            random_token=lambda: ctx.random.token(12),
            now=ctx.clock.monotonic,
        )
        conn.core = core
        # Idle time is counted here, in ticks of the receive timeout.
        clock = ctx.clock
        tick = min(options.ping_interval, options.ping_timeout, options.idle_timeout)
        last = clock.monotonic()
        pinged_at: float | None = None
        budget = ReceiveBudget(options.receive_rate, last) if options.receive_rate else None
        while not conn.closing:
            if budget is not None and (wait := budget.spend(0, clock.monotonic())) > 0:
                await ctx.wait_stopping(wait)  # not read for a while (a stop ends the wait)
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
                        conn.session.send(ping.encode() + b"<ping xmlns='urn:xmpp:ping'/></iq>")
                    continue
                elif now - pinged_at < options.ping_timeout:
                    continue
                actions = core.fail("connection-timeout", "no data received in time")
            else:
                last = clock.monotonic()
                pinged_at = None
                if budget is not None:
                    budget.spend(len(data), last)
                actions = self._received(core, stream, data)
            for action in actions:
                if isinstance(action, Send):
                    conn.deliver(action.data)
                elif isinstance(action, Incoming):
                    self.stanzas.inc()
                    session = conn.session
                    assert session is not None
                    await self.im.handle(session, action.element, action.raw)
                    if session.sm is not None:
                        session.sm.inbound()
                elif isinstance(action, PreAuth):
                    conn.deliver(await self.registration.before_auth(action.element, stream.peer.host))
                elif isinstance(action, Nonza):
                    self._nonza(conn, action.element)
                elif isinstance(action, StartTLS):
                    conn.flush()
                    tls, cb_data = self.tls, self.cb_data  # the pair of this handshake, reload or not
                    try:
                        await stream.start_tls(tls, preface=action.proceed)
                    except (ConnectionError, TimeoutError, OSError):
                        conn.closing = True
                        return
                    core.tls_started(cb_data)
                else:
                    return  # Close
            # Between stanzas expat's memory (about 10 KiB) goes back: a
            # connection holds it only while a stanza is arriving (rule 8).
            core.parser.compact()

    def _nonza(self, conn: Connection, element: Element) -> None:
        session = conn.session
        assert session is not None
        name = element.name
        if element.ns == "urn:xmpp:csi:0":
            if name in ("active", "inactive"):
                # XEP-0352: hold presence updates while inactive
                session.set_active(name == "active")
            return
        sm = session.sm
        if name == "enable":
            if sm is not None:
                conn.deliver(failed("unexpected-request"))
                return
            timeout = self.ctx.options.resume_timeout
            wanted = element.get("max", "") or ""
            if wanted.isdigit() and 0 < int(wanted) < timeout:
                timeout = float(wanted)
            sm = StreamManagement(
                self.ctx.random.token(16),
                resumable=element.get("resume") in ("true", "1"),
                timeout=timeout,
                max_unacked=self.ctx.options.max_unacked,
            )
            conn.deliver(enabled(sm))  # before the first stanza it counts
            session.sm = sm
            if sm.resumable:
                self.im.resumable[sm.id] = session
        elif sm is None:
            return  # r/a without stream management: nothing to count
        elif name == "r":
            conn.deliver(answer(sm))
        elif name == "a":
            try:
                again = sm.acked(parse_h(element.get("h")))
            except AckError as exc:
                conn.kick("undefined-condition", str(exc))
                return
            if again:
                conn.deliver(again)


def direct_tls(config: TLSConfig) -> TLSConfig:
    """Direct TLS (XEP-0368 §4) answers the ALPN protocol ``xmpp-client``."""
    return TLSConfig(config.cert_pem, config.key_pem, alpn=("xmpp-client",))


async def load_tls(ctx: Context, domain: str) -> TLSConfig:
    """--tls-cert/--tls-key through the data device, else a self-signed pair made
    once and kept in the store (clients that pinned it keep working)."""
    given = read_tls_files(ctx)
    if given is not None:
        ctx.log.info("TLS certificate loaded", sha256=certificate_fingerprint(given.cert_pem))
        return given
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


def read_tls_files(ctx: Context) -> TLSConfig | None:
    """The --tls-cert/--tls-key pair, checked, or None when not given."""
    certs = ctx.data_files("tls_cert")
    keys = ctx.data_files("tls_key")
    if bool(certs) != bool(keys):
        raise ConfigError("--tls-cert and --tls-key go together: give both or neither", option="tls_cert")
    if not certs:
        return None
    config = TLSConfig(certs[0].data.read(certs[0].key), keys[0].data.read(keys[0].key))
    try:
        check_tls(config)
    except ValueError as exc:
        raise ConfigError(f"--tls-cert/--tls-key: {exc}", option="tls_cert") from None
    return config


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
