"""Dates, content types, head encoding, access log lines."""

from __future__ import annotations

import json

import pytest
from web_helpers import NOW, make_app, request

from appliances.web.accesslog import combined_line, json_line
from appliances.web.connection import Connection
from appliances.web.dates import date_line, format_http_date, parse_http_date
from appliances.web.events import ProtocolError, Request
from appliances.web.mime import content_type, is_compressible
from appliances.web.response import Response, encode_head


def test_dates() -> None:
    assert format_http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert format_http_date(784111777.9) == "Sun, 06 Nov 1994 08:49:37 GMT"
    for text in [
        b"Sun, 06 Nov 1994 08:49:37 GMT",
        b"Sunday, 06-Nov-94 08:49:37 GMT",
        b"Sun Nov  6 08:49:37 1994",
    ]:
        assert parse_http_date(text) == 784111777, text
    assert parse_http_date(b"Thursday, 01-Jan-30 00:00:00 GMT") == 1893456000
    for bad in [
        b"",
        b"yesterday",
        b"Sun, 31 Feb 1994 08:49:37 GMT",
        b"Sun, 06 Foo 1994 08:49:37 GMT",
        b"Sun, 06 Nov 1994 08:49:37 UTC",
        b"Sun, 6 Nov 1994 08:49:37 GMT",
    ]:
        assert parse_http_date(bad) is None, bad
    assert date_line(NOW) == b"Date: Tue, 14 Nov 2023 22:13:20 GMT\r\n"
    assert date_line(NOW + 0.5) is date_line(NOW)  # cached per second
    assert date_line(NOW + 1) == b"Date: Tue, 14 Nov 2023 22:13:21 GMT\r\n"


@pytest.mark.parametrize(
    ("key", "ctype", "compress"),
    [
        ("index.html", "text/html; charset=utf-8", True),
        ("a/b/app.JS", "text/javascript; charset=utf-8", True),
        ("feed.rss", "application/rss+xml; charset=utf-8", True),
        ("data.json", "application/json", True),
        ("logo.svg", "image/svg+xml", True),
        ("photo.jpeg", "image/jpeg", False),
        ("font.woff2", "font/woff2", False),
        ("README", "application/octet-stream", False),
        (".htaccess", "application/octet-stream", False),
        ("archive.tar.gz", "application/gzip", False),
    ],
)
def test_content_types(key: str, ctype: str, compress: bool) -> None:
    assert content_type(key) == ctype
    assert is_compressible(key) == compress


def test_encode_head_refuses_line_breaks() -> None:
    assert encode_head(200, [("A", "b")]) == b"HTTP/1.1 200 OK\r\nA: b\r\n"
    with pytest.raises(ValueError):
        encode_head(301, [("Location", "/x\r\nSet-Cookie: y")])


def _exchange(raw: bytes) -> tuple[Request, Response]:
    app = make_app()
    conn = Connection()
    conn.receive_data(raw)
    event = conn.next_event()
    assert isinstance(event, Request)
    return event, app.respond(event)


def test_combined_log_format() -> None:
    event, response = _exchange(
        request('/?q="x"', [("Referer", "http://r.test/"), ("User-Agent", 'evil"agent\\ \xe9')])
    )
    line = combined_line(event, response, "192.0.2.1", NOW)
    assert line == (
        '192.0.2.1 - - [14/Nov/2023:22:13:20 +0000] "GET /?q=\\x22x\\x22 HTTP/1.1" 200 12 '
        '"http://r.test/" "evil\\x22agent\\x5C \\xE9"'
    )
    error = combined_line(
        ProtocolError(400, "bad"), make_app().respond_error(ProtocolError(400, "bad")), "::1", NOW
    )
    assert error.startswith('::1 - - [14/Nov/2023:22:13:20 +0000] "-" 400 ') and error.endswith('"-" "-"')


def test_json_log_line() -> None:
    event, response = _exchange(request("/", [("User-Agent", "curl/8")]))
    record = json.loads(json_line(event, response, "192.0.2.1", NOW + 0.25))
    assert record == {
        "time": "2023-11-14T22:13:20.250Z",
        "peer": "192.0.2.1",
        "method": "GET",
        "target": "/",
        "version": "1.1",
        "host": "example.test",
        "status": 200,
        "bytes": 12,
        "referer": None,
        "user_agent": "curl/8",
    }
    error = json.loads(
        json_line(ProtocolError(431, "too big"), make_app().respond_error(ProtocolError(431, "x")), "p", NOW)
    )
    assert error["status"] == 431 and error["error"] == "too big" and error["method"] is None
