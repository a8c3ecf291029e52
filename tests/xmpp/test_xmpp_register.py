"""XEP-0077 in-band registration: off by default, TLS only, rate limited;
password change and cancellation from a session."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from xmpp_helpers import WAIT, Client, RawClient, add_user, start_xmpp

from runtime import Address

FEATURE = b"<register xmlns='http://jabber.org/features/iq-register'/>"
REGISTER = "jabber:iq:register"


def form(username: str | None, password: str | None, iq_id: str = "r") -> str:
    fields = ""
    if username is not None:
        fields += f"<username>{username}</username>"
    if password is not None:
        fields += f"<password>{password}</password>"
    return f"<iq type='set' id='{iq_id}'><query xmlns='{REGISTER}'>{fields}</query></iq>"


async def refused(address: Address, jid: str, password: str) -> bool:
    client = Client(jid, password)
    ok = await client.login(address)
    client.abort()
    return not ok


async def secure(address: Address) -> tuple[RawClient, bytes]:
    raw = await RawClient.open(address)
    return raw, await raw.secure()


async def test_registration_is_off_by_default(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path) as app:
        raw, features = await secure(app.address())
        assert FEATURE not in features
        await raw.send(form("mallory", "pw"))
        assert b"<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in await raw.read_to_close()


async def test_register_over_tls_then_log_in(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path, ["--register", "--register-limit", "2"]) as app:
        # not offered before TLS
        plain = await RawClient.open(app.address())
        assert FEATURE not in await plain.open_stream()
        plain.close()

        raw, features = await secure(app.address())
        assert FEATURE in features
        await raw.send(f"<iq type='get' id='f'><query xmlns='{REGISTER}'/></iq>")
        reply = await raw.expect(b"</iq>")
        assert b"<instructions>" in reply and b"<username/>" in reply and b"<password/>" in reply
        await raw.send(form("Alice", "secret"))
        assert await raw.expect(b"/>") == b"<iq type='result' id='r'/>"
        # the same name again (case-folded), a missing field, a bad name
        await raw.send(form("alice", "other", "r2"))
        assert b"<conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>" in await raw.expect(b"</iq>")
        await raw.send(form("bob", None, "r3"))
        assert b"<not-acceptable " in await raw.expect(b"</iq>")
        await raw.send(form("bad:name", "pw", "r4"))
        assert b"<not-acceptable " in await raw.expect(b"</iq>")
        # the second account from this address is the last one this hour
        await raw.send(form("bob", "pw", "r5"))
        assert await raw.expect(b"/>") == b"<iq type='result' id='r5'/>"
        await raw.send(form("carol", "pw", "r6"))
        limited = await raw.expect(b"</iq>")
        assert b"<error type='wait'><resource-constraint " in limited
        # the new account logs in on the same stream
        assert b"<success" in await raw.plain_auth("alice", "secret")
        raw.close()
        client = Client("alice@localhost/x", "secret")
        assert await client.login(app.address())
        await client.close()
        assert await refused(app.address(), "carol@localhost/x", "pw")


async def test_slixmpp_registers_an_account(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path, ["--register"]) as app:
        client = Client("dora@localhost/x", "explorer")
        client.register_plugin("xep_0004")
        client.register_plugin("xep_0066")
        client.register_plugin("xep_0077")
        client.plugin["xep_0077"].force_registration = True
        registered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        async def on_register(_: Any) -> None:
            iq = client.Iq()
            iq["type"] = "set"
            iq["register"]["username"] = "dora"
            iq["register"]["password"] = "explorer"
            await iq.send(timeout=WAIT)
            registered.set_result(True)

        client.add_event_handler("register", on_register)
        assert await client.login(app.address())
        assert registered.result()
        await client.close()


async def test_password_change_and_cancellation_in_band(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path) as app:  # for a session's own account: always
        await add_user(app, "alice@localhost", "old")
        await add_user(app, "bob@localhost", "b")
        here, other = await RawClient.open(app.address()), await RawClient.open(app.address())
        await here.login("alice", "old", "here")
        await other.login("alice", "old", "other")
        await here.send(f"<iq type='get' id='g'><query xmlns='{REGISTER}'/></iq>")
        assert b"<registered/><username>alice</username>" in await here.expect(b"</iq>")
        # another account's password: not allowed
        await here.send(form("bob", "stolen", "x"))
        assert b"<not-allowed " in await here.expect(b"</iq>")
        await here.send(form("alice", "new", "p"))
        assert b"type='result'" in await here.expect(b"/>")
        # the other session ends (its credentials changed); this one goes on
        assert b"<reset xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in await other.read_to_close()
        await here.send("<iq type='get' id='ping'><ping xmlns='urn:xmpp:ping'/></iq>")
        assert b"id='ping'" in await here.expect(b"/>")
        assert await refused(app.address(), "alice@localhost/y", "old")
        fresh = RawClient(*(await asyncio.wait_for(asyncio.open_connection(*app.address()), WAIT)))
        await fresh.login("alice", "new", "fresh")

        # cancellation: the result, then every session of the account ends
        await here.send(f"<iq type='set' id='c'><query xmlns='{REGISTER}'><remove/></query></iq>")
        closing = await here.read_to_close()
        assert b"<iq type='result' id='c'" in closing
        assert b"<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in closing
        assert b"<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in await fresh.read_to_close()
        assert await refused(app.address(), "alice@localhost/z", "new")
