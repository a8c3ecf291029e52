"""The Net conformance suite against the host and the memory implementations,
plus host-only behaviour (EMFILE backoff, IPv6)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from runtime.devices import Address
from runtime.lifecycle import Lifecycle
from runtime.log import MemoryLogSink
from runtime.net.host import HostNet
from runtime.net.memory import MemoryNet, MemoryNetwork
from runtime.testing.conformance.net import NetConformance, NetEnv


class TestHostNet(NetConformance):
    @pytest.fixture
    async def net_env(self) -> AsyncIterator[NetEnv]:
        sink = MemoryLogSink()
        lifecycle = Lifecycle()
        server = HostNet(lifecycle=lifecycle, log=sink.logger("net"))
        client = HostNet(lifecycle=Lifecycle(), log=sink.logger("client"))
        yield NetEnv(server, client, lifecycle, sink)


class TestMemoryNet(NetConformance):
    @pytest.fixture
    async def net_env(self) -> AsyncIterator[NetEnv]:
        sink = MemoryLogSink()
        lifecycle = Lifecycle()
        network = MemoryNetwork()
        server = MemoryNet(network, lifecycle=lifecycle, log=sink.logger("net"))
        client = MemoryNet(network, lifecycle=Lifecycle(), log=sink.logger("client"), host="127.0.0.2")
        yield NetEnv(server, client, lifecycle, sink)


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback on this machine")
async def test_host_ipv6_tcp_and_udp() -> None:
    sink = MemoryLogSink()
    lifecycle = Lifecycle()
    net = HostNet(lifecycle=lifecycle, log=sink.logger("net"))
    listener = await net.listen_tcp(Address("::1", 0))
    endpoint = await net.bind_udp(Address("::1", 0))
    assert listener.address.host == "::1" and str(listener.address).startswith("[::1]:")

    async def echo(stream: Any) -> None:
        await stream.send(await stream.receive())

    def exchange(port: int) -> bytes:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.settimeout(10)
            sock.sendto(b"abc", ("::1", port))
            return sock.recv(100)

    async with asyncio.TaskGroup() as group:
        group.create_task(listener.serve(echo))
        group.create_task(endpoint.serve(lambda data, peer: data[::-1]))
        try:
            stream = await net.connect_tcp(listener.address)
            await stream.send(b"v6")
            assert await asyncio.wait_for(stream.receive(), 10) == b"v6"
            assert stream.peer.host == "::1"
            await stream.aclose()
            assert await asyncio.to_thread(exchange, endpoint.address.port) == b"cba"
        finally:
            lifecycle.request_stop()
    await endpoint.aclose()


def test_certificate_helpers() -> None:
    import hashlib
    import ssl

    from runtime import certificate_fingerprint, make_self_signed, tls_server_end_point

    cert, _ = make_self_signed(["localhost", "::1"])
    der = ssl.PEM_cert_to_DER_cert(cert.decode())
    digest = hashlib.sha256(der).digest()
    assert certificate_fingerprint(cert) == ":".join(f"{b:02X}" for b in digest)
    # Our certificates are signed ecdsa-with-SHA256: RFC 5929 §4.1 hashes with SHA-256.
    assert tls_server_end_point(cert) == digest
    with pytest.raises(ValueError):
        certificate_fingerprint(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
