"""RFC 6121 (rosters, subscriptions, presence, message and iq routing) and the
extensions the server answers itself (XEP-0054 vCards, XEP-0092 software
version, XEP-0115 caps, XEP-0352 client state), checked with slixmpp clients
(a real client library) against the whole appliance over loopback.

Where a test says that something did *not* arrive, it first makes everything
in flight arrive: the sender pings the server (a connection's stanzas are
handled in order, each to its end: server.py rule 3), then the receiver pings
it (a connection's outbox is written in order), so whatever was routed to the
receiver is in its queues before its answer is."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from slixmpp import JID
from slixmpp.exceptions import IqError
from slixmpp.types import MessageTypes
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath
from xmpp_helpers import WAIT, Client, add_user, start_xmpp

from runtime.testing.harness import RunningAppliance

NS_STREAMS = "http://etherx.jabber.org/streams"
NS_ROSTER = "jabber:iq:roster"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_CAPS = "http://jabber.org/protocol/caps"
NS_VERSION = "jabber:iq:version"
NS_PING = "urn:xmpp:ping"
NS_PRE_APPROVAL = "urn:xmpp:features:pre-approval"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
SERVER = JID("localhost")


class IMClient(Client):
    """A ``Client`` that also records roster pushes, every subscription stanza
    and the stream features it was offered; it answers XEP-0092 queries (as
    ``client of JID``) and speaks XEP-0054 and XEP-0352."""

    def __init__(self, jid: str, password: str) -> None:
        super().__init__(jid, password)
        self.pushes: asyncio.Queue[Any] = asyncio.Queue()
        self.offered: list[ET.Element] = []
        self.closed = False
        self.add_event_handler("roster_update", self._on_roster)
        self.add_event_handler("presence_unsubscribe", self.subscriptions.put_nowait)
        self.add_event_handler("presence_unsubscribed", self.subscriptions.put_nowait)
        self.register_handler(
            Callback(
                "stream features seen",
                MatchXPath(f"{{{NS_STREAMS}}}features"),
                lambda features: self.offered.append(features.xml),
            )
        )
        self.register_plugin("xep_0054")
        self.register_plugin("xep_0092", pconfig={"software_name": f"client of {jid}"})
        self.register_plugin("xep_0352")

    def _on_roster(self, iq: Any) -> None:
        if iq["type"] == "set":  # a push; results of our gets come here too
            self.pushes.put_nowait(iq)

    async def close(self) -> None:
        self.closed = True
        await super().close()

    def drop(self) -> None:
        """End the TCP connection at once: no ``</stream:stream>``, no TLS close_notify."""
        transport = self.transport
        assert transport is not None
        self.closed = True
        transport.abort()


class Clients:
    """The clients of one test (password: the local part + ``-pw``), closed when it ends."""

    def __init__(self, app: RunningAppliance) -> None:
        self.app = app
        self.all: list[IMClient] = []

    async def login(self, jid: str, *, presence: bool = True) -> IMClient:
        client = IMClient(jid, jid.partition("@")[0] + "-pw")
        self.all.append(client)
        assert await client.login(self.app.address(), presence=presence), f"{jid} could not log in"
        return client

    async def available(self, jid: str, priority: int) -> IMClient:
        """Logged in, initial presence with ``priority`` sent and handled."""
        client = await self.login(jid, presence=False)
        client.send_presence(ppriority=priority)
        await ping(client)
        return client

    async def aclose(self) -> None:
        for client in self.all:
            if not client.closed and client.transport is not None:
                await client.close()


@asynccontextmanager
async def xmpp(state: Path, *users: str, argv: Sequence[str] = ()) -> AsyncIterator[Clients]:
    async with start_xmpp(state, argv) as app:
        for user in users:
            await add_user(app, f"{user}@localhost", f"{user}-pw")
        clients = Clients(app)
        try:
            yield clients
        finally:
            await clients.aclose()


# ----------------------------------------------------------------- helpers


async def ping(*clients: IMClient) -> None:
    """Each client in turn pings the server: what the earlier ones sent has
    been routed before the later ones have their answer."""
    for client in clients:
        await asyncio.wait_for(client.plugin["xep_0199"].ping(SERVER, timeout=WAIT), WAIT)


def drain(queue: asyncio.Queue[Any]) -> list[Any]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def forget(*clients: IMClient) -> None:
    """Drop what the clients received so far (after ``ping``)."""
    for client in clients:
        for queue in (client.messages, client.presences, client.subscriptions, client.pushes):
            drain(queue)


def presences_from(client: IMClient, bare: str) -> list[tuple[str, str]]:
    """(type, status) of what ``client`` received from ``bare``, consumed."""
    return [(str(p["type"]), str(p["status"])) for p in drain(client.presences) if p["from"].bare == bare]


async def request(iq: Any) -> Any:
    """Send an iq, return its result (an error result raises ``IqError``)."""
    return await asyncio.wait_for(iq.send(timeout=WAIT), WAIT)


async def refused(iq: Any) -> str:
    """Send an iq that must be refused: its error condition."""
    with pytest.raises(IqError) as caught:
        await request(iq)
    return str(caught.value.iq["error"]["condition"])


def send(client: IMClient, to: str, kind: MessageTypes, body: str, stanza_id: str = "") -> None:
    message = client.make_message(mto=to, mbody=body, mtype=kind)
    if stanza_id:
        message["id"] = stanza_id
    message.send()


def roster_set(client: IMClient, items: dict[str, dict[str, Any]]) -> Any:
    iq = client.Iq()
    iq["type"] = "set"
    iq["roster"]["items"] = items
    return iq


def roster_get(client: IMClient, ver: str | None = None) -> Any:
    iq = client.Iq()
    iq["type"] = "get"
    iq.enable("roster")
    if ver is not None:
        iq["roster"]["ver"] = ver
    return iq


async def roster_of(client: IMClient) -> dict[str, dict[str, Any]]:
    """The roster as the server has it now (a get without a version)."""
    result = await request(roster_get(client))
    return {str(jid): item for jid, item in result["roster"]["items"].items()}


async def next_push(client: IMClient) -> tuple[str | None, dict[str, dict[str, Any]]]:
    push = await asyncio.wait_for(client.pushes.get(), WAIT)
    return push["roster"]["ver"], {str(jid): item for jid, item in push["roster"]["items"].items()}


async def next_subscription(client: IMClient) -> tuple[str, str]:
    presence = await asyncio.wait_for(client.subscriptions.get(), WAIT)
    return str(presence["type"]), str(presence["from"])


async def subscribe(user: IMClient, contact: IMClient) -> None:
    """``user`` subscribes to ``contact``'s presence and ``contact`` approves (§3.1)."""
    user.send_presence(pto=contact.boundjid.bare, ptype="subscribe")
    assert await next_subscription(contact) == ("subscribe", user.boundjid.bare)
    contact.send_presence(pto=user.boundjid.bare, ptype="subscribed")
    assert await next_subscription(user) == ("subscribed", contact.boundjid.bare)
    await user.presence_from(contact.boundjid.bare)  # §3.1.5: the contact's presence follows


