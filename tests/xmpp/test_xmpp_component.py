"""XEP-0114 external components: slixmpp's ComponentXMPP (a real component
library) routed to and from clients, and raw streams for the refusals."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
import slixmpp
from xmpp_helpers import WAIT, Client, RawClient, add_user, log_records, start_xmpp

from runtime import Address
from runtime.testing.harness import RunningAppliance

SECRET = "s3cret"
HEADER = (
    "<stream:stream xmlns='jabber:component:accept' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='{to}'>"
)


def component_address(app: RunningAppliance) -> Address:
    ready = next(r for r in log_records(app) if r["msg"] == "ready")
    listening = [item.partition("/")[2] for item in ready["listening"].split(",")]
    host, _, port = listening[1].rpartition(":")  # c2s first, then the component listener
    return Address(host, int(port))


class Echo(slixmpp.ComponentXMPP):
    """Answers every chat message with its body reversed; records presences."""

    def __init__(self) -> None:
        # stanza children inherit jabber:component:accept on this stream (XEP-0114),
        # errors too: fix_error_ns makes slixmpp read them there
        super().__init__("bot.localhost", SECRET, fix_error_ns=True)
        self.started = asyncio.get_running_loop().create_future()
        self.presences: asyncio.Queue[Any] = asyncio.Queue()
        self.add_event_handler(
            "session_start", lambda _: self.started.done() or self.started.set_result(True)
        )
        self.add_event_handler("message", self._echo)
        self.add_event_handler("presence", self.presences.put_nowait)

    def _echo(self, message: Any) -> None:
        if message["type"] in ("chat", "normal") and message["body"]:
            message.reply(message["body"][::-1]).send()


@pytest.fixture
def argv() -> list[str]:
    return ["--component-listen", "127.0.0.1:0", "--component", f"bot.localhost={SECRET}"]


async def test_component_routes_both_ways(tmp_path: Path, argv: list[str]) -> None:
    async with start_xmpp(tmp_path, argv) as app:
        await add_user(app, "alice@localhost", "a")
        await add_user(app, "bob@localhost", "b")
        alice = Client("alice@localhost/1", "a")
        assert await alice.login(app.address())
        # configured but not connected: service-unavailable
        alice.send_message(mto="echo@bot.localhost", mbody="anyone?", mtype="chat")
        error = await alice.next_message()
        assert error["type"] == "error" and error["error"]["condition"] == "service-unavailable"

        echo = Echo()
        address = component_address(app)
        echo.connect(address.host, address.port)
        assert await asyncio.wait_for(echo.started, WAIT)
        alice.send_message(mto="echo@bot.localhost", mbody="hello", mtype="chat")
        reply = await alice.next_message("olleh")
        assert str(reply["from"]) == "echo@bot.localhost"

        # from the component to an offline user: stored, delivered at login
        echo.send_message(mto="bob@localhost", mfrom="news@bot.localhost", mbody="while away", mtype="chat")
        # ... and to an unknown user: an error back to the component
        errors: asyncio.Queue[Any] = asyncio.Queue()
        echo.add_event_handler("message_error", errors.put_nowait)
        echo.send_message(mto="nobody@localhost", mfrom="news@bot.localhost", mbody="?", mtype="chat")
        bounced = await asyncio.wait_for(errors.get(), WAIT)
        assert bounced["error"]["condition"] == "service-unavailable", str(bounced)
        bob = Client("bob@localhost/1", "b")
        assert await bob.login(app.address())
        stored = await bob.next_message("while away")
        assert str(stored["from"]) == "news@bot.localhost"

        # a subscription to the component's domain and its answer
        alice.send_presence(pto="bot.localhost", ptype="subscribe")
        while (request := await asyncio.wait_for(echo.presences.get(), WAIT))["type"] != "subscribe":
            pass
        assert request["from"].bare == "alice@localhost"
        echo.send_presence(pto="alice@localhost", pfrom="bot.localhost", ptype="subscribed")
        approved = await asyncio.wait_for(alice.subscriptions.get(), WAIT)
        assert approved["type"] == "subscribed"
        await asyncio.wait_for(alice.get_roster(), WAIT)
        assert alice.client_roster["bot.localhost"]["subscription"] == "to"

        await alice.close()
        await bob.close()
        echo.disconnect()


async def raw_component(address: Address, to: str) -> tuple[RawClient, str]:
    raw = RawClient(*(await asyncio.wait_for(asyncio.open_connection(address.host, address.port), WAIT)))
    await raw.send(HEADER.format(to=to))
    await raw.expect(b"<stream:stream")
    header = (await raw.expect(b">")).decode()
    found = re.search(r"id='([^']+)'", header)
    return raw, found.group(1) if found else ""


def stream_error(data: bytes, condition: str) -> bool:
    return f"<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>".encode() in data


async def test_component_refusals(tmp_path: Path, argv: list[str]) -> None:
    async with start_xmpp(tmp_path, argv) as app:
        address = component_address(app)
        raw, _ = await raw_component(address, "elsewhere.localhost")
        assert stream_error(await raw.read_to_close(), "host-unknown")

        raw, _ = await raw_component(address, "bot.localhost")
        await raw.send("<handshake>" + "0" * 40 + "</handshake>")
        assert stream_error(await raw.read_to_close(), "not-authorized")

        raw, _ = await raw_component(address, "bot.localhost")
        await raw.send("<message to='alice@localhost' from='bot.localhost'/>")
        assert stream_error(await raw.read_to_close(), "not-authorized")

        good, stream_id = await raw_component(address, "bot.localhost")
        digest = hashlib.sha1((stream_id + SECRET).encode()).hexdigest()
        await good.send(f"<handshake>{digest}</handshake>")
        assert await good.expect(b"<handshake/>")
        # a second connection for the same component: conflict
        second, second_id = await raw_component(address, "bot.localhost")
        await second.send(f"<handshake>{hashlib.sha1((second_id + SECRET).encode()).hexdigest()}</handshake>")
        assert stream_error(await second.read_to_close(), "conflict")
        # a ping to the server is answered; a stanza from outside its domain is refused
        await good.send(
            "<iq type='get' id='p' from='bot.localhost' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        )
        assert b"type='result'" in await good.expect(b"/>")
        await good.send("<message from='alice@localhost' to='bob@localhost'><body>forged</body></message>")
        assert stream_error(await good.read_to_close(), "invalid-from")
        # the server keeps serving clients meanwhile
        await add_user(app, "carol@localhost", "c")
        carol = Client("carol@localhost/1", "c")
        assert await carol.login(app.address())
        await carol.close()
