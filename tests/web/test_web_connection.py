"""The connection state machine: persistence, pipelining, bodies, phases, timeouts."""

from __future__ import annotations

import pytest
from web_helpers import NOW, drive, make_app, parse_replies, request

from appliances.web.connection import Connection
from appliances.web.errors import LocalProtocolError
from appliances.web.events import CLOSED, NEED_DATA, PAUSED, Phase, ProtocolError, Request
from appliances.web.limits import DEFAULT_LIMITS, Limits

APP = make_app({"index.html": b"<h1>hi</h1>\n", "a.txt": b"a", "b.txt": b"bb"})


def statuses(
    raw: bytes | list[bytes], *, limits: Limits = DEFAULT_LIMITS, eof: bool = True
) -> tuple[list[int], bool]:
    out, closed = drive(APP, raw, limits=limits, eof=eof)
    return [r.status for r in parse_replies(out)], closed


def test_http11_keeps_alive_by_default() -> None:
    out, closed = drive(APP, request("/a.txt"), eof=False)
    reply = parse_replies(out)[0]
    assert not closed and reply.header("connection") is None and reply.body == b"a"


def test_connection_close_is_honoured() -> None:
    out, closed = drive(APP, request("/a.txt", [("Connection", "close")]) + request("/b.txt"), eof=False)
    replies = parse_replies(out)
    assert closed and [r.status for r in replies] == [200]
    assert replies[0].header("connection") == "close"


def test_http10_closes_unless_keep_alive() -> None:
    out, closed = drive(APP, request("/a.txt", version="1.0", host=None), eof=False)
    assert closed and parse_replies(out)[0].header("connection") == "close"
    out, closed = drive(
        APP, request("/a.txt", [("Connection", "Keep-Alive")], version="1.0", host=None), eof=False
    )
    assert not closed and parse_replies(out)[0].header("connection") == "keep-alive"


def test_connection_tokens_are_a_list() -> None:
    _out, closed = drive(APP, request("/a.txt", [("Connection", "TE, Close")]), eof=False)
    assert closed


def test_pipelined_requests_are_answered_in_order() -> None:
    raw = request("/a.txt") + request("/b.txt", method="HEAD") + request("/nope") + request("/b.txt")
    out, _ = drive(APP, raw)
    replies = parse_replies(out, [False, True, False, False])
    assert [r.status for r in replies] == [200, 200, 404, 200]
    assert replies[0].body == b"a" and replies[3].body == b"bb"
    assert replies[1].header("content-length") == "2"


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50])
def test_pipelined_requests_in_any_chunking(size: int) -> None:
    raw = request("/a.txt") + b"\r\n" + request("/b.txt") + request("/")
    chunks = [raw[i : i + size] for i in range(0, len(raw), size)]
    assert statuses(chunks) == ([200, 200, 200], True)


def test_paused_until_answered_then_local_error_on_misuse() -> None:
    conn = Connection()
    conn.receive_data(request("/a.txt") + request("/b.txt"))
    first = conn.next_event()
    assert isinstance(first, Request) and first.target == b"/a.txt"
    assert conn.next_event() is PAUSED
    assert conn.phase is Phase.RESPONDING
    conn.send(APP.respond(first), NOW)
    second = conn.next_event()
    assert isinstance(second, Request) and second.target == b"/b.txt"
    conn.send(APP.respond(second), NOW)
    with pytest.raises(LocalProtocolError):
        conn.send(APP.respond(second), NOW)


def test_max_requests_then_close() -> None:
    limits = Limits(max_requests=3)
    out, closed = drive(APP, request("/a.txt") * 5, limits=limits, eof=False)
    replies = parse_replies(out)
    assert closed and [r.status for r in replies] == [200, 200, 200]
    assert replies[2].header("connection") == "close"


def test_default_max_requests_is_nginx_1000() -> None:
    out, closed = drive(APP, request("/a.txt") * 1001, eof=False)
    assert closed and len(parse_replies(out)) == 1000


def test_error_is_sticky() -> None:
    conn = Connection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n" + request("/a.txt"))
    event = conn.next_event()
    assert isinstance(event, ProtocolError) and event.status == 400
    assert conn.next_event() is PAUSED
    wire = conn.send(APP.respond_error(event), NOW)
    assert wire.startswith(b"HTTP/1.1 400 ") and b"\r\nConnection: close\r\n" in wire
    assert conn.must_close and conn.next_event() is CLOSED
    conn.receive_data(request("/a.txt"))
    assert conn.next_event() is CLOSED


def test_get_with_content_length_body_is_discarded() -> None:
    raw = request("/a.txt", [("Content-Length", "5")]) + b"hello" + request("/b.txt")
    assert statuses(raw) == ([200, 200], True)
    chunks = [raw[i : i + 3] for i in range(0, len(raw), 3)]
    assert statuses(chunks) == ([200, 200], True)


