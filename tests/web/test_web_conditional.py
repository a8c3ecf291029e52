"""Conditional requests (RFC 9110 §13) and ranges (RFC 9110 §14)."""

from __future__ import annotations

import email.parser
import email.policy
import re

import pytest
from web_helpers import MTIME, Reply, make_app, request, roundtrip

from appliances.web.dates import format_http_date
from appliances.web.ranges import UNSATISFIABLE, parse_range

CONTENT = bytes(range(256)) * 4  # 1024 bytes, not compressible as a type
TEXT = b"0123456789" * 100  # 1000 bytes of text: has a gzip variant
BIG = bytes(range(251)) * 400  # 100,400 bytes: streamed from the data device
APP = make_app({"f.bin": CONTENT, "t.txt": TEXT, "big.bin": BIG, "empty.bin": b""})
LAST_MODIFIED = format_http_date(MTIME)


def get(target: str, headers: list[tuple[str, str]], method: str = "GET") -> Reply:
    return roundtrip(APP, request(target, headers, method=method))


def etag_of(target: str, headers: list[tuple[str, str]] | None = None) -> str:
    value = get(target, headers or []).header("etag")
    assert value is not None
    return value


def test_if_none_match() -> None:
    etag = etag_of("/f.bin")
    for value in [etag, f'"x", {etag}', f"W/{etag}", "*", f' "x" ,  {etag} ']:
        reply = get("/f.bin", [("If-None-Match", value)])
        assert reply.status == 304, value
        assert reply.body == b"" and reply.header("etag") == etag
        assert reply.header("content-length") is None and reply.header("last-modified") is None
        assert reply.header("date") is not None
    assert get("/f.bin", [("If-None-Match", '"other"')]).status == 200
    assert get("/f.bin", [("If-None-Match", "garbage")]).status == 200
    assert get("/f.bin", [("If-None-Match", etag)], method="HEAD").status == 304


def test_304_carries_vary_and_cache_control() -> None:
    from appliances.web.site import SiteOptions

    app = make_app({"t.txt": TEXT}, SiteOptions(cache_control=(("*", "max-age=60"),)))
    gz = roundtrip(app, request("/t.txt", [("Accept-Encoding", "gzip")]))
    etag = gz.header("etag")
    assert etag is not None
    reply = roundtrip(app, request("/t.txt", [("Accept-Encoding", "gzip"), ("If-None-Match", etag)]))
    assert reply.status == 304
    assert reply.header("vary") == "Accept-Encoding" and reply.header("cache-control") == "max-age=60"
    # the identity representation has another tag: no match
    assert roundtrip(app, request("/t.txt", [("If-None-Match", etag)])).status == 200


def test_if_modified_since() -> None:
    assert get("/f.bin", [("If-Modified-Since", LAST_MODIFIED)]).status == 304
    assert get("/f.bin", [("If-Modified-Since", format_http_date(MTIME + 5))]).status == 304
    assert get("/f.bin", [("If-Modified-Since", format_http_date(MTIME - 1))]).status == 200
    assert get("/f.bin", [("If-Modified-Since", "Monday, 13-Nov-23 22:13:20 GMT")]).status == 304
    assert get("/f.bin", [("If-Modified-Since", "Mon Nov 13 22:13:20 2023")]).status == 304
    assert get("/f.bin", [("If-Modified-Since", "yesterday")]).status == 200  # invalid: ignored


def test_if_none_match_takes_precedence() -> None:
    # RFC 9110 §13.2.2: If-Modified-Since is ignored when If-None-Match is present
    reply = get("/f.bin", [("If-None-Match", '"other"'), ("If-Modified-Since", LAST_MODIFIED)])
    assert reply.status == 200


def test_if_match_and_if_unmodified_since() -> None:
    etag = etag_of("/f.bin")
    assert get("/f.bin", [("If-Match", etag)]).status == 200
    assert get("/f.bin", [("If-Match", "*")]).status == 200
    assert get("/f.bin", [("If-Match", '"other"')]).status == 412
    assert get("/f.bin", [("If-Match", f"W/{etag}")]).status == 412  # strong comparison
    assert get("/f.bin", [("If-Unmodified-Since", LAST_MODIFIED)]).status == 200
    assert get("/f.bin", [("If-Unmodified-Since", format_http_date(MTIME - 1))]).status == 412
    # If-Match wins over If-Unmodified-Since
    assert get("/f.bin", [("If-Match", etag), ("If-Unmodified-Since", format_http_date(0))]).status == 200


