"""Raw sockets against the appliance: what no library would send.  Every
refusal is a stream error (RFC 6120 §4.9) followed by ``</stream:stream>`` and
a close, or a SASL failure (§6.5); the server keeps serving."""

from __future__ import annotations

import asyncio
import base64
import gc
import random
import weakref
from pathlib import Path

import pytest
from xmpp_helpers import HEADER, Client, RawClient, add_user, scram_client_proof, start_xmpp

from appliances.xmpp.server import XMPPService
from runtime import make_self_signed

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"


def ends_with_error(data: bytes, condition: str) -> bool:
    return (
        f"<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>".encode() in data
        and data.rstrip().endswith(b"</stream:stream>")
    )


async def test_tls_is_required_before_authentication(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path) as app:
        await add_user(app, "alice@localhost", "pw")
        raw = await RawClient.open(app.address())
        features = await raw.open_stream()
        assert b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>" in features
        assert b"mechanism" not in features
        reply = await raw.plain_auth("alice", "pw")
        assert b"<encryption-required/>" in reply
        # and a stanza before authentication is a not-authorized stream error
        await raw.send("<message to='bob@localhost'><body>hi</body></message>")
        assert ends_with_error(await raw.read_to_close(), "not-authorized")


async def test_cleartext_after_starttls_is_refused_and_the_handshake_is_never_lost(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path) as app:
        # bytes injected after <starttls/> in the clear: no <proceed/>, a stream error
        raw = await RawClient.open(app.address())
        await raw.open_stream()
        starttls = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
        await raw.send(starttls + f"<auth xmlns='{SASL}' mechanism='PLAIN'/>")
        reply = await raw.read_to_close()
        assert b"<proceed" not in reply and ends_with_error(reply, "policy-violation")
        # a client that starts its handshake the instant <proceed/> arrives always
        # gets TLS (the ClientHello is never read as cleartext)
        for _ in range(20):
            raw = await RawClient.open(app.address())
            await raw.secure()
            raw.close()


async def test_a_client_that_pipelines_its_login_is_served(tmp_path: Path) -> None:
    """Auth, the new stream's header, bind and a ping in one write (XEP-0305
    style): the bytes after <auth/> belong to the stream that follows success."""
    async with start_xmpp(tmp_path) as app:
        await add_user(app, "alice@localhost", "pw")
        raw = await RawClient.open(app.address())
        await raw.secure()
        token = base64.b64encode(b"\0alice\0pw").decode()
        await raw.send(
            f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>"
            + HEADER.format(domain="localhost")
            + "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"
            + "<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>"
        )
        got = await raw.expect(b"id='p'")
        assert b"<success" in got and b"<jid>alice@localhost/" in got
        # junk after a complete stanza (no restart) is an error at once, not a hang
        await raw.send("<iq type='get' id='q'><ping xmlns='urn:xmpp:ping'/></iq><?xml version='1.0'?>")
        rest = await raw.read_to_close()
        assert b"id='q'" in rest and ends_with_error(rest, "not-well-formed")


async def test_stanzas_after_tls_but_before_auth_are_refused(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path) as app:
        raw = await RawClient.open(app.address())
        features = await raw.secure()
        assert b"<mechanism>SCRAM-SHA-256-PLUS</mechanism>" in features
        assert b"<mechanism>PLAIN</mechanism>" in features
        await raw.send("<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>")
        assert ends_with_error(await raw.read_to_close(), "not-authorized")


async def test_bad_password_and_unknown_user_get_the_same_failure_then_throttled(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path, ["--auth-failures", "4"]) as app:
        await add_user(app, "alice@localhost", "pw")
        raw = await RawClient.open(app.address())
        await raw.secure()
        bad = await raw.plain_auth("alice", "wrong")
        unknown = await raw.plain_auth("nobody", "wrong")
        assert bad == unknown == f"<failure xmlns='{SASL}'><not-authorized/></failure>".encode()
        raw.close()
        # a second connection from the same address: two more failures, then throttled
        raw = await RawClient.open(app.address())
        await raw.secure()
        assert b"<not-authorized/>" in await raw.plain_auth("alice", "wrong")
        assert b"<not-authorized/>" in await raw.plain_auth("alice", "wrong")
        assert b"<temporary-auth-failure/>" in await raw.plain_auth("alice", "pw")
        raw.close()


