"""The load generator's XMPP client: raw bytes over one asyncio Protocol per
connection, no XML parser.

A connection logs in the way a real client does (RFC 6120): stream header,
STARTTLS (§5; no certificate verification: loopback and a self-signed
certificate), stream restart, SASL SCRAM (§6, RFC 5802; no channel binding,
gs2 flag ``n``), stream restart, resource binding (§7), initial presence
(RFC 6121 §4.2).  Negotiation waits for whole elements found by byte search:
the elements met there (features, proceed, challenge, success, iq, presence)
never nest an element of their own name, so "start tag ... matching end tag
or ``/>``" is enough.

Chat (``chat``): connections in pairs, each keeps ``window`` messages in flight
to its partner.  A message's body is ``SENDER:SEQ:SENT_NS``; the receiver finds
``</message>`` and the body by byte search, checks the sender and that the
sequence number is the next one (RFC 6120 §10.1: in-order delivery), records
``perf_counter_ns() - SENT_NS`` and has the partner send as many new messages
as were delivered, in one write.

The client's side of SCRAM costs a PBKDF2 of ``iterations`` rounds, the
server's only a few HMACs (it stores the salted keys): ``SaltedPasswords``
caches the salted password per (user, salt, iterations, hash) and can be
filled ahead from a file, so that a login costs the generator a few HMACs, as
it costs the server.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

__all__ = [
    "HASHES",
    "ChatResult",
    "LoginError",
    "LoginResult",
    "SaltedPasswords",
    "ScramClient",
    "XmppConnection",
    "chat",
    "choose_mechanism",
    "client_context",
    "login",
    "login_all",
    "probe_mechanisms",
]

#: SCRAM mechanism -> hashlib name, strongest first (RFC 7677 over RFC 5802)
HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-1": "sha1"}
HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>"
)
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
#: one negotiation step, the TLS handshake included (half Prosody's
#: ssl_handshake_timeout); a server this slow to answer a login has failed it
STEP_TIMEOUT = 30.0
#: what may arrive before the element a negotiation step waits for: features
#: are a few hundred bytes; the stanza limit after login (ours and Prosody's
#: default) is 256 KiB
MAX_NEGOTIATION = 256 * 1024
#: an unfinished stanza in chat: our messages are under 200 bytes; a server
#: keeps at most 1 MiB queued for a client (our --max-send-buffer)
MAX_CHAT_BUFFER = 1024 * 1024

_MECHANISM = re.compile(rb"<mechanism>([^<]+)</mechanism>")
_JID = re.compile(rb"<jid>([^<]+)</jid>")


class LoginError(Exception):
    """The server refused or broke a login step (its answer is in the text)."""


# --------------------------------------------------------------------- SCRAM


class SaltedPasswords:
    """``Hi(password, salt, i)`` (RFC 5802 §2.2) per (user, salt, iterations, hash)."""

    def __init__(self) -> None:
        self._salted: dict[tuple[str, bytes, int, str], bytes] = {}
        self.computed = 0

    def get(self, user: str, password: str, salt: bytes, iterations: int, hash_name: str) -> bytes:
        key = (user, salt, iterations, hash_name)
        salted = self._salted.get(key)
        if salted is None:
            # SASLprep (RFC 4013) leaves the benchmark's ASCII passwords as they are
            salted = hashlib.pbkdf2_hmac(hash_name, password.encode("utf-8"), salt, iterations)
            self._salted[key] = salted
            self.computed += 1
        return salted

    def put(self, user: str, salt: bytes, iterations: int, hash_name: str, salted: bytes) -> None:
        self._salted[(user, salt, iterations, hash_name)] = salted

    def save(self, path: Path) -> None:
        rows = [[u, s.hex(), i, h, v.hex()] for (u, s, i, h), v in self._salted.items()]
        path.write_text(json.dumps(rows))

    @classmethod
    def load(cls, path: Path) -> SaltedPasswords:
        cache = cls()
        for user, salt, iterations, hash_name, salted in json.loads(path.read_text()):
            cache.put(user, bytes.fromhex(salt), int(iterations), hash_name, bytes.fromhex(salted))
        return cache


class ScramClient:
    """The client side of one SCRAM exchange (RFC 5802 §3, §7), sans-IO:
    ``first()``, ``final(server_first)``, ``verify(server_final)``."""

    def __init__(
        self, mechanism: str, user: str, password: str, salted: SaltedPasswords, nonce: str | None = None
    ) -> None:
        if mechanism not in HASHES:
            raise ValueError(f"not a SCRAM mechanism we speak: {mechanism}")
        self.hash_name = HASHES[mechanism]
        self.user = user
        self.password = password
        self.salted = salted
        name = user.replace("=", "=3D").replace(",", "=2C")
        self.bare = f"n={name},r={nonce or base64.b64encode(os.urandom(18)).decode('ascii')}"
        self._nonce = self.bare.partition(",r=")[2]
        self._server_signature = b""

    def first(self) -> bytes:
        return b"n,," + self.bare.encode("utf-8")

    def final(self, server_first: bytes) -> bytes:
        text = server_first.decode("utf-8")
        attrs = {key: value for key, _, value in (part.partition("=") for part in text.split(","))}
        nonce, salt, iterations = attrs.get("r", ""), attrs.get("s", ""), attrs.get("i", "")
        if not nonce.startswith(self._nonce) or not salt or not iterations.isdigit():
            raise LoginError(f"bad server-first-message {text!r}")
        name = self.hash_name
        salted = self.salted.get(self.user, self.password, base64.b64decode(salt), int(iterations), name)
        client_key = hmac.digest(salted, b"Client Key", name)
        stored_key = hashlib.new(name, client_key).digest()
        without_proof = f"c=biws,r={nonce}"  # biws: base64 of the gs2 header "n,,"
        auth = f"{self.bare},{text},{without_proof}".encode()
        signature = hmac.digest(stored_key, auth, name)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", name)
        self._server_signature = hmac.digest(server_key, auth, name)
        return f"{without_proof},p={base64.b64encode(proof).decode('ascii')}".encode()

    def verify(self, server_final: bytes) -> None:
        """The server proved it knows the keys (RFC 5802 §3: ServerSignature)."""
        if server_final != b"v=" + base64.b64encode(self._server_signature):
            raise LoginError(f"bad server signature {server_final[:80]!r}")


# --------------------------------------------------------------------- connection


def _element_end(buffer: bytearray, name: bytes, start: int) -> int:
    """The end of the element ``name`` starting at ``start``, or -1 while incomplete."""
    tag_end = buffer.find(b">", start)
    if tag_end < 0:
        return -1
    if buffer[tag_end - 1] == ord("/"):
        return tag_end + 1
    close = buffer.find(b"</" + name + b">", tag_end)
    return -1 if close < 0 else close + len(name) + 3


class XmppConnection(asyncio.Protocol):
    """One client connection.  During login, ``element(name)`` waits for the next
    whole element of that name; once chatting, ``data_received`` counts messages."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.jid = ""
        self.tls = ""
        self.closed = asyncio.get_running_loop().create_future()
        self._wake: asyncio.Future[None] | None = None
        # chat state, set by ``chat``
        self.chat: _Chat | None = None
        self.index = 0
        self.partner: XmppConnection | None = None
        self.to = b""
        self.seq = 0
        self.expected = 0

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.chat is not None:
            self._messages()
        elif self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    # -- login

    def send(self, data: str | bytes) -> None:
        assert self.transport is not None
        self.transport.write(data.encode("utf-8") if isinstance(data, str) else data)

    async def element(self, name: str) -> bytes:
        """Wait for the next whole ``<name ...>`` element and take it (and what
        came before it) out of the buffer; a stream error or failure raises."""
        tag = name.encode("ascii")
        async with asyncio.timeout(STEP_TIMEOUT):
            while True:
                start = self.buffer.find(b"<" + tag)
                if start >= 0:
                    end = _element_end(self.buffer, tag, start)
                    if end >= 0:
                        found = bytes(self.buffer[start:end])
                        del self.buffer[:end]
                        return found
                for bad in (b"<stream:error", b"<failure", b"</stream:stream>"):
                    if bad in self.buffer:
                        raise LoginError(f"waiting for <{name}>: {bytes(self.buffer[-400:])!r}")
                if self.closed.done():
                    raise LoginError(f"closed while waiting for <{name}>")
                if len(self.buffer) > MAX_NEGOTIATION:
                    raise LoginError(f"{len(self.buffer)} bytes without <{name}>")
                self._wake = asyncio.get_running_loop().create_future()
                await self._wake

    async def open_stream(self, domain: str) -> bytes:
        """Send a stream header; return the features (RFC 6120 §4.3.2)."""
        self.send(HEADER.format(domain=domain))
        return await self.element("stream:features")

    async def start_tls(self, domain: str, context: ssl.SSLContext) -> None:
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await self.element("proceed")
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        transport = await loop.start_tls(
            self.transport, self, context, server_hostname=domain, ssl_handshake_timeout=STEP_TIMEOUT
        )
        assert transport is not None
        self.transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.tls = f"{ssl_object.version()} {ssl_object.cipher()[0]}"

    async def authenticate(self, mechanism: str, user: str, password: str, salted: SaltedPasswords) -> None:
        scram = ScramClient(mechanism, user, password, salted)
        first = base64.b64encode(scram.first()).decode("ascii")
        self.send(f"<auth xmlns='{SASL_NS}' mechanism='{mechanism}'>{first}</auth>")
        challenge = _text(await self.element("challenge"))
        final = base64.b64encode(scram.final(base64.b64decode(challenge))).decode("ascii")
        self.send(f"<response xmlns='{SASL_NS}'>{final}</response>")
        scram.verify(base64.b64decode(_text(await self.element("success"))))

    async def bind(self, resource: str) -> str:
        self.send(
            "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            f"<resource>{resource}</resource></bind></iq>"
        )
        found = _JID.search(await self.element("iq"))
        if found is None:
            raise LoginError("no JID in the bind result")
        self.jid = found.group(1).decode("utf-8")
        return self.jid

    def close(self) -> None:
        """End the stream (RFC 6120 §4.4) and close; ``closed`` is done once the
        transport is gone."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"</stream:stream>")
            self.transport.close()

    async def aclose(self, timeout: float = STEP_TIMEOUT) -> None:
        self.close()
        try:
            async with asyncio.timeout(timeout):
                await self.closed
        except TimeoutError:
            self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- chat

    def send_messages(self, count: int) -> None:
        """``count`` new messages to the partner, in one write."""
        assert self.transport is not None
        if self.transport.is_closing():  # the server closed us: counted in ``ChatResult.closed``
            return
        parts = []
        sender, to = self.index, self.to
        for _ in range(count):
            self.seq += 1
            body = b"%d:%d:%d" % (sender, self.seq, time.perf_counter_ns())
            parts.append(b"<message type='chat' to='" + to + b"'><body>" + body + b"</body></message>")
        self.transport.write(b"".join(parts))

    def _messages(self) -> None:
        chat = self.chat
        assert chat is not None
        buffer = self.buffer
        start = 0
        delivered = 0
        end = buffer.find(b"</message>")
        while end >= 0:
            body = buffer.find(b"<body", start, end)
            if body >= 0:
                text = buffer.find(b">", body, end) + 1
                close = buffer.find(b"</body>", text, end)
                parts = bytes(buffer[text:close]).split(b":") if text > 0 and close > 0 else []
                try:
                    sender, seq, sent_ns = (int(part) for part in parts)
                except ValueError:
                    sender = seq = sent_ns = -1
                if self._accept(sender, seq):
                    delivered += 1
                    if chat.measuring:
                        chat.latencies.append(time.perf_counter_ns() - sent_ns)
                else:
                    chat.bad += 1
            else:
                chat.bad += 1
            start = end + 10  # len(b"</message>")
            end = buffer.find(b"</message>", start)
        if start:
            del buffer[:start]
        elif len(buffer) > MAX_CHAT_BUFFER:
            chat.bad += 1
            del buffer[:]
        if delivered:
            chat.delivered += delivered
            partner = self.partner
            if chat.running:
                if partner is not None:
                    partner.send_messages(delivered)
            elif chat.delivered + chat.bad >= chat.sent:
                chat.drained.set()

    def _accept(self, sender: int, seq: int) -> bool:
        partner = self.partner
        if partner is None or sender != partner.index or seq != self.expected + 1 or seq > partner.seq:
            return False
        self.expected = seq
        return True


def _text(element: bytes) -> bytes:
    """The character data of a childless element (``<x ...>TEXT</x>`` or ``<x/>``)."""
    start = element.find(b">") + 1
    if element[start - 2 : start] == b"/>":
        return b""
    return element[start : element.rfind(b"</")]


def client_context() -> ssl.SSLContext:
    """TLS without verification: loopback to a self-signed certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# --------------------------------------------------------------------- login