@pytest.mark.parametrize(
    ("value", "size", "expected"),
    [
        (b"bytes=0-499", 1000, [(0, 499)]),
        (b"bytes=500-", 1000, [(500, 999)]),
        (b"bytes=-200", 1000, [(800, 999)]),
        (b"bytes=-2000", 1000, [(0, 999)]),
        (b"bytes=0-0,-1", 1000, [(0, 0), (999, 999)]),
        (b"bytes=900-2000", 1000, [(900, 999)]),
        (b"BYTES = 1-2", 1000, [(1, 2)]),
        (b"bytes=0-10, 5-20, 21-30, 50-60", 1000, [(0, 30), (50, 60)]),  # coalesced
        (b"bytes=50-60,0-10", 1000, [(0, 10), (50, 60)]),  # sorted
        (b"bytes=1000-", 1000, UNSATISFIABLE),
        (b"bytes=-0", 1000, UNSATISFIABLE),
        (b"bytes=0-", 0, UNSATISFIABLE),
        (b"bytes=1000-,2000-3000", 1000, UNSATISFIABLE),
        (b"bytes=1000-,0-1", 1000, [(0, 1)]),
        (b"bytes=5-1", 1000, None),  # invalid: ignored
        (b"bytes=abc", 1000, None),
        (b"bytes=", 1000, None),
        (b"bytes=1-2-3", 1000, None),
        (b"items=0-1", 1000, None),
        (b"0-1", 1000, None),
        (b"bytes=" + b",".join(b"%d-%d" % (i * 10, i * 10) for i in range(17)), 1000, None),  # > 16 ranges
        (b"bytes=" + b",".join(b"0-1" for _ in range(101)), 1000, None),
        (b"bytes=" + b",".join(b"0-100" for _ in range(100)), 1000, [(0, 100)]),  # the overlap attack
    ],
)
def test_parse_range(value: bytes, size: int, expected: object) -> None:
    assert parse_range(value, size) == expected


@pytest.mark.parametrize("target,content", [("/f.bin", CONTENT), ("/big.bin", BIG)])
def test_single_ranges(target: str, content: bytes) -> None:
    size = len(content)
    for spec, start, end in [("0-9", 0, 9), ("100-", 100, size - 1), ("-5", size - 5, size - 1)]:
        reply = get(target, [("Range", f"bytes={spec}")])
        assert reply.status == 206
        assert reply.header("content-range") == f"bytes {start}-{end}/{size}"
        assert reply.body == content[start : end + 1]
        assert reply.header("etag") == etag_of(target)
        assert reply.header("content-type") == "application/octet-stream"


def _parse_multipart(reply: Reply, content_type: str) -> list[tuple[str, bytes]]:
    ctype = reply.header("content-type")
    assert ctype is not None
    m = re.fullmatch(r"multipart/byteranges; boundary=(\S+)", ctype)
    assert m is not None
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {ctype}\r\n\r\n".encode() + reply.body
    )
    parts = []
    for part in message.iter_parts():
        assert part.get("Content-Type") == content_type
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        parts.append((str(part.get("Content-Range")), payload))
    # and the exact framing RFC 9110 §14.6 shows
    assert reply.body.startswith(b"\r\n--" + m.group(1).encode() + b"\r\n")
    assert reply.body.endswith(b"\r\n--" + m.group(1).encode() + b"--\r\n")
    return parts


@pytest.mark.parametrize("target,content", [("/f.bin", CONTENT), ("/big.bin", BIG)])
def test_multiple_ranges(target: str, content: bytes) -> None:
    size = len(content)
    reply = get(target, [("Range", "bytes=0-9, 20-29, -10")])
    assert reply.status == 206 and reply.header("content-range") is None
    parts = _parse_multipart(reply, "application/octet-stream")
    assert parts == [
        (f"bytes 0-9/{size}", content[0:10]),
        (f"bytes 20-29/{size}", content[20:30]),
        (f"bytes {size - 10}-{size - 1}/{size}", content[-10:]),
    ]
    # overlapping ones are merged: one range is a plain 206
    merged = get(target, [("Range", "bytes=0-9,5-19")])
    assert merged.header("content-range") == f"bytes 0-19/{size}" and merged.body == content[:20]


def test_unsatisfiable_416() -> None:
    reply = get("/f.bin", [("Range", "bytes=5000-")])
    assert reply.status == 416 and reply.header("content-range") == "bytes */1024"
    empty = get("/empty.bin", [("Range", "bytes=0-")])
    assert empty.status == 416 and empty.header("content-range") == "bytes */0"


def test_invalid_range_is_ignored() -> None:
    reply = get("/f.bin", [("Range", "bytes=9-1")])
    assert reply.status == 200 and reply.body == CONTENT


def test_head_ignores_range() -> None:
    reply = get("/f.bin", [("Range", "bytes=0-1")], method="HEAD")
    assert reply.status == 200 and reply.header("content-length") == "1024"


def test_if_range() -> None:
    etag = etag_of("/f.bin")
    assert get("/f.bin", [("Range", "bytes=0-1"), ("If-Range", etag)]).status == 206
    assert get("/f.bin", [("Range", "bytes=0-1"), ("If-Range", LAST_MODIFIED)]).status == 206
    for stale in ['"other"', f"W/{etag}", format_http_date(MTIME - 1), "garbage"]:
        reply = get("/f.bin", [("Range", "bytes=0-1"), ("If-Range", stale)])
        assert reply.status == 200 and reply.body == CONTENT, stale


def test_range_on_a_compressible_file_serves_identity_bytes() -> None:
    reply = get("/t.txt", [("Range", "bytes=0-4"), ("Accept-Encoding", "gzip")])
    assert reply.status == 206 and reply.body == b"01234"
    assert reply.header("content-encoding") is None and reply.header("vary") == "Accept-Encoding"
    full = get("/t.txt", [("Accept-Encoding", "gzip")])
    assert full.status == 200 and full.header("content-encoding") == "gzip"


def test_conditional_before_range() -> None:
    etag = etag_of("/f.bin")
    assert get("/f.bin", [("Range", "bytes=0-1"), ("If-None-Match", etag)]).status == 304
