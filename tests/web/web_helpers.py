"""Drive the web core with bytes and read back what it wrote, as a client would."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from appliances.web.app import App, AppOptions
from appliances.web.connection import Connection
from appliances.web.events import CLOSED, NEED_DATA, PAUSED, Request
from appliances.web.limits import DEFAULT_LIMITS, Limits
from appliances.web.response import FileSegment, Response
from appliances.web.site import Site, SiteOptions
from runtime.kv import MemoryData

__all__ = [
    "MTIME",
    "NOW",
    "Reply",
    "drive",
    "make_app",
    "parse_replies",
    "request",
    "roundtrip",
    "wire_bytes",
]

#: the time every test runs at (2023-11-14T22:13:20Z)
NOW = 1_700_000_000.0
#: the mtime of every test file (one day earlier)
MTIME = NOW - 86400

_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([1-5][0-9][0-9]) ([^\r\n]*)")


@dataclass
class Reply:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n == name.lower()]
        assert len(values) <= 1, f"{name} repeated: {values}"
        return values[0] if values else None

    def names(self) -> list[str]:
        return [n for n, _ in self.headers]


def wire_bytes(response: Response, *, parts_only: bool = False) -> bytes:
    """The content bytes after the head: body, then parts (file segments read)."""
    out = bytearray(b"" if parts_only else response.body)
    for part in response.parts:
        if isinstance(part, FileSegment):
            out += part.data.read(part.key)[part.offset : part.offset + part.length]
        else:
            out += part
    return bytes(out)


def drive(
    app: App,
    chunks: bytes | Iterable[bytes],
    *,
    is_tls: bool = False,
    limits: Limits = DEFAULT_LIMITS,
    eof: bool = True,
) -> tuple[bytes, bool]:
    """Feed ``chunks`` (then the end of stream if ``eof``); return the bytes
    written and whether the core asked to close."""
    conn = Connection(is_tls=is_tls, limits=limits)
    pieces = [chunks] if isinstance(chunks, bytes) else [c for c in chunks if c]
    if eof:
        pieces.append(b"")
    out = bytearray()
    for piece in pieces:
        conn.receive_data(piece)
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                break
            if event is CLOSED:
                return bytes(out), True
            assert event is not PAUSED
            response = app.respond(event) if isinstance(event, Request) else app.respond_error(event)
            out += conn.send(response, NOW)
            out += wire_bytes(response, parts_only=True)
            if conn.must_close:
                return bytes(out), True
    return bytes(out), False


def parse_replies(data: bytes, head: Sequence[bool] | bool = False) -> list[Reply]:
    """Split a response stream; every response must be well framed.

    ``head[i]`` says the i-th request was HEAD (no content follows)."""
    replies: list[Reply] = []
    pos = 0
    while pos < len(data):
        end = data.index(b"\r\n\r\n", pos)
        lines = data[pos:end].split(b"\r\n")
        m = _STATUS_LINE.fullmatch(lines[0])
        assert m is not None, lines[0]
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b": ")
            assert sep and re.fullmatch(rb"[-A-Za-z0-9]+", name), line
            headers.append((name.decode().lower(), value.decode("latin-1")))
        status = int(m.group(1))
        reply = Reply(status, m.group(2).decode(), headers, b"")
        pos = end + 4
        is_head = head[len(replies)] if isinstance(head, Sequence) else head
        lengths = [v for n, v in headers if n == "content-length"]
        assert len(lengths) <= 1
        if status == 304 or status == 204:
            assert not lengths
        else:
            assert len(lengths) == 1, f"no Content-Length in {lines[0]!r}"
            if not is_head:
                size = int(lengths[0])
                reply.body = data[pos : pos + size]
                assert len(reply.body) == size, "short content"
                pos += size
        assert reply.header("date") is not None
        replies.append(reply)
    return replies


def make_app(
    files: dict[str, bytes] | None = None,
    options: SiteOptions | None = None,
    *,
    vhosts: dict[str, Site] | None = None,
    app_options: AppOptions | None = None,
) -> App:
    data = MemoryData(files if files is not None else {"index.html": b"<h1>hi</h1>\n"}, mtime=MTIME)
    return App(Site.build(data, options or SiteOptions()), vhosts, app_options)


def request(
    target: str = "/",
    headers: Sequence[tuple[str, str]] = (),
    *,
    method: str = "GET",
    version: str = "1.1",
    host: str | None = "example.test",
) -> bytes:
    lines = [f"{method} {target} HTTP/{version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{n}: {v}" for n, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def roundtrip(app: App, raw: bytes, *, is_tls: bool = False) -> Reply:
    """One request in, exactly one well-framed reply out."""
    out, _ = drive(app, raw, is_tls=is_tls)
    replies = parse_replies(out, raw.startswith(b"HEAD "))
    assert len(replies) == 1, replies
    return replies[0]