async def _connect(host: str, port: int) -> XmppConnection:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(STEP_TIMEOUT):
        _, connection = await loop.create_connection(XmppConnection, host, port)
    return connection


async def probe_mechanisms(host: str, port: int, domain: str) -> list[str]:
    """The SASL mechanisms the server offers after STARTTLS."""
    connection = await _connect(host, port)
    try:
        features = await connection.open_stream(domain)
        if b"<starttls" not in features:
            raise LoginError("no STARTTLS offered")
        await connection.start_tls(domain, client_context())
        features = await connection.open_stream(domain)
        return [m.decode("ascii") for m in _MECHANISM.findall(features)]
    finally:
        connection.abort()


def choose_mechanism(offers: Iterable[Sequence[str]]) -> str:
    """The strongest SCRAM mechanism every server offers."""
    common = set(HASHES)
    for offered in offers:
        common &= set(offered)
    for mechanism in HASHES:
        if mechanism in common:
            return mechanism
    raise LoginError("no SCRAM mechanism offered by every server")


async def login(
    host: str,
    port: int,
    domain: str,
    user: str,
    password: str,
    *,
    mechanism: str,
    salted: SaltedPasswords,
    context: ssl.SSLContext,
    resource: str = "bench",
) -> XmppConnection:
    """A connection logged in, bound, and available (its initial presence
    echoed back, RFC 6121 §4.2.2): ready to send and receive messages."""
    step = "connect"
    connection = await _connect(host, port)
    try:
        step = "stream"
        features = await connection.open_stream(domain)
        if b"<starttls" not in features:
            raise LoginError("no STARTTLS offered")
        step = "starttls"
        await connection.start_tls(domain, context)
        step = "stream after TLS"
        features = await connection.open_stream(domain)
        if f"<mechanism>{mechanism}</mechanism>".encode() not in features:
            raise LoginError(f"{mechanism} not offered: {features[:300]!r}")
        step = "SASL"
        await connection.authenticate(mechanism, user, password, salted)
        step = "stream after SASL"
        features = await connection.open_stream(domain)
        if b"<bind" not in features:
            raise LoginError("no resource binding offered")
        step = "bind"
        await connection.bind(resource)
        step = "presence"
        connection.send("<presence/>")
        await connection.element("presence")
    except (OSError, LoginError, TimeoutError, ssl.SSLError) as exc:
        connection.abort()
        raise LoginError(f"{step}: {type(exc).__name__}: {exc}") from exc
    except BaseException:
        connection.abort()
        raise
    return connection


