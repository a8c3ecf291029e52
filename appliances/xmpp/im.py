"""Sessions, routing and instant messaging (RFC 6121) for the local domain.

Routing (RFC 6120 §10, RFC 6121 §8.5): a stanza from a bound session goes to

* the server itself (no ``to``, our domain, or the sender's own bare JID for
  iq): ``Services`` answers (roster, vCard, ping, disco, blocking, carbons...);
* a local account: by type and by resource (``_message``, ``_presence``,
  ``_iq_to_user``); messages to an offline account are stored (§8.5.2.1.1)
  and delivered with XEP-0203 delay stamps on its next initial presence;
* an XEP-0114 component's domain: handed to its connection as it is
  (``service-unavailable`` while a configured component is not connected);
  stanzas from components come in through ``from_component``;
* anything else (another domain): ``remote-server-not-found`` until
  federation exists; ``route_remote`` is the one place it will plug in.

Presence subscriptions follow RFC 6121 §3 and Appendix A: every transition
is written to the store (``Storage.put_roster_item``) before the stanza that
caused it is routed or the roster push is sent, under one lock so that
concurrent sessions cannot interleave a read-modify-write of a roster.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from runtime import Log

from .c2s import NS_CLIENT
from .jid import JID, JIDError
from .pep import Caps, PersonalEventing
from .sm import StreamManagement
from .stanzas import NS_DELAY, error_reply, iq_result, parse_stanzas, stamp
from .storage import RosterItem, Storage
from .xmlstream import Element, serialize

__all__ = ["NS_CARBONS", "NS_ROSTER", "IMServer", "Services", "Session", "Sink", "roster_element"]

NS_ROSTER = "jabber:iq:roster"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_HINTS = "urn:xmpp:hints"
NS_BLOCKING = "urn:xmpp:blocking"
NS_BLOCKING_ERRORS = "urn:xmpp:blocking:errors"
#: RFC 6121 §8.5.2.1.1 and §8.5.3.2.1: message types a bare JID stores or hands on
_STORABLE = frozenset({"normal", "chat"})
_SUBSCRIPTION = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed"})


class Sink(Protocol):
    """The connection side of a session: where its bytes go."""

    def deliver(self, data: bytes) -> None: ...

    def kick(self, condition: str, text: str = "") -> None:
        """Send a stream error and close the connection."""
        ...


@dataclass(eq=False)
class Session:
    jid: JID
    sink: Sink
    available: bool = False
    priority: int = 0
    #: the last available presence broadcast (stamped, no 'to'), for probes
    presence: Element | None = None
    interested: bool = False
    carbons: bool = False
    blocklist_requested: bool = False
    #: XEP-0352: presence held while the client says it is inactive, latest per sender
    inactive: bool = False
    held: dict[str, bytes] = field(default_factory=dict)
    directed: set[str] = field(default_factory=set)
    initial_done: bool = False
    #: XEP-0198, once the client enabled it
    sm: StreamManagement | None = None
    #: when it was bound (wall clock, for the console)
    since: float = 0.0
    #: XEP-0115: what the client said it is, and its features once learnt (PEP interests)
    caps: Caps | None = None

    @property
    def full(self) -> str:
        return str(self.jid)

    @property
    def bare(self) -> str:
        return str(self.jid.bare)

    def send(self, data: bytes) -> None:
        """Send one stanza (counted by stream management when enabled)."""
        sm = self.sm
        if sm is None:
            self.sink.deliver(data)
            return
        self.sink.deliver(sm.outbound(data))
        if len(sm.unacked) > sm.max_unacked:
            self.sink.kick("resource-constraint", "too many stanzas not acknowledged")

    def send_presence(self, sender: str, data: bytes) -> None:
        if self.inactive:
            self.held[sender] = data
            return
        self.send(data)

    def set_active(self, active: bool) -> None:
        self.inactive = not active
        if active:
            self.flush_held()

    def flush_held(self) -> None:
        held, self.held = self.held, {}
        for data in held.values():
            self.send(data)


class IMServer:
    """The domain's sessions and their stanzas."""

    def __init__(
        self,
        domain: str,
        storage: Storage,
        *,
        log: Log,
        now: Callable[[], float],
        token: Callable[[], str],
        max_offline: int,
    ) -> None:
        self.domain = domain
        self.storage = storage
        self.log = log
        self.now = now
        self.token = token
        self.max_offline = max_offline
        self.sessions: dict[str, dict[str, Session]] = {}
        #: XEP-0198 resumable sessions by stream-management id (live or hibernating)
        self.resumable: dict[str, Session] = {}
        self._roster_lock = asyncio.Lock()
        self._blocklists: dict[str, set[str]] = {}
        #: iq handlers by (child namespace), set by Services
        self.services: Services | None = None
        #: XEP-0114: the configured component domains, and the connected ones
        self.component_domains: frozenset[str] = frozenset()
        self.components: dict[str, Sink] = {}
        #: XEP-0163 at every account
        self.pep = PersonalEventing(self, storage)

    # ----------------------------------------------------------------- sessions

    def bind(self, bare: JID, resource: str, sink: Sink) -> Session:
        """A new session; a session with the same full JID is replaced (RFC 6120
        §7.7.2.2: the old one gets a ``conflict`` stream error)."""
        key = str(bare)
        if not resource:
            resource = self.token()
        resources = self.sessions.setdefault(key, {})
        old = resources.pop(resource, None)
        if old is not None:
            old.sink.kick("conflict", "replaced by a new session with the same resource")
        session = Session(bare.with_resource(resource), sink)
        resources[resource] = session
        return session

    def resources(self, bare: str) -> list[Session]:
        return list(self.sessions.get(bare, {}).values())

    def session(self, full: JID) -> Session | None:
        return self.sessions.get(str(full.bare), {}).get(full.resource)

    async def unbind(self, session: Session) -> None:
        """The connection ended, cleanly or not: unavailable to whoever saw us (§4.5.2)."""
        resources = self.sessions.get(session.bare)
        if resources is not None and resources.get(session.jid.resource) is session:
            del resources[session.jid.resource]
            if not resources:
                del self.sessions[session.bare]
        if session.sm is not None:
            self.resumable.pop(session.sm.id, None)
        self.pep.forget(session)
        if session.available:
            session.available = False
            unavailable = Element("presence", NS_CLIENT, {"type": "unavailable", "from": session.full})
            self._broadcast_presence(session, unavailable)

    # ----------------------------------------------------------------- entry point

    async def handle(self, session: Session, element: Element, raw: bytes | None) -> None:
        """One stanza from a bound session (``from`` already stamped)."""
        to_text = element.get("to")
        try:
            to = JID.parse(to_text) if to_text is not None else None
        except JIDError:
            self._bounce(session, element, "jid-malformed")
            return
        name = element.name
        if to is not None and to.domain in self.component_domains:
            if name != "presence" or element.get("type") not in _SUBSCRIPTION:
                self._to_component(session, element, to)
                return
        if name == "message":
            await self._outbound_message(session, element, raw, to)
        elif name == "presence":
            await self._outbound_presence(session, element, to)
        else:
            await self._outbound_iq(session, element, to)

    def _bounce(
        self, session: Session, element: Element, condition: str, extra: Element | None = None
    ) -> None:
        if element.get("type") == "error":
            return  # §8.3.1: never answer an error with an error
        if element.name == "presence" and condition != "jid-malformed":
            return
        session.send(serialize(error_reply(element, condition, extra=extra)))

    def blocklist(self, bare: str) -> set[str]:
        found = self._blocklists.get(bare)
        if found is None:
            found = set(self.storage.blocklist(bare))
            self._blocklists[bare] = found
        return found

    def forget_blocklist(self, bare: str) -> None:
        self._blocklists.pop(bare, None)

    def blocks(self, owner: str, other: JID) -> bool:
        """XEP-0191 §3.5: does ``owner`` block ``other`` (full, bare or domain)?"""
        items = self.blocklist(owner)
        if not items:
            return False
        return str(other) in items or str(other.bare) in items or other.domain in items

    def has_account(self, bare: str) -> bool:
        """An account with a session exists (a deleted account's sessions are
        closed); others are looked up in the store."""
        return bare in self.sessions or self.storage.has_account(bare)

    def is_local_user(self, jid: JID) -> bool:
        return jid.domain == self.domain and bool(jid.local) and self.has_account(str(jid.bare))

    def _to_component(self, session: Session, element: Element, to: JID) -> None:
        component = self.components.get(to.domain)
        if component is None:
            self._bounce(session, element, "service-unavailable")
            return
        if element.name == "presence" and element.get("type") in (None, "unavailable"):
            if element.get("type") is None:
                session.directed.add(str(to))
            else:
                session.directed.discard(str(to))
        component.deliver(serialize(element))

    async def from_component(self, element: Element, sender: JID, reply: Sink) -> None:
        """A stanza from a connected component (``from`` in its domain, ``to`` set)."""
        to = JID.parse(element.attrs["to"])
        name = element.name
        kind = element.get("type")

        def refuse(condition: str) -> None:
            if kind != "error" and name != "presence":
                reply.deliver(serialize(error_reply(element, condition)))

        if to.domain in self.component_domains:
            component = self.components.get(to.domain)
            if component is None:
                refuse("service-unavailable")
            else:
                component.deliver(serialize(element))
            return
        if to.domain != self.domain:
            refuse("remote-server-not-found")
            return
        if not to.local:
            if name == "iq" and kind == "get" and element.find("ping", "urn:xmpp:ping") is not None:
                reply.deliver(serialize(iq_result(element)))
            else:
                refuse("service-unavailable")
            return
        bare = str(to.bare)
        if not self.has_account(bare) or self.blocks(bare, sender):
            refuse("service-unavailable")
            return
        if name == "message":
            await self.deliver_message(element, None, to, sender, None)
        elif name == "presence":
            if kind in _SUBSCRIPTION:
                async with self._roster_lock:
                    await self._inbound_subscription(kind, sender.bare, to.bare)
            elif kind == "probe":
                item = self.storage.roster_item(bare, str(sender.bare))
                if item is not None and item.from_:
                    for other in self.resources(bare):
                        if other.available and other.presence is not None:
                            out = other.presence.copy()
                            out.attrs.update({"from": other.full, "to": str(sender)})
                            reply.deliver(serialize(out))
            else:
                self.deliver_presence_to(str(to), sender, element)
        elif to.resource and (target := self.session(to)) is not None:
            target.send(serialize(element))
        elif kind in ("get", "set"):
            refuse("service-unavailable")

    def route_remote(self, session: Session, element: Element) -> None:
        """Another domain: no federation yet (RFC 6120 §10.4.3)."""
        self._bounce(session, element, "remote-server-not-found")

    # ----------------------------------------------------------------- messages (§8.5)

    async def _outbound_message(
        self, session: Session, element: Element, raw: bytes | None, to: JID | None
    ) -> None:
        if to is None or (to.domain == self.domain and not to.local):
            # Messages to the server itself: nothing to do with them (§8.5.1 says
            # the server may process them; we have no such service).
            self._bounce(session, element, "service-unavailable")
            return
        if to.domain != self.domain:
            self.route_remote(session, element)
            return
        if self.blocks(session.bare, to):
            self._bounce(session, element, "not-acceptable", Element("blocked", NS_BLOCKING_ERRORS))
            return
        self._sent_carbons(session, element)
        await self.deliver_message(element, raw, to, JID.parse(session.full), session)

    async def deliver_message(
        self, element: Element, raw: bytes | None, to: JID, sender: JID, origin: Session | None
    ) -> None:
        """RFC 6121 §8.5.2 (bare) and §8.5.3 (full) for a message to a local account."""
        kind = element.get("type", "normal") or "normal"
        bare = str(to.bare)
        if not self.has_account(bare):
            if origin is not None:
                self._bounce(origin, element, "service-unavailable")
            return
        if self.blocks(bare, sender):
            if origin is not None:
                self._bounce(origin, element, "service-unavailable")
            return
        data = raw if raw is not None else serialize(element)
        if to.resource:
            target = self.session(to)
            if target is not None:
                target.flush_held()
                target.send(data)
                self._received_carbons(element, bare, {target})
                return
            if kind == "groupchat" or kind == "error" or kind == "headline":
                if kind == "groupchat" and origin is not None:
                    self._bounce(origin, element, "service-unavailable")
                return
        # Bare JID (or a full JID with no such session, treated as bare, §8.5.3.2.1)
        available = [s for s in self.resources(bare) if s.available and s.priority >= 0]
        if kind == "groupchat":
            if origin is not None:
                self._bounce(origin, element, "service-unavailable")
            return
        if kind == "error":
            return
        if available:
            if kind == "headline":
                targets = available
            else:
                top = max(s.priority for s in available)
                targets = [s for s in available if s.priority == top]
            for target in targets:
                target.flush_held()
                target.send(data)
            self._received_carbons(element, bare, set(targets))
            return
        if kind in _STORABLE:
            await self._store_offline(element, bare, origin)

    async def _store_offline(self, element: Element, bare: str, origin: Session | None) -> None:
        if self.storage.offline_count(bare) >= self.max_offline:
            if origin is not None:
                self._bounce(origin, element, "service-unavailable")
            return
        stored = element.copy()
        if stored.find("delay", NS_DELAY) is None:
            stored.add(Element("delay", NS_DELAY, {"from": self.domain, "stamp": stamp(self.now())}))
        await self.storage.store_offline(bare, serialize(stored), self.now())

    # ----------------------------------------------------------------- carbons (XEP-0280)

    def _carbon_eligible(self, element: Element) -> bool:
        # §6: chat messages (and normal ones with a body), minus private ones and no-copy hints
        kind = element.get("type", "normal")
        if kind not in ("chat", "normal"):
            return False
        if kind == "normal" and element.find("body") is None:
            return False
        return element.find("private", NS_CARBONS) is None and element.find("no-copy", NS_HINTS) is None

    def _sent_carbons(self, session: Session, element: Element) -> None:
        if not self._carbon_eligible(element):
            return
        others = [s for s in self.resources(session.bare) if s is not session and s.carbons]
        for other in others:
            other.send(self._wrap("sent", element, other))

    def _received_carbons(self, element: Element, bare: str, got: set[Session]) -> None:
        if not self._carbon_eligible(element):
            return
        for other in self.resources(bare):
            if other.carbons and other not in got:
                other.send(self._wrap("received", element, other))

    def _wrap(self, kind: str, element: Element, to: Session) -> bytes:
        forwarded = Element("forwarded", NS_FORWARD, {}, [element.copy()])
        wrapper = Element(kind, NS_CARBONS, {}, [forwarded])
        attrs = {"from": to.bare, "to": to.full, "type": element.get("type", "normal") or "normal"}
        return serialize(Element("message", NS_CLIENT, attrs, [wrapper]))

    # ----------------------------------------------------------------- presence (RFC 6121 §4, §3)

    async def _outbound_presence(self, session: Session, element: Element, to: JID | None) -> None:
        kind = element.get("type")
        if kind in ("subscribe", "subscribed", "unsubscribe", "unsubscribed"):
            if to is None or (not to.local and to.domain not in self.component_domains):
                return
            await self._outbound_subscription(session, kind, to.bare)
            return
        if kind == "probe":
            return  # clients do not probe (§4.3); servers do
        if kind not in (None, "unavailable", "error"):
            self._bounce(session, element, "bad-request")
            return
        if kind == "error":
            if to is not None and to.domain == self.domain:
                self._deliver_presence(to, session.jid, serialize(element))
            return
        if to is not None and to != session.jid.bare and to.local:
            self._directed(session, element, to)
            return
        # Broadcast presence (§4.2, §4.4, §4.5)
        if kind is None:
            priority = element.find("priority")
            try:
                session.priority = max(-128, min(127, int(priority.text))) if priority is not None else 0
            except ValueError:
                session.priority = 0
            first = not session.available
            session.available = True
            stamped = element.copy()
            stamped.attrs.pop("to", None)
            session.presence = stamped
            self._broadcast_presence(session, stamped)
            if first:
                self._probe_contacts(session)
                if not session.initial_done:
                    session.initial_done = True
                    await self._deliver_pending(session)
            self.pep.presence_caps(session, element)
        else:
            session.available = False
            session.presence = None
            stamped = element.copy()
            stamped.attrs.pop("to", None)
            self._broadcast_presence(session, stamped)
            session.directed.clear()

    def _broadcast_presence(self, session: Session, presence: Element) -> None:
        """To subscribers (from/both), the user's other resources and directed-presence targets."""
        sender = session.jid
        for item in self.storage.roster(session.bare):
            if item.from_ and not self._contact_blocked(session.bare, item.contact):
                self.deliver_presence_to(item.contact, sender, presence)
        for other in self.resources(session.bare):
            if other is not session:
                self._send_presence(other, sender, presence)
        for target in list(session.directed):
            self.deliver_presence_to(target, sender, presence)
        # Echo to the sender itself (§4.2.2 and §4.5.2: "to the user's other resources"
        # and, by common practice, back to the sender)
        if presence.get("type") != "unavailable":
            self._send_presence(session, sender, presence)

    def _contact_blocked(self, owner: str, contact: str) -> bool:
        try:
            return self.blocks(owner, JID.parse(contact))
        except JIDError:
            return False

    def deliver_presence_to(self, contact: str, sender: JID, presence: Element) -> None:
        try:
            jid = JID.parse(contact)
        except JIDError:
            return
        if jid.domain != self.domain:
            component = self.components.get(jid.domain)
            if component is not None:
                out = presence.copy()
                out.attrs.update({"from": str(sender), "to": contact})
                component.deliver(serialize(out))
            return  # other domains: federation, later
        if jid.resource:
            target = self.session(jid)
            if target is not None:
                self._send_presence(target, sender, presence)
            return
        if self.blocks(str(jid.bare), sender):
            return
        for target in self.resources(str(jid.bare)):
            self._send_presence(target, sender, presence)

    def _send_presence(self, target: Session, sender: JID, presence: Element) -> None:
        out = presence.copy()
        out.attrs["from"] = str(sender)
        out.attrs["to"] = target.full
        target.send_presence(str(sender), serialize(out))

    def _deliver_presence(self, to: JID, sender: JID, data: bytes) -> None:
        targets = [self.session(to)] if to.resource else self.resources(str(to.bare))
        for target in targets:
            if target is not None:
                target.send_presence(str(sender), data)

    def _directed(self, session: Session, element: Element, to: JID) -> None:
        """§4.6: directed presence, remembered so that unavailable follows it."""
        if to.domain != self.domain:
            return
        if self.blocks(session.bare, to):
            return
        if element.get("type") == "unavailable":
            session.directed.discard(str(to))
        else:
            session.directed.add(str(to))
        self.deliver_presence_to(str(to), session.jid, element)

    def _probe_contacts(self, session: Session) -> None:
        """§4.3: on initial presence, the current presence of every contact we subscribe to."""
        for item in self.storage.roster(session.bare):
            if not item.to:
                continue
            try:
                contact = JID.parse(item.contact)
            except JIDError:
                continue
            component = self.components.get(contact.domain)
            if component is not None:
                attrs = {"type": "probe", "from": session.bare, "to": item.contact}
                component.deliver(serialize(Element("presence", NS_CLIENT, attrs)))
                continue
            self._answer_probe(contact, session)

    def _answer_probe(self, contact: JID, session: Session) -> None:
        for other in self.resources(str(contact.bare)):
            if other.available and other.presence is not None:
                self._send_presence(session, other.jid, other.presence)

    async def _deliver_pending(self, session: Session) -> None:
        """Pending subscription requests (§3.1.3) and offline messages (§8.5.2.1.1)."""
        for item in self.storage.roster(session.bare):
            if item.pending_in:
                attrs = {"type": "subscribe", "from": item.contact, "to": session.bare}
                session.send(serialize(Element("presence", NS_CLIENT, attrs)))
        stored = self.storage.offline(session.bare)
        if stored:
            for _, data, _ in stored:
                session.send(data)
            await self.storage.delete_offline(session.bare, stored[-1][0])

    async def undelivered(self, session: Session, stanzas: list[bytes]) -> None:
        """Stanzas sent to an ended session that its client never acknowledged
        (XEP-0198 §5): messages go to the account's other resources or to
        offline storage, requests get an error; call after ``unbind``."""
        for element in parse_stanzas(b"".join(stanzas)):
            kind = element.get("type", "normal") or "normal"
            if element.name == "message":
                sender_text = element.get("from")
                if kind not in _STORABLE or element.find("body") is None or sender_text is None:
                    continue  # carbons, receipts, chat states: not worth a second delivery
                try:
                    sender = JID.parse(sender_text)
                except JIDError:
                    continue
                element.attrs["to"] = session.bare
                await self.deliver_message(element, None, session.jid.bare, sender, None)
            elif element.name == "iq" and kind in ("get", "set"):
                sender_text = element.get("from", "") or ""
                try:
                    origin = self.session(JID.parse(sender_text))
                except JIDError:
                    origin = None
                if origin is not None:
                    origin.send(serialize(error_reply(element, "service-unavailable")))

    # ----------------------------------------------------------------- subscriptions (§3, App. A)

    async def _outbound_subscription(self, session: Session, kind: str, contact: JID) -> None:
        user = session.bare
        target = str(contact)
        component = self.components.get(contact.domain)
        if contact.domain != self.domain and component is None:
            return  # federation: later
        async with self._roster_lock:
            item = self.storage.roster_item(user, target) or RosterItem(target)
            new = item
            if kind == "subscribe":
                if not item.to:
                    new = item.change(ask=True, listed=True)
            elif kind == "unsubscribe":
                new = item.change(ask=False, subscription="from" if item.from_ else "none")
            elif kind == "subscribed":
                if item.pending_in:
                    new = item.change(
                        pending_in=False, subscription="both" if item.to else "from", listed=True
                    )
                elif not item.from_:
                    # §3.4.2: a pre-approval; a contact not yet in the roster is added
                    new = item.change(approved=True, listed=True)
            else:  # unsubscribed
                new = item.change(pending_in=False, approved=False, subscription="to" if item.to else "none")
            if new != item:
                await self._save(user, new)
            # The contact's side (inbound processing at the contact's server, §3.1.3...)
            stanza_from = session.jid.bare
            if kind == "subscribed" and not item.pending_in:
                return  # a pre-approval is not routed
            if component is not None:
                attrs = {"type": kind, "from": str(stanza_from), "to": target}
                component.deliver(serialize(Element("presence", NS_CLIENT, attrs)))
                delivered = True
            else:
                delivered = await self._inbound_subscription(kind, stanza_from, contact)
        if kind == "subscribed" and delivered:
            # §3.1.5: the contact's presence is sent to the new subscriber
            for other in self.resources(user):
                if other.available and other.presence is not None:
                    self.deliver_presence_to(target, other.jid, other.presence)
        elif kind == "unsubscribed":
            unavailable = Element("presence", NS_CLIENT, {"type": "unavailable"})
            for other in self.resources(user):
                self.deliver_presence_to(target, other.jid, unavailable)

    async def _inbound_subscription(self, kind: str, sender: JID, to: JID) -> bool:
        """Process ``kind`` from ``sender`` at the local account ``to``; whether it was delivered."""
        component = self.components.get(to.domain)
        if component is not None:  # an answer made for a user, to a component contact
            attrs = {"type": kind, "from": str(sender), "to": str(to)}
            component.deliver(serialize(Element("presence", NS_CLIENT, attrs)))
            return True
        user = str(to)
        if not self.has_account(user) or self.blocks(user, sender):
            return False
        contact = str(sender)
        item = self.storage.roster_item(user, contact) or RosterItem(contact)
        stanza = serialize(Element("presence", NS_CLIENT, {"type": kind, "from": contact, "to": user}))
        if kind == "subscribe":
            if item.from_:
                # §3.1.3: already subscribed: answer on the user's behalf
                await self._inbound_subscription("subscribed", to, sender)
                return False
            if item.approved:
                new = item.change(approved=False, subscription="both" if item.to else "from", listed=True)
                await self._save(user, new)
                await self._inbound_subscription("subscribed", to, sender)
                return False
            if not item.pending_in:
                await self._save(user, item.change(pending_in=True), push=False)
            for target in self.resources(user):
                if target.available:
                    target.send(stanza)
            return True
        if kind == "subscribed":
            if not item.ask:
                return False  # §3.1.6: not requested: ignore
            new = item.change(ask=False, subscription="both" if item.from_ else "to", listed=True)
            await self._save(user, new)
        elif kind == "unsubscribe":
            if not item.from_ and not item.pending_in:
                return False
            await self._save(user, item.change(pending_in=False, subscription="to" if item.to else "none"))
            if item.from_:
                # §3.3.3: the former subscriber stops seeing the user: unavailable
                # from each of the user's available resources
                unavailable = Element("presence", NS_CLIENT, {"type": "unavailable"})
                for other in self.resources(user):
                    if other.available:
                        self.deliver_presence_to(str(sender), other.jid, unavailable)
        elif kind == "unsubscribed":
            if not item.to and not item.ask:
                return False
            await self._save(user, item.change(ask=False, subscription="from" if item.from_ else "none"))
        for target in self.resources(user):
            if target.available:
                target.send(stanza)
        if kind == "subscribed":
            # the new subscriber's resources get the contact's current presence
            for target in self.resources(user):
                self._answer_probe(sender, target)
        return True

    async def _save(self, user: str, item: RosterItem, *, push: bool = True) -> None:
        version = await self.storage.put_roster_item(user, item)
        if push and item.listed:
            self.push_roster(user, item, version)

    def push_roster(self, user: str, item: RosterItem | str, version: int) -> None:
        """§2.1.6: a roster push to every interested resource."""
        if isinstance(item, str):
            element = Element("item", NS_ROSTER, {"jid": item, "subscription": "remove"})
        else:
            element = roster_element(item)
        for target in self.resources(user):
            if target.interested:
                attrs = {"type": "set", "id": "push" + self.token(), "to": target.full}
                query = Element("query", NS_ROSTER, {"ver": str(version)}, [element])
                target.send(serialize(Element("iq", NS_CLIENT, attrs, [query])))

    async def remove_roster_item(self, session: Session, contact: str) -> bool:
        """§2.5: remove, cancelling subscriptions both ways."""
        user = session.bare
        async with self._roster_lock:
            item = self.storage.roster_item(user, contact)
            if item is None or not item.listed:
                return False
            version = await self.storage.delete_roster_item(user, contact)
            self.push_roster(user, contact, version)
            try:
                jid = JID.parse(contact)
            except JIDError:
                return True
            if jid.domain == self.domain and jid.local:
                if item.to or item.ask:
                    await self._inbound_subscription("unsubscribe", session.jid.bare, jid)
                if item.from_ or item.pending_in:
                    await self._inbound_subscription("unsubscribed", session.jid.bare, jid)
        if item.from_:
            unavailable = Element("presence", NS_CLIENT, {"type": "unavailable"})
            for other in self.resources(user):
                self.deliver_presence_to(contact, other.jid, unavailable)
        return True

    async def set_roster_item(self, session: Session, item: Element) -> str | None:
        """§2.3: add or update; returns an error condition or None."""
        jid_text = item.get("jid")
        if jid_text is None:
            return "bad-request"
        try:
            contact = JID.parse(jid_text)
        except JIDError:
            return "jid-malformed"
        if contact.resource:
            return "bad-request"
        groups = [g.text for g in item.elements() if g.name == "group"]
        if len(set(groups)) != len(groups) or any(not g for g in groups):
            return "bad-request"
        name = item.get("name", "") or ""
        user = session.bare
        async with self._roster_lock:
            old = self.storage.roster_item(user, str(contact)) or RosterItem(str(contact))
            await self._save(user, old.change(name=name, groups=tuple(groups), listed=True))
        return None

    # ----------------------------------------------------------------- iq (§8.2.3)

    async def _outbound_iq(self, session: Session, element: Element, to: JID | None) -> None:
        kind = element.get("type")
        if kind not in ("get", "set", "result", "error") or element.get("id") is None:
            self._bounce(session, element, "bad-request")
            return
        children = list(element.elements())
        if kind in ("get", "set") and len(children) != 1:
            self._bounce(session, element, "bad-request")
            return
        services = self.services
        assert services is not None
        if to is None or to == session.jid.bare or (to.domain == self.domain and not to.local):
            if kind in ("result", "error"):
                self.pep.disco_answer(session, element)  # or an answer to our ping
                return
            await services.handle(session, element, to)
            return
        if to.domain != self.domain:
            self.route_remote(session, element)
            return
        bare = str(to.bare)
        if self.blocks(session.bare, to):
            self._bounce(session, element, "not-acceptable", Element("blocked", NS_BLOCKING_ERRORS))
            return
        if not self.has_account(bare) or self.blocks(bare, session.jid):
            self._bounce(session, element, "service-unavailable")
            return
        if to.resource:
            target = self.session(to)
            if target is None:
                self._bounce(session, element, "service-unavailable")
                return
            target.flush_held()
            target.send(serialize(element))
            return
        if kind in ("result", "error"):
            return
        # An iq to another user's bare JID is answered by the server on their behalf (§8.5.2.1.3)
        await services.handle_for_user(session, element, to)


def roster_element(item: RosterItem) -> Element:
    attrs = {"jid": item.contact, "subscription": item.subscription}
    if item.name:
        attrs["name"] = item.name
    if item.ask:
        attrs["ask"] = "subscribe"
    if item.approved:
        attrs["approved"] = "true"
    element = Element("item", NS_ROSTER, attrs)
    for group in item.groups:
        element.add(Element("group", NS_ROSTER, {}, [group]))
    return element


class Services(Protocol):
    async def handle(self, session: Session, iq: Element, to: JID | None) -> None: ...

    async def handle_for_user(self, session: Session, iq: Element, to: JID) -> None: ...