async def contacts(alice: IMClient, bob: IMClient) -> None:
    """A subscription both ways ("both" in both rosters), then a clean slate."""
    await subscribe(alice, bob)
    await subscribe(bob, alice)
    await ping(alice, bob)
    forget(alice, bob)


def item_state(item: dict[str, Any]) -> tuple[str, str, str]:
    return str(item["subscription"]), str(item["ask"]), str(item["approved"])


# ----------------------------------------------------------------- roster (RFC 6121 §2)


async def test_roster_set_is_pushed_to_every_interested_resource(tmp_path: Path) -> None:
    """§2.3: a set is answered and pushed, with its name and groups and a
    version (§2.6), to every resource that asked for the roster (§2.1.6)."""
    async with xmpp(tmp_path, "alice") as clients:
        one = await clients.login("alice@localhost/one")
        two = await clients.login("alice@localhost/two")
        quiet = await clients.login("alice@localhost/quiet", presence=False)  # never asked for it
        await request(roster_set(one, {"bob@localhost": {"name": "Bob", "groups": ["Friends", "Work"]}}))
        versions = set()
        for client in (one, two):
            ver, items = await next_push(client)
            assert ver
            versions.add(ver)
            assert list(items) == ["bob@localhost"]
            bob = items["bob@localhost"]
            assert (bob["name"], sorted(bob["groups"])) == ("Bob", ["Friends", "Work"])
            assert item_state(bob) == ("none", "", "")
        assert len(versions) == 1

        # an update from the other resource, pushed to both
        await request(roster_set(two, {"bob@localhost": {"name": "Robert", "groups": ["Work"]}}))
        for client in (one, two):
            ver, items = await next_push(client)
            assert ver not in versions
            assert (items["bob@localhost"]["name"], items["bob@localhost"]["groups"]) == ("Robert", ["Work"])
        await ping(quiet)
        assert quiet.pushes.empty()

        roster = await roster_of(quiet)
        assert list(roster) == ["bob@localhost"]
        assert (roster["bob@localhost"]["name"], roster["bob@localhost"]["groups"]) == ("Robert", ["Work"])


