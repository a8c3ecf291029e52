"""Differential test: the appliance and nginx serve the same root; the same
generated requests go to both; statuses, key fields and bodies must agree.

nginx runs as our own subprocess (one worker, pid/temp/log files under
tmp_path, a free loopback port).  Where we answer differently on purpose, the
case is listed in ``DIFFERENCES`` with both answers and the reason; the test
checks that both servers still answer as listed, so the list cannot go stale.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from web_server_helpers import WAIT, read_until_closed, require_tool, start_web

from runtime import Address

pytestmark = pytest.mark.slow

#: every file's mtime: 2023-11-14T22:13:20Z
MTIME = 1_700_000_000
LAST_MODIFIED = "Tue, 14 Nov 2023 22:13:20 GMT"
LATER = "Wed, 15 Nov 2023 00:00:00 GMT"
EARLIER = "Mon, 13 Nov 2023 00:00:00 GMT"

NGINX_CONF = """
worker_processes 1;
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 256; }}
http {{
    include {mime_types};
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    charset utf-8;
    charset_types text/plain text/css text/xml text/javascript application/javascript application/xml
                  application/rss+xml application/atom+xml text/markdown text/csv;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        index index.html;
        # the usual "hide dotfiles" rule, as a 404 like ours
        location ~ /\\. {{ return 404; }}
    }}
}}
"""


def make_root(root: Path) -> None:
    rng = random.Random(7)
    files = {
        "index.html": b"<!DOCTYPE html>\n<title>top</title>\n<p>top page</p>\n",
        "a.txt": b"".join(b"line %02d of a.txt\n" % i for i in range(40)),
        "style.css": b"body { color: #222; }\n",
        "app.js": b"console.log('hi');\n",
        "data.json": b'{"a": 1}\n',
        "image.png": bytes(rng.randrange(256) for _ in range(300)),
        "sub/index.html": b"<p>sub index</p>\n",
        "sub/page.html": b"<p>sub page</p>\n",
        "nodir/file.txt": b"file in a directory without an index\n",
        ".hidden": b"secret\n",
        ".well-known/security.txt": b"Contact: mailto:security@example.test\n",
        "with space.txt": b"spaced\n",
        "big.bin": bytes(rng.randrange(256) for _ in range(300 * 1024)),
    }
    for key, content in files.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        os.utime(path, (MTIME, MTIME))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare(tmp_path: Path) -> tuple[Path, Path, int]:
    """The root both servers serve, nginx's configuration and its port."""
    root = tmp_path / "root"
    make_root(root)
    port = free_port()
    mime_types = Path("/etc/nginx/mime.types")
    assert mime_types.is_file(), "nginx's mime.types is missing: apt-get install -y nginx-light"
    conf = tmp_path / "nginx.conf"
    user = "user root root;" if os.geteuid() == 0 else ""
    conf.write_text(NGINX_CONF.format(tmp=tmp_path, port=port, root=root, user=user, mime_types=mime_types))
    return conf, root, port


@pytest.fixture
async def nginx(tmp_path: Path) -> AsyncIterator[tuple[Address, Path]]:
    binary = require_tool("nginx")
    conf, root, port = prepare(tmp_path)
    process = await asyncio.create_subprocess_exec(
        binary,
        "-p",
        str(tmp_path),
        "-c",
        str(conf),
        "-e",
        str(tmp_path / "error.log"),
        "-g",
        "daemon off;",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    address = Address("127.0.0.1", port)
    try:
        for _ in range(400):  # bounded: 20 s
            try:
                _, writer = await asyncio.open_connection(address.host, address.port)
            except OSError:
                assert process.returncode is None, "nginx exited: see error.log in " + str(tmp_path)
                await asyncio.sleep(0.05)
                continue
            writer.close()
            break
        else:
            raise AssertionError("nginx did not start listening")
        yield address, root
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), WAIT)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def get(self, name: str) -> str | None:
        return self.headers.get(name)


def parse(data: bytes) -> Answer:
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"no complete response: {data[:300]!r}"
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(status, headers, body)


