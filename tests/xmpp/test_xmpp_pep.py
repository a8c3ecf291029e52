"""XEP-0163 PEP with slixmpp clients (caps, +notify interests, the nick and
generic pubsub plugins) and raw streams for exact answers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError
from xmpp_helpers import WAIT, Client, RawClient, add_user, start_xmpp

from appliances.xmpp.pep import caps_hash
from appliances.xmpp.storage import RosterItem, Storage
from runtime import Address

NICK = "http://jabber.org/protocol/nick"


class PepClient(Client):
    """A client that wants nick notifications (``NICK+notify`` in its caps)."""

    def __init__(self, jid: str, password: str) -> None:
        super().__init__(jid, password)
        for plugin in ("xep_0004", "xep_0060", "xep_0115", "xep_0163", "xep_0172"):
            self.register_plugin(plugin)
        self.nicks: asyncio.Queue[Any] = asyncio.Queue()
        self.add_event_handler("user_nick_publish", self.nicks.put_nowait)

    async def next_nick(self) -> str:
        message = await asyncio.wait_for(self.nicks.get(), WAIT)
        payload = message["pubsub_event"]["items"]["item"]["payload"]
        assert payload.tag == "{%s}nick" % NICK  # noqa: UP031
        return str(payload.text)

    async def login(self, address: Address, *, presence: bool = True) -> bool:
        ok = await super().login(address, presence=False)
        if ok and presence:
            await asyncio.wait_for(self.get_roster(), WAIT)
            await asyncio.wait_for(self.plugin["xep_0115"].update_caps(), WAIT)
            self.send_presence()
        return ok


async def befriend(app: Any, one: str, other: str) -> None:
    """Mutual presence subscription, straight in the store (what the tests of
    subscriptions exercise over the wire)."""
    storage = Storage(app.ctx.store)
    await storage.put_roster_item(one, RosterItem(other, subscription="both", listed=True))
    await storage.put_roster_item(other, RosterItem(one, subscription="both", listed=True))


async def test_publish_notify_last_item_and_retrieve(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path) as app:
        for user in ("alice", "bob", "mallory"):
            await add_user(app, f"{user}@localhost", "pw")
        await befriend(app, "alice@localhost", "bob@localhost")
        alice, bob = PepClient("alice@localhost/1", "pw"), PepClient("bob@localhost/1", "pw")
        assert await alice.login(app.address())
        assert await bob.login(app.address())
        # the account advertises PEP
        info = await asyncio.wait_for(bob.plugin["xep_0030"].get_info(jid="alice@localhost"), WAIT)
        identities = {(i[0], i[1]) for i in info["disco_info"]["identities"]}
        assert ("pubsub", "pep") in identities
        assert "http://jabber.org/protocol/pubsub#publish-options" in info["disco_info"]["features"]

        # notified at once if the server knows bob's interests already, else
        # sent the last item as soon as it learns them: one message either way
        await asyncio.wait_for(alice.plugin["xep_0172"].publish_nick("Ali"), WAIT)
        assert await bob.next_nick() == "Ali"  # the contact
        assert await alice.next_nick() == "Ali"  # and the owner's own resources

        # the contact retrieves the item; a stranger may not (access model presence)
        items = await asyncio.wait_for(bob.plugin["xep_0060"].get_items("alice@localhost", NICK), WAIT)
        assert len(items["pubsub"]["items"]) == 1
        mallory = PepClient("mallory@localhost/1", "pw")
        assert await mallory.login(app.address())
        with pytest.raises(IqError) as refused:
            await asyncio.wait_for(mallory.plugin["xep_0060"].get_items("alice@localhost", NICK), WAIT)
        assert refused.value.condition == "not-authorized"

        # a contact who comes online later gets the last item at once
        await bob.close()
        late = PepClient("bob@localhost/2", "pw")
        assert await late.login(app.address())
        assert await late.next_nick() == "Ali"
        for client in (alice, late, mallory):
            await client.close()

    # the items are in the store: after a restart they are still served
    async with start_xmpp(tmp_path) as app:
        bob = PepClient("bob@localhost/3", "pw")
        assert await bob.login(app.address())
        assert await bob.next_nick() == "Ali"
        await bob.close()


async def test_publish_options_access_and_owner_requests(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path) as app:
        await add_user(app, "alice@localhost", "pw")
        await add_user(app, "stranger@localhost", "pw")
        raw = await RawClient.open(app.address())
        await raw.login("alice", "pw", "r")
        node = "eu.siacs.conversations.axolotl.devicelist"
        options = (
            "<publish-options><x xmlns='jabber:x:data' type='submit'>"
            "<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value>"
            "</field><field var='pubsub#access_model'><value>open</value></field>"
            "<field var='pubsub#max_items'><value>max</value></field></x></publish-options>"
        )

        def publish(item_id: str, payload: str, opts: str = options) -> str:
            return (
                f"<iq type='set' id='{item_id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
                f"<publish node='{node}'><item id='{item_id}'>{payload}</item></publish>{opts}</pubsub></iq>"
            )

        await raw.send(
            publish("current", "<list xmlns='eu.siacs.conversations.axolotl'><device id='1'/></list>")
        )
        reply = await raw.expect(b"</iq>")
        assert b"type='result'" in reply and b"<item id='current'/>" in reply
        await raw.send(publish("second", "<list xmlns='eu.siacs.conversations.axolotl'/>"))
        await raw.expect(b"</iq>")
        # options that contradict the node's configuration: precondition-not-met
        await raw.send(publish("x", "<p xmlns='urn:t'/>", options.replace(">open<", ">presence<")))
        refused = await raw.expect(b"</iq>")
        assert b"<conflict " in refused and b"<precondition-not-met" in refused
        # no payload, two payloads: bad-request
        await raw.send(publish("y", ""))
        assert b"<payload-required" in await raw.expect(b"</iq>")

        # open access: a stranger reads every item (max_items=max kept both)
        stranger = await RawClient.open(app.address())
        await stranger.login("stranger", "pw", "s")
        await stranger.send(
            "<iq type='get' id='g' to='alice@localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
            f"<items node='{node}'/></pubsub></iq>"
        )
        got = await stranger.expect(b"</iq>")
        assert got.count(b"<item id=") == 2 and b"<device id='1'/>" in got
        # but may not publish there
        await stranger.send(publish("z", "<p xmlns='urn:t'/>").replace("<iq ", "<iq to='alice@localhost' "))
        assert b"<forbidden " in await stranger.expect(b"</iq>")

        # the owner retracts one item, reads the configuration, deletes the node
        await raw.send(
            "<iq type='set' id='rt'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
            f"<retract node='{node}'><item id='second'/></retract></pubsub></iq>"
        )
        assert b"type='result'" in await raw.expect(b"/>")
        await raw.send(
            "<iq type='get' id='cf'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>"
            f"<configure node='{node}'/></pubsub></iq>"
        )
        config = await raw.expect(b"</iq>")
        assert b"<value>open</value>" in config and b"<value>1000</value>" in config
        await raw.send(
            "<iq type='set' id='del'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>"
            f"<delete node='{node}'/></pubsub></iq>"
        )
        assert b"type='result'" in await raw.expect(b"/>")
        await stranger.send(
            "<iq type='get' id='g2' to='alice@localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
            f"<items node='{node}'/></pubsub></iq>"
        )
        assert b"<item-not-found " in await stranger.expect(b"</iq>")
        raw.close()
        stranger.close()


def test_caps_hash_matches_the_xep_0115_example() -> None:
    # XEP-0115 §5.2, the simple example
    identities = [("client", "pc", "", "Exodus 0.9.1")]
    features = [
        "http://jabber.org/protocol/caps",
        "http://jabber.org/protocol/disco#info",
        "http://jabber.org/protocol/disco#items",
        "http://jabber.org/protocol/muc",
    ]
    assert caps_hash(identities, features, b"") == "QgayPKawpkPSDYmwT/WM94uAlu0="