async def test_too_many_failures_on_one_stream_is_a_policy_violation(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path, ["--auth-failures", "100"]) as app:
        raw = await RawClient.open(app.address())
        await raw.secure()
        for _ in range(3):
            assert b"<not-authorized/>" in await raw.plain_auth("x", "y")
        token = base64.b64encode(b"\0x\0y").decode()
        await raw.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>")
        assert ends_with_error(await raw.read_to_close(), "policy-violation")


async def test_scram_sha256_plus_by_hand(tmp_path: Path) -> None:
    """A raw SCRAM-SHA-256-PLUS exchange over Direct TLS (XEP-0368), binding
    computed by the client from the certificate it was shown (RFC 5929 §4.1)."""
    import hashlib
    import ssl

    async with start_xmpp(tmp_path, ["--tls-listen", "127.0.0.1:0"]) as app:
        await add_user(app, "alice@localhost", "pencil")
        raw = await RawClient.open(app.address("tcp", 1), tls=True)
        features = await raw.open_stream()
        assert b"SCRAM-SHA-256-PLUS" in features and b"starttls" not in features
        sslobj = raw.writer.get_extra_info("ssl_object")
        assert isinstance(sslobj, ssl.SSLObject)
        assert sslobj.selected_alpn_protocol() == "xmpp-client"
        cert = sslobj.getpeercert(binary_form=True)
        assert cert is not None
        cb = hashlib.sha256(cert).digest()
        gs2 = b"p=tls-server-end-point,,"
        first_bare = b"n=alice,r=clientnonce"
        await raw.send(
            f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256-PLUS'>"
            f"{base64.b64encode(gs2 + first_bare).decode()}</auth>"
        )
        challenge = await raw.expect(b"</challenge>")
        server_first = base64.b64decode(challenge.split(b">", 1)[1].split(b"<", 1)[0])
        attrs = dict(part.split(b"=", 1) for part in server_first.split(b","))
        final_bare = b"c=" + base64.b64encode(gs2 + cb) + b",r=" + attrs[b"r"]
        auth_message = first_bare + b"," + server_first + b"," + final_bare
        proof, signature = scram_client_proof(
            "pencil", base64.b64decode(attrs[b"s"]), int(attrs[b"i"]), auth_message
        )
        final = final_bare + b",p=" + base64.b64encode(proof)
        await raw.send(f"<response xmlns='{SASL}'>{base64.b64encode(final).decode()}</response>")
        success = await raw.expect(b"</success>")
        assert base64.b64encode(b"v=" + base64.b64encode(signature)) in success
        raw.close()


@pytest.mark.parametrize(
    ("header", "condition"),
    [
        (HEADER.format(domain="example.org"), "host-unknown"),
        (HEADER.replace("jabber:client", "jabber:server").format(domain="localhost"), "invalid-namespace"),
        (HEADER.replace("version='1.0'", "version='2.0'").format(domain="localhost"), "unsupported-version"),
        ("<stream xmlns='jabber:client'>", "invalid-namespace"),
        ("<?xml version='1.0'?><!DOCTYPE a [<!ENTITY b 'c'>]><a/>", "restricted-xml"),
        ("not xml at all", "not-well-formed"),
    ],
)
async def test_bad_stream_headers(tmp_path: Path, header: str, condition: str) -> None:
    async with start_xmpp(tmp_path) as app:
        raw = await RawClient.open(app.address())
        await raw.send(header)
        data = await raw.read_to_close()
        assert data.startswith(b"<?xml version='1.0'?><stream:stream")  # §4.9.1.2: our header first
        assert ends_with_error(data, condition)


