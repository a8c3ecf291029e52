"""One client-to-server stream's negotiation (sans-IO): bytes in, actions out.

States and what each accepts (RFC 6120; anything else is answered as said):

=========  ============================================  ==============================
state      accepts                                       otherwise
=========  ============================================  ==============================
PLAIN      ``<starttls/>`` (§5): ``<proceed/>``, then    ``<auth>``: SASL failure
           ``StartTLS``; the peer restarts the stream    ``encryption-required``
                                                         (§6.5.4); stanzas: stream
                                                         error ``not-authorized``
SECURE     ``<auth>``/``<response>``/``<abort>`` (§6)    stanzas: ``not-authorized``
           -> ``<success>`` and a stream restart;
           with ``register``: XEP-0077 iqs (``PreAuth``)
AUTHED     the bind iq (§7); XEP-0198 ``<resume/>``     other stanzas: ``not-authorized``
           (the ``resume`` callback decides)
BOUND      stanzas (``Incoming``), XEP-0198 ``r``/       unknown top-level elements:
           ``a``/``enable``, XEP-0352 ``active``/         ``unsupported-stanza-type``
           ``inactive`` (``Nonza``)
=========  ============================================  ==============================

Every stream error is sent after our stream header (sent first if it was not
yet, §4.9.1.2) and followed by ``</stream:stream>``; then the action ``Close``.
A peer that closes its stream gets ours (§4.4).

Authentication failures count per connection (more than ``max_auth_failures``:
``policy-violation``, §6.4.5) and per IP address through ``Throttle``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from .jid import JID, JIDError
from .scram import Credential, SaslFailure, ScramServer, check_plain
from .xmlstream import (
    NS_STREAMS,
    Element,
    Stanza,
    StreamClose,
    StreamError,
    StreamOpen,
    XMLStreamParser,
    escape_attr,
    escape_text,
    serialize,
)

__all__ = [
    "NS_BIND",
    "NS_CLIENT",
    "NS_CSI",
    "NS_SASL",
    "NS_SESSION",
    "NS_SM",
    "NS_STANZAS",
    "NS_TLS",
    "Action",
    "C2SSettings",
    "C2SStream",
    "Close",
    "Incoming",
    "Nonza",
    "PreAuth",
    "Send",
    "StartTLS",
    "State",
    "Throttle",
    "stream_error",
]

NS_CLIENT = "jabber:client"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"
NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_SM = "urn:xmpp:sm:3"
NS_CSI = "urn:xmpp:csi:0"
NS_REGISTER = "jabber:iq:register"
STANZA_NAMES = frozenset({"message", "presence", "iq"})


class State(Enum):
    PLAIN = "plain"
    SECURE = "secure"
    AUTHED = "authed"
    BOUND = "bound"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Flush what was sent, send ``proceed`` as the last cleartext (reading
    stopped: the client's handshake follows it), upgrade the connection and
    call ``tls_started``."""

    proceed: bytes


@dataclass(frozen=True, slots=True)
class Incoming:
    """A stanza from the bound client, ``from`` stamped with its full JID (§8.1.2.1)."""

    element: Element
    raw: bytes | None


@dataclass(frozen=True, slots=True)
class PreAuth:
    """An XEP-0077 registration iq before authentication (TLS is in place)."""

    element: Element


@dataclass(frozen=True, slots=True)
class Nonza:
    """A stream-level element of a bound stream for the session (XEP-0198, XEP-0352)."""

    element: Element


@dataclass(frozen=True, slots=True)
class Close:
    """Everything is sent; close the connection."""


Action = Send | StartTLS | Incoming | PreAuth | Nonza | Close


def stream_error(condition: str, text: str = "") -> bytes:
    """``<stream:error>`` (RFC 6120 §4.9.2) followed by the closing tag."""
    body = f"<{condition} xmlns='{NS_STREAM_ERRORS}'/>"
    if text:
        body += f"<text xmlns='{NS_STREAM_ERRORS}'>{escape_text(text)}</text>"
    return f"<stream:error>{body}</stream:error></stream:stream>".encode()


