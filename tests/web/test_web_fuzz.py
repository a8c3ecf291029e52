"""Fuzzing the core (fixed seeds, so failures reproduce).

1. Whatever bytes arrive, whole or in random pieces, every answer is one
   well-framed response (status line, fields, Content-Length matching the
   content) or the connection closes; nothing raises.
2. The fast path against h11: whenever the fast path takes a head, h11 takes
   it too and reads the same method, target, version and fields; whenever it
   refuses one, the strict slow path refuses it with the same status.
"""

from __future__ import annotations

import random

import h11
from web_helpers import NOW, make_app, parse_replies, wire_bytes

from appliances.web.connection import Connection
from appliances.web.errors import RemoteProtocolError
from appliances.web.events import CLOSED, NEED_DATA, PAUSED, ProtocolError, Request
from appliances.web.fast import parse_fast
from appliances.web.limits import DEFAULT_LIMITS
from appliances.web.slow import parse_slow

APP = make_app(
    {
        "index.html": b"<p>" + b"fuzz " * 300 + b"</p>",
        "a.txt": b"a" * 100,
        "big.bin": bytes(range(256)) * 400,
        "dir/index.html": b"dir",
        "404.html": b"not here",
    }
)

METHODS = [b"GET", b"HEAD", b"POST", b"PUT", b"OPTIONS", b"get", b"BREW", b"CONNECT", b"DELETE"]
TARGETS = [
    b"/",
    b"/index.html",
    b"/a.txt",
    b"/big.bin",
    b"/dir",
    b"/dir/",
    b"/nope",
    b"/a.txt?x=1",
    b"/%2e%2e/a.txt",
    b"/..",
    b"/%zz",
    b"/.env",
    b"*",
    b"http://h.test/a.txt",
    b"/healthz",
    b"/%c0%ae",
    b"//a.txt",
    b"/dir/../a.txt",
    b"/a%2Ftxt",
]
FIELDS = [
    (b"Host", b"h.test"),
    (b"Accept-Encoding", b"gzip, br"),
    (b"Accept-Encoding", b"gzip;q=0"),
    (b"Range", b"bytes=0-10"),
    (b"Range", b"bytes=0-1,5-9,-3"),
    (b"Range", b"bytes=99999-"),
    (b"If-None-Match", b'"x", *'),
    (b"If-None-Match", b"*"),
    (b"If-Modified-Since", b"Sun, 06 Nov 1994 08:49:37 GMT"),
    (b"If-Range", b'"x"'),
    (b"Connection", b"close"),
    (b"Connection", b"keep-alive"),
    (b"User-Agent", b"fuzz/1.0"),
    (b"Content-Length", b"5"),
    (b"Transfer-Encoding", b"chunked"),
    (b"Content-Length", b"0"),
    (b"X-Obs", b"\xe9t\xe9"),
    (b"If-Match", b'"nope"'),
]
INTERESTING = [
    b"\r",
    b"\n",
    b"\r\n",
    b"\x00",
    b" ",
    b"\t",
    b":",
    b"%",
    b"/",
    b".",
    b"\xff",
    b"0",
    b"9",
    b",",
    b'"',
]


def _base(rng: random.Random) -> bytes:
    method = rng.choice(METHODS)
    version = rng.choice([b"1.1", b"1.1", b"1.1", b"1.0"])
    lines = [method + b" " + rng.choice(TARGETS) + b" HTTP/" + version]
    if version == b"1.1" or rng.random() < 0.5:
        lines.append(b"Host: h.test")
    fields = rng.sample(FIELDS, rng.randrange(0, 5))
    lines += [n + b": " + v for n, v in fields if n != b"Host"]
    raw = b"\r\n".join(lines) + b"\r\n\r\n"
    names = {n for n, _ in fields}
    if b"Transfer-Encoding" in names:
        raw += b"5\r\nhello\r\n0\r\n\r\n"
    elif (b"Content-Length", b"5") in fields:
        raw += b"hello"
    return raw


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        if not buf:
            break
        i = rng.randrange(len(buf))
        action = rng.randrange(6)
        if action == 0:
            buf[i] = rng.randrange(256)
        elif action == 1:
            buf[i:i] = rng.choice(INTERESTING)
        elif action == 2:
            del buf[i : i + rng.randrange(1, 8)]
        elif action == 3:
            j = rng.randrange(len(buf))
            buf[i:i] = buf[j : j + rng.randrange(1, 30)]
        elif action == 4:
            del buf[i:]
        else:
            buf[i:i] = bytes(rng.randrange(32, 127) for _ in range(rng.randrange(1, 20)))
    return bytes(buf)


