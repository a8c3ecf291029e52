"""What the server answers itself: iq requests to the domain or to an account's bare JID.

* RFC 6121 §2: roster get (with §2.6 versioning: an unchanged version gets an
  empty result and the pushes that follow) and set/remove;
* XEP-0199 ping; the RFC 3921 session iq of old clients (nothing to do);
* XEP-0030 disco#info/#items with XEP-0115 caps computed from the same
  identity and features; XEP-0092 software version (``--version-iq``);
* XEP-0054 vcard-temp (own get/set, others' get), bounded in size;
* XEP-0191 blocking command (get, block, unblock with pushes);
* XEP-0280 carbons enable/disable;
* XEP-0077 for the session's own account: password change, cancellation;
* XEP-0163 PEP at the account's bare JID (``pep``);
* XEP-0049 private XML storage, bounded per account.

Anything else: ``service-unavailable`` (RFC 6120 §8.4), never silence.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

from .c2s import NS_CLIENT, NS_REGISTER, NS_SESSION
from .im import NS_BLOCKING, NS_CARBONS, NS_ROSTER, IMServer, Session, roster_element
from .jid import JID, JIDError
from .pep import ACCOUNT_FEATURES as PEP_FEATURES
from .pep import NS_PUBSUB, NS_PUBSUB_OWNER
from .register import Registration
from .stanzas import error_reply, iq_result, parse_stanzas
from .xmlstream import Element, serialize

__all__ = ["FEATURES", "NS_DISCO_INFO", "NS_DISCO_ITEMS", "ServerServices", "caps_ver"]

NS_PING = "urn:xmpp:ping"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_VERSION = "jabber:iq:version"
NS_VCARD = "vcard-temp"
NS_CAPS = "http://jabber.org/protocol/caps"
NS_PRIVATE = "jabber:iq:private"
#: server features (XEP-0030 §3.1), sorted as XEP-0115 §5.1 hashes them
FEATURES = (
    NS_DISCO_INFO,
    NS_DISCO_ITEMS,
    NS_CARBONS,
    "msgoffline",
    NS_PING,
    NS_BLOCKING,
    NS_VCARD,
    NS_VERSION,
    "urn:xmpp:csi:0",
    NS_REGISTER,
    NS_PRIVATE,
)
IDENTITY = ("server", "im", "")
ACCOUNT_FEATURES = (NS_DISCO_INFO, NS_VCARD, *PEP_FEATURES)
#: vCards carry avatars; Prosody limits a vCard to 64 KiB... ours fits one stanza
MAX_VCARD = 64 * 1024
#: XEP-0049 private XML kept per account, all namespaces together
MAX_PRIVATE = 256 * 1024


def caps_ver(identity: tuple[str, str, str], features: tuple[str, ...]) -> str:
    """XEP-0115 §5.1 verification string (SHA-1, base64)."""
    category, kind, name = identity
    text = f"{category}/{kind}//{name}<" + "".join(f"{f}<" for f in sorted(features))
    return base64.b64encode(hashlib.sha1(text.encode("utf-8")).digest()).decode("ascii")


class ServerServices:
    def __init__(
        self,
        im: IMServer,
        *,
        version: str | None,
        registration: Registration,
        account_changed: Callable[[Session | None], None],
    ) -> None:
        self.im = im
        self.version = version
        self.registration = registration
        #: after a password change (the session that made it keeps going) or a deletion
        self.account_changed = account_changed
        features = FEATURES if version is not None else tuple(f for f in FEATURES if f != NS_VERSION)
        self.features = tuple(sorted(features))
        self.caps_node = "https://github.com/appliances/xmpp"
        self.caps = caps_ver(IDENTITY, self.features)

    def caps_feature(self) -> bytes:
        """The stream feature announcing our caps (XEP-0115 §6.3)."""
        return f"<c xmlns='{NS_CAPS}' hash='sha-1' node='{self.caps_node}' ver='{self.caps}'/>".encode()

    def _reply(self, session: Session, iq: Element, *children: Element) -> None:
        session.send(serialize(iq_result(iq, *children)))

    def _error(self, session: Session, iq: Element, condition: str) -> None:
        session.send(serialize(error_reply(iq, condition)))

    async def handle(self, session: Session, iq: Element, to: JID | None) -> None:
        child = iq.first()
        assert child is not None
        kind = iq.get("type")
        ns, name = child.ns, child.name
        own = to is not None and to.local != ""
        if ns == NS_PING and kind == "get":
            self._reply(session, iq)
        elif ns == NS_SESSION and kind == "set" and not own:
            self._reply(session, iq)  # RFC 3921 §3 session establishment: a no-op for old clients
        elif ns == NS_ROSTER and name == "query" and (to is None or own):
            await self._roster(session, iq, child)
        elif ns == NS_DISCO_INFO and kind == "get":
            self._disco_info(session, iq, child, account=own)
        elif ns == NS_DISCO_ITEMS and kind == "get":
            self._reply(session, iq, Element("query", NS_DISCO_ITEMS))
        elif ns == NS_VERSION and kind == "get" and self.version is not None and not own:
            info = Element("query", NS_VERSION)
            info.add(Element("name", NS_VERSION, {}, ["appliances.xmpp"]))
            info.add(Element("version", NS_VERSION, {}, [self.version]))
            self._reply(session, iq, info)
        elif ns == NS_VCARD and name == "vCard" and (to is None or own):
            await self._vcard(session, iq, child)
        elif ns == NS_BLOCKING and (to is None or own):
            await self._blocking(session, iq, child)
        elif ns == NS_CARBONS and kind == "set" and name in ("enable", "disable"):
            session.carbons = name == "enable"
            self._reply(session, iq)
        elif ns in (NS_PUBSUB, NS_PUBSUB_OWNER) and name == "pubsub" and (to is None or own):
            await self.im.pep.handle(session, iq, session.bare)
        elif ns == NS_PRIVATE and name == "query" and (to is None or own):
            await self._private(session, iq, child)
        elif ns == NS_REGISTER and name == "query" and not own:
            reply, change = await self.registration.from_session(iq, session.bare)
            session.send(reply)
            if change is not None:
                self.account_changed(session if change == "password" else None)
        else:
            self._error(session, iq, "service-unavailable")

    async def handle_for_user(self, session: Session, iq: Element, to: JID) -> None:
        child = iq.first()
        assert child is not None
        if child.ns == NS_VCARD and iq.get("type") == "get":
            self._reply(session, iq, self._stored_vcard(str(to)))
        elif child.ns == NS_DISCO_INFO and iq.get("type") == "get":
            self._disco_info(session, iq, child, account=True)
        elif child.ns in (NS_PUBSUB, NS_PUBSUB_OWNER) and child.name == "pubsub":
            await self.im.pep.handle(session, iq, str(to))
        elif child.ns == NS_PRIVATE:
            self._error(session, iq, "forbidden")  # XEP-0049 §3: one's own data only
        else:
            self._error(session, iq, "service-unavailable")

    # ----------------------------------------------------------------- roster (RFC 6121 §2)

    async def _roster(self, session: Session, iq: Element, query: Element) -> None:
        storage = self.im.storage
        if iq.get("type") == "get":
            session.interested = True
            version = storage.roster_version(session.bare)
            asked = query.get("ver")
            if asked is not None and asked == str(version):
                self._reply(session, iq)  # §2.6.3: up to date; pushes follow
                return
            result = Element("query", NS_ROSTER, {"ver": str(version)})
            for item in storage.roster(session.bare):
                if item.listed:
                    result.add(roster_element(item))
            self._reply(session, iq, result)
            return
        items = list(query.elements())
        if len(items) != 1 or items[0].name != "item":
            self._error(session, iq, "bad-request")  # §2.3.3
            return
        wanted = items[0]
        if wanted.get("subscription") == "remove":
            contact = wanted.get("jid", "") or ""
            if not await self.im.remove_roster_item(session, contact):
                self._error(session, iq, "item-not-found")
                return
            self._reply(session, iq)
            return
        error = await self.im.set_roster_item(session, wanted)
        if error is not None:
            self._error(session, iq, error)
            return
        self._reply(session, iq)

    # ----------------------------------------------------------------- disco (XEP-0030)

    def _disco_info(self, session: Session, iq: Element, query: Element, *, account: bool) -> None:
        node = query.get("node")
        result = Element("query", NS_DISCO_INFO, {"node": node} if node else {})
        if account:
            result.add(Element("identity", NS_DISCO_INFO, {"category": "account", "type": "registered"}))
            result.add(Element("identity", NS_DISCO_INFO, {"category": "pubsub", "type": "pep"}))
            features: tuple[str, ...] = ACCOUNT_FEATURES
        else:
            if node is not None and node != f"{self.caps_node}#{self.caps}":
                self._error(session, iq, "item-not-found")
                return
            result.add(Element("identity", NS_DISCO_INFO, {"category": "server", "type": "im"}))
            features = self.features
        for feature in sorted(features):
            result.add(Element("feature", NS_DISCO_INFO, {"var": feature}))
        self._reply(session, iq, result)

    # ----------------------------------------------------------------- vCard (XEP-0054)

    def _stored_vcard(self, bare: str) -> Element:
        data = self.im.storage.vcard(bare)
        stored = _parse_one(data) if data is not None else None
        return stored if stored is not None else Element("vCard", NS_VCARD)

    async def _vcard(self, session: Session, iq: Element, card: Element) -> None:
        if iq.get("type") == "get":
            self._reply(session, iq, self._stored_vcard(session.bare))
            return
        data = serialize(card, parent_ns="")
        if len(data) > MAX_VCARD:
            self._error(session, iq, "not-acceptable")
            return
        await self.im.storage.set_vcard(session.bare, data)
        self._reply(session, iq)

    # ----------------------------------------------------------------- private XML (XEP-0049)

    async def _private(self, session: Session, iq: Element, query: Element) -> None:
        """One element per namespace, stored and given back as it was (§3)."""
        children = list(query.elements())
        if len(children) != 1 or children[0].ns in ("", NS_CLIENT, NS_PRIVATE):
            self._error(session, iq, "not-acceptable")
            return
        wanted = children[0]
        storage = self.im.storage
        if iq.get("type") == "get":
            data = storage.private(session.bare, wanted.ns)
            stored = _parse_one(data) if data is not None else None
            self._reply(session, iq, Element("query", NS_PRIVATE, {}, [stored or wanted]))
            return
        data = serialize(wanted, parent_ns="")
        old = storage.private(session.bare, wanted.ns)
        if storage.private_size(session.bare) - len(old or b"") + len(data) > MAX_PRIVATE:
            self._error(session, iq, "not-acceptable")
            return
        await storage.set_private(session.bare, wanted.ns, data)
        self._reply(session, iq)

    # ----------------------------------------------------------------- blocking (XEP-0191)

    async def _blocking(self, session: Session, iq: Element, child: Element) -> None:
        im = self.im
        user = session.bare
        if iq.get("type") == "get" and child.name == "blocklist":
            session.blocklist_requested = True
            result = Element("blocklist", NS_BLOCKING)
            for blocked in sorted(im.blocklist(user)):
                result.add(Element("item", NS_BLOCKING, {"jid": blocked}))
            self._reply(session, iq, result)
            return
        if iq.get("type") != "set" or child.name not in ("block", "unblock"):
            self._error(session, iq, "bad-request")
            return
        jids: list[str] = []
        for item in child.elements():
            try:
                jids.append(str(JID.parse(item.get("jid", "") or "")))
            except JIDError:
                self._error(session, iq, "jid-malformed")
                return
        if child.name == "block":
            if not jids:
                self._error(session, iq, "bad-request")  # §3.3: at least one item
                return
            await im.storage.block(user, jids)
        else:
            await im.storage.unblock(user, jids or None)
        im.forget_blocklist(user)
        self._reply(session, iq)
        if child.name == "block":
            # §3.3: the blocked entities stop seeing us
            unavailable = Element("presence", NS_CLIENT, {"type": "unavailable"})
            for other in im.resources(user):
                if other.available:
                    for jid in jids:
                        im.deliver_presence_to(jid, other.jid, unavailable)
        push = Element(child.name, NS_BLOCKING, {}, [Element("item", NS_BLOCKING, {"jid": j}) for j in jids])
        for other in im.resources(user):
            if other.blocklist_requested:
                attrs = {"type": "set", "id": "push" + im.token(), "to": other.full}
                other.send(serialize(Element("iq", NS_CLIENT, attrs, [push])))


def _parse_one(data: bytes) -> Element | None:
    """An element we stored (serialized with its namespace declared)."""
    found = parse_stanzas(data)
    return found[0] if found else None