def test_post_with_chunked_body_is_discarded_then_405() -> None:
    body = b"5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\nTrailer: x\r\n\r\n"
    raw = request("/a.txt", [("Transfer-Encoding", "chunked")], method="POST") + body + request("/b.txt")
    assert statuses(raw) == ([405, 200], True)
    assert statuses([raw[i : i + 1] for i in range(len(raw))]) == ([405, 200], True)


def test_body_over_the_limit_413() -> None:
    limits = Limits(max_body=10)
    raw = request("/a.txt", [("Content-Length", "11")]) + b"x" * 11
    assert statuses(raw, limits=limits) == ([413], True)
    # the default: nginx's 1 MiB, checked on the declared length, before reading
    out, closed = drive(APP, request("/a.txt", [("Content-Length", str(1024 * 1024 + 1))]), eof=False)
    assert closed and parse_replies(out)[0].status == 413
    out, closed = drive(APP, request("/a.txt", [("Content-Length", "9" * 40)]), eof=False)
    assert closed and parse_replies(out)[0].status == 413
    chunked = request("/a.txt", [("Transfer-Encoding", "chunked")]) + b"6\r\nxxxxxx\r\n6\r\nxxxxxx\r\n"
    assert statuses(chunked, limits=limits, eof=False) == ([413], True)


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\nhello\r\n0\r\n\r\n",  # not hex
        b"5\r\nhelloXX0\r\n\r\n",  # no CRLF after the data
        b"5\nhello\r\n0\r\n\r\n",  # bare LF after the size
    ],
)
def test_bad_chunked_content_400(body: bytes) -> None:
    raw = request("/a.txt", [("Transfer-Encoding", "chunked")]) + body + request("/b.txt")
    assert statuses(raw) == ([400], True)


def test_end_of_stream_mid_request_closes_silently() -> None:
    assert statuses(request("/a.txt")[:-2]) == ([], True)
    assert statuses(request("/a.txt", [("Content-Length", "5")]) + b"hel") == ([], True)
    chunked = request("/a.txt", [("Transfer-Encoding", "chunked")]) + b"5\r\nhel"
    assert statuses(chunked) == ([], True)
    # but complete requests before the end are answered
    assert statuses(request("/a.txt") + request("/b.txt") + b"GET /") == ([200, 200], True)


def test_phases_and_deadlines() -> None:
    limits = Limits(header_timeout=10.0, body_timeout=5.0, keepalive_timeout=30.0)
    conn = Connection(limits=limits)
    assert conn.phase is Phase.IDLE
    assert conn.next_event() is NEED_DATA
    assert conn.deadline(100.0) == 110.0  # a fresh connection: header timeout
    conn.receive_data(b"GET /a.txt HTTP/1.1\r\n")
    assert conn.next_event() is NEED_DATA and conn.phase is Phase.HEAD
    assert conn.deadline(101.0) == 111.0  # the head's clock starts when it does...
    conn.receive_data(b"X: 1\r\n")
    assert conn.next_event() is NEED_DATA
    assert conn.deadline(108.0) == 111.0  # ...and trickling bytes does not extend it
    conn.receive_data(b"Host: a\r\nContent-Length: 3\r\n\r\n")
    assert conn.next_event() is NEED_DATA and conn.phase is Phase.BODY
    assert conn.deadline(109.0) == 114.0  # body: per read
    conn.receive_data(b"abc")
    event = conn.next_event()
    assert isinstance(event, Request)
    conn.send(APP.respond(event), NOW)
    assert conn.next_event() is NEED_DATA and conn.phase is Phase.IDLE
    assert conn.deadline(120.0) == 150.0  # keep-alive idle
    assert conn.deadline(140.0) == 150.0
    conn.receive_data(b"G")
    assert conn.next_event() is NEED_DATA and conn.phase is Phase.HEAD
    assert conn.deadline(141.0) == 151.0


def test_begin_shutdown() -> None:
    conn = Connection()
    conn.receive_data(request("/a.txt"))
    event = conn.next_event()
    assert isinstance(event, Request)
    conn.begin_shutdown()
    wire = conn.send(APP.respond(event), NOW)
    assert b"\r\nConnection: close\r\n" in wire and conn.must_close
    idle = Connection()
    idle.begin_shutdown()
    assert idle.must_close and idle.phase is Phase.CLOSED


def test_request_event_fields() -> None:
    conn = Connection(is_tls=True)
    conn.receive_data(request("/x?y", [("Accept", "a"), ("accept", "b"), ("User-Agent", "t")]))
    event = conn.next_event()
    assert isinstance(event, Request)
    assert event.is_tls and event.host == "example.test"
    assert event.fields[b"accept"] == b"a, b"  # RFC 9110 §5.3
    assert [n for n, _ in event.headers] == [b"host", b"accept", b"accept", b"user-agent"]