class Throttle:
    """Failed logins per client address: more than ``limit`` in ``window``
    seconds and further attempts get ``temporary-auth-failure`` until the
    window has passed (the bound on online password guessing)."""

    def __init__(self, limit: int = 5, window: float = 60.0, max_entries: int = 65536) -> None:
        self.limit = limit
        self.window = window
        self.max_entries = max_entries
        self._failures: dict[str, tuple[int, float]] = {}

    def allowed(self, host: str, now: float) -> bool:
        entry = self._failures.get(host)
        if entry is None:
            return True
        count, since = entry
        if now - since >= self.window:
            del self._failures[host]
            return True
        return count < self.limit

    def failed(self, host: str, now: float) -> None:
        count, since = self._failures.get(host, (0, now))
        if now - since >= self.window:
            count, since = 0, now
        if len(self._failures) >= self.max_entries and host not in self._failures:
            self._failures.pop(next(iter(self._failures)))
        self._failures[host] = (count + 1, since)


@dataclass(frozen=True)
class C2SSettings:
    domain: str
    max_stanza: int
    #: RFC 6120 §6.4.5: allow between 2 and 5 retries
    max_auth_failures: int = 3
    #: extra stream features of a bound stream (serialized children of <stream:features>)
    bound_features: bytes = b""
    #: offer XEP-0077 in-band registration before authentication
    register: bool = False