async def test_roster_remove_cancels_the_subscriptions_both_ways(tmp_path: Path) -> None:
    """§2.5: a removal is pushed as subscription='remove' and the server sends
    the contact unsubscribe and unsubscribed (§2.5.2), so presence stops both
    ways: the contact gets our unavailable (§3.2.2), we get the contact's
    (§3.3.3: the contact's server sends unavailable on an inbound unsubscribe)."""
    async with xmpp(tmp_path, "alice", "bob") as clients:
        alice = await clients.login("alice@localhost/1")
        bob = await clients.login("bob@localhost/1")
        await contacts(alice, bob)

        await request(roster_set(alice, {"bob@localhost": {"subscription": "remove"}}))
        _, items = await next_push(alice)
        assert list(items) == ["bob@localhost"] and items["bob@localhost"]["subscription"] == "remove"
        got = {await next_subscription(bob), await next_subscription(bob)}
        assert got == {("unsubscribe", "alice@localhost"), ("unsubscribed", "alice@localhost")}
        await bob.presence_from("alice@localhost", "unavailable")
        assert await roster_of(alice) == {}
        assert item_state((await roster_of(bob))["alice@localhost"]) == ("none", "", "")

        await ping(bob, alice)
        assert ("unavailable", "") in presences_from(alice, "bob@localhost"), (
            "RFC 6121 §3.3.3: on the inbound unsubscribe the contact's server sends "
            "unavailable from each of the contact's available resources to the user"
        )


async def test_roster_versioning(tmp_path: Path) -> None:
    """§2.6.3: a get with the current version is answered with an empty result
    (changes come as pushes); with an older one, the whole roster and the new version."""
    async with xmpp(tmp_path, "alice") as clients:
        alice = await clients.login("alice@localhost/1")
        assert any(f.find("{urn:xmpp:features:rosterver}ver") is not None for f in alice.offered)
        first = await request(roster_get(alice, ""))  # §2.6.2: no cached copy
        old = first["roster"]["ver"]
        assert old and first["roster"]["items"] == {}

        current = await request(roster_get(alice, old))
        assert current.xml.find(f"{{{NS_ROSTER}}}query") is None

        await request(roster_set(alice, {"bob@localhost": {"name": "Bob"}}))
        new, _ = await next_push(alice)
        assert new and new != old
        stale = await request(roster_get(alice, old))
        assert stale.xml.find(f"{{{NS_ROSTER}}}query") is not None
        assert stale["roster"]["ver"] == new
        assert [str(jid) for jid in stale["roster"]["items"]] == ["bob@localhost"]
        current = await request(roster_get(alice, new))
        assert current.xml.find(f"{{{NS_ROSTER}}}query") is None


