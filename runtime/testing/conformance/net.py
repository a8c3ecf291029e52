"""Conformance suite for the ``Net`` device.

Subclass ``NetConformance`` and provide the ``net_env`` fixture yielding a
``NetEnv``: a server-side net, a client-side net that can reach it, the
server's lifecycle, a memory log sink, and the host to bind on.  Every
implementation (host, memory, image) must pass all of it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from ...devices import Address, Connection, ConnectionHandler, Limits, Net, Stream, TLSConfig
from ...lifecycle import Lifecycle
from ...log import MemoryLogSink
from ...net.certs import make_self_signed

__all__ = ["NetConformance", "NetEnv"]

#: every wait in this suite is bounded by this (seconds); generous for shared machines
BOUND = 10.0


@dataclass
class NetEnv:
    server: Net
    client: Net
    lifecycle: Lifecycle
    sink: MemoryLogSink
    host: str = "127.0.0.1"
    #: sends a datagram from outside and returns the reply (None on timeout)
    udp_exchange: Callable[[Address, bytes], Any] | None = None

    def address(self, port: int = 0) -> Address:
        return Address(self.host, port)


_CERT: tuple[bytes, bytes] | None = None


def _tls() -> TLSConfig:
    global _CERT
    if _CERT is None:
        _CERT = make_self_signed(["localhost", "127.0.0.1"])
    return TLSConfig(cert_pem=_CERT[0], key_pem=_CERT[1], alpn=("test/1",))


def _client_tls() -> TLSConfig:
    assert _CERT is not None
    return TLSConfig(ca_pem=_CERT[0], server_hostname="localhost", alpn=("test/1",))


async def _read_exactly(stream: Stream, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await stream.receive(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


async def _echo(stream: Stream) -> None:
    while data := await stream.receive():
        await stream.send(data)


class NetConformance:
    # ------------------------------------------------------------------ TCP

    async def test_listen_port_zero_resolves(self, net_env: NetEnv) -> None:
        listener = await net_env.server.listen_tcp(net_env.address())
        assert listener.address.port != 0
        await listener.aclose()

    async def test_echo_and_end_of_stream(self, net_env: NetEnv) -> None:
        listener = await net_env.server.listen_tcp(net_env.address())
        async with asyncio.TaskGroup() as group:
            group.create_task(listener.serve(_echo))
            client = await net_env.client.connect_tcp(listener.address)
            await client.send(b"hello, ")
            await client.send(b"world")
            assert await asyncio.wait_for(_read_exactly(client, 12), BOUND) == b"hello, world"
            assert client.peer.port == listener.address.port
            await client.aclose()
            await listener.aclose()
        assert listener.statistics().accepted == 1

    async def test_half_closed_client_still_gets_its_answer(self, net_env: NetEnv) -> None:
        async def handler(stream: Stream) -> None:
            request = b""
            while chunk := await stream.receive():
                request += chunk
            await stream.send(b"got " + request)

        listener = await net_env.server.listen_tcp(net_env.address())
        async with asyncio.TaskGroup() as group:
            group.create_task(listener.serve(handler))
            client = await net_env.client.connect_tcp(listener.address)
            await client.send(b"everything")
            transport = getattr(client, "transport", None)
            assert transport is not None
            transport.write_eof()
            assert await asyncio.wait_for(_read_exactly(client, 14), BOUND) == b"got everything"
            await client.aclose()
            await listener.aclose()

    async def test_receive_respects_max_bytes(self, net_env: NetEnv) -> None:
        got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def handler(stream: Stream) -> None:
            await asyncio.sleep(0.05)
            got.set_result(await stream.receive(3))

        listener = await net_env.server.listen_tcp(net_env.address())
        async with asyncio.TaskGroup() as group:
            group.create_task(listener.serve(handler))
            client = await net_env.client.connect_tcp(listener.address)
            await client.send(b"abcdefgh")
            assert await asyncio.wait_for(got, BOUND) == b"abc"
            await client.aclose()
            await listener.aclose()

    async def test_idle_timeout_raises_timeout(self, net_env: NetEnv) -> None:
        outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def handler(stream: Stream) -> None:
            try:
                await stream.receive()
            except TimeoutError:
                outcome.set_result("timeout")
                raise

        listener = await net_env.server.listen_tcp(net_env.address(), limits=Limits(idle_timeout=0.05))
        async with asyncio.TaskGroup() as group:
            group.create_task(listener.serve(handler))
            client = await net_env.client.connect_tcp(listener.address)
            assert await asyncio.wait_for(outcome, BOUND) == "timeout"
            # The runtime closed the connection: the client reads end-of-stream.
            assert await asyncio.wait_for(client.receive(), BOUND) == b""
            await listener.aclose()
        assert listener.statistics().handler_errors == 0

    async def test_a_shorter_timeout_after_a_longer_one_is_kept(self, net_env: NetEnv) -> None:
        outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def handler(stream: Stream) -> None:
            assert await stream.receive(timeout=30) == b"first"
            try:
                await stream.receive(timeout=0.05)
            except TimeoutError:
                outcome.set_result("timed out")

        listener = await net_env.server.listen_tcp(net_env.address())
        async with asyncio.TaskGroup() as group:
            group.create_task(listener.serve(handler))
            client = await net_env.client.connect_tcp(listener.address)
            await client.send(b"first")
            # Well before the first, 30-second deadline.
            assert await asyncio.wait_for(outcome, BOUND) == "timed out"
            await client.aclose()
            await listener.aclose()

    async def test_crashing_handler_is_logged_and_listener_goes_on(self, net_env: NetEnv) -> None:
        async def handler(stream: Stream) -> None:
            data = await stream.receive()
            if data == b"crash":
                raise ZeroDivisionError("boom")
            await stream.send(data)

        listener = await net_env.server.listen_tcp(net_env.address())
        async with asyncio.TaskGroup() as group:
            group.create_task(listener.serve(handler))
            bad = await net_env.client.connect_tcp(listener.address)
            await bad.send(b"crash")
            assert await asyncio.wait_for(bad.receive(), BOUND) == b""
            good = await net_env.client.connect_tcp(listener.address)
            await good.send(b"ping")
            assert await asyncio.wait_for(good.receive(), BOUND) == b"ping"
            await good.aclose()
            await listener.aclose()
        assert listener.statistics().handler_errors == 1
        crashes = [r for r in net_env.sink.records if r["msg"] == "connection handler crashed"]
        assert len(crashes) == 1
        assert isinstance(crashes[0]["exc"], ZeroDivisionError)

    async def test_connection_cap_holds_new_clients_back(self, net_env: NetEnv) -> None:
        listener = await net_env.server.listen_tcp(net_env.address(), limits=Limits(max_connections=1))
        async with asyncio.TaskGroup() as group:
            group.create_task(listener.serve(_echo))
            first = await net_env.client.connect_tcp(listener.address)
            await first.send(b"1")
            assert await asyncio.wait_for(first.receive(), BOUND) == b"1"
            second = await net_env.client.connect_tcp(listener.address)
            await second.send(b"2")
            # Not served while the first holds the only slot...
            with pytest.raises(TimeoutError):
                await second.receive(timeout=0.2)
            assert listener.statistics().active == 1
            await first.aclose()
            # ...and served once it is gone.
            assert await asyncio.wait_for(second.receive(), BOUND) == b"2"
            await second.aclose()
            await listener.aclose()

    async def test_stop_drains_in_flight_work(self, net_env: NetEnv) -> None:
        release = asyncio.Event()
        finished: list[str] = []

        async def handler(stream: Stream) -> None:
            request = await stream.receive()
            if request == b"slow":
                await release.wait()
                await stream.send(b"done")
                finished.append("slow")
            # an idle keep-alive reader sees end-of-stream once stopping
            assert await stream.receive() == b""
            finished.append(request.decode())

        listener = await net_env.server.listen_tcp(net_env.address())
        async with asyncio.TaskGroup() as group:
            serving = group.create_task(listener.serve(handler))
            busy = await net_env.client.connect_tcp(listener.address)
            idle = await net_env.client.connect_tcp(listener.address)
            await busy.send(b"slow")
            await idle.send(b"idle")
            await asyncio.sleep(0.05)
            net_env.lifecycle.request_stop()
            await asyncio.sleep(0.05)
            assert not serving.done()
            release.set()
            assert await asyncio.wait_for(busy.receive(), BOUND) == b"done"
            await asyncio.wait_for(serving, BOUND)
        assert sorted(finished) == ["idle", "slow", "slow"]
        with pytest.raises(OSError):
            await net_env.client.connect_tcp(listener.address)

    async def test_send_applies_back_pressure_and_times_out(self, net_env: NetEnv) -> None:
        outcome: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        limits = Limits(write_high_water=64 * 1024, write_timeout=0.2)

        async def flood(stream: Stream) -> None:
            sent = 0
            try:
                while sent < 512 * 1024 * 1024:  # bounded: far beyond any socket buffer
                    await stream.send(b"x" * 65536)
                    sent += 65536
            except TimeoutError:
                outcome.set_result(sent)
                raise

        listener = await net_env.server.listen_tcp(net_env.address(), limits=limits)
        async with asyncio.TaskGroup() as group:
            group.create_task(listener.serve(flood))
            client = await net_env.client.connect_tcp(listener.address)  # never reads
            sent = await asyncio.wait_for(outcome, BOUND * 3)
            assert sent < 64 * 1024 * 1024
            await client.aclose()
            await listener.aclose()

    async def test_write_queues_without_waiting_and_counts_what_is_buffered(self, net_env: NetEnv) -> None:
        """``write`` never waits: a caller bounding its own queue sees it grow in
        ``buffered`` while the peer does not read, and shrink when it does."""
        seen: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        go_on = asyncio.Event()

        async def writer(stream: Stream) -> None:
            assert stream.buffered == 0
            chunk = b"y" * 65536
            for _ in range(256):  # 16 MiB: more than socket buffers hold
                stream.write(chunk)
            queued = stream.buffered
            await go_on.wait()
            await stream.send(b"")  # waits while above the high-water mark
            seen.set_result((queued, stream.buffered))
            stream.close()
            with pytest.raises(ConnectionError):
                stream.write(b"late")

        listener = await net_env.server.listen_tcp(net_env.address())
        async with asyncio.TaskGroup() as group:
            group.create_task(listener.serve(writer))
            client = await net_env.client.connect_tcp(listener.address)
            await asyncio.sleep(0.05)
            go_on.set()
            received = 0
            while received < 256 * 65536:
                chunk = await asyncio.wait_for(client.receive(1 << 20), BOUND)
                if not chunk:
                    break
                received += len(chunk)
            queued, after = await asyncio.wait_for(seen, BOUND)
            assert queued > 1024 * 1024 and after < queued
            assert received == 256 * 65536
            await client.aclose()
            await listener.aclose()

    async def test_tls_listener(self, net_env: NetEnv) -> None:
        listener = await net_env.server.listen_tcp(net_env.address(), tls=_tls())
        async with asyncio.TaskGroup() as group:
            group.create_task(listener.serve(_echo))
            client = await net_env.client.connect_tcp(listener.address, tls=_client_tls())
            assert client.tls is not None and client.tls.version in ("TLSv1.2", "TLSv1.3")
            assert client.tls.alpn == "test/1"
            assert client.tls.server_end_point is not None
            await client.send(b"secret")
            assert await asyncio.wait_for(_read_exactly(client, 6), BOUND) == b"secret"
            await client.aclose()
            await listener.aclose()

    async def test_tls_certificate_swap_keeps_open_connections(self, net_env: NetEnv) -> None:
        listener = await net_env.server.listen_tcp(net_env.address(), tls=_tls())
        new_cert, new_key = make_self_signed(["localhost"])
        async with asyncio.TaskGroup() as group:
            group.create_task(listener.serve(_echo))
            old = await net_env.client.connect_tcp(listener.address, tls=_client_tls())
            listener.set_tls(TLSConfig(cert_pem=new_cert, key_pem=new_key))
            new = await net_env.client.connect_tcp(
                listener.address, tls=TLSConfig(ca_pem=new_cert, server_hostname="localhost")
            )
            for stream in (old, new):
                await stream.send(b"still")
                assert await asyncio.wait_for(_read_exactly(stream, 5), BOUND) == b"still"
                await stream.aclose()
            with pytest.raises(ssl.SSLError):  # the old certificate is no longer served
                await net_env.client.connect_tcp(listener.address, tls=_client_tls())
            await listener.aclose()

    async def test_start_tls_upgrade(self, net_env: NetEnv) -> None:
        async def handler(stream: Stream) -> None:
            assert await stream.receive() == b"STARTTLS\n"
            await stream.send(b"GO\n")
            await stream.start_tls(_tls())
            assert stream.tls is not None
            await _echo(stream)

        listener = await net_env.server.listen_tcp(net_env.address())
        async with asyncio.TaskGroup() as group:
            group.create_task(listener.serve(handler))
            plain = await net_env.client.connect_tcp(listener.address)
            await plain.send(b"STARTTLS\n")
            assert await asyncio.wait_for(plain.receive(), BOUND) == b"GO\n"
            await plain.start_tls(_client_tls())
            assert plain.tls is not None and plain.tls.server_end_point is not None
            await plain.send(b"private")
            assert await asyncio.wait_for(_read_exactly(plain, 7), BOUND) == b"private"
            await plain.aclose()
            await listener.aclose()

    async def test_start_tls_with_a_preface(self, net_env: NetEnv) -> None:
        """The go-ahead sent by ``start_tls`` itself: a client that answers it
        with its ClientHello at once is never read as cleartext, even when the
        server's task is slow to get there."""

        async def handler(stream: Stream) -> None:
            assert await stream.receive() == b"STARTTLS\n"
            await asyncio.sleep(0.01)
            await stream.start_tls(_tls(), preface=b"GO\n")
            await _echo(stream)

        listener = await net_env.server.listen_tcp(net_env.address())
        async with asyncio.TaskGroup() as group:
            group.create_task(listener.serve(handler))
            for _ in range(5):
                plain = await net_env.client.connect_tcp(listener.address)
                await plain.send(b"STARTTLS\n")
                assert await asyncio.wait_for(plain.receive(), BOUND) == b"GO\n"
                await plain.start_tls(_client_tls())
                await plain.send(b"private")
                assert await asyncio.wait_for(_read_exactly(plain, 7), BOUND) == b"private"
                await plain.aclose()
            await listener.aclose()

    async def test_connect_refused(self, net_env: NetEnv) -> None:
        listener = await net_env.server.listen_tcp(net_env.address())
        address = listener.address
        await listener.aclose()
        with pytest.raises(OSError):
            await net_env.client.connect_tcp(address)

    # ------------------------------------------------------------------ callback connections

    async def test_callback_echo_and_half_close(self, net_env: NetEnv) -> None:
        lost: list[Exception | None] = []

        class Echo(ConnectionHandler):
            def __init__(self, conn: Connection) -> None:
                self.conn = conn

            def data_received(self, data: bytes) -> None:
                self.conn.write(data.upper())

            def eof_received(self) -> bool:
                self.conn.write(b"BYE")
                self.conn.close()
                return True

            def connection_lost(self, exc: Exception | None) -> None:
                lost.append(exc)

        listener = await net_env.server.listen_tcp(net_env.address())
        async with asyncio.TaskGroup() as group:
            group.create_task(listener.serve_connections(Echo))
            client = await net_env.client.connect_tcp(listener.address)
            await client.send(b"abc")
            assert await asyncio.wait_for(_read_exactly(client, 3), BOUND) == b"ABC"
            transport = getattr(client, "transport", None)
            assert transport is not None
            transport.write_eof()
            assert await asyncio.wait_for(_read_exactly(client, 10), BOUND) == b"BYE"
            await client.aclose()
            await listener.aclose()
        assert lost == [None]
        assert listener.statistics().accepted == 1

    async def test_callback_idle_timeout_and_crash(self, net_env: NetEnv) -> None:
        lost: list[Exception | None] = []

        class Handler(ConnectionHandler):
            def __init__(self, conn: Connection) -> None:
                self.conn = conn

            def data_received(self, data: bytes) -> None:
                if data == b"crash":
                    raise ZeroDivisionError("boom")
                self.conn.write(data)

            def connection_lost(self, exc: Exception | None) -> None:
                lost.append(exc)

        listener = await net_env.server.listen_tcp(net_env.address(), limits=Limits(idle_timeout=0.1))
        async with asyncio.TaskGroup() as group:
            group.create_task(listener.serve_connections(Handler))
            idle = await net_env.client.connect_tcp(listener.address)
            assert await asyncio.wait_for(idle.receive(), BOUND) == b""  # cut by the idle timeout
            bad = await net_env.client.connect_tcp(listener.address)
            await bad.send(b"crash")
            assert await asyncio.wait_for(bad.receive(), BOUND) == b""
            good = await net_env.client.connect_tcp(listener.address)
            await good.send(b"ping")
            assert await asyncio.wait_for(good.receive(), BOUND) == b"ping"
            await good.aclose()
            await listener.aclose()
        assert listener.statistics().handler_errors == 1
        crashes = [r for r in net_env.sink.records if r["msg"] == "connection handler crashed"]
        assert len(crashes) == 1 and isinstance(crashes[0]["exc"], ZeroDivisionError)
        assert len(lost) == 3

    async def test_callback_stopping_drains(self, net_env: NetEnv) -> None:
        class Handler(ConnectionHandler):
            def __init__(self, conn: Connection) -> None:
                self.conn = conn
                self.pending = False

            def data_received(self, data: bytes) -> None:
                self.pending = True  # a request in flight, answered on "finish"

            def stopping(self) -> None:
                # finish the in-flight request, then close
                if self.pending:
                    self.conn.write(b"finished")
                self.conn.close()

        listener = await net_env.server.listen_tcp(net_env.address())
        async with asyncio.TaskGroup() as group:
            serving = group.create_task(listener.serve_connections(Handler))
            busy = await net_env.client.connect_tcp(listener.address)
            idle = await net_env.client.connect_tcp(listener.address)
            await busy.send(b"work")
            await asyncio.sleep(0.05)
            net_env.lifecycle.request_stop()
            assert await asyncio.wait_for(_read_exactly(busy, 8), BOUND) == b"finished"
            assert await asyncio.wait_for(idle.receive(), BOUND) == b""
            await asyncio.wait_for(serving, BOUND)

    async def test_callback_back_pressure_and_write_timeout(self, net_env: NetEnv) -> None:
        events: list[str] = []
        lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        limits = Limits(write_high_water=64 * 1024, write_timeout=0.2)

        class Flood(ConnectionHandler):
            def __init__(self, conn: Connection) -> None:
                self.conn = conn
                self.paused = False
                self.sent = 0

            def data_received(self, data: bytes) -> None:
                self.fill()

            def fill(self) -> None:
                # bounded: far beyond any socket buffer; stops while paused
                while not self.paused and self.sent < 512 * 1024 * 1024:
                    self.conn.write(b"x" * 65536)
                    self.sent += 65536

            def pause_writing(self) -> None:
                self.paused = True
                events.append("paused")

            def resume_writing(self) -> None:
                self.paused = False
                events.append("resumed")
                self.fill()

            def connection_lost(self, exc: Exception | None) -> None:
                if not lost.done():
                    lost.set_result(exc)

        listener = await net_env.server.listen_tcp(net_env.address(), limits=limits)
        async with asyncio.TaskGroup() as group:
            group.create_task(listener.serve_connections(Flood))
            client = await net_env.client.connect_tcp(listener.address)
            await client.send(b"go")  # then never reads
            await asyncio.wait_for(lost, BOUND * 3)
            # Paused (perhaps resumed a few times while kernel buffers filled),
            # and finally cut while paused.
            assert events[0] == "paused" and events[-1] == "paused"
            await client.aclose()
            await listener.aclose()

    async def test_callback_tls(self, net_env: NetEnv) -> None:
        class Echo(ConnectionHandler):
            def __init__(self, conn: Connection) -> None:
                self.conn = conn
                assert conn.tls is not None

            def data_received(self, data: bytes) -> None:
                self.conn.write(data)

        listener = await net_env.server.listen_tcp(net_env.address(), tls=_tls())
        async with asyncio.TaskGroup() as group:
            group.create_task(listener.serve_connections(Echo))
            client = await net_env.client.connect_tcp(listener.address, tls=_client_tls())
            await client.send(b"sealed")
            assert await asyncio.wait_for(_read_exactly(client, 6), BOUND) == b"sealed"
            await client.aclose()
            await listener.aclose()

    # ------------------------------------------------------------------ UDP

    async def test_udp_reply_and_crash(self, net_env: NetEnv) -> None:
        def handler(data: bytes, peer: tuple[Any, ...]) -> bytes | None:
            if data == b"crash":
                raise ValueError("bad datagram")
            if data == b"silent":
                return None
            return data.upper()

        endpoint = await net_env.server.bind_udp(net_env.address())
        assert endpoint.address.port != 0
        client = await net_env.client.bind_udp(net_env.address())
        replies: asyncio.Queue[bytes] = asyncio.Queue()

        def collect(data: bytes, peer: tuple[Any, ...]) -> None:
            assert peer[1] == endpoint.address.port
            replies.put_nowait(data)

        async with asyncio.TaskGroup() as group:
            serving = group.create_task(endpoint.serve(handler))
            collecting = group.create_task(client.serve(collect))
            await asyncio.sleep(0)
            for message in (b"crash", b"silent", b"abc"):
                client.send(message, endpoint.address)
            assert await asyncio.wait_for(replies.get(), BOUND) == b"ABC"
            assert replies.empty()
            net_env.lifecycle.request_stop()
            await asyncio.wait_for(serving, BOUND)
            collecting.cancel()
        await endpoint.aclose()
        await client.aclose()
        assert any(r["msg"] == "datagram handler crashed" for r in net_env.sink.records)
