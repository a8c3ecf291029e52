"""Talk to the XMPP appliance: slixmpp clients (a real client library) and raw
sockets, all in the test's own event loop, every wait bounded by ``WAIT``."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import slixmpp

from appliances.xmpp import APPLIANCE
from appliances.xmpp.storage import Storage
from runtime import Address
from runtime.testing.harness import RunningAppliance, start_appliance

__all__ = [
    "WAIT",
    "Client",
    "RawClient",
    "add_user",
    "log_records",
    "start_xmpp",
]

WAIT = 20.0
SASL = b"urn:ietf:params:xml:ns:xmpp-sasl"
HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>"
)


@asynccontextmanager
async def start_xmpp(state: Path, argv: Sequence[str] = ()) -> AsyncIterator[RunningAppliance]:
    args = ["--listen", "127.0.0.1:0", "--state-dir", str(state), "--log-format", "json", *argv]
    async with start_appliance(APPLIANCE, args, target="host") as app:
        yield app


async def add_user(app: RunningAppliance, jid: str, password: str) -> None:
    assert await Storage(app.ctx.store).create_account(jid, password, app.ctx.random, 0.0)


def log_records(app: RunningAppliance) -> list[dict[str, Any]]:
    return [json.loads(line) for line in app.log_lines() if line.startswith("{")]


class Client(slixmpp.ClientXMPP):
    """A slixmpp client that trusts the appliance's self-signed certificate
    (as a user who accepted it would) and records what it receives."""

    def __init__(self, jid: str, password: str, *, wait: float = WAIT, **kwargs: Any) -> None:
        super().__init__(jid, password, **kwargs)
        #: the bound on every wait (longer through an emulated VM)
        self.wait = wait
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.messages: asyncio.Queue[Any] = asyncio.Queue()
        self.presences: asyncio.Queue[Any] = asyncio.Queue()
        self.subscriptions: asyncio.Queue[Any] = asyncio.Queue()
        self.started = asyncio.get_running_loop().create_future()
        self.add_event_handler("session_start", self._on_start)
        self.add_event_handler("failed_auth", self._on_failed)
        # slixmpp may also give up only after trying its other mechanisms
        self.add_event_handler("failed_all_auth", self._on_failed)
        self.add_event_handler("message", lambda msg: self.messages.put_nowait(msg))
        self.add_event_handler("message_error", lambda msg: self.messages.put_nowait(msg))
        self.add_event_handler("presence_available", lambda p: self.presences.put_nowait(p))
        self.add_event_handler("presence_unavailable", lambda p: self.presences.put_nowait(p))
        self.add_event_handler("presence_subscribe", lambda p: self.subscriptions.put_nowait(p))
        self.add_event_handler("presence_subscribed", lambda p: self.subscriptions.put_nowait(p))
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0199")
        self.auto_authorize = None  # the tests answer subscription requests themselves
        self.auto_subscribe = False

    async def _on_start(self, event: Any) -> None:
        if not self.started.done():
            self.started.set_result(True)

    def _on_failed(self, event: Any) -> None:
        if not self.started.done():
            self.started.set_result(False)

    async def login(self, address: Address, *, presence: bool = True) -> bool:
        self.connect(address.host, address.port)
        ok = await asyncio.wait_for(self.started, self.wait)
        if ok and presence:
            await asyncio.wait_for(self.get_roster(), self.wait)
            self.send_presence()
        return bool(ok)

    async def close(self) -> None:
        await asyncio.wait_for(self.disconnect(), self.wait)

    async def next_message(self, body: str | None = None) -> Any:
        while True:
            message = await asyncio.wait_for(self.messages.get(), self.wait)
            if body is None or message["body"] == body:
                return message

    async def presence_from(self, bare: str, kind: str = "available") -> Any:
        while True:
            presence = await asyncio.wait_for(self.presences.get(), self.wait)
            if presence["from"].bare == bare and presence["type"] == kind:
                return presence


class RawClient:
    """A raw XML stream over a socket, for what a library would never send."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = b""

    @classmethod
    async def open(cls, address: Address, *, tls: bool = False) -> RawClient:
        context = None
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["xmpp-client"])  # XEP-0368 §4
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address.host, address.port, ssl=context), WAIT
        )
        return cls(reader, writer)

    async def send(self, data: bytes | str) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self.writer.drain()

    async def expect(self, needle: bytes) -> bytes:
        """Read until ``needle`` has arrived; returns (and consumes) everything up to and with it."""
        while needle not in self.buffer:
            chunk = await asyncio.wait_for(self.reader.read(65536), WAIT)
            if not chunk:
                raise AssertionError(f"closed before {needle!r}; got {self.buffer!r}")
            self.buffer += chunk
        index = self.buffer.index(needle) + len(needle)
        got, self.buffer = self.buffer[:index], self.buffer[index:]
        return got

    async def expect_any(self, *needles: bytes) -> bytes:
        """Read until one of ``needles`` has arrived; consume up to the first found."""
        while True:
            found = [self.buffer.index(n) + len(n) for n in needles if n in self.buffer]
            if found:
                index = min(found)
                got, self.buffer = self.buffer[:index], self.buffer[index:]
                return got
            chunk = await asyncio.wait_for(self.reader.read(65536), WAIT)
            if not chunk:
                raise AssertionError(f"closed before any of {needles!r}; got {self.buffer!r}")
            self.buffer += chunk

    async def read_to_close(self) -> bytes:
        """Everything until the server closes the connection."""
        while True:
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), WAIT)
            except (ConnectionResetError, ssl.SSLError):
                break
            if not chunk:
                break
            self.buffer += chunk
        self.writer.close()
        got, self.buffer = self.buffer, b""
        return got

    async def starttls(self) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        await asyncio.wait_for(self.writer.start_tls(context), WAIT)

    async def open_stream(self, domain: str = "localhost") -> bytes:
        await self.send(HEADER.format(domain=domain))
        return await self.expect(b"</stream:features>")

    async def secure(self, domain: str = "localhost") -> bytes:
        await self.open_stream(domain)
        await self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await self.expect(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await self.starttls()
        return await self.open_stream(domain)

    async def plain_auth(self, user: str, password: str) -> bytes:
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        await self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
        return await self.expect_any(b"</success>", b"</failure>", b"<success xmlns='" + SASL + b"'/>")

    async def login(self, user: str, password: str, resource: str = "raw") -> None:
        await self.secure()
        assert b"<success" in await self.plain_auth(user, password)
        await self.open_stream()
        await self.send(
            "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            f"<resource>{resource}</resource></bind></iq>"
        )
        await self.expect(b"</iq>")

    def close(self) -> None:
        self.writer.close()


def scram_client_proof(
    password: str, salt: bytes, iterations: int, auth_message: bytes, hash_name: str = "sha256"
) -> tuple[bytes, bytes]:
    """(ClientProof, ServerSignature) as a client computes them (RFC 5802 §3)."""
    salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    stored = hashlib.new(hash_name, client_key).digest()
    signature = hmac.digest(stored, auth_message, hash_name)
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    server_key = hmac.digest(salted, b"Server Key", hash_name)
    return proof, hmac.digest(server_key, auth_message, hash_name)
