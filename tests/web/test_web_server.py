"""The whole web appliance on the host target, with real clients over loopback:
http.client for well-formed traffic, raw sockets for pipelining, HTTP/1.0,
malformed and smuggling shapes, slow clients and the connection bounds."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from web_helpers import parse_replies, request
from web_server_helpers import (
    WAIT,
    access_records,
    fetch,
    fetch_many,
    log_records,
    metric_value,
    raw_exchange,
    read_until_closed,
    split_head,
    start_web,
)

from appliances.web import APPLIANCE
from runtime import EXIT_CONFIG, run

DEMO = Path(__file__).resolve().parents[2] / "appliances" / "web" / "data" / "site"


async def test_serves_the_embedded_demo_site() -> None:
    async with start_web() as app:
        address = app.address("tcp")
        page = await fetch(address, "/")
        assert page.status == 200
        assert page.header("content-type") == "text/html; charset=utf-8"
        assert page.body == (DEMO / "index.html").read_bytes()
        assert page.header("etag") and page.header("last-modified") and page.header("date")
        for path, kind in [
            ("/style.css", "text/css"),
            ("/logo.svg", "image/svg+xml"),
            ("/favicon.png", "image/png"),
        ]:
            asset = await fetch(address, path)
            assert asset.status == 200, path
            assert str(asset.header("content-type")).split(";")[0] == kind
            assert asset.body == (DEMO / path[1:]).read_bytes()
        missing = await fetch(address, "/no-such-page")
        assert missing.status == 404
        assert missing.body == (DEMO / "404.html").read_bytes()
        health = await fetch(address, "/healthz")
        assert (health.status, health.body, health.header("cache-control")) == (200, b"ok\n", "no-store")
        head = await fetch(address, "/style.css", method="HEAD")
        assert (head.status, head.body, head.header("content-length")) == (200, b"", "1279")
        ready = [r for r in log_records(app) if r["msg"] == "ready"]
        assert ready and ready[0]["listening"] == f"tcp/{address}"
        assert ready[0]["url"] == f"http://{address}/"
        assert await app.stop() == 0


async def test_keep_alive_serves_many_requests_on_one_connection() -> None:
    async with start_web() as app:
        requests: list[tuple[str, str, dict[str, str]]] = [
            ("GET", "/", {}),
            ("GET", "/style.css", {}),
            ("HEAD", "/logo.svg", {}),
            ("GET", "/x", {}),
        ]
        results, sockets = await fetch_many(app.address("tcp"), requests)
        assert [r.status for r in results] == [200, 200, 200, 404]
        assert sockets == 1
        assert all(r.header("connection") is None for r in results)
        assert metric_value(app, 'web_connections_total{listener="http"}') == 1
        assert metric_value(app, 'web_requests_total{class="2xx",code="200"}') == 3
        assert metric_value(app, 'web_requests_total{class="4xx",code="404"}') == 1


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with start_web() as app:
        burst = (
            request("/style.css", host="a")
            + request("/logo.svg", method="HEAD", host="a")
            + request("/missing", host="a")
            + request("/", host="a", headers=[("Connection", "close")])
        )
        out = await raw_exchange(app.address("tcp"), burst)
        replies = parse_replies(out, [False, True, False, False])
        assert [r.status for r in replies] == [200, 200, 404, 200]
        assert replies[0].body == (DEMO / "style.css").read_bytes()
        assert replies[1].header("content-type") == "image/svg+xml"
        assert replies[3].header("connection") == "close"
        assert replies[3].body == (DEMO / "index.html").read_bytes()


async def test_http_1_0_closes_unless_keep_alive_is_asked() -> None:
    async with start_web() as app:
        address = app.address("tcp")
        out = await raw_exchange(address, b"GET /style.css HTTP/1.0\r\n\r\n")
        (reply,) = parse_replies(out)
        assert reply.status == 200 and reply.header("connection") == "close"

        reader, writer = await asyncio.open_connection(address.host, address.port)
        try:
            writer.write(b"GET /style.css HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, headers, _rest = split_head(await reader.readuntil(b"\r\n\r\n"))
            assert status == 200 and headers["connection"] == "keep-alive"
            assert (
                await reader.readexactly(int(headers["content-length"])) == (DEMO / "style.css").read_bytes()
            )
            writer.write(b"GET / HTTP/1.0\r\n\r\n")  # the same socket is still served
            (second,) = parse_replies(await read_until_closed(reader))
            assert second.status == 200 and second.header("connection") == "close"
        finally:
            writer.close()


# What a malformed or smuggling-shaped request gets: its status, then a close.
# Nothing after the bad head may be answered (that would be a smuggled request).
MALFORMED = [
    ("bare LF", b"GET / HTTP/1.1\nHost: a\n\nGET /style.css HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (
        "CL and TE",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /style.css HTTP/1.1\r\nHost: a\r\n\r\n",
        400,
    ),
    ("two CL", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    ("CL list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\nx", 400),
    ("TE on 1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("TE not chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    ("TE unknown", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: br, chunked\r\n\r\n0\r\n\r\n", 501),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    ("no Host in 1.1", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505),
    ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    ("long line", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    ("long field", b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"b" * 9000 + b"\r\n\r\n", 431),
    ("traversal", b"GET /../../etc/passwd HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 400),
]


@pytest.mark.parametrize(
    ("raw", "status"), [(raw, status) for _, raw, status in MALFORMED], ids=[name for name, _, _ in MALFORMED]
)
async def test_malformed_requests_get_their_status_then_a_close(raw: bytes, status: int) -> None:
    async with start_web() as app:
        out = await raw_exchange(app.address("tcp"), raw)
        replies = parse_replies(out)
        assert [r.status for r in replies] == [status]
        assert replies[0].header("connection") == "close"
        # ...and the appliance goes on serving.
        assert (await fetch(app.address("tcp"), "/style.css")).status == 200


async def test_slowloris_head_is_cut_off_at_the_header_timeout() -> None:
    async with start_web(["--header-timeout", "300ms", "--keepalive-timeout", "1h"]) as app:
        address = app.address("tcp")
        reader, writer = await asyncio.open_connection(address.host, address.port)
        received = b""
        closed = False
        try:
            writer.write(b"GET / HTTP/1.1\r\n")
            # One header byte every 50 ms, never the end of the head: bounded at
            # 400 bytes (20 s), far past the 300 ms the server allows.
            for byte in b"X-Slow: " + b"a" * 392:
                try:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    received = await asyncio.wait_for(reader.read(100), 0.05)
                except TimeoutError:
                    continue
                except ConnectionError:
                    closed = True
                    break
                closed = True  # read returned: b"" at the server's close
                break
        finally:
            writer.close()
        assert closed, "the server kept a never-ending head open"
        assert received == b"", "a timed-out head gets no answer (nginx closes silently too)"
        assert metric_value(app, 'web_timeouts_total{phase="head"}') == 1
        assert (await fetch(address, "/")).status == 200


async def test_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout() -> None:
    async with start_web(["--keepalive-timeout", "200ms", "--header-timeout", "1h"]) as app:
        address = app.address("tcp")
        reader, writer = await asyncio.open_connection(address.host, address.port)
        try:
            writer.write(request("/style.css", host="a"))
            status, headers, _ = split_head(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT))
            assert status == 200
            await reader.readexactly(int(headers["content-length"]))
            assert await read_until_closed(reader) == b""  # closed by the server, nothing more said
        finally:
            writer.close()
        assert metric_value(app, 'web_timeouts_total{phase="idle"}') == 1


async def test_max_requests_closes_the_connection() -> None:
    async with start_web(["--max-requests", "2"]) as app:
        out = await raw_exchange(app.address("tcp"), request("/", host="a") * 3)
        replies = parse_replies(out)
        assert [r.status for r in replies] == [200, 200]
        assert replies[0].header("connection") is None
        assert replies[1].header("connection") == "close"


async def test_request_body_limit() -> None:
    async with start_web(["--max-body", "16"]) as app:
        address = app.address("tcp")
        small = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" + request(
            "/", host="a", headers=[("Connection", "close")]
        )
        replies = parse_replies(await raw_exchange(address, small))
        assert [r.status for r in replies] == [405, 200]  # read and discarded: the connection goes on
        assert replies[0].header("allow") == "GET, HEAD"
        big = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 17\r\n\r\n" + b"x" * 17
        replies = parse_replies(await raw_exchange(address, big))
        assert [r.status for r in replies] == [413]
        chunked = (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"10\r\n0123456789abcdef\r\n1\r\nx\r\n0\r\n\r\n"
        )
        replies = parse_replies(await raw_exchange(address, chunked))
        assert [r.status for r in replies] == [413]


async def test_connection_cap_holds_new_clients_until_a_slot_frees() -> None:
    async with start_web(["--max-connections", "1"]) as app:
        address = app.address("tcp")
        first_reader, first = await asyncio.open_connection(address.host, address.port)
        first.write(request("/style.css", host="a"))
        _status, headers, _ = split_head(await asyncio.wait_for(first_reader.readuntil(b"\r\n\r\n"), WAIT))
        await first_reader.readexactly(int(headers["content-length"]))
        second_reader, second = await asyncio.open_connection(address.host, address.port)  # kernel backlog
        try:
            second.write(request("/", host="a", headers=[("Connection", "close")]))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(second_reader.read(1), 0.3)  # not served while the slot is taken
            first.close()
            (reply,) = parse_replies(await read_until_closed(second_reader))
            assert reply.status == 200
        finally:
            first.close()
            second.close()


async def test_graceful_stop_finishes_an_in_flight_large_response(tmp_path: Path) -> None:
    content = hashlib.sha256(b"seed").digest() * (32 * 1024 * 1024 // 32)  # 32 MiB, not compressible
    (tmp_path / "big.bin").write_bytes(content)
    async with start_web(["--root", str(tmp_path), "--drain-timeout", "60s"]) as app:
        address = app.address("tcp")
        reader, writer = await asyncio.open_connection(address.host, address.port, limit=1 << 20)
        try:
            writer.write(request("/big.bin", host="a"))
            status, headers, rest = split_head(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT))
            assert status == 200 and int(headers["content-length"]) == len(content)
            body = bytearray(rest)
            body += await asyncio.wait_for(reader.readexactly(1024 * 1024), WAIT)
            app.ctx.request_stop()  # as SIGTERM does, with the response in flight
            body += await read_until_closed(reader)  # the rest, then the close
        finally:
            writer.close()
        assert len(body) == len(content) and bytes(body) == content
        assert await asyncio.wait_for(app.task, WAIT) == 0
        with pytest.raises(OSError):
            await asyncio.open_connection(address.host, address.port)  # no longer listening


async def test_stop_closes_idle_keep_alive_connections() -> None:
    async with start_web() as app:
        address = app.address("tcp")
        reader, writer = await asyncio.open_connection(address.host, address.port)
        try:
            writer.write(request("/style.css", host="a"))
            _status, headers, _ = split_head(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT))
            await reader.readexactly(int(headers["content-length"]))
            assert await asyncio.wait_for(app.stop(), WAIT) == 0
            assert await read_until_closed(reader) == b""
        finally:
            writer.close()


async def test_reload_rebuilds_the_sites(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "index.html").write_text("one\n")
    async with start_web(["--root", str(root)]) as app:
        address = app.address("tcp")
        assert (await fetch(address, "/")).body == b"one\n"
        assert (await fetch(address, "/new.txt")).status == 404
        (root / "new.txt").write_text("new\n")
        (root / "index.html").write_text("two, longer\n")
        assert await app.reload() == []
        assert (await fetch(address, "/new.txt")).body == b"new\n"
        assert (await fetch(address, "/")).body == b"two, longer\n"
        assert metric_value(app, "web_reloads_total") == 1


async def test_virtual_hosts_from_subdirectories(tmp_path: Path) -> None:
    hosts = tmp_path / "vhosts"
    for name in ("a.example", "B.Example"):
        (hosts / name).mkdir(parents=True)
        (hosts / name / "index.html").write_text(f"site {name}\n")
    async with start_web(["--vhosts-root", str(hosts)]) as app:
        address = app.address("tcp")
        a = await fetch(address, "/", headers={"Host": "a.example"})
        b = await fetch(address, "/", headers={"Host": "b.EXAMPLE.:8080"})
        other = await fetch(address, "/", headers={"Host": "c.example"})
        assert (a.status, a.body) == (200, b"site a.example\n")
        assert (b.status, b.body) == (200, b"site B.Example\n")
        assert other.body == (DEMO / "index.html").read_bytes()  # the default site
        assert (await fetch(address, "/README.txt", headers={"Host": "a.example"})).status == 404
        (hosts / "c.example").mkdir()
        (hosts / "c.example" / "index.html").write_text("site c\n")
        assert await app.reload() == []
        assert (await fetch(address, "/", headers={"Host": "c.example"})).body == b"site c\n"


async def test_site_options(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.css").write_text("a {}\n")
    (tmp_path / ".secret").write_text("dot\n")
    argv = [
        "--root",
        str(tmp_path),
        "--listing",
        "--dotfiles",
        "--no-server-header",
        "--security-headers",
        "--cache-control",
        "/docs/*.css=public, max-age=60",
        "--cache-control",
        "*=no-cache",
        "--health-path",
        "/status",
    ]
    async with start_web(argv) as app:
        address = app.address("tcp")
        listing = await fetch(address, "/docs/")
        assert listing.status == 200 and b'href="a.css"' in listing.body
        css = await fetch(address, "/docs/a.css")
        assert css.header("cache-control") == "public, max-age=60"
        assert css.header("server") is None
        assert css.header("x-frame-options") == "SAMEORIGIN"
        assert css.header("content-security-policy") == "default-src 'self'; frame-ancestors 'self'"
        assert css.header("strict-transport-security") is None  # --hsts is off, and this is not TLS
        dot = await fetch(address, "/.secret")
        assert (dot.status, dot.body, dot.header("cache-control")) == (200, b"dot\n", "no-cache")
        assert (await fetch(address, "/status")).body == b"ok\n"
        assert (await fetch(address, "/healthz")).status == 404
    async with start_web(["--root", str(tmp_path), "--health-path", ""]) as app:
        address = app.address("tcp")
        assert (await fetch(address, "/docs/")).status == 404  # no listing by default
        assert (await fetch(address, "/.secret")).status == 404  # no dotfiles by default
        assert (await fetch(address, "/healthz")).status == 404
        assert (await fetch(address, "/docs/a.css")).header("server") == "web"


async def test_access_log_combined_and_json() -> None:
    async with start_web() as app:
        await fetch(app.address("tcp"), "/style.css?x=1", headers={"User-Agent": 'evil" agent\xe9'})
        (record,) = access_records(app)
        line = str(record["msg"])
        assert line.startswith("127.0.0.1 - - [")
        assert '"GET /style.css?x=1 HTTP/1.1" 200 1279 "-" "evil\\x22 agent\\xE9"' in line
    async with start_web(["--access-log", "json"]) as app:
        await raw_exchange(app.address("tcp"), b"GET / HTTP/1.2\r\n\r\n")
        await fetch(app.address("tcp"), "/missing", method="HEAD")
        first, second = access_records(app)
        assert first["status"] == 505 and first["method"] is None and "error" in first
        assert (second["msg"], second["method"], second["target"], second["status"]) == (
            "request",
            "HEAD",
            "/missing",
            404,
        )
        assert second["peer"] == "127.0.0.1" and second["host"] == "127.0.0.1"
    async with start_web(["--access-log", "off"]) as app:
        await fetch(app.address("tcp"), "/")
        assert access_records(app) == []


async def test_metrics() -> None:
    async with start_web() as app:
        address = app.address("tcp")
        for path in ("/", "/style.css", "/missing"):
            await fetch(address, path)
        await raw_exchange(address, b"GET / HTTP/1.2\r\n\r\n")
        assert metric_value(app, 'web_requests_total{class="2xx",code="200"}') == 2
        assert metric_value(app, 'web_requests_total{class="4xx",code="404"}') == 1
        assert metric_value(app, 'web_requests_total{class="5xx",code="505"}') == 1
        assert metric_value(app, "web_request_duration_seconds_count") == 4
        assert metric_value(app, "web_sent_bytes_total") > 2267 + 1279
        assert metric_value(app, 'web_connections_total{listener="http"}') == 4
        assert metric_value(app, "web_connections_active") == 0


def test_bad_options_fail_with_one_line() -> None:
    import io

    for argv, needle in [
        (["--cache-control", "nonsense"], "--cache-control"),
        (["--health-path", "healthz"], "--health-path"),
        (["--access-log", "stdout"], "--access-log"),
        (["--max-body", "lots"], "--max-body"),
    ]:
        err = io.StringIO()
        assert run(APPLIANCE, argv, {}, stderr=err) == EXIT_CONFIG
        lines = err.getvalue().splitlines()
        assert len(lines) == 1 and needle in lines[0], lines


async def test_same_appliance_on_the_memory_target() -> None:
    from runtime.testing.harness import start_appliance

    async with start_appliance(APPLIANCE, ["--listen", "127.0.0.1:80"], target="memory") as app:
        stream = await app.connect_tcp()
        await stream.send(request("/style.css", host="a") + request("/", method="HEAD", host="a"))
        out = b""
        while out.count(b"HTTP/1.1 ") < 2 or not out.endswith(b"\r\n\r\n"):
            chunk = await stream.receive(timeout=WAIT)
            assert chunk, out
            out += chunk
        replies = parse_replies(out, [False, True])
        assert [r.status for r in replies] == [200, 200]
        assert replies[0].body == (DEMO / "style.css").read_bytes()
        await stream.aclose()
        assert await app.stop() == 0
