"""Fuzzing the running appliance over real sockets.

Random bytes and mutated requests (fixed seed, bounded count), each on its own
connection.  The invariant, per connection: what the server writes is a
sequence of complete, well-formed HTTP/1.1 responses, and then it closes (a
short header/keep-alive timeout bounds the wait for heads that never end).
Afterwards the handler has never crashed and a good request is still served.
"""

from __future__ import annotations

import asyncio
import random
import re

from web_server_helpers import WAIT, fetch, log_records, read_until_closed, start_web

from runtime import Address

SEED = 20261128
CONNECTIONS = 3000
#: clients at once; the appliance's default connection cap is far above
CONCURRENCY = 100

SEEDS = [
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"HEAD /style.css HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\n\r\n",
    b'GET /index.html HTTP/1.1\r\nHost: a\r\nRange: bytes=0-10,20-30\r\nIf-None-Match: "x"\r\n\r\n',
    b"GET /logo.svg HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /%2e%2e/etc/passwd?x=1 HTTP/1.1\r\nHost: a\r\n"
    b"If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET http://a/style.css HTTP/1.1\r\nHost: a\r\n\r\nGET /favicon.png HTTP/1.1\r\nHost: a\r\n\r\n",
]
SPECIAL = [b"\r", b"\n", b"\r\n", b" ", b":", b"\x00", b"\t", b"%", b",", b"\xff", b"0", b"9" * 12]

_STATUS = re.compile(rb"HTTP/1\.1 [1-5][0-9]{2} [\x20-\x7e]*")
_FIELD = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+): ([\x20-\x7e\x80-\xff]*)")


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        pos = rng.randint(0, len(buf))
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[pos:pos] = rng.choice(SPECIAL)
        elif op == 2:
            del buf[pos : pos + rng.randint(1, 8)]
        elif op == 3:
            end = min(len(buf), pos + rng.randint(1, 40))
            buf[pos:pos] = buf[pos:end] * rng.randint(1, 3)
        elif op == 4:
            buf[pos:pos] = rng.choice(SEEDS)
        elif op == 5:
            del buf[pos:]
        else:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return bytes(buf)


def inputs() -> list[bytes]:
    rng = random.Random(SEED)
    out = []
    for _ in range(CONNECTIONS):
        if rng.random() < 0.25:
            out.append(bytes(rng.randrange(256) for _ in range(rng.randint(0, 300))))
        else:
            out.append(mutate(rng, rng.choice(SEEDS)))
    return out


def check_responses(data: bytes) -> int:
    """The number of responses in ``data``; fails unless they are all complete and well-formed."""
    pos = 0
    count = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        assert end >= 0, f"incomplete head: {data[pos : pos + 200]!r}"
        lines = data[pos:end].split(b"\r\n")
        assert _STATUS.fullmatch(lines[0]), lines[0]
        lengths = []
        for line in lines[1:]:
            m = _FIELD.fullmatch(line)
            assert m, line
            if m.group(1).lower() == b"content-length":
                lengths.append(int(m.group(2)))
        pos = end + 4
        count += 1
        if lines[0].startswith(b"HTTP/1.1 304 "):
            assert not lengths
            continue
        assert len(lengths) == 1, lines
        after = pos + lengths[0]
        # The answer to HEAD carries Content-Length but no content: accept either
        # reading that leaves the stream at its end or at the next response.
        if after <= len(data) and (after == len(data) or data.startswith(b"HTTP/1.1 ", after)):
            pos = after
        else:
            assert pos == len(data) or data.startswith(b"HTTP/1.1 ", pos), data[pos : pos + 200]
    return count


async def _one(address: Address, data: bytes, limit: asyncio.Semaphore) -> bytes:
    async with limit:
        reader, writer = await asyncio.open_connection(address.host, address.port)
        try:
            try:
                writer.write(data)
                await writer.drain()
            except ConnectionError:
                pass  # the server already answered and closed: read what it said
            return await read_until_closed(reader)
        finally:
            writer.close()


async def test_fuzzed_requests_get_valid_responses_or_a_close() -> None:
    argv = [
        "--header-timeout",
        "200ms",
        "--keepalive-timeout",
        "200ms",
        "--body-timeout",
        "200ms",
        "--access-log",
        "off",
    ]
    async with start_web(argv) as app:
        address = app.address("tcp")
        limit = asyncio.Semaphore(CONCURRENCY)
        cases = inputs()
        results = await asyncio.wait_for(
            asyncio.gather(*(_one(address, data, limit) for data in cases)), WAIT * 6
        )
        answered = 0
        for data, out in zip(cases, results, strict=True):
            try:
                answered += check_responses(out) > 0
            except AssertionError as exc:
                raise AssertionError(f"bad answer to {data!r}: {exc}") from None
        assert answered > CONNECTIONS // 2  # most inputs are complete enough to be answered
        crashes = [r for r in log_records(app) if r["level"] == "error"]
        assert crashes == []
        page = await fetch(address, "/")
        assert page.status == 200 and b"web appliance" in page.body