async def test_bombs_oversize_and_deep_stanzas_after_login(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path, ["--max-stanza", "20000"]) as app:
        await add_user(app, "alice@localhost", "pw")
        cases = [
            (b"<message><body>" + b"A" * 30000 + b"</body></message>", "policy-violation"),
            (b"<message>" + b"<x>" * 200, "policy-violation"),
            (b"<message><body>&lol9;</body></message>", "restricted-xml"),
            (b"<!-- comment -->", "restricted-xml"),
            (b"<message><foo:bar/></message>", "bad-namespace-prefix"),
            (b"<unknown/>", "unsupported-stanza-type"),
            (b"<message from='mallory@localhost'/>", "invalid-from"),
        ]
        for payload, condition in cases:
            raw = await RawClient.open(app.address())
            await raw.login("alice", "pw")
            await raw.send(payload)
            assert ends_with_error(await raw.read_to_close(), condition), payload[:40]
        # still serving
        client = Client("alice@localhost/after", "pw")
        assert await client.login(app.address())
        await client.close()


async def test_same_resource_replaces_the_old_session_with_conflict(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path) as app:
        await add_user(app, "alice@localhost", "pw")
        first = await RawClient.open(app.address())
        await first.login("alice", "pw", resource="desk")
        second = await RawClient.open(app.address())
        await second.login("alice", "pw", resource="desk")
        assert ends_with_error(await first.read_to_close(), "conflict")
        await second.send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        assert b"type='result'" in await second.expect(b"/>")
        await second.send("</stream:stream>")
        assert (await second.read_to_close()).endswith(b"</stream:stream>")


async def test_fuzzed_streams_end_in_a_stanza_an_error_or_a_close(tmp_path: Path) -> None:
    """Random and mutated XML over real sockets: every outcome is a reply, a
    stream error or a close; a session open meanwhile keeps working."""
    rng = random.Random(6120)
    seeds = [
        b"<message to='alice@localhost' type='chat'><body>hi &amp; bye</body></message>",
        b"<presence><priority>5</priority><status>x</status></presence>",
        b"<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>",
        b"<iq type='set' id='2'><block xmlns='urn:xmpp:blocking'><item jid='a@b'/></block></iq>",
    ]
    async with start_xmpp(tmp_path) as app:
        await add_user(app, "alice@localhost", "pw")
        watcher = Client("alice@localhost/watch", "pw")
        assert await watcher.login(app.address())
        for round_ in range(30):
            seed = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 6)):
                pos = rng.randrange(len(seed))
                op = rng.randrange(3)
                if op == 0:
                    seed[pos] = rng.randrange(256)
                elif op == 1:
                    del seed[pos]
                else:
                    seed.insert(pos, rng.choice(b"<>&;'\"/=\x00\xff"))
            payload = bytes(seed) if round_ % 3 else rng.randbytes(rng.randint(1, 400))
            raw = await RawClient.open(app.address())
            await raw.login("alice", "pw", resource=f"fuzz{round_}")
            await raw.send(payload + b"</stream:stream>")
            data = await raw.read_to_close()
            assert data.endswith(b"</stream:stream>"), (payload, data)
        await watcher.plugin["xep_0199"].ping("localhost", timeout=20)
        await watcher.close()


async def test_a_client_that_does_not_read_is_closed_not_buffered(tmp_path: Path) -> None:
    """Back-pressure: what a slow reader is sent is bounded (--max-send-buffer);
    past it the session ends with resource-constraint, the sender goes on."""
    async with start_xmpp(tmp_path, ["--max-send-buffer", "65536", "--max-offline", "0"]) as app:
        await add_user(app, "alice@localhost", "pw")
        await add_user(app, "bob@localhost", "pw")
        slow = await RawClient.open(app.address())
        await slow.login("bob", "pw", resource="slow")
        fast = await RawClient.open(app.address())
        await fast.login("alice", "pw", resource="fast")
        body = "x" * 8000
        message = f"<message to='bob@localhost/slow' type='chat'><body>{body}</body></message>"
        replies = b""
        for i in range(5000):
            await fast.send(message)
            if i % 50 == 49:
                await fast.send(f"<iq type='get' id='p{i}'><ping xmlns='urn:xmpp:ping'/></iq>")
                replies += await fast.expect(f"id='p{i}'".encode())
                if b"service-unavailable" in replies:
                    break  # the slow session is gone: messages to it bounce
        assert b"service-unavailable" in replies
        data = await slow.read_to_close()
        assert ends_with_error(data, "resource-constraint")
        fast.close()