def _case(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.05:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    data = b"".join(_base(rng) for _ in range(rng.randrange(1, 4)))
    if kind < 0.25:
        return data
    return _mutate(rng, data)


def _run(data: bytes, chunks: list[bytes]) -> tuple[list[int], bool]:
    """Feed ``chunks`` then the end; check every response; return the statuses
    and whether any ProtocolError came out."""
    conn = Connection()
    statuses: list[int] = []
    errored = False
    for chunk in [*chunks, b""]:
        conn.receive_data(chunk)
        while True:
            event = conn.next_event()
            if event is NEED_DATA or event is CLOSED:
                break
            assert event is not PAUSED
            if isinstance(event, Request):
                response = APP.respond(event)
                head = event.method == b"HEAD"
            else:
                assert isinstance(event, ProtocolError)
                assert 400 <= event.status < 600
                errored = True
                response = APP.respond_error(event)
                head = False
            wire = conn.send(response, NOW) + wire_bytes(response, parts_only=True)
            (reply,) = parse_replies(wire, head)
            statuses.append(reply.status)
            if conn.must_close:
                return statuses, errored
        if conn.must_close:
            break
    return statuses, errored


def _split(rng: random.Random, data: bytes) -> list[bytes]:
    chunks = []
    pos = 0
    while pos < len(data):
        size = rng.choice([1, 1, 2, 3, 7, 16, 100])
        chunks.append(data[pos : pos + size])
        pos += size
    return chunks


def test_fuzz_every_outcome_is_a_response_or_a_close() -> None:
    rng = random.Random(20240601)
    answered = 0
    for _ in range(20_000):
        data = _case(rng)
        whole, errored = _run(data, [data])
        pieces, _ = _run(data, _split(rng, data))
        if not errored:
            assert pieces == whole, data
        answered += len(whole)
    assert answered > 15_000


# ----------------------------------------------------------------- differential

TCHAR = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
TARGET_CHARS = b"abcXYZ019-._~!$&'()*+,;=:@/?%"
VALUE_CHARS = bytes(range(0x20, 0x7F)) + b"\t\x80\xe9\xff"


def _word(rng: random.Random, alphabet: bytes, low: int, high: int) -> bytes:
    return bytes(rng.choice(alphabet) for _ in range(rng.randint(low, high)))


def _fast_candidate(rng: random.Random) -> bytes:
    method = rng.choice([b"GET", b"HEAD", b"GET", b"POST"])
    target = b"/" + _word(rng, TARGET_CHARS, 0, 30)
    version = rng.choice([b"1.1", b"1.0", b"1.1"])
    lines = [method + b" " + target + b" HTTP/" + version]
    names = [b"Host"] if version == b"1.1" or rng.random() < 0.5 else []
    names += [_word(rng, TCHAR, 1, 12) for _ in range(rng.randrange(0, 8))]
    if rng.random() < 0.2:
        names.append(rng.choice([b"host", b"HOST", b"Connection", b"connection", b"Content-Length"]))
    rng.shuffle(names)
    for name in names:
        if name.lower() == b"host":
            value = rng.choice([b"h.test", b"H.Test:8080", b"[::1]:80", b"", b"a b", b"x@y"])
        else:
            value = _word(rng, VALUE_CHARS, 0, 40)
        ows1 = rng.choice([b"", b" ", b"  ", b"\t"])
        ows2 = rng.choice([b"", b"", b" ", b"\t "])
        lines.append(name + b":" + ows1 + value + ows2)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _h11_parse(head: bytes) -> h11.Request | None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=DEFAULT_LIMITS.max_head)
    conn.receive_data(head)
    try:
        event = conn.next_event()
        if not isinstance(event, h11.Request):
            return None
        assert isinstance(conn.next_event(), h11.EndOfMessage)  # no content: framing agrees
        return event
    except h11.RemoteProtocolError:
        return None


def test_fast_path_agrees_with_h11() -> None:
    rng = random.Random(7)
    taken = refused = handed = 0
    for i in range(20_000):
        head = _fast_candidate(rng)
        if i % 3 == 0:
            head = _mutate(rng, head)
            if not head.endswith(b"\r\n\r\n"):
                head += b"\r\n\r\n"
        try:
            request = parse_fast(head)
        except RemoteProtocolError as exc:
            refused += 1
            try:
                parse_slow(head, False, DEFAULT_LIMITS)
            except RemoteProtocolError as slow_exc:
                assert slow_exc.status == exc.status, head
            else:
                raise AssertionError(f"fast path refused what the slow path takes: {head!r}") from None
            continue
        if request is None:
            handed += 1
            continue
        taken += 1
        event = _h11_parse(head)
        assert event is not None, f"fast path took what h11 refuses: {head!r}"
        assert (event.method, event.target, event.http_version) == (
            request.method,
            request.target,
            request.version,
        )
        assert list(event.headers) == list(request.headers), head
        # and the slow path reads it the same way
        slow, length, _ = parse_slow(head, False, DEFAULT_LIMITS)
        assert length == 0
        assert (slow.method, slow.target, slow.version, list(slow.headers), slow.host, slow.keep_alive) == (
            request.method,
            request.target,
            request.version,
            list(request.headers),
            request.host,
            request.keep_alive,
        )
    assert taken > 5_000 and refused > 200 and handed > 2_000, (taken, refused, handed)