async def test_roster_bad_requests(tmp_path: Path) -> None:
    """§2.3.3: a set with more than one item, or one naming a group twice, is
    bad-request; §2.5.3: removing a contact not in the roster is item-not-found."""
    async with xmpp(tmp_path, "alice") as clients:
        alice = await clients.login("alice@localhost/1")
        two = roster_set(alice, {"bob@localhost": {"name": "Bob"}, "carol@localhost": {"name": "Carol"}})
        assert await refused(two) == "bad-request"
        twice = roster_set(alice, {"bob@localhost": {"groups": ["Friends", "Friends"]}})
        assert await refused(twice) == "bad-request"
        absent = roster_set(alice, {"bob@localhost": {"subscription": "remove"}})
        assert await refused(absent) == "item-not-found"
        await ping(alice)
        assert alice.pushes.empty()
        assert await roster_of(alice) == {}


# ----------------------------------------------------------------- subscriptions (RFC 6121 §3)


async def test_pre_approval_answers_a_later_subscribe_at_once(tmp_path: Path) -> None:
    """§3.4: the contact approves before being asked (the item gets
    approved='true', nothing is routed); the request that follows is
    answered by the server at once and never shown to the contact."""
    async with xmpp(tmp_path, "alice", "bob") as clients:
        alice = await clients.login("alice@localhost/1")
        bob = await clients.login("bob@localhost/1")
        assert any(f.find(f"{{{NS_PRE_APPROVAL}}}sub") is not None for f in alice.offered)
        await request(roster_set(alice, {"bob@localhost": {"name": "Bob"}}))
        await next_push(alice)

        alice.send_presence(pto="bob@localhost", ptype="subscribed")
        _, items = await next_push(alice)
        assert item_state(items["bob@localhost"]) == ("none", "", "true")
        await ping(alice, bob)
        assert bob.subscriptions.empty()  # §3.4.2: a pre-approval is not routed

        bob.send_presence(pto="alice@localhost", ptype="subscribe")
        assert await next_subscription(bob) == ("subscribed", "alice@localhost")
        await bob.presence_from("alice@localhost")  # §3.1.5: her presence follows
        await ping(bob, alice)
        assert alice.subscriptions.empty()  # the server answered for her
        assert (await roster_of(alice))["bob@localhost"]["subscription"] == "from"
        assert item_state((await roster_of(bob))["alice@localhost"]) == ("to", "", "")


async def test_pre_approval_of_a_contact_not_in_the_roster_adds_it(tmp_path: Path) -> None:
    """§3.4.2 (4): a pre-approval for a contact not in the roster creates the
    item (state None, approved='true') and pushes it."""
    async with xmpp(tmp_path, "alice", "bob") as clients:
        alice = await clients.login("alice@localhost/1")
        alice.send_presence(pto="bob@localhost", ptype="subscribed")
        await ping(alice)
        assert not alice.pushes.empty(), "RFC 6121 §3.4.2: the new pre-approved item is pushed"
        _, items = await next_push(alice)
        assert item_state(items["bob@localhost"]) == ("none", "", "true")
        assert item_state((await roster_of(alice))["bob@localhost"]) == ("none", "", "true")


async def test_unsubscribe_stops_the_contacts_presence(tmp_path: Path) -> None:
    """§3.3: the user unsubscribes: the contact is told, the states become
    from/to, the contact's presence stops and the contact's server sends the
    user unavailable from the contact's resources (§3.3.3)."""
    async with xmpp(tmp_path, "alice", "bob") as clients:
        alice = await clients.login("alice@localhost/1")
        bob = await clients.login("bob@localhost/1")
        await contacts(alice, bob)

        alice.send_presence(pto="bob@localhost", ptype="unsubscribe")
        assert await next_subscription(bob) == ("unsubscribe", "alice@localhost")
        assert item_state((await roster_of(alice))["bob@localhost"]) == ("from", "", "")
        assert item_state((await roster_of(bob))["alice@localhost"]) == ("to", "", "")

        bob.send_presence(pstatus="not for alice")
        alice.send_presence(pstatus="still for bob")
        assert (await bob.presence_from("alice@localhost"))["status"] == "still for bob"
        await ping(bob, alice)
        seen = presences_from(alice, "bob@localhost")
        assert ("available", "not for alice") not in seen
        assert ("unavailable", "") in seen, (
            "RFC 6121 §3.3.3: on the inbound unsubscribe the contact's server sends "
            "unavailable from each of the contact's available resources to the user"
        )