async def test_server_pings_a_quiet_client_and_times_out_a_dead_one(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path, ["--ping-interval", "50ms", "--ping-timeout", "50ms"]) as app:
        await add_user(app, "alice@localhost", "pw")
        raw = await RawClient.open(app.address())
        await raw.login("alice", "pw")
        await raw.expect(b"<ping xmlns='urn:xmpp:ping'/></iq>")  # XEP-0199 §4.2
        assert ends_with_error(await raw.read_to_close(), "connection-timeout")


def served_certificate(raw: RawClient) -> bytes:
    ssl_object = raw.writer.get_extra_info("ssl_object")
    return bytes(ssl_object.getpeercert(binary_form=True))


async def test_reload_swaps_the_certificate_for_new_handshakes(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    first = make_self_signed(["localhost"])
    cert.write_bytes(first[0])
    key.write_bytes(first[1])
    argv = ["--tls-listen", "127.0.0.1:0", "--tls-cert", str(cert), "--tls-key", str(key)]
    async with start_xmpp(tmp_path / "state", argv) as app:
        direct = await RawClient.open(app.address("tcp", 1), tls=True)
        before = served_certificate(direct)
        # a pair that does not load is refused; the old one stays
        cert.write_bytes(make_self_signed(["other"])[0])
        problems = await app.reload()
        assert len(problems) == 1 and "keeping the old certificate" in problems[0]
        second = make_self_signed(["localhost"])
        cert.write_bytes(second[0])
        key.write_bytes(second[1])
        assert await app.reload() == []
        # the open connection keeps its session and goes on
        await direct.open_stream()
        starttls = await RawClient.open(app.address())
        await starttls.secure()
        new_direct = await RawClient.open(app.address("tcp", 1), tls=True)
        after = {served_certificate(starttls), served_certificate(new_direct)}
        assert len(after) == 1 and before not in after
        for raw in (direct, starttls, new_direct):
            raw.close()


async def test_stanzas_are_routed_as_sent_with_from_stamped(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path) as app:
        await add_user(app, "alice@localhost", "a")
        await add_user(app, "bob@localhost", "b")
        alice, bob = await RawClient.open(app.address()), await RawClient.open(app.address())
        await alice.login("alice", "a", "r")
        await bob.login("bob", "b", "x")
        # the bytes as the client sent them, its full JID added (RFC 6120 §8.1.2.1)
        sent = "<message to='bob@localhost/x' type='chat' id='m1'><body>a &amp; b</body>"
        sent += "<x xmlns='urn:t'/></message>"
        await alice.send(sent)
        got = await bob.expect(b"</message>")
        assert got == sent.replace("<message", "<message from='alice@localhost/r'", 1).encode()
        # a 'from' the client gave as its bare JID is replaced by the full one
        await alice.send("<message from='alice@localhost' to='bob@localhost/x'><body>2</body></message>")
        assert b"from='alice@localhost/r'" in await bob.expect(b"</message>")
        alice.close()
        bob.close()


async def test_private_xml_storage(tmp_path: Path) -> None:
    """XEP-0049: one element per namespace, given back as stored; own data only."""
    async with start_xmpp(tmp_path) as app:
        await add_user(app, "alice@localhost", "a")
        await add_user(app, "bob@localhost", "b")
        raw = await RawClient.open(app.address())
        await raw.login("alice", "a", "r")
        prefs = "<prefs xmlns='urn:example:prefs'><colour>teal</colour></prefs>"
        await raw.send(f"<iq type='set' id='s'><query xmlns='jabber:iq:private'>{prefs}</query></iq>")
        assert b"type='result'" in await raw.expect(b"/>")
        query = "<query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query>"
        await raw.send(f"<iq type='get' id='g'>{query}</iq>")
        assert prefs.encode() in await raw.expect(b"</iq>")
        # nothing stored for a namespace: the empty element back
        await raw.send(
            "<iq type='get' id='e'><query xmlns='jabber:iq:private'><x xmlns='urn:other'/></query></iq>"
        )
        assert b"<x xmlns='urn:other'/>" in await raw.expect(b"</iq>")
        # a payload in jabber:client, or another account's data: refused
        await raw.send("<iq type='get' id='c'><query xmlns='jabber:iq:private'><body/></query></iq>")
        assert b"<not-acceptable " in await raw.expect(b"</iq>")
        await raw.send(
            "<iq type='get' id='o' to='bob@localhost'><query xmlns='jabber:iq:private'>"
            "<prefs xmlns='urn:example:prefs'/></query></iq>"
        )
        assert b"<forbidden " in await raw.expect(b"</iq>")
        raw.close()


async def test_sessions_per_account_are_bounded(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path, ["--max-resources", "2"]) as app:
        await add_user(app, "alice@localhost", "a")
        first, second = await RawClient.open(app.address()), await RawClient.open(app.address())
        await first.login("alice", "a", "one")
        await second.login("alice", "a", "two")
        third = await RawClient.open(app.address())
        await third.secure()
        assert b"<success" in await third.plain_auth("alice", "a")
        await third.open_stream()
        bind = "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        bind += "<resource>{}</resource></bind></iq>"
        await third.send(bind.format("three"))
        assert b"<resource-constraint " in await third.expect(b"</iq>")
        # the same resource again replaces its session (RFC 6120 §7.7.2.2)
        await third.send(bind.format("two"))
        assert b"<jid>alice@localhost/two</jid>" in await third.expect(b"</iq>")
        assert b"<conflict " in await second.read_to_close()
        first.close()
        third.close()


async def test_a_flooding_client_is_read_at_its_rate_and_others_are_served(tmp_path: Path) -> None:
    async with start_xmpp(tmp_path, ["--receive-rate", "10k"]) as app:
        await add_user(app, "flood@localhost", "f")
        await add_user(app, "bob@localhost", "b")
        flood = await RawClient.open(app.address())
        await flood.login("flood", "f", "x")
        count = 2000
        ping = "<iq type='get' id='p{}'><ping xmlns='urn:xmpp:ping'/></iq>"
        await flood.send("".join(ping.format(n) for n in range(count)))  # ~130 KB at once
        # another client logs in and is answered while the flood waits its turn
        bob = await RawClient.open(app.address())
        await bob.login("bob", "b", "y")
        await bob.send(ping.format("bob"))
        assert b"id='pbob'" in await bob.expect(b"/>")
        try:
            while True:
                flood.buffer += await asyncio.wait_for(flood.reader.read(1 << 20), 0.5)
        except TimeoutError:
            pass
        answered = flood.buffer.count(b"type='result'")
        # served, but held to 10 KiB/s after a 40 KiB burst: far from all of them
        assert 0 < answered < count
        flood.close()
        bob.close()


async def test_a_closed_connection_is_freed_without_the_cycle_collector(tmp_path: Path) -> None:
    """No reference cycle outlives a connection (core callbacks, session,
    parser handlers): its objects go when it ends, not at the next full
    collection, which a busy server makes rare."""
    async with start_xmpp(tmp_path) as app:
        await add_user(app, "alice@localhost", "a")
        service = app.ctx.service(XMPPService)
        assert service is not None
        gc.disable()
        try:
            raw = await RawClient.open(app.address())
            await raw.login("alice", "a", "r")
            session = service.im.sessions["alice@localhost"]["r"]
            connection, parser = weakref.ref(session.sink), weakref.ref(session.sink.core.parser)  # type: ignore[attr-defined]
            del session
            await raw.send("</stream:stream>")
            await raw.read_to_close()
            for _ in range(100):  # bounded: the server ends the connection in a few turns
                if "alice@localhost" not in service.im.sessions and connection() is None:
                    break
                await asyncio.sleep(0.01)
            assert connection() is None and parser() is None
        finally:
            gc.enable()
