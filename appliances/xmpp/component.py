"""XEP-0114 external components (sans-IO): one component connection's
stream, bytes in, actions out.

A component (a gateway, a bot, a service) connects to ``--component-listen``
and opens a stream in ``jabber:component:accept`` addressed to its domain,
one of ``--component NAME=SECRET``.  We answer with our header and a fresh
stream id; it proves the shared secret with ``<handshake>`` carrying the
lower-case hex SHA-1 of the stream id followed by the secret (§3), compared
in constant time.  Then stanzas flow both ways:

* from the component: ``from`` must be in its domain (``invalid-from``),
  ``to`` is required (``improper-addressing``); each becomes ``Incoming``,
  its namespace changed to ``jabber:client`` so that the router sees one
  kind of stanza;
* to the component: everything addressed to its domain (any local part or
  resource), serialized as on a client stream (no ``xmlns``: it inherits
  the component namespace).

Refusals: an unknown domain is ``host-unknown``, a wrong handshake
``not-authorized``, anything before the handshake ``not-authorized``; each a
stream error and a close, as in ``c2s``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping

from .c2s import NS_CLIENT, STANZA_NAMES, Action, Close, Incoming, Send, stream_error
from .jid import JID, JIDError
from .xmlstream import NS_STREAMS, Element, Stanza, StreamClose, StreamError, StreamOpen, XMLStreamParser

__all__ = ["NS_COMPONENT", "ComponentStream", "handshake_digest", "parse_component"]

NS_COMPONENT = "jabber:component:accept"


def handshake_digest(stream_id: str, secret: str) -> str:
    return hashlib.sha1((stream_id + secret).encode("utf-8")).hexdigest()


def parse_component(text: str) -> tuple[str, str]:
    """``NAME=SECRET`` of ``--component``: (prepared domain, secret); ValueError."""
    name, sep, secret = text.partition("=")
    if not sep or not secret:
        raise ValueError("expected NAME=SECRET")
    try:
        jid = JID.parse(name)
    except JIDError as exc:
        raise ValueError(f"not a domain name: {exc}") from None
    if jid.local or jid.resource:
        raise ValueError("the component's name is a bare domain such as gateway.example.org")
    return jid.domain, secret


def _as_client(element: Element) -> None:
    """Move ``element`` and the children that inherited the component
    namespace into ``jabber:client``."""
    if element.ns == NS_COMPONENT:
        element.ns = NS_CLIENT
    for child in element.elements():
        _as_client(child)


class ComponentStream:
    def __init__(
        self,
        secrets: Mapping[str, str],
        *,
        max_stanza: int,
        random_token: Callable[[], str],
        attach: Callable[[str], str | None],
    ) -> None:
        """``secrets``: domain to shared secret.  ``attach(domain)``: called
        after a good handshake; returns a stream error condition (``conflict``
        when the domain is connected already) or None."""
        self.secrets = secrets
        self.parser = XMLStreamParser(max_stanza=max_stanza)
        self._token = random_token
        self._attach = attach
        self.domain = ""
        self.stream_id = ""
        self.header_sent = False
        self.authenticated = False
        self.closed = False

    def receive(self, data: bytes) -> list[Action]:
        if self.closed:
            return []
        if not data:
            self.closed = True
            return [Close()]
        actions: list[Action] = []
        try:
            for event in self.parser.feed(data):
                if type(event) is StreamOpen:
                    self._open(event, actions)
                elif type(event) is Stanza:
                    self._element(event.element, actions)
                elif type(event) is StreamClose:
                    self.closed = True
                    actions += [Send(b"</stream:stream>"), Close()]
                if self.closed:
                    break
            else:
                if self.parser.error is not None:
                    raise self.parser.error
        except StreamError as exc:
            return actions + self.fail(exc.condition, exc.text)
        return actions

    def fail(self, condition: str, text: str = "") -> list[Action]:
        if self.closed:
            return []
        self.closed = True
        head = b"" if self.header_sent else self._header("")
        return [Send(head + stream_error(condition, text)), Close()]

    def _header(self, domain: str) -> bytes:
        self.stream_id = self._token()
        self.header_sent = True
        attrs = f" from='{domain}'" if domain else ""
        return (
            f"<?xml version='1.0'?><stream:stream xmlns='{NS_COMPONENT}'"
            f" xmlns:stream='{NS_STREAMS}' id='{self.stream_id}'{attrs}>"
        ).encode()

    def _open(self, event: StreamOpen, actions: list[Action]) -> None:
        if event.ns != NS_STREAMS or event.name != "stream" or event.default_ns != NS_COMPONENT:
            raise StreamError("invalid-namespace", f"a component stream is in {NS_COMPONENT}")
        if self.header_sent:
            raise StreamError("policy-violation", "the stream was opened already")
        try:
            domain = JID.parse(event.attrs.get("to", "") or "").domain
        except JIDError:
            domain = ""
        if domain not in self.secrets:
            raise StreamError("host-unknown", "no such component here")
        self.domain = domain
        actions.append(Send(self._header(domain)))

    def _element(self, element: Element, actions: list[Action]) -> None:
        if not self.authenticated:
            if element.name != "handshake" or element.ns != NS_COMPONENT:
                raise StreamError("not-authorized", "send the handshake first")
            expected = handshake_digest(self.stream_id, self.secrets[self.domain])
            if not hmac.compare_digest(element.text.strip().lower().encode(), expected.encode()):
                raise StreamError("not-authorized", "wrong handshake")
            refused = self._attach(self.domain)
            if refused is not None:
                raise StreamError(refused, "this component is connected already")
            self.authenticated = True
            actions.append(Send(b"<handshake/>"))
            return
        if element.ns != NS_COMPONENT or element.name not in STANZA_NAMES:
            raise StreamError("unsupported-stanza-type", f"unexpected element {element.name}")
        try:
            sender = JID.parse(element.get("from", "") or "")
            to = JID.parse(element.get("to", "") or "")
        except JIDError:
            raise StreamError("improper-addressing", "stanzas need valid from and to addresses") from None
        if sender.domain != self.domain:
            raise StreamError("invalid-from", f"a component sends from {self.domain}")
        element.attrs["from"] = str(sender)
        element.attrs["to"] = str(to)
        _as_client(element)
        actions.append(Incoming(element, None))
