"""Request parsing: the fast path, the strict gate in front of h11, the statuses."""

from __future__ import annotations

import pytest
from web_helpers import drive, make_app, parse_replies, request, roundtrip

from appliances.web.errors import RemoteProtocolError
from appliances.web.fast import parse_fast
from appliances.web.limits import DEFAULT_LIMITS
from appliances.web.slow import parse_slow

APP = make_app()


def status_and_close(raw: bytes, *, one_byte: bool = False) -> tuple[int, bool]:
    chunks = [raw[i : i + 1] for i in range(len(raw))] if one_byte else raw
    out, closed = drive(APP, chunks)
    replies = parse_replies(out)
    assert len(replies) == 1, [r.status for r in replies]
    return replies[0].status, closed


def test_fast_path_takes_a_plain_get() -> None:
    raw = b"GET /a?b=c HTTP/1.1\r\nHost: Example.TEST:8080\r\nX-A:  v 1 \t\r\nX-B:\r\n\r\n"
    req = parse_fast(raw)
    assert req is not None
    assert (req.method, req.target, req.version, req.path, req.host) == (
        b"GET",
        b"/a?b=c",
        b"1.1",
        b"/a?b=c",
        "example.test",
    )
    assert list(req.headers) == [(b"host", b"Example.TEST:8080"), (b"x-a", b"v 1"), (b"x-b", b"")]
    assert req.keep_alive


@pytest.mark.parametrize(
    "raw",
    [
        b"POST / HTTP/1.1\r\nHost: a\r\n\r\n",  # other methods
        b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",  # absolute-form
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",  # content framing
        b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",  # obs-fold
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",  # space before colon
        b"GET /{} HTTP/1.1\r\nHost: a\r\n\r\n",  # characters outside RFC 3986
        b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: \x00\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 9000 + b"\r\n\r\n",  # long: slow path checks lines
    ],
)
def test_fast_path_hands_off(raw: bytes) -> None:
    assert parse_fast(raw) is None


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # RFC 9112 §3.2: Host required in 1.1
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a:x\r\n\r\n", 400),
    ],
)
def test_host_rules(raw: bytes, status: int) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_fast(raw)
    assert info.value.status == status
    # and the slow path agrees
    with pytest.raises(RemoteProtocolError) as info:
        parse_slow(raw, False, DEFAULT_LIMITS)
    assert info.value.status == status
    assert status_and_close(raw) == (status, True)


def test_http10_needs_no_host_and_ipv6_hosts_work() -> None:
    assert roundtrip(APP, b"GET / HTTP/1.0\r\n\r\n").status == 200
    assert roundtrip(APP, request(host="[::1]:8080")).status == 200
    assert roundtrip(APP, request(host="")).status == 200  # empty Host is allowed (RFC 9112 §3.2)


SMUGGLING = [
    # RFC 9112 §6.1/§11.2: both framings
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
    # repeated or list Content-Length, even equal (h11 merges them)
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\nx",
    # invalid Content-Length (§6.3 rule 5)
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
    # Transfer-Encoding not ending in one chunked (§6.3 rule 4)
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
    # Transfer-Encoding in HTTP/1.0 (§6.1)
    b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    # obs-fold, space or tab before the colon, bare CR / LF, NUL, other CTLs
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n Transfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\nHost: a\n\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x0bb\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n: empty name\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nno colon\r\n\r\n",
]


@pytest.mark.parametrize("raw", SMUGGLING)
@pytest.mark.parametrize("one_byte", [False, True])
def test_smuggling_shapes_get_400_and_close(raw: bytes, one_byte: bool) -> None:
    assert status_and_close(raw + request("/smuggled"), one_byte=one_byte) == (400, True)