@dataclass
class LoginResult:
    connections: list[XmppConnection]
    failures: int
    first_error: str
    seconds: float


async def login_all(
    host: str,
    port: int,
    domain: str,
    accounts: Sequence[tuple[str, str]],
    *,
    mechanism: str,
    salted: SaltedPasswords,
    concurrency: int,
) -> LoginResult:
    """Log every (user, password) in, at most ``concurrency`` logins at a time;
    the result keeps the connections in the order of ``accounts`` (failed ones
    left out) and the wall time of the whole."""
    context = client_context()
    slots = asyncio.Semaphore(concurrency)
    done: list[XmppConnection | None] = [None] * len(accounts)
    errors: list[str] = []

    async def one(index: int, user: str, password: str) -> None:
        async with slots:
            try:
                done[index] = await login(
                    host, port, domain, user, password, mechanism=mechanism, salted=salted, context=context
                )
            except (OSError, LoginError, TimeoutError, ssl.SSLError) as exc:
                errors.append(f"{user}: {exc}")

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for index, (user, password) in enumerate(accounts):
            group.create_task(one(index, user, password))
    seconds = time.perf_counter() - started
    connections = [c for c in done if c is not None]
    return LoginResult(connections, len(errors), errors[0] if errors else "", seconds)


# --------------------------------------------------------------------- chat


