"""The whole XMPP appliance on the host target with slixmpp clients (a real
client library): login with SCRAM over STARTTLS, chat, subscriptions and
presence, state across a restart, offline messages, extensions."""

from __future__ import annotations

import asyncio
from pathlib import Path

from xmpp_helpers import WAIT, Client, add_user, log_records, start_xmpp


async def test_login_with_scram_over_starttls_and_chat(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path) as app:
        await add_user(app, "alice@localhost", "alice-pw")
        await add_user(app, "bob@localhost", "bob-pw")
        alice = Client("alice@localhost/phone", "alice-pw")
        bob = Client("bob@localhost/laptop", "bob-pw")
        assert await alice.login(app.address())
        assert await bob.login(app.address())
        bound = {r["jid"]: r for r in log_records(app) if r["msg"] == "bound"}
        assert bound["alice@localhost/phone"]["mechanism"].startswith("SCRAM-SHA-")
        assert bound["alice@localhost/phone"]["tls"] in ("TLSv1.2", "TLSv1.3")

        alice.send_message(mto="bob@localhost/laptop", mbody="hello bob", mtype="chat")
        message = await bob.next_message("hello bob")
        assert str(message["from"]) == "alice@localhost/phone" and message["type"] == "chat"
        bob.send_message(mto="alice@localhost", mbody="hi alice", mtype="chat")  # bare JID
        reply = await alice.next_message("hi alice")
        assert str(reply["from"]) == "bob@localhost/laptop"

        # a message to an unknown user comes back as service-unavailable
        alice.send_message(mto="nobody@localhost", mbody="anyone?", mtype="chat")
        error = await alice.next_message()
        assert error["type"] == "error" and error["error"]["condition"] == "service-unavailable"

        # XEP-0199 and XEP-0030 against the server
        await asyncio.wait_for(alice.plugin["xep_0199"].ping("localhost", timeout=WAIT), WAIT)
        info = await asyncio.wait_for(alice.plugin["xep_0030"].get_info(jid="localhost"), WAIT)
        features = info["disco_info"]["features"]
        assert "urn:xmpp:carbons:2" in features and "urn:xmpp:blocking" in features
        await alice.close()
        await bob.close()


async def test_wrong_password_is_refused(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path) as app:
        await add_user(app, "alice@localhost", "right")
        client = Client("alice@localhost/x", "wrong")
        assert not await client.login(app.address())
        client.abort()


async def subscribe_both_ways(alice: Client, bob: Client) -> None:
    alice.send_presence(pto="bob@localhost", ptype="subscribe")
    request = await asyncio.wait_for(bob.subscriptions.get(), WAIT)
    assert request["type"] == "subscribe" and request["from"].bare == "alice@localhost"
    bob.send_presence(pto="alice@localhost", ptype="subscribed")
    approved = await asyncio.wait_for(alice.subscriptions.get(), WAIT)
    assert approved["type"] == "subscribed"
    await alice.presence_from("bob@localhost")  # §3.1.5: the contact's presence follows
    bob.send_presence(pto="alice@localhost", ptype="subscribe")
    request = await asyncio.wait_for(alice.subscriptions.get(), WAIT)
    assert request["type"] == "subscribe"
    alice.send_presence(pto="bob@localhost", ptype="subscribed")
    assert (await asyncio.wait_for(bob.subscriptions.get(), WAIT))["type"] == "subscribed"
    await bob.presence_from("alice@localhost")


async def test_subscriptions_presence_and_restart(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path) as app:
        await add_user(app, "alice@localhost", "a")
        await add_user(app, "bob@localhost", "b")
        alice, bob = Client("alice@localhost/1", "a"), Client("bob@localhost/1", "b")
        assert await alice.login(app.address())
        assert await bob.login(app.address())
        await subscribe_both_ways(alice, bob)
        await asyncio.wait_for(alice.get_roster(), WAIT)
        assert alice.client_roster["bob@localhost"]["subscription"] == "both"
        # unavailable on disconnect, to subscribers
        await bob.close()
        await alice.presence_from("bob@localhost", "unavailable")
        await alice.close()
        assert await app.stop() == 0

    # the same state directory: accounts, rosters and subscriptions persist
    async with start_xmpp(tmp_path) as app:
        alice, bob = Client("alice@localhost/2", "a"), Client("bob@localhost/2", "b")
        assert await alice.login(app.address())
        await asyncio.wait_for(alice.get_roster(), WAIT)
        assert alice.client_roster["bob@localhost"]["subscription"] == "both"
        assert await bob.login(app.address())
        await alice.presence_from("bob@localhost")  # broadcast to the subscriber
        await bob.presence_from("alice@localhost")  # probe answered at login
        await alice.close()
        await bob.close()