def test_unknown_transfer_coding_before_chunked_is_501() -> None:
    raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
    assert status_and_close(raw) == (501, True)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /\r\nHost: a\r\n\r\n", 400),  # HTTP/0.9 shape
        (b"GET / HTTP/1.1 extra\r\nHost: a\r\n\r\n", 400),
        (b"GET / http/1.1\r\nHost: a\r\n\r\n", 400),  # HTTP-name is case-sensitive
        (b"GET / HTTP/01.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1\r\nHost: a\r\n\r\n", 400),
        (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET a.b:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # a TLS hello
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505),
        (b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505),
        (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505),
    ],
)
def test_malformed_request_lines(raw: bytes, status: int) -> None:
    assert status_and_close(raw) == (status, True)


def test_empty_lines_before_the_request_line_are_ignored() -> None:
    out, _closed = drive(APP, b"\r\n\r\n" + request())
    assert [r.status for r in parse_replies(out)] == [200]


@pytest.mark.parametrize("one_byte", [False, True])
def test_uri_too_long_414(one_byte: bool) -> None:
    raw = request("/" + "a" * (8 * 1024))
    assert status_and_close(raw, one_byte=one_byte) == (414, True)
    # ...also before the line ends: no need to wait for the rest
    out, closed = drive(APP, b"GET /" + b"a" * 9000, eof=False)
    assert closed and parse_replies(out)[0].status == 414


def test_uri_at_the_limit_is_fine() -> None:
    target = "/" + "a" * (8 * 1024 - len("GET  HTTP/1.1") - 1)
    assert len(f"GET {target} HTTP/1.1") == 8 * 1024
    assert roundtrip(APP, request(target)).status == 404


@pytest.mark.parametrize("one_byte", [False, True])
@pytest.mark.parametrize(
    "fields",
    [
        [("X-Big", "v" * 8300)],  # one line over 8 KiB
        [(f"X-{i}", "v" * 1000) for i in range(17)],  # total over 16 KiB, each line fine
        [(f"X-{i}", "v") for i in range(101)],  # more than 100 fields
    ],
)
def test_head_too_large_431(fields: list[tuple[str, str]], one_byte: bool) -> None:
    assert status_and_close(request("/", fields), one_byte=one_byte) == (431, True)


def test_head_too_large_before_it_ends() -> None:
    out, closed = drive(APP, request("/", [("X", "v" * 17000)])[:-4], eof=False)
    assert closed and parse_replies(out)[0].status == 431


def test_bare_lf_head_answered_before_it_ends() -> None:
    out, closed = drive(APP, b"GET / HTTP/1.1\nHost: a\n", eof=False)
    assert closed and parse_replies(out)[0].status == 400


@pytest.mark.parametrize(
    ("method", "status"),
    [
        ("POST", 405),
        ("PUT", 405),
        ("DELETE", 405),
        ("PATCH", 405),
        ("OPTIONS", 405),
        ("TRACE", 405),
        ("get", 501),
        ("Get", 501),
        ("BREW", 501),
        ("PROPFIND", 501),
    ],
)
def test_methods(method: str, status: int) -> None:
    out, _ = drive(APP, request(method=method) + request("/"))
    replies = parse_replies(out)
    assert [r.status for r in replies] == [status, 200]  # the connection stays usable
    assert replies[0].header("allow") == "GET, HEAD"


def test_options_asterisk_and_connect() -> None:
    assert roundtrip(APP, b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").status == 405
    assert roundtrip(APP, b"CONNECT a.b:443 HTTP/1.1\r\nHost: a.b:443\r\n\r\n").status == 405


def test_absolute_form_uses_its_authority() -> None:
    other = make_app({"index.html": b"other"})
    app = make_app(vhosts={"b.test": other.default})
    reply = roundtrip(app, b"GET http://B.test:80/?q HTTP/1.1\r\nHost: a.test\r\n\r\n")
    assert reply.body == b"other"
    reply = roundtrip(app, b"GET https://b.test HTTP/1.1\r\nHost: a.test\r\n\r\n")
    assert reply.body == b"other"