@dataclass
class _Chat:
    running: bool = True
    measuring: bool = False
    delivered: int = 0
    bad: int = 0
    latencies: list[int] = field(default_factory=list)
    #: once stopped: all that was sent, and set when as many have arrived
    sent: int = 0
    drained: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class ChatResult:
    #: messages delivered between the two snapshots, and the wall time between them
    messages: int
    seconds: float
    #: ``probe()`` at the start and at the end of the measured window
    before: tuple[float, ...]
    after: tuple[float, ...]
    #: delivery latencies (nanoseconds) in the measured window
    latencies: list[int]
    sent: int
    delivered: int
    #: messages that were not the next one expected from the partner
    bad: int
    #: sent but not delivered once the drain ended
    lost: int
    #: connections the server closed during the chat
    closed: int


def _nothing() -> tuple[float, ...]:
    return ()


async def chat(
    connections: Sequence[XmppConnection],
    *,
    window: int,
    warmup: float,
    seconds: float,
    drain: float = 5.0,
    probe: Callable[[], tuple[float, ...]] = _nothing,
) -> ChatResult:
    """Pair the connections (0-1, 2-3, ...), keep ``window`` messages in flight
    each way, warm up, measure ``seconds`` (``probe()`` at both ends: CPU
    counters), stop sending and wait up to ``drain`` seconds for what is in
    flight.  An odd connection out stays idle."""
    state = _Chat()
    pairs = len(connections) // 2
    chatting = list(connections[: 2 * pairs])
    for index, connection in enumerate(chatting):
        partner = chatting[index ^ 1]
        connection.index = index
        connection.partner = partner
        connection.to = partner.jid.encode("utf-8")
        connection.seq = connection.expected = 0
        connection.chat = state
        connection.buffer.clear()
    for connection in chatting:
        connection.send_messages(window)
    await asyncio.sleep(warmup)
    state.measuring = True
    before_count = state.delivered
    before = probe()
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    messages = state.delivered - before_count
    elapsed = time.perf_counter() - started
    after = probe()
    state.measuring = False
    state.running = False
    sent = state.sent = sum(c.seq for c in chatting)
    if state.delivered + state.bad < sent:
        try:
            async with asyncio.timeout(drain):
                await state.drained.wait()
        except TimeoutError:
            pass  # counted as lost
    for connection in chatting:
        connection.chat = None
    return ChatResult(
        messages,
        elapsed,
        before,
        after,
        state.latencies,
        sent,
        state.delivered,
        state.bad,
        sent - state.delivered,
        sum(1 for c in chatting if c.closed.done()),
    )
