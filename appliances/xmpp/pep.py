"""XEP-0163 Personal Eventing Protocol: a pubsub service (the XEP-0060 subset
PEP needs) at every account's bare JID, for avatars, bookmarks, OMEMO keys,
nicknames and the like.

* Publish to one's own account (``<publish node>``): the node is created on
  first use (access model ``presence``, one item) or with the
  ``publish-options`` given (``pubsub#access_model`` open/presence/whitelist,
  ``pubsub#max_items`` up to ``MAX_ITEMS`` or ``max``); options that do not
  match an existing node's configuration are ``conflict`` +
  ``precondition-not-met`` (XEP-0060 §7.1.5).  Items are stored (the store,
  durable before the result) and the newest ``max_items`` kept.
* Retrieve (``<items>``), from one's own account or a contact's, by the node's
  access model: ``open`` anyone, ``presence`` the owner and those subscribed
  to the owner's presence, ``whitelist`` the owner only.  Retract, purge,
  delete, and node configuration (get/set of the same fields) by the owner.
* Notifications (XEP-0163 §4.3): ``headline`` messages carrying
  ``pubsub#event`` to the owner's resources and to contacts that receive
  the owner's presence, each only if its client said ``NODE+notify`` in
  its entity capabilities (XEP-0115).  A client's caps are learnt by asking
  it for disco#info once per verification string; the answer is cached for
  everyone only if it hashes to the string announced (§5.4).  When a
  session's interests become known, it gets the last item of every node it
  may see and wants (its own account's and its contacts').
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .stanzas import error_reply, iq_result
from .storage import PepNode, Storage
from .xmlstream import Element, escape_attr, serialize

if TYPE_CHECKING:
    from .im import IMServer, Session

__all__ = [
    "ACCOUNT_FEATURES",
    "NS_PUBSUB",
    "NS_PUBSUB_EVENT",
    "NS_PUBSUB_OWNER",
    "Caps",
    "PersonalEventing",
    "caps_hash",
]

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_PUBSUB_EVENT = NS_PUBSUB + "#event"
NS_PUBSUB_OWNER = NS_PUBSUB + "#owner"
NS_PUBSUB_ERRORS = NS_PUBSUB + "#errors"
NS_DATA = "jabber:x:data"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_CAPS = "http://jabber.org/protocol/caps"
#: what an account's bare JID says it does (XEP-0163 §6.1, XEP-0060 §10)
ACCOUNT_FEATURES = tuple(
    NS_PUBSUB + suffix
    for suffix in (
        "",
        "#access-open",
        "#access-presence",
        "#access-whitelist",
        "#auto-create",
        "#config-node",
        "#delete-items",
        "#delete-nodes",
        "#filtered-notifications",
        "#last-published",
        "#persistent-items",
        "#publish",
        "#publish-options",
        "#purge-nodes",
        "#retract-items",
        "#retrieve-items",
    )
)
ACCESS_MODELS = ("open", "presence", "whitelist")
MAX_ITEMS = 1000
MAX_NODES = 1000
MAX_CAPS = 4096


def caps_hash(identities: Iterable[tuple[str, str, str, str]], features: Iterable[str], forms: bytes) -> str:
    """XEP-0115 §5.1 SHA-1 verification string; ``forms``: the extended info
    part, already in its §5.4 order (empty when there are none)."""
    text = "".join(f"{c}/{t}/{lang}/{name}<" for c, t, lang, name in sorted(identities))
    text += "".join(f"{f}<" for f in sorted(features))
    data = text.encode("utf-8") + forms
    return base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")


def _forms_part(query: Element) -> bytes:
    out: list[tuple[str, str]] = []
    for form in query.elements():
        if form.name != "x" or form.ns != NS_DATA:
            continue
        fields: dict[str, list[str]] = {}
        for field in form.elements():
            if field.name == "field" and field.get("var"):
                fields[field.get("var") or ""] = sorted(v.text for v in field.elements() if v.name == "value")
        form_type = fields.pop("FORM_TYPE", [""])
        text = f"{form_type[0] if form_type else ''}<"
        for var in sorted(fields):
            text += f"{var}<" + "".join(f"{value}<" for value in fields[var])
        out.append((form_type[0] if form_type else "", text))
    return "".join(text for _, text in sorted(out)).encode("utf-8")


@dataclass
class Caps:
    """What one client said it is (XEP-0115) and, once learnt, its features."""

    node: str
    ver: str
    features: frozenset[str] | None = None


#: a client that announced no caps: no interests
NO_CAPS = Caps("", "", frozenset())


class PersonalEventing:
    def __init__(self, im: IMServer, storage: Storage) -> None:
        self.im = im
        self.storage = storage
        #: verified verification strings to features, shared by all sessions
        self.known: dict[str, frozenset[str]] = {}
        #: disco#info queries in flight: iq id to the session asked
        self.asking: dict[str, Session] = {}

    # ----------------------------------------------------------------- caps

    def presence_caps(self, session: Session, presence: Element) -> None:
        """An available presence of ``session``: learn its interests if new."""
        c = presence.find("c", NS_CAPS)
        if c is None or c.get("hash") != "sha-1":
            if session.caps is None:
                session.caps = NO_CAPS  # shared: never changed
                self.interests_known(session)
            return
        ver = c.get("ver", "") or ""
        node = c.get("node", "") or ""
        if session.caps is not None and session.caps.ver == ver:
            return
        session.caps = Caps(node, ver, self.known.get(ver))
        if session.caps.features is not None:
            self.interests_known(session)
            return
        query_id = "caps" + self.im.token()
        self.asking[query_id] = session
        attrs = {"type": "get", "id": query_id, "from": self.im.domain, "to": session.full}
        query = Element("query", NS_DISCO_INFO, {"node": f"{node}#{ver}"})
        session.send(serialize(Element("iq", "jabber:client", attrs, [query])))

    def disco_answer(self, session: Session, iq: Element) -> bool:
        """The answer to one of our caps queries (True if it was one)."""
        asked = self.asking.pop(iq.get("id", "") or "", None)
        if asked is not session:
            return asked is not None
        caps = session.caps
        if caps is None:
            return True
        query = iq.find("query", NS_DISCO_INFO)
        features: frozenset[str] = frozenset()
        if iq.get("type") == "result" and query is not None:
            identities = [
                (
                    e.get("category", "") or "",
                    e.get("type", "") or "",
                    e.get(_LANG, "") or "",
                    e.get("name", "") or "",
                )
                for e in query.elements()
                if e.name == "identity"
            ]
            features = frozenset(e.get("var", "") or "" for e in query.elements() if e.name == "feature")
            if caps_hash(identities, features, _forms_part(query)) == caps.ver and len(self.known) < MAX_CAPS:
                self.known[caps.ver] = features
        caps.features = features
        self.interests_known(session)
        return True

    def forget(self, session: Session) -> None:
        for query_id in [q for q, s in self.asking.items() if s is session]:
            del self.asking[query_id]

    # ----------------------------------------------------------------- last items

    def interests_known(self, session: Session) -> None:
        """XEP-0163 §4.3.2: the last item of every node the session may see and wants."""
        caps = session.caps
        if caps is None or not caps.features:
            return
        wanted = caps.features
        user = session.bare
        out: list[bytes] = []
        for owner, node, item_id, payload in self.storage.pep_last_items_for(user):
            if node + "+notify" in wanted:
                out.append(self._event(owner, session.full, _items(node, item_id, payload)))
        for data in out:
            session.send(data)

    # ----------------------------------------------------------------- requests

    async def handle(self, session: Session, iq: Element, owner: str) -> None:
        """A pubsub iq to ``owner``'s bare JID (the session's own or another's)."""
        pubsub = iq.first()
        assert pubsub is not None
        kind = iq.get("type")
        own = owner == session.bare
        first = pubsub.first()
        if first is None:
            self._error(session, iq, "bad-request")
            return
        if pubsub.ns == NS_PUBSUB_OWNER:
            if not own:
                self._error(session, iq, "forbidden")
            elif first.name in ("delete", "purge") and kind == "set":
                await self._delete_or_purge(session, iq, first)
            elif first.name == "configure":
                await self._configure(session, iq, first)
            else:
                self._error(session, iq, "feature-not-implemented")
            return
        if first.name == "items" and kind == "get":
            self._items(session, iq, first, owner)
        elif not own and kind == "set":
            self._error(session, iq, "forbidden")
        elif first.name == "publish" and kind == "set":
            await self._publish(session, iq, pubsub, first)
        elif first.name == "retract" and kind == "set":
            await self._retract(session, iq, first)
        else:
            self._error(session, iq, "feature-not-implemented")

    def _error(self, session: Session, iq: Element, condition: str, specific: str = "") -> None:
        extra = Element(specific, NS_PUBSUB_ERRORS) if specific else None
        session.send(serialize(error_reply(iq, condition, extra=extra)))

    def _may_see(self, node: PepNode, owner: str, who: str) -> bool:
        if who == owner or node.access == "open":
            return True
        if node.access == "presence":
            item = self.storage.roster_item(owner, who)
            return item is not None and item.from_
        return False

    def _items(self, session: Session, iq: Element, request: Element, owner: str) -> None:
        name = request.get("node") or ""
        node = self.storage.pep_node(owner, name)
        if node is None:
            self._error(session, iq, "item-not-found")
            return
        if not self._may_see(node, owner, session.bare):
            specific = "presence-subscription-required" if node.access == "presence" else "closed-node"
            self._error(session, iq, "not-authorized", specific)
            return
        ids = [e.get("id", "") or "" for e in request.elements() if e.name == "item"]
        limit_text = request.get("max_items") or ""
        limit = int(limit_text) if limit_text.isdigit() else None
        items = self.storage.pep_items(owner, name, ids or None, limit)
        body = "".join(f"<item id='{escape_attr(i)}'>" + p.decode() + "</item>" for i, p in items)
        head = _result_head(iq, owner)
        items_xml = f"<items node='{escape_attr(name)}'>{body}</items>"
        session.send((head + f"<pubsub xmlns='{NS_PUBSUB}'>{items_xml}</pubsub></iq>").encode())

    async def _publish(self, session: Session, iq: Element, pubsub: Element, publish: Element) -> None:
        name = publish.get("node") or ""
        if not name:
            self._error(session, iq, "bad-request", "nodeid-required")
            return
        items = [e for e in publish.elements() if e.name == "item"]
        if len(items) != 1:
            self._error(session, iq, "bad-request", "item-required" if not items else "invalid-payload")
            return
        payloads = list(items[0].elements())
        if len(payloads) != 1:
            self._error(session, iq, "bad-request", "payload-required" if not payloads else "invalid-payload")
            return
        options = _form_values(pubsub.find("publish-options"), "publish-options")
        if options is None:
            self._error(session, iq, "bad-request", "invalid-options")
            return
        wanted = _node_config(options)
        if wanted is None:
            self._error(session, iq, "not-acceptable", "unsupported-access-model")
            return
        owner = session.bare
        node = self.storage.pep_node(owner, name)
        if node is None:
            if self.storage.pep_node_count(owner) >= MAX_NODES:
                self._error(session, iq, "not-allowed", "max-nodes-exceeded")
                return
            node = wanted.applied(PepNode(name))
        elif wanted.differs(node):
            self._error(session, iq, "conflict", "precondition-not-met")
            return
        item_id = items[0].get("id") or self.im.token()
        payload = serialize(payloads[0], parent_ns="")
        await self.storage.pep_publish(owner, node, item_id, payload)
        result = Element("pubsub", NS_PUBSUB, {}, [Element("publish", NS_PUBSUB, {"node": name}, [
            Element("item", NS_PUBSUB, {"id": item_id})
        ])])  # fmt: skip
        session.send(serialize(iq_result(iq, result)))
        self._notify(owner, node, _items(name, item_id, payload))

    async def _retract(self, session: Session, iq: Element, retract: Element) -> None:
        name = retract.get("node") or ""
        node = self.storage.pep_node(session.bare, name)
        ids = [e.get("id", "") or "" for e in retract.elements() if e.name == "item"]
        if node is None:
            self._error(session, iq, "item-not-found")
            return
        if len(ids) != 1 or not ids[0]:
            self._error(session, iq, "bad-request", "item-required")
            return
        if not await self.storage.pep_retract(session.bare, name, ids[0]):
            self._error(session, iq, "item-not-found")
            return
        session.send(serialize(iq_result(iq)))
        if retract.get("notify") in ("true", "1"):
            body = f"<items node='{escape_attr(name)}'><retract id='{escape_attr(ids[0])}'/></items>"
            self._notify(session.bare, node, body)

    def _own_node(self, session: Session, iq: Element, request: Element) -> PepNode | None:
        """The session's own node named in ``request`` (else item-not-found sent)."""
        node = self.storage.pep_node(session.bare, request.get("node") or "")
        if node is None:
            self._error(session, iq, "item-not-found")
        return node

    async def _delete_or_purge(self, session: Session, iq: Element, request: Element) -> None:
        """XEP-0060 §8.4 (the node and its items) and §8.5 (its items only)."""
        node = self._own_node(session, iq, request)
        if node is None:
            return
        if request.name == "delete":
            await self.storage.pep_delete_node(session.bare, node.name)
        else:
            await self.storage.pep_purge(session.bare, node.name)
        session.send(serialize(iq_result(iq)))
        self._notify(session.bare, node, f"<{request.name} node='{escape_attr(node.name)}'/>")

    async def _configure(self, session: Session, iq: Element, request: Element) -> None:
        node = self._own_node(session, iq, request)
        if node is None:
            return
        name = node.name
        if iq.get("type") == "get":
            form = Element("x", NS_DATA, {"type": "form"}, [
                _field("FORM_TYPE", NS_PUBSUB + "#node_config", "hidden"),
                _field("pubsub#access_model", node.access, "list-single"),
                _field("pubsub#max_items", str(node.max_items), "text-single"),
            ])  # fmt: skip
            configure = Element("configure", NS_PUBSUB_OWNER, {"node": name}, [form])
            session.send(serialize(iq_result(iq, Element("pubsub", NS_PUBSUB_OWNER, {}, [configure]))))
            return
        values = _form_values(request, "node_config")
        wanted = _node_config(values) if values is not None else None
        if wanted is None:
            self._error(session, iq, "not-acceptable")
            return
        await self.storage.pep_configure(session.bare, wanted.applied(node))
        session.send(serialize(iq_result(iq)))

    # ----------------------------------------------------------------- notifications

    def _notify(self, owner: str, node: PepNode, body: str) -> None:
        want = node.name + "+notify"
        targets = list(self.im.resources(owner))
        if node.access != "whitelist":
            for item in self.storage.roster(owner):
                if item.from_:
                    targets += self.im.resources(item.contact)
        for target in targets:
            caps = target.caps
            if target.available and caps is not None and caps.features and want in caps.features:
                target.send(self._event(owner, target.full, body))

    def _event(self, owner: str, to: str, body: str) -> bytes:
        return (
            f"<message from='{escape_attr(owner)}' to='{escape_attr(to)}' type='headline'"
            f" id='pep{self.im.token()}'><event xmlns='{NS_PUBSUB_EVENT}'>{body}</event></message>"
        ).encode()