async def exchange(address: Address, raw: bytes) -> Answer:
    reader, writer = await asyncio.open_connection(address.host, address.port)
    try:
        writer.write(raw)
        await writer.drain()
        return parse(await read_until_closed(reader))
    finally:
        writer.close()


def req(method: str, target: str, *headers: str, version: str = "1.1", host: bool = True) -> bytes:
    lines = [f"{method} {target} HTTP/{version}"]
    if host:
        lines.append("Host: localhost")
    lines += [*headers, "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


#: name -> request, given the server's own ETag for /a.txt
Case = Callable[[str], bytes]

PATHS = [
    "/",
    "/index.html",
    "/a.txt",
    "/style.css",
    "/data.json",
    "/image.png",
    "/big.bin",
    "/sub",
    "/sub/",
    "/sub/page.html",
    "/sub/index.html",
    "/nodir/file.txt",
    "/missing",
    "/missing/",
    "/sub/missing.html",
    "/.hidden",
    "/sub/.hidden",
    "/with%20space.txt",
    "/%61.txt",
    "/sub/../a.txt",
    "/sub/./page.html",
    "//a.txt",
    "/a.txt?x=1&y=2",
    "/sub?x=1",
    "/a.txt/",
    "/../a.txt",
    "/%2e%2e/a.txt",
    "/sub/%2e%2e/a.txt",
    "/%2fa.txt",
    "/nodir",
    "/a.txt%00",
]
RANGES = [
    "bytes=0-9",
    "bytes=-5",
    "bytes=700-",
    "bytes=0-0,5-9",
    "bytes=10-20,0-4",
    "bytes=99999-",
    "bytes=0-99999",
    "bytes=5-2",
    "bytes=abc",
    "items=0-5",
    "bytes=0-1,1-2",
]


def _fixed(raw: bytes) -> Case:
    return lambda _etag: raw


def cases() -> dict[str, Case]:
    found: dict[str, Case] = {}
    for path in PATHS:
        for method in ("GET", "HEAD"):
            found[f"{method} {path}"] = _fixed(req(method, path))
    for spec in RANGES:
        for path in ("/a.txt", "/big.bin"):
            found[f"GET {path} Range: {spec}"] = _fixed(req("GET", path, f"Range: {spec}"))
    found["HEAD /a.txt Range: bytes=0-9"] = lambda _e: req("HEAD", "/a.txt", "Range: bytes=0-9")
    found["If-None-Match own ETag"] = lambda etag: req("GET", "/a.txt", f"If-None-Match: {etag}")
    found["If-None-Match own ETag, HEAD"] = lambda etag: req("HEAD", "/a.txt", f"If-None-Match: {etag}")
    found["If-None-Match other"] = lambda _e: req("GET", "/a.txt", 'If-None-Match: "other"')
    found["If-None-Match *"] = lambda _e: req("GET", "/a.txt", "If-None-Match: *")
    found["If-Modified-Since exact"] = lambda _e: req("GET", "/a.txt", f"If-Modified-Since: {LAST_MODIFIED}")
    found["If-Modified-Since later"] = lambda _e: req("GET", "/a.txt", f"If-Modified-Since: {LATER}")
    found["If-Modified-Since earlier"] = lambda _e: req("GET", "/a.txt", f"If-Modified-Since: {EARLIER}")
    found["If-Modified-Since bad date"] = lambda _e: req("GET", "/a.txt", "If-Modified-Since: yesterday")
    found["If-Range own ETag"] = lambda etag: req("GET", "/a.txt", "Range: bytes=0-3", f"If-Range: {etag}")
    found["If-Range other"] = lambda _e: req("GET", "/a.txt", "Range: bytes=0-3", 'If-Range: "other"')
    for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH", "FOO", "get"):
        found[f"method {method}"] = _fixed(req(method, "/a.txt"))
    found["HTTP/1.0 no Host"] = lambda _e: req("GET", "/a.txt", version="1.0", host=False)
    found["HTTP/1.0 directory"] = lambda _e: req("GET", "/sub", version="1.0", host=False)
    found["HTTP/1.1 no Host"] = lambda _e: req("GET", "/a.txt", host=False)
    found["absolute-form"] = lambda _e: req("GET", "http://localhost/a.txt")
    found["HTTP/1.2"] = lambda _e: req("GET", "/a.txt", version="1.2")
    found["bare LF"] = lambda _e: b"GET /a.txt HTTP/1.1\nHost: localhost\nConnection: close\n\n"
    found["long header line"] = lambda _e: req("GET", "/a.txt", "X-Long: " + "x" * 9000)
    found["Content-Length body on GET"] = lambda _e: req("GET", "/a.txt", "Content-Length: 3") + b"abc"
    return found


#: case -> (our status, nginx's status, why we differ)
DIFFERENCES: dict[str, tuple[int, int, str]] = {
    "bare LF": (
        400,
        200,
        "RFC 9112 §2.2 lets a server accept a bare LF; we refuse it: a line end two "
        "parsers read differently is a smuggling vector",
    ),
    "HTTP/1.2": (505, 200, "RFC 9110 §15.6.6: we implement 1.0 and 1.1 only; nginx takes any 1.x as 1.1"),
    "method get": (
        501,
        400,
        "methods are case-sensitive (RFC 9110 §9.1): 'get' is a method we do not "
        "implement; nginx's parser takes only A-Z and calls it malformed",
    ),
    "method FOO": (
        501,
        405,
        "RFC 9110 §9.1: an unrecognised method is 501; nginx answers 405 as for known ones",
    ),
    "long header line": (
        431,
        400,
        "RFC 6585 §5 defines 431 for header fields too large; nginx answers "
        "400 'Request Header Or Cookie Too Large'",
    ),
    "If-Modified-Since later": (
        304,
        200,
        "RFC 9110 §13.1.3: not modified since the date means "
        "Last-Modified <= date; nginx's default 'if_modified_since exact' wants "
        "the dates equal",
    ),
    "GET /.well-known/security.txt": (
        200,
        404,
        "RFC 8615: /.well-known/ (ACME, security.txt) is served though other dotfiles are hidden",
    ),
    "HEAD /.well-known/security.txt": (200, 404, "as GET"),
    "GET /nodir/": (
        404,
        403,
        "a directory without an index and without --listing: nothing there to "
        "show, so 404 (not a permission problem)",
    ),
    "HEAD /nodir/": (404, 403, "as GET"),
    "HEAD /a.txt Range: bytes=0-9": (
        200,
        206,
        "RFC 9110 §14.2: range handling is defined for GET only and "
        "a server MUST ignore Range on other methods; nginx answers HEAD 206",
    ),
}
for _path in ("/a.txt", "/big.bin"):
    DIFFERENCES[f"GET {_path} Range: bytes=0-1,1-2"] = (
        206,
        206,
        "overlapping ranges are merged (RFC 9110 §14.2 allows coalescing; it defeats the "
        "CVE-2011-3192 amplification): one part 0-2, while nginx sends two overlapping parts",
    )
for _spec in ("bytes=5-2", "bytes=abc"):
    for _path in ("/a.txt", "/big.bin"):
        DIFFERENCES[f"GET {_path} Range: {_spec}"] = (
            200,
            416,
            "RFC 9110 §14.2: a Range that does not parse is ignored (the whole content); nginx answers 416",
        )

#: field-level differences, checked where statuses agree
FIELD_DIFFERENCES = {
    "Last-Modified on 304": "RFC 9110 §15.4.5: a 304 carries ETag, Cache-Control, Vary... not "
    "Last-Modified; nginx sends it",
    "Location": "we send a relative Location (RFC 9110 §10.2.2 allows it; no Host is trusted to build "
    "one); nginx an absolute URL with its own host and port: only the paths are compared",
    "ETag": "both strong, but ours is a content hash and nginx's mtime-size: only presence is compared",
    "Content-Type of .js": "text/javascript (RFC 9239) vs nginx 1.22's application/javascript",
    "error bodies": "each server's own error page: bodies are compared for 2xx only",
    "multipart order": "our parts are sorted by offset (RFC 9110 §14.2 lets a server coalesce and "
    "reorder); nginx keeps the request's order: parts are compared as sets",
}
JS_TYPES = {"text/javascript; charset=utf-8", "application/javascript; charset=utf-8"}


def multipart_parts(answer: Answer) -> list[tuple[str, bytes]]:
    """(Content-Range, content) of each part of a multipart/byteranges body."""
    boundary = answer.headers["content-type"].split("boundary=")[1].strip('"')
    parts = []
    for chunk in answer.body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, content = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        fields = dict(
            (n.strip().lower(), v.strip())
            for n, _, v in (line.partition(":") for line in head.decode().split("\r\n"))
        )
        parts.append((fields["content-range"], content[:-2] if content.endswith(b"\r\n") else content))
    return parts


def compare(name: str, ours: Answer, theirs: Answer) -> list[str]:
    problems = []
    if ours.status != theirs.status:
        return [f"status {ours.status} vs nginx {theirs.status}"]
    status = ours.status
    for field in ("content-range", "accept-ranges"):
        if ours.get(field) != theirs.get(field) and status != 304:
            problems.append(f"{field}: {ours.get(field)!r} vs {theirs.get(field)!r}")
    if status in (200, 206):
        ctype, their_ctype = ours.get("content-type"), theirs.get("content-type")
        if ctype != their_ctype and not (ctype in JS_TYPES and their_ctype in JS_TYPES):
            if not (status == 206 and "multipart" in str(ctype) and "multipart" in str(their_ctype)):
                problems.append(f"content-type: {ctype!r} vs {their_ctype!r}")
        if (ours.get("etag") is None) != (theirs.get("etag") is None):
            problems.append(f"etag presence: {ours.get('etag')!r} vs {theirs.get('etag')!r}")
        if status == 200 and ours.get("last-modified") != theirs.get("last-modified"):
            problems.append(
                f"last-modified: {ours.get('last-modified')!r} vs {theirs.get('last-modified')!r}"
            )
        multipart = "multipart/byteranges" in str(ctype)
        if not multipart and ours.get("content-length") != theirs.get("content-length"):
            problems.append(
                f"content-length: {ours.get('content-length')!r} vs {theirs.get('content-length')!r}"
            )
        if multipart:
            if sorted(multipart_parts(ours)) != sorted(multipart_parts(theirs)):
                problems.append("multipart parts differ")
        elif ours.body != theirs.body:
            problems.append(f"bodies differ ({len(ours.body)} vs {len(theirs.body)} bytes)")
    if status == 304 and (ours.get("etag") is None) != (theirs.get("etag") is None):
        problems.append("304 etag presence")
    if status in (301, 302):
        mine, nginx_location = ours.get("location"), theirs.get("location")
        if mine is None or nginx_location is None or urlsplit(mine).path != urlsplit(nginx_location).path:
            problems.append(f"location: {mine!r} vs {nginx_location!r}")
    return problems


async def test_same_answers_as_nginx(nginx: tuple[Address, Path]) -> None:
    nginx_address, root = nginx
    async with start_web(["--root", str(root), "--access-log", "off", "--no-gzip"]) as app:
        ours_address = app.address("tcp")
        our_etag = (await exchange(ours_address, req("GET", "/a.txt"))).headers["etag"]
        their_etag = (await exchange(nginx_address, req("GET", "/a.txt"))).headers["etag"]
        mismatches = []
        stale = []
        table = cases()
        assert len(table) > 100
        for name, make in table.items():
            ours = await exchange(ours_address, make(our_etag))
            theirs = await exchange(nginx_address, make(their_etag))
            if name in DIFFERENCES:
                want_ours, want_theirs, _ = DIFFERENCES[name]
                if (ours.status, theirs.status) != (want_ours, want_theirs):
                    stale.append(f"{name}: now {ours.status} vs nginx {theirs.status}")
                continue
            problems = compare(name, ours, theirs)
            if problems:
                mismatches.append(f"{name}: {'; '.join(problems)}")
        report = ["DIFFERENCES no longer hold:", *stale] if stale else []
        report += ["differences from nginx not listed:", *mismatches] if mismatches else []
        assert not report, "\n".join(report)