async def test_unsubscribed_cancels_the_subscription_and_sends_unavailable(tmp_path: Path) -> None:
    """§3.2: the contact cancels the user's subscription: the user is told,
    gets the contact's unavailable (§3.2.2), the states become to/from."""
    async with xmpp(tmp_path, "alice", "bob") as clients:
        alice = await clients.login("alice@localhost/1")
        bob = await clients.login("bob@localhost/1")
        await contacts(alice, bob)

        alice.send_presence(pto="bob@localhost", ptype="unsubscribed")
        assert await next_subscription(bob) == ("unsubscribed", "alice@localhost")
        unavailable = await bob.presence_from("alice@localhost", "unavailable")
        assert str(unavailable["from"]) == "alice@localhost/1"
        assert item_state((await roster_of(alice))["bob@localhost"]) == ("to", "", "")
        assert item_state((await roster_of(bob))["alice@localhost"]) == ("from", "", "")

        alice.send_presence(pstatus="not for bob")
        bob.send_presence(pstatus="still for alice")
        assert (await alice.presence_from("bob@localhost"))["status"] == "still for alice"
        await ping(alice, bob)
        assert ("available", "not for bob") not in presences_from(bob, "alice@localhost")


async def test_a_pending_request_waits_for_the_contact_to_come_online(tmp_path: Path) -> None:
    """§3.1.3: a request to an offline contact is kept and delivered when the
    contact next comes online, again at each login until answered; a denial
    (§3.2.1, unsubscribed) clears it on both sides."""
    async with xmpp(tmp_path, "alice", "bob") as clients:
        alice = await clients.login("alice@localhost/1")
        alice.send_presence(pto="bob@localhost", ptype="subscribe")
        _, items = await next_push(alice)
        assert item_state(items["bob@localhost"]) == ("none", "subscribe", "")  # §3.1.2: pending out
        await ping(alice)

        for resource in ("first", "second"):
            bob = await clients.login(f"bob@localhost/{resource}")
            assert await next_subscription(bob) == ("subscribe", "alice@localhost")
            await bob.close()

        bob = await clients.login("bob@localhost/third")
        assert await next_subscription(bob) == ("subscribe", "alice@localhost")
        bob.send_presence(pto="alice@localhost", ptype="unsubscribed")
        assert await next_subscription(alice) == ("unsubscribed", "bob@localhost")
        assert item_state((await roster_of(alice))["bob@localhost"]) == ("none", "", "")
        await bob.close()

        bob = await clients.login("bob@localhost/fourth")
        await ping(bob)
        assert bob.subscriptions.empty()


# ----------------------------------------------------------------- presence (RFC 6121 §4)


async def test_directed_presence_is_followed_by_unavailable(tmp_path: Path) -> None:
    """§4.6: directed presence reaches a non-contact (bare or full JID); when
    the sender goes offline, the server sends that entity unavailable."""
    async with xmpp(tmp_path, "alice", "carol", "dave") as clients:
        alice = await clients.login("alice@localhost/1")
        carol = await clients.login("carol@localhost/1")
        dave = await clients.login("dave@localhost/1")
        alice.send_presence(pto="carol@localhost", pstatus="hello carol")
        alice.send_presence(pto="dave@localhost/1", pstatus="hello dave")
        assert (await carol.presence_from("alice@localhost"))["status"] == "hello carol"
        assert (await dave.presence_from("alice@localhost"))["status"] == "hello dave"
        await alice.close()  # slixmpp sends no unavailable of its own: the server's
        for client in (carol, dave):
            unavailable = await client.presence_from("alice@localhost", "unavailable")
            assert str(unavailable["from"]) == "alice@localhost/1"


