"""CPU cost of the web core per request: no sockets, no event loop.

Feeds one keep-alive request at a time through ``Connection`` (fast path, or
the h11 slow path) and ``App.respond`` for a 1 KiB file held in memory, the way
the asyncio edge does, and prints requests per second on one core.

    python3 -m bench.web.core [--seconds 2]

The target is a per-request core cost under 10 µs (the budget that lets a
uvloop server pass 50k req/s on one core; nginx does 54k here).
"""

from __future__ import annotations

import argparse
import time

import h11

from appliances.web.app import App
from appliances.web.connection import Connection
from appliances.web.events import Request
from appliances.web.limits import Limits
from appliances.web.site import Site
from runtime.kv import MemoryData

__all__ = ["main"]

#: what wrk and ab send (the usual benchmark request)
WRK = b"GET /file.txt HTTP/1.1\r\nHost: localhost:8080\r\n\r\n"
#: a browser's request: more fields, Accept-Encoding (the file is gzip-served)
BROWSER = (
    b"GET /file.txt HTTP/1.1\r\nHost: localhost:8080\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
    b"Connection: keep-alive\r\n\r\n"
)
#: the same as WRK but taking the h11 path (an absolute-form target is never fast)
SLOW = b"GET http://localhost:8080/file.txt HTTP/1.1\r\nHost: localhost:8080\r\n\r\n"
#: a conditional revalidation answered 304
REVALIDATE = b'GET /file.txt HTTP/1.1\r\nHost: localhost:8080\r\nIf-None-Match: "%s"\r\n\r\n'


def run(app: App, request: bytes, seconds: float) -> tuple[float, int]:
    # max_requests out of the way: this measures the per-request cost, not closes
    conn = Connection(limits=Limits(max_requests=1 << 62))
    n = 0
    size = 0
    start = time.perf_counter()
    deadline = start + seconds
    now = time.time()
    while True:
        for _ in range(1000):
            conn.receive_data(request)
            event = conn.next_event()
            assert isinstance(event, Request)
            out = conn.send(app.respond(event), now)
            size = len(out)
            conn.next_event()  # NEED_DATA
        n += 1000
        if time.perf_counter() >= deadline:
            break
    return n / (time.perf_counter() - start), size


def run_h11_only(request: bytes, seconds: float) -> float:
    """For scale: h11 parsing and writing the same exchange, nothing else."""
    conn = h11.Connection(h11.SERVER)
    body = b"x" * 1024
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(1000):
            conn.receive_data(request)
            event = conn.next_event()
            assert isinstance(event, h11.Request)
            conn.next_event()  # EndOfMessage
            conn.send(h11.Response(status_code=200, headers=[("Content-Length", "1024")]))
            conn.send(h11.Data(data=body))
            conn.send(h11.EndOfMessage())
            conn.start_next_cycle()
        n += 1000
        if time.perf_counter() >= deadline:
            break
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per case")
    args = parser.parse_args()
    content = (b"0123456789abcdef" * 64)[:1024]
    data = MemoryData({"file.txt": content}, mtime=1_700_000_000.0)
    app = App(Site.build(data))
    etag = app.default.resources["file.txt"].identity.etag.strip(b'"')
    cases = [
        ("fast path, wrk-style request, 1 KiB file", WRK),
        ("fast path, browser request, gzip variant", BROWSER),
        ("fast path, If-None-Match -> 304", REVALIDATE % etag),
        ("h11 slow path, same file", SLOW),
    ]
    print(f"web core, one core, {args.seconds:g} s per case")
    for name, request in cases:
        rate, size = run(app, request, args.seconds)
        print(f"  {name:45s} {rate:10,.0f} req/s  {1e6 / rate:6.2f} us/req  ({size} bytes out)")
    rate = run_h11_only(WRK, args.seconds)
    print(f"  {'h11 alone (parse + write), for scale':45s} {rate:10,.0f} req/s  {1e6 / rate:6.2f} us/req")


if __name__ == "__main__":
    main()
