"""XEP-0198 stream management: acks, resumption after a broken connection,
and what happens to stanzas a client never acknowledged."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from xmpp_helpers import WAIT, Client, RawClient, add_user, start_xmpp

from runtime import Address
from runtime.testing.harness import RunningAppliance

SM = "urn:xmpp:sm:3"


async def sm_login(address: Address, user: str, password: str, resource: str) -> tuple[RawClient, str]:
    raw = await RawClient.open(address)
    await raw.login(user, password, resource)
    await raw.send(f"<enable xmlns='{SM}' resume='true'/>")
    enabled = (await raw.expect(b"/>")).decode()
    found = re.search(r"<enabled xmlns='urn:xmpp:sm:3' id='([^']+)' resume='true' max='(\d+)'/>", enabled)
    assert found, enabled
    return raw, found.group(1)


async def resume(address: Address, user: str, password: str, previd: str, h: int) -> tuple[RawClient, bytes]:
    raw = await RawClient.open(address)
    await raw.secure()
    assert b"<success" in await raw.plain_auth(user, password)
    features = await raw.open_stream()
    assert f"<sm xmlns='{SM}'/>".encode() in features
    await raw.send(f"<resume xmlns='{SM}' previd='{previd}' h='{h}'/>")
    return raw, await raw.expect_any(b"</failed>", b"/>")


async def alice_and_bob(app: RunningAppliance) -> tuple[Client, RawClient, str]:
    """bob (slixmpp) online; alice on a raw stream with resumable stream
    management, available (her presence echoed: stanza 1, with an ack request)
    and directed to bob, so that bob is told when her session ends (§4.6)."""
    await add_user(app, "alice@localhost", "a")
    await add_user(app, "bob@localhost", "b")
    bob = Client("bob@localhost/desk", "b")
    assert await bob.login(app.address())
    raw, previd = await sm_login(app.address(), "alice", "a", "phone")
    await raw.send("<presence/><presence to='bob@localhost/desk'/>")
    await raw.expect(f"<r xmlns='{SM}'/>".encode())
    await bob.presence_from("alice@localhost")
    return bob, raw, previd


async def test_acks_count_stanzas_both_ways(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path) as app:
        await add_user(app, "alice@localhost", "a")
        raw = await RawClient.open(app.address())
        await raw.login("alice", "a", "r")
        # before binding it would be refused; after, enabled without resumption
        await raw.send(f"<enable xmlns='{SM}'/>")
        assert await raw.expect(b"/>") == f"<enabled xmlns='{SM}'/>".encode()
        await raw.send(f"<r xmlns='{SM}'/>")
        assert await raw.expect(b"/>") == f"<a xmlns='{SM}' h='0'/>".encode()
        for n in range(3):
            await raw.send(f"<iq type='get' id='p{n}'><ping xmlns='urn:xmpp:ping'/></iq>")
        await raw.send(f"<r xmlns='{SM}'/>")
        got = await raw.expect(f"<a xmlns='{SM}' h='3'/>".encode())
        # the server asks for an ack with the first stanza it sends
        assert got.count(b"<iq ") == 3 and got.count(f"<r xmlns='{SM}'/>".encode()) == 1
        await raw.send(f"<a xmlns='{SM}' h='3'/>")
        # acknowledging more than was sent is a stream error
        await raw.send(f"<a xmlns='{SM}' h='7'/>")
        assert b"<undefined-condition" in await raw.read_to_close()


async def test_enable_before_bind_is_refused(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path) as app:
        await add_user(app, "alice@localhost", "a")
        raw = await RawClient.open(app.address())
        await raw.secure()
        assert b"<success" in await raw.plain_auth("alice", "a")
        await raw.open_stream()
        await raw.send(f"<enable xmlns='{SM}'/>")
        assert b"<unexpected-request" in await raw.expect(b"</failed>")
        raw.close()


async def test_resumption_sends_again_what_was_not_acknowledged(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path) as app:
        bob, raw, previd = await alice_and_bob(app)
        bob.send_message(mto="alice@localhost/phone", mbody="one", mtype="chat")
        await raw.expect(b"one</body></message>")  # stanza 2, then the connection breaks
        raw.writer.transport.abort()
        await asyncio.sleep(0.2)
        bob.send_message(mto="alice@localhost/phone", mbody="two", mtype="chat")  # queued
        await asyncio.wait_for(bob.plugin["xep_0199"].ping("localhost", timeout=WAIT), WAIT)

        # another account cannot take the session over
        await add_user(app, "mallory@localhost", "m")
        other, reply = await resume(app.address(), "mallory", "m", previd, 0)
        assert b"<item-not-found" in reply
        other.close()

        again, reply = await resume(app.address(), "alice", "a", previd, 1)
        assert f"<resumed xmlns='{SM}' h='2' previd='{previd}'/>".encode() == reply  # both presences
        rest = await again.expect(b"two</body></message>")
        assert b"one</body>" in rest  # stanza 2 was not acknowledged: sent again
        # the session lives on: messages flow, bob never saw it go unavailable
        bob.send_message(mto="alice@localhost/phone", mbody="three", mtype="chat")
        await again.expect(b"three</body></message>")
        assert bob.presences.empty()  # never told alice went away
        again.close()
        await bob.close()


async def test_unacknowledged_messages_go_offline_when_the_session_ends(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path, ["--resume-timeout", "0.3s"]) as app:
        bob, raw, previd = await alice_and_bob(app)
        bob.send_message(mto="alice@localhost/phone", mbody="lost in transit", mtype="chat")
        await raw.expect(b"lost in transit</body></message>")
        raw.writer.transport.abort()
        # the hibernation ends: unavailable, and the unacknowledged message is stored
        await bob.presence_from("alice@localhost", "unavailable")
        late, reply = await resume(app.address(), "alice", "a", previd, 1)
        assert b"<item-not-found" in reply
        late.close()
        alice = Client("alice@localhost/laptop", "a")
        alice.register_plugin("xep_0203")
        assert await alice.login(app.address())
        message = await alice.next_message("lost in transit")
        assert str(message["from"]) == "bob@localhost/desk"
        assert message["delay"]["stamp"] is not None
        await alice.close()
        await bob.close()


async def test_a_clean_close_ends_the_session_at_once(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path) as app:
        bob, raw, previd = await alice_and_bob(app)
        bob.send_message(mto="alice@localhost", mbody="unread", mtype="chat")
        await raw.expect(b"unread</body></message>")
        await raw.send("</stream:stream>")
        await raw.read_to_close()
        await bob.presence_from("alice@localhost", "unavailable")
        late, reply = await resume(app.address(), "alice", "a", previd, 0)
        assert b"<item-not-found" in reply
        late.close()
        alice = Client("alice@localhost/laptop", "a")
        assert await alice.login(app.address())
        await alice.next_message("unread")  # never acknowledged: stored offline
        await alice.close()
        await bob.close()


async def test_slixmpp_with_stream_management(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path) as app:
        await add_user(app, "alice@localhost", "a")
        await add_user(app, "bob@localhost", "b")
        alice = Client("alice@localhost/1", "a")
        alice.register_plugin("xep_0198")
        enabled: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        alice.add_event_handler("sm_enabled", lambda _: enabled.done() or enabled.set_result(True))
        bob = Client("bob@localhost/1", "b")
        assert await alice.login(app.address())
        assert await asyncio.wait_for(enabled, WAIT)
        assert await bob.login(app.address())
        for n in range(5):
            bob.send_message(mto="alice@localhost/1", mbody=f"m{n}", mtype="chat")
        for n in range(5):
            await alice.next_message(f"m{n}")
        alice.send_message(mto="bob@localhost/1", mbody="got them", mtype="chat")
        await bob.next_message("got them")
        await asyncio.wait_for(alice.plugin["xep_0199"].ping("localhost", timeout=WAIT), WAIT)
        sm = alice.plugin["xep_0198"]
        assert sm.handled >= 5  # stanzas it counted from us
        acked = asyncio.Event()
        loop = asyncio.get_running_loop()
        # the plugin records the new h after its events: look once it is done
        check = lambda: sm.last_ack >= 3 and acked.set()  # noqa: E731
        alice.add_event_handler("stanza_acked", lambda _: loop.call_soon(check))
        sm.request_ack()
        # roster get, presence, message, ping: counted by us
        await asyncio.wait_for(acked.wait(), WAIT)
        await alice.close()
        await bob.close()