async def test_a_dropped_connection_broadcasts_unavailable(tmp_path: Path) -> None:
    """§4.5.2 (and §4.6): a connection that ends without </stream:stream>
    still ends in unavailable to the subscribers and directed-presence targets."""
    async with xmpp(tmp_path, "alice", "bob", "carol") as clients:
        alice = await clients.login("alice@localhost/1")
        bob = await clients.login("bob@localhost/1")
        carol = await clients.login("carol@localhost/1")
        await contacts(alice, bob)
        alice.send_presence(pto="carol@localhost/1")
        await carol.presence_from("alice@localhost")
        alice.drop()
        for client in (bob, carol):
            unavailable = await client.presence_from("alice@localhost", "unavailable")
            assert str(unavailable["from"]) == "alice@localhost/1"


async def test_probes_are_answered_at_login(tmp_path: Path) -> None:
    """§4.3.2 (and §4.2.2): initial presence gets the current presence of every
    available resource of each contact the user subscribes to; not that of a
    contact who only subscribes to the user."""
    async with xmpp(tmp_path, "alice", "bob", "carol") as clients:
        alice = await clients.login("alice@localhost/first")
        bob1 = await clients.login("bob@localhost/1")
        carol = await clients.login("carol@localhost/1")
        await subscribe(alice, bob1)  # alice: bob "to"
        await subscribe(carol, alice)  # alice: carol "from"
        await alice.close()
        bob1.send_presence(pstatus="one")
        bob2 = await clients.login("bob@localhost/2", presence=False)
        bob2.send_presence(pstatus="two")
        carol.send_presence(pstatus="three")
        await ping(bob1, bob2, carol)

        again = await clients.login("alice@localhost/again")
        await ping(again)
        got = {
            str(p["from"]): p["status"] for p in drain(again.presences) if p["from"].bare != "alice@localhost"
        }
        assert got == {"bob@localhost/1": "one", "bob@localhost/2": "two"}


# ----------------------------------------------------------------- messages (RFC 6121 §8.5)


async def test_bare_jid_messages_by_priority_and_type(tmp_path: Path) -> None:
    """§8.5.2.1.1: chat to the bare JID goes to the highest-priority resources
    (the server's choice among those the RFC allows), never to a negative
    priority; headline goes to every non-negative resource; §8.5.3.2.1: to a
    full JID with no such resource, chat is handled as to the bare JID;
    §8.5.3.1: a full JID reaches its resource whatever its priority."""
    async with xmpp(tmp_path, "alice", "bob") as clients:
        bob = await clients.login("bob@localhost/1")
        top1 = await clients.available("alice@localhost/top1", 5)
        top2 = await clients.available("alice@localhost/top2", 5)
        low = await clients.available("alice@localhost/low", 1)
        negative = await clients.available("alice@localhost/negative", -1)

        send(bob, "alice@localhost", "chat", "to the top")
        for client in (top1, top2):
            assert str((await client.next_message("to the top"))["from"]) == "bob@localhost/1"
        await ping(bob, low, negative)
        assert low.messages.empty() and negative.messages.empty()

        send(bob, "alice@localhost", "headline", "news")
        for client in (top1, top2, low):
            await client.next_message("news")
        await ping(bob, negative)
        assert negative.messages.empty()

        send(bob, "alice@localhost/gone", "chat", "wrong resource")
        for client in (top1, top2):
            await client.next_message("wrong resource")
        await ping(bob, low, negative)
        assert low.messages.empty() and negative.messages.empty()

        send(bob, "alice@localhost/negative", "chat", "just you")
        await negative.next_message("just you")
        await ping(bob, top1, top2, low)
        assert top1.messages.empty() and top2.messages.empty() and low.messages.empty()
        assert bob.messages.empty()  # no errors


async def test_a_negative_priority_alone_does_not_get_bare_messages(tmp_path: Path) -> None:
    """§8.5.2.1.1: with only a negative-priority resource the message is handled
    as if no resource were available: stored, delivered at the next login."""
    async with xmpp(tmp_path, "alice", "bob") as clients:
        bob = await clients.login("bob@localhost/1")
        negative = await clients.available("alice@localhost/negative", -1)
        send(bob, "alice@localhost", "chat", "for later")
        await ping(bob, negative)
        assert negative.messages.empty()
        assert bob.messages.empty()  # stored, not refused
        later = await clients.login("alice@localhost/later")
        assert str((await later.next_message("for later"))["from"]) == "bob@localhost/1"