_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def _items(node: str, item_id: str, payload: bytes) -> str:
    item = f"<item id='{escape_attr(item_id)}'>{payload.decode()}</item>"
    return f"<items node='{escape_attr(node)}'>{item}</items>"


def _result_head(iq: Element, owner: str) -> str:
    attrs = f" id='{escape_attr(iq.get('id', '') or '')}'"
    if iq.get("from"):
        attrs += f" to='{escape_attr(iq.get('from') or '')}'"
    if iq.get("to"):
        attrs += f" from='{escape_attr(owner)}'"
    return f"<iq type='result'{attrs}>"


def _field(var: str, value: str, kind: str) -> Element:
    return Element("field", NS_DATA, {"var": var, "type": kind}, [Element("value", NS_DATA, {}, [value])])


def _form_values(parent: Element | None, form_type: str) -> dict[str, str] | None:
    """The fields of the x:data form in ``parent`` ({} when there is none), or
    None when the form is of another type."""
    if parent is None:
        return {}
    form = parent.find("x", NS_DATA)
    if form is None:
        return {}
    values: dict[str, str] = {}
    for field in form.elements():
        if field.name == "field" and field.get("var"):
            value = field.find("value", NS_DATA)
            values[field.get("var") or ""] = value.text if value is not None else ""
    kind = values.pop("FORM_TYPE", "")
    if kind and kind != f"{NS_PUBSUB}#{form_type}":
        return None
    return values


@dataclass(frozen=True)
class _Wanted:
    """Node settings a request asks for (None: not mentioned)."""

    access: str | None = None
    max_items: int | None = None

    def differs(self, node: PepNode) -> bool:
        return (self.access is not None and self.access != node.access) or (
            self.max_items is not None and self.max_items != node.max_items
        )

    def applied(self, node: PepNode) -> PepNode:
        return PepNode(
            node.name,
            self.access if self.access is not None else node.access,
            self.max_items if self.max_items is not None else node.max_items,
        )


def _node_config(values: dict[str, str]) -> _Wanted | None:
    """The node settings asked for; None when unsupported."""
    access = values.get("pubsub#access_model")
    if access is not None and access not in ACCESS_MODELS:
        return None
    most = values.get("pubsub#max_items")
    max_items: int | None = None
    if most is not None:
        if most == "max":
            max_items = MAX_ITEMS
        elif most.isdigit() and 1 <= int(most) <= MAX_ITEMS:
            max_items = int(most)
        else:
            return None
    return _Wanted(access, max_items)