class C2SStream:
    """The negotiation of one client connection.

    ``lookup(jid, hash_name)``: the account's SCRAM credential or None.
    ``bind(bare, resource_or_empty)``: a full JID for the new session, or None
    when the account has all the sessions it may have.  ``resume(bare, element)``: XEP-0198
    resumption: the resumed session's full JID (or None) and what to send.
    ``random_token()``: a fresh nonce/id."""

    def __init__(
        self,
        settings: C2SSettings,
        *,
        peer_host: str,
        tls: bool,
        cb_data: bytes | None,
        lookup: Callable[[str, str], Credential | None],
        bind: Callable[[JID, str], JID | None],
        resume: Callable[[JID, Element], tuple[JID | None, bytes]] | None = None,
        throttle: Throttle,
        secret: bytes,
        random_token: Callable[[], str],
        now: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.peer_host = peer_host
        self.state = State.SECURE if tls else State.PLAIN
        self.cb_data = cb_data if tls else None
        self._lookup = lookup
        self._bind = bind
        self._resume = resume
        self._throttle = throttle
        self._secret = secret
        self._token = random_token
        self._now = now
        self.parser = XMLStreamParser(max_stanza=settings.max_stanza)
        self.header_sent = False
        self.stream_id = ""
        self.jid: JID | None = None
        self.authenticated: JID | None = None
        self.failures = 0
        self._sasl: ScramServer | None = None
        self.mechanism = ""
        #: how the stream ended: the client closed it (``</stream:stream>`` or its
        #: stream error), or our stream error's condition
        self.peer_closed = False
        self.error: str | None = None
        self._from_cache: tuple[JID | None, bytes] | None = None

    # ----------------------------------------------------------------- input

    def receive(self, data: bytes) -> list[Action]:
        """Actions for ``data`` (``b""``: the peer's end of stream)."""
        if self.state is State.CLOSED:
            return []
        if not data:
            self.state = State.CLOSED
            return [Close()]
        actions: list[Action] = []
        try:
            parser = self.parser
            events = parser.feed(data)
            for index, event in enumerate(events):
                self._event(event, actions)
                if self.state is State.CLOSED or self.parser is not parser:
                    break
                if _restarting(actions):
                    if index + 1 < len(events) or parser.pending().strip():
                        # RFC 6120 §5.4.3.3: nothing follows <starttls/> in the
                        # clear; a client waiting for <proceed/> sent no more.
                        raise StreamError("policy-violation", "data after <starttls/> before the handshake")
                    break
            else:
                if parser is self.parser and parser.error is not None:
                    raise parser.error
        except StreamError as exc:
            if _restarting(actions):
                actions.pop()
            return actions + self.fail(exc.condition, exc.text)
        return actions

    def fail(self, condition: str, text: str = "") -> list[Action]:
        """A stream error: our header if not sent yet, the error, the close."""
        if self.state is State.CLOSED:
            return []
        self.state = State.CLOSED
        self.error = condition
        head = b"" if self.header_sent else self._header()
        return [Send(head + stream_error(condition, text)), Close()]

    def tls_started(self, cb_data: bytes | None) -> None:
        """The upgrade is done: the peer restarts the stream (RFC 6120 §5.4.3.3)."""
        self.state = State.SECURE
        self.cb_data = cb_data
        self.parser.close()
        self.parser = XMLStreamParser(max_stanza=self.settings.max_stanza)
        self.header_sent = False

    # ----------------------------------------------------------------- events

    def _event(self, event: StreamOpen | Stanza | StreamClose, actions: list[Action]) -> None:
        if type(event) is StreamOpen:
            self._open(event, actions)
        elif type(event) is Stanza:
            self._element(event, actions)
        else:
            # §4.4: the peer closed its stream; close ours.
            self.state = State.CLOSED
            self.peer_closed = True
            actions.append(Send(b"</stream:stream>"))
            actions.append(Close())

    def _header(self) -> bytes:
        self.stream_id = self._token()
        self.header_sent = True
        return (
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client'"
            f" xmlns:stream='{NS_STREAMS}' id='{self.stream_id}'"
            f" from='{escape_attr(self.settings.domain)}' version='1.0' xml:lang='en'>"
        ).encode()

    def _open(self, event: StreamOpen, actions: list[Action]) -> None:
        # §4.8: the root must be stream in the streams namespace, content jabber:client
        if event.ns != NS_STREAMS or event.name != "stream":
            raise StreamError("invalid-namespace", "the root must be <stream:stream>")
        if event.default_ns != NS_CLIENT:
            raise StreamError("invalid-namespace", "the content namespace must be jabber:client")
        version = event.attrs.get("version", "0.9")
        major, _, _ = version.partition(".")
        if major != "1":
            raise StreamError("unsupported-version", "this server speaks XMPP 1.0")
        to = event.attrs.get("to")
        if to is not None:
            try:
                domain = JID.parse(to).domain
            except JIDError:
                raise StreamError("host-unknown", "not a domain") from None
            if domain != self.settings.domain or "@" in to or "/" in to:
                raise StreamError("host-unknown", f"this server serves {self.settings.domain}")
        actions.append(Send(self._header() + self._features()))

    def _features(self) -> bytes:
        if self.state is State.PLAIN:
            inner = f"<starttls xmlns='{NS_TLS}'><required/></starttls>"
        elif self.state is State.SECURE:
            mechs = "".join(f"<mechanism>{m}</mechanism>" for m in self.mechanisms())
            inner = f"<mechanisms xmlns='{NS_SASL}'>{mechs}</mechanisms>"
            if self.settings.register:
                inner += "<register xmlns='http://jabber.org/features/iq-register'/>"
        else:
            inner = (
                f"<bind xmlns='{NS_BIND}'/><session xmlns='{NS_SESSION}'><optional/></session>"
                + self.settings.bound_features.decode()
            )
        return f"<stream:features>{inner}</stream:features>".encode()

    def mechanisms(self) -> list[str]:
        names = []
        if self.cb_data is not None:
            names += ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"]
        names += ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
        return names

    def _element(self, event: Stanza, actions: list[Action]) -> None:
        element = event.element
        state = self.state
        if element.ns == NS_STREAMS:
            # Stream-level elements from a client: only an error is meaningful.
            if element.name == "error":
                self.state = State.CLOSED
                self.peer_closed = True
                actions.append(Send(b"</stream:stream>"))
                actions.append(Close())
                return
            raise StreamError("unsupported-stanza-type", f"unexpected stream:{element.name}")
        if state is State.BOUND:
            if element.ns == NS_CLIENT and element.name in STANZA_NAMES:
                self._stanza(event, actions)
            elif element.ns in (NS_SM, NS_CSI):
                actions.append(Nonza(element))
            else:
                raise StreamError("unsupported-stanza-type", f"unknown element {element.name}")
            return
        if state is State.PLAIN:
            if element.ns == NS_TLS and element.name == "starttls":
                actions.append(StartTLS(f"<proceed xmlns='{NS_TLS}'/>".encode()))
                return
            if element.ns == NS_SASL and element.name == "auth":
                # §5.3.1 / §6.5.4: TLS is required before SASL
                actions.append(Send(_sasl_failure("encryption-required", "use STARTTLS first")))
                return
            raise StreamError("not-authorized", "negotiate TLS and authenticate first")
        if state is State.SECURE:
            if element.ns == NS_SASL:
                self._sasl_element(element, actions)
                return
            if element.ns == NS_TLS:
                raise StreamError("policy-violation", "TLS is already in place")
            if self.settings.register and element.ns == NS_CLIENT and element.name == "iq":
                query = element.first()
                if query is not None and query.ns == NS_REGISTER:
                    actions.append(PreAuth(element))
                    return
            raise StreamError("not-authorized", "authenticate first")
        # AUTHED: bind, or XEP-0198 resumption instead of it
        if element.ns == NS_SM and self._resume is not None:
            if element.name == "resume":
                assert self.authenticated is not None
                jid, reply = self._resume(self.authenticated, element)
                actions.append(Send(reply))
                if jid is not None:
                    self.jid = jid
                    self.state = State.BOUND
                return
            if element.name == "enable":
                # §3: enable comes after binding a resource
                actions.append(Send(_sm_failed("unexpected-request")))
                return
        if element.ns == NS_CLIENT and element.name == "iq" and element.get("type") == "set":
            child = element.first()
            if child is not None and child.ns == NS_BIND and child.name == "bind":
                self._do_bind(element, child, actions)
                return
        raise StreamError("not-authorized", "bind a resource first")

    # ----------------------------------------------------------------- SASL (§6)

    def _sasl_element(self, element: Element, actions: list[Action]) -> None:
        name = element.name
        if name == "abort":
            self._sasl = None
            actions.append(Send(_sasl_failure("aborted")))
            return
        if name == "auth":
            if self._sasl is not None:
                self._sasl = None
            mechanism = element.get("mechanism", "") or ""
            if not self._throttle.allowed(self.peer_host, self._now()):
                actions.append(Send(_sasl_failure("temporary-auth-failure", "too many failed attempts")))
                return
            if mechanism not in self.mechanisms():
                actions.append(Send(_sasl_failure("invalid-mechanism")))
                return
            try:
                payload = _decode(element.text)
            except SaslFailure as exc:
                self._failed(exc, actions)
                return
            self.mechanism = mechanism
            if mechanism == "PLAIN":
                self._plain(payload, actions)
                return
            self._sasl = ScramServer(
                mechanism,
                lookup=self._lookup_local,
                secret=self._secret,
                nonce=self._token(),
                cb_data=self.cb_data,
                plus_offered=self.cb_data is not None,
            )
            if not payload:
                actions.append(Send(f"<challenge xmlns='{NS_SASL}'/>".encode()))
                return
            self._scram_first(payload, actions)
            return
        if name == "response":
            scram = self._sasl
            if scram is None:
                self._failed(SaslFailure("malformed-request", "no exchange in progress"), actions)
                return
            try:
                payload = _decode(element.text)
                if not scram.username:
                    self._scram_first(payload, actions)
                    return
                final = scram.final(payload)
            except SaslFailure as exc:
                self._failed(exc, actions)
                return
            self._success(scram.username, scram.authzid, final, actions)
            return
        raise StreamError("unsupported-stanza-type", f"unknown SASL element {name}")

    def _lookup_local(self, username: str, hash_name: str) -> Credential | None:
        jid = self._account(username)
        return None if jid is None else self._lookup(str(jid), hash_name)

    def _account(self, username: str) -> JID | None:
        try:
            jid = JID.parse(f"{username}@{self.settings.domain}")
        except JIDError:
            return None
        return jid if jid.local and not jid.resource else None

    def _scram_first(self, payload: bytes, actions: list[Action]) -> None:
        assert self._sasl is not None
        try:
            first = self._sasl.first(payload)
        except SaslFailure as exc:
            self._failed(exc, actions)
            return
        body = base64.b64encode(first).decode()
        actions.append(Send(f"<challenge xmlns='{NS_SASL}'>{body}</challenge>".encode()))

    def _plain(self, payload: bytes, actions: list[Action]) -> None:
        try:
            username, authzid = check_plain(payload, lambda name: self._lookup_local(name, "sha256"))
        except SaslFailure as exc:
            self._failed(exc, actions)
            return
        self._success(username, authzid, b"", actions)

    def _success(self, username: str, authzid: str, final: bytes, actions: list[Action]) -> None:
        self._sasl = None
        jid = self._account(username)
        if jid is None:
            self._failed(SaslFailure("not-authorized"), actions)
            return
        if authzid:
            try:
                wanted = JID.parse(authzid)
            except JIDError:
                wanted = None
            if wanted is None or wanted != jid:
                self._failed(SaslFailure("invalid-authzid"), actions)
                return
        self.authenticated = jid
        self.state = State.AUTHED
        body = base64.b64encode(final).decode() if final else ""
        actions.append(Send(f"<success xmlns='{NS_SASL}'>{body}</success>".encode()))
        # §6.4.6: the client restarts the stream; a new parser for the new stream
        rest = self.parser.pending()
        self.parser.close()
        self.parser = XMLStreamParser(max_stanza=self.settings.max_stanza)
        self.header_sent = False
        if rest:
            for event in self.parser.feed(rest):
                self._event(event, actions)

    def _failed(self, exc: SaslFailure, actions: list[Action]) -> None:
        self._sasl = None
        self.failures += 1
        self._throttle.failed(self.peer_host, self._now())
        # The same answer for a bad password and an unknown user: not-authorized
        actions.append(Send(_sasl_failure(exc.condition)))
        if self.failures > self.settings.max_auth_failures:
            raise StreamError("policy-violation", "too many failed authentication attempts")

    # ----------------------------------------------------------------- bind (§7)

    def _do_bind(self, iq: Element, bind: Element, actions: list[Action]) -> None:
        assert self.authenticated is not None
        iq_id = iq.get("id", "") or ""
        wanted = bind.find("resource")
        resource = wanted.text.strip() if wanted is not None else ""
        if resource:
            try:
                resource = JID.parse(f"x@y/{resource}").resource
            except JIDError:
                actions.append(Send(_iq_error(iq_id, "modify", "bad-request")))
                return
        full = self._bind(self.authenticated, resource)
        if full is None:
            # §7.6.2.1: the account has as many sessions as it may have
            actions.append(Send(_iq_error(iq_id, "wait", "resource-constraint")))
            return
        self.jid = full
        self.state = State.BOUND
        actions.append(
            Send(
                f"<iq type='result' id='{escape_attr(iq_id)}'><bind xmlns='{NS_BIND}'>"
                f"<jid>{escape_text(str(full))}</jid></bind></iq>".encode()
            )
        )

    # ----------------------------------------------------------------- stanzas (§8)

    def _stanza(self, event: Stanza, actions: list[Action]) -> None:
        element = event.element
        jid = self.jid
        assert jid is not None
        sender = element.get("from")
        raw = event.raw
        full = str(jid)
        if sender != full:
            if sender is not None:
                try:
                    claimed = JID.parse(sender)
                except JIDError:
                    claimed = None
                # §8.1.2.1: a client may give its bare or full JID, nothing else
                if claimed not in (jid, jid.bare):
                    raise StreamError("invalid-from", "stanzas must come from the session's JID")
            element.attrs["from"] = full
            # The usual case, no 'from' at all: stamp it into the bytes as they
            # came (§8.1.2.1) rather than serialize the stanza again.
            raw = _with_from(raw, element.name, self._from_attr) if sender is None else None
        actions.append(Incoming(element, raw))

    @property
    def _from_attr(self) -> bytes:
        cached = self._from_cache
        if cached is None or cached[0] is not self.jid:
            cached = (self.jid, f" from='{escape_attr(str(self.jid))}'".encode())
            self._from_cache = cached
        return cached[1]


def _with_from(raw: bytes | None, name: str, attr: bytes) -> bytes | None:
    """``raw`` (a stanza's exact bytes, starting ``<name``) with ``attr`` added
    after the element name, or None when it does not start that way."""
    if raw is None:
        return None
    cut = len(name) + 1
    if raw[1:cut] != name.encode() or raw[cut : cut + 1] not in (b" ", b">", b"/", b"\t", b"\n", b"\r"):
        return None
    return raw[:cut] + attr + raw[cut:]


def _restarting(actions: list[Action]) -> bool:
    return bool(actions) and type(actions[-1]) is StartTLS


def _decode(text: str) -> bytes:
    text = text.strip()
    if text in ("", "="):
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise SaslFailure("incorrect-encoding") from None


def _sasl_failure(condition: str, text: str = "") -> bytes:
    inner = f"<{condition}/>"
    if text:
        inner += f"<text>{escape_text(text)}</text>"
    return f"<failure xmlns='{NS_SASL}'>{inner}</failure>".encode()


def _sm_failed(condition: str) -> bytes:
    return f"<failed xmlns='{NS_SM}'><{condition} xmlns='{NS_STANZAS}'/></failed>".encode()


def _iq_error(iq_id: str, kind: str, condition: str) -> bytes:
    error = Element("error", "jabber:client", {"type": kind}, [Element(condition, NS_STANZAS)])
    return serialize(Element("iq", "jabber:client", {"type": "error", "id": iq_id}, [error]))