async def test_offline_message_is_stored_and_delivered_with_a_delay_stamp(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path) as app:
        await add_user(app, "alice@localhost", "a")
        await add_user(app, "bob@localhost", "b")
        alice = Client("alice@localhost/1", "a")
        assert await alice.login(app.address())
        alice.send_message(mto="bob@localhost", mbody="while you were out", mtype="chat")
        await asyncio.wait_for(alice.plugin["xep_0199"].ping("localhost", timeout=WAIT), WAIT)
        await alice.close()
        assert await app.stop() == 0
    async with start_xmpp(tmp_path) as app:
        bob = Client("bob@localhost/1", "b")
        bob.register_plugin("xep_0203")
        assert await bob.login(app.address())
        message = await bob.next_message("while you were out")
        assert str(message["from"]) == "alice@localhost/1"
        assert message["delay"]["from"] == "localhost" and message["delay"]["stamp"] is not None
        await bob.close()
        # delivered once: a new session gets nothing more
        again = Client("bob@localhost/2", "b")
        assert await again.login(app.address())
        await asyncio.wait_for(again.plugin["xep_0199"].ping("localhost", timeout=WAIT), WAIT)
        assert again.messages.empty()
        await again.close()


async def test_carbons_copy_to_the_other_resources(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path) as app:
        await add_user(app, "alice@localhost", "a")
        await add_user(app, "bob@localhost", "b")
        phone, laptop = Client("alice@localhost/phone", "a"), Client("alice@localhost/laptop", "a")
        bob = Client("bob@localhost/1", "b")
        for client in (phone, laptop):
            client.register_plugin("xep_0280")
        carbons: asyncio.Queue[object] = asyncio.Queue()
        laptop.add_event_handler("carbon_received", carbons.put_nowait)
        laptop.add_event_handler("carbon_sent", carbons.put_nowait)
        for client in (phone, laptop, bob):
            assert await client.login(app.address())
        await asyncio.wait_for(laptop.plugin["xep_0280"].enable(), WAIT)
        bob.send_message(mto="alice@localhost/phone", mbody="to the phone", mtype="chat")
        await phone.next_message("to the phone")
        received = await asyncio.wait_for(carbons.get(), WAIT)
        assert received["carbon_received"]["body"] == "to the phone"  # type: ignore[index]
        phone.send_message(mto="bob@localhost", mbody="from the phone", mtype="chat")
        sent = await asyncio.wait_for(carbons.get(), WAIT)
        assert sent["carbon_sent"]["body"] == "from the phone"  # type: ignore[index]
        for client in (phone, laptop, bob):
            await client.close()


async def test_blocking_stops_messages(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path) as app:
        await add_user(app, "alice@localhost", "a")
        await add_user(app, "mallory@localhost", "m")
        alice, mallory = Client("alice@localhost/1", "a"), Client("mallory@localhost/1", "m")
        alice.register_plugin("xep_0191")
        assert await alice.login(app.address())
        assert await mallory.login(app.address())
        await asyncio.wait_for(alice.plugin["xep_0191"].block(["mallory@localhost"]), WAIT)
        blocked = await asyncio.wait_for(alice.plugin["xep_0191"].get_blocked(), WAIT)
        assert {str(item["jid"]) for item in blocked["blocklist"]["items"]} == {"mallory@localhost"}
        mallory.send_message(mto="alice@localhost", mbody="spam", mtype="chat")
        error = await mallory.next_message()
        assert error["type"] == "error" and error["error"]["condition"] == "service-unavailable"
        await asyncio.wait_for(alice.plugin["xep_0191"].unblock(["mallory@localhost"]), WAIT)
        mallory.send_message(mto="alice@localhost", mbody="hello again", mtype="chat")
        await alice.next_message("hello again")
        await alice.close()
        await mallory.close()