async def test_offline_storage_is_bounded(tmp_path: Path) -> None:
    """--max-offline: past the bound a message is not stored and its sender gets
    an error (service-unavailable, as for any message that cannot be delivered)."""
    async with xmpp(tmp_path, "alice", "bob", argv=["--max-offline", "2"]) as clients:
        alice = await clients.login("alice@localhost/1")
        for n in (1, 2, 3):
            send(alice, "bob@localhost", "chat", f"offline {n}", f"m{n}")
        error = await alice.next_message()
        assert (error["type"], error["id"]) == ("error", "m3")
        assert (error["error"]["condition"], error["error"]["type"]) == ("service-unavailable", "cancel")
        await ping(alice)
        assert alice.messages.empty()

        bob = await clients.login("bob@localhost/1")
        await ping(bob)
        assert [m["body"] for m in drain(bob.messages)] == ["offline 1", "offline 2"]


# ----------------------------------------------------------------- iq routing (RFC 6121 §8.5)


async def test_iq_routing(tmp_path: Path) -> None:
    """An iq to another user's full JID reaches that client and its result
    comes back (§8.5.3.1); to a full JID with no session: service-unavailable
    (§8.5.3.2.1); an iq get with two payload children: bad-request (RFC 6120 §8.2.3)."""
    async with xmpp(tmp_path, "alice", "bob") as clients:
        alice = await clients.login("alice@localhost/1")
        await clients.login("bob@localhost/desk")
        result = await request(alice.make_iq_get(NS_VERSION, ito="bob@localhost/desk"))
        assert str(result["from"]) == "bob@localhost/desk"
        assert result["software_version"]["name"] == "client of bob@localhost/desk"

        assert await refused(alice.make_iq_get(NS_VERSION, ito="bob@localhost/gone")) == "service-unavailable"

        for to in ("bob@localhost/desk", None):
            iq = alice.make_iq_get(ito=to)
            iq.append(ET.Element(f"{{{NS_PING}}}ping"))
            iq.append(ET.Element(f"{{{NS_VERSION}}}query"))
            assert await refused(iq) == "bad-request"


# ----------------------------------------------------------------- extensions


async def test_vcard_temp(tmp_path: Path) -> None:
    """XEP-0054: set one's own vCard, get it back, another user gets it from the
    bare JID; an oversize one (> 64 KiB) is refused and the stored one stays."""
    async with xmpp(tmp_path, "alice", "bob") as clients:
        alice = await clients.login("alice@localhost/1")
        bob = await clients.login("bob@localhost/1")
        vcards = alice.plugin["xep_0054"]
        card = vcards.make_vcard()
        card["FN"] = "Alice Example"
        card["DESC"] = "down the rabbit hole"
        await asyncio.wait_for(vcards.publish_vcard(card, timeout=WAIT), WAIT)

        own = await asyncio.wait_for(vcards.get_vcard(local=False, timeout=WAIT), WAIT)
        assert (own["vcard_temp"]["FN"], own["vcard_temp"]["DESC"]) == (
            "Alice Example",
            "down the rabbit hole",
        )
        theirs = await asyncio.wait_for(
            bob.plugin["xep_0054"].get_vcard(JID("alice@localhost"), timeout=WAIT), WAIT
        )
        assert str(theirs["from"]) == "alice@localhost"
        assert theirs["vcard_temp"]["FN"] == "Alice Example"

        big = vcards.make_vcard()
        big["FN"] = "Alice Example"
        big["DESC"] = "x" * (64 * 1024 + 1)
        with pytest.raises(IqError) as caught:
            await asyncio.wait_for(vcards.publish_vcard(big, timeout=WAIT), WAIT)
        assert caught.value.iq["error"]["condition"] == "not-acceptable"
        own = await asyncio.wait_for(vcards.get_vcard(local=False, timeout=WAIT), WAIT)
        assert own["vcard_temp"]["DESC"] == "down the rabbit hole"


@pytest.mark.parametrize("hidden", [False, True], ids=["version-iq", "no-version-iq"])
async def test_software_version(tmp_path: Path, hidden: bool) -> None:
    """XEP-0092: answered by default (and announced in disco#info);
    --no-version-iq: service-unavailable and no longer announced."""
    argv = ["--no-version-iq"] if hidden else []
    async with xmpp(tmp_path, "alice", argv=argv) as clients:
        alice = await clients.login("alice@localhost/1")
        info = await asyncio.wait_for(alice.plugin["xep_0030"].get_info(jid=SERVER, timeout=WAIT), WAIT)
        assert (NS_VERSION in info["disco_info"]["features"]) is not hidden
        asked = alice.make_iq_get(NS_VERSION, ito="localhost")
        if hidden:
            assert await refused(asked) == "service-unavailable"
            return
        version = (await request(asked))["software_version"]
        assert version["name"] == "appliances.xmpp"
        assert version["version"] == clients.app.ctx.appliance.version


def caps_ver(query: ET.Element) -> str:
    """XEP-0115 §5.1 verification string of a disco#info result (no data forms)."""
    identities = sorted(
        (i.get("category", ""), i.get("type", ""), i.get(XML_LANG, ""), i.get("name", ""))
        for i in query.findall(f"{{{NS_DISCO_INFO}}}identity")
    )
    features = sorted(f.get("var", "") for f in query.findall(f"{{{NS_DISCO_INFO}}}feature"))
    text = "".join(f"{c}/{t}/{lang}/{n}<" for c, t, lang, n in identities)
    text += "".join(f"{feature}<" for feature in features)
    return base64.b64encode(hashlib.sha1(text.encode("utf-8")).digest()).decode("ascii")


@pytest.mark.parametrize("argv", [[], ["--no-version-iq"]], ids=["default", "no-version-iq"])
async def test_caps_in_the_stream_features_match_disco_info(tmp_path: Path, argv: list[str]) -> None:
    """XEP-0115 §6.3: the caps in the stream features hash (§5.1) the server's
    disco#info identities and features, also as asked with node#ver (§6.2)."""
    async with xmpp(tmp_path, "alice", argv=argv) as clients:
        alice = await clients.login("alice@localhost/1")
        offered = [c for f in alice.offered if (c := f.find(f"{{{NS_CAPS}}}c")) is not None]
        assert len(offered) == 1
        caps = offered[0]
        assert caps.get("hash") == "sha-1" and caps.get("node")
        disco = alice.plugin["xep_0030"]
        info = await asyncio.wait_for(disco.get_info(jid=SERVER, timeout=WAIT), WAIT)
        query = info.xml.find(f"{{{NS_DISCO_INFO}}}query")
        assert query is not None and query.find(f"{{{NS_DISCO_INFO}}}identity") is not None
        assert caps_ver(query) == caps.get("ver")
        node = f"{caps.get('node')}#{caps.get('ver')}"
        info = await asyncio.wait_for(disco.get_info(jid=SERVER, node=node, timeout=WAIT), WAIT)
        query = info.xml.find(f"{{{NS_DISCO_INFO}}}query")
        assert query is not None and query.get("node") == node
        assert caps_ver(query) == caps.get("ver")


async def test_client_state_indication_holds_presence_but_not_messages(tmp_path: Path) -> None:
    """XEP-0352: while inactive, contacts' presence updates are held (the latest
    per contact is sent on <active/>); messages are delivered at once."""
    async with xmpp(tmp_path, "alice", "bob") as clients:
        alice = await clients.login("alice@localhost/1")
        bob = await clients.login("bob@localhost/1")
        csi = alice.plugin["xep_0352"]
        assert csi.enabled  # the server offered urn:xmpp:csi:0
        await contacts(alice, bob)

        csi.send_inactive()
        await ping(alice)  # handled in order: inactive from here on
        bob.send_presence(pstatus="first")
        bob.send_presence(pstatus="second")
        await ping(bob, alice)
        assert presences_from(alice, "bob@localhost") == []

        csi.send_active()
        await ping(alice)
        assert presences_from(alice, "bob@localhost") == [("available", "second")]

        csi.send_inactive()
        await ping(alice)
        send(bob, "alice@localhost/1", "chat", "now")
        await alice.next_message("now")
