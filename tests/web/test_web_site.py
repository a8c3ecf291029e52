"""Sites: path resolution and its traversal shapes, index and listing, fields,
gzip variants, large files, virtual hosts, health."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from web_helpers import MTIME, NOW, Reply, make_app, request, roundtrip, wire_bytes

from appliances.web.app import App, AppOptions
from appliances.web.events import Request
from appliances.web.response import FileSegment
from appliances.web.site import Site, SiteOptions
from runtime.devices import DataEntry
from runtime.kv import DirectoryData, MemoryData

TEXT = b"<p>" + b"hello web appliance " * 40 + b"</p>\n"  # compressible, 806 bytes
FILES = {
    "index.html": TEXT,
    "404.html": b"<h1>custom not found</h1>\n",
    "style.css": b"body { color: black; }\n",
    "img/logo.png": b"\x89PNG fake",
    "docs/index.html": b"docs index",
    "docs/a b.txt": b"spaced",
    "docs/café.txt": b"utf-8 name",
    "noindex/x.txt": b"x",
    "noindex/sub/y.txt": b"y",
    "noindex/.hidden": b"h",
    ".env": b"SECRET=1",
    ".git/config": b"[core]",
    ".well-known/security.txt": b"Contact: mailto:x@example.test\n",
    "%2e": b"literal percent-two-e",
    "data.bin": b"\x00\x01",
}
APP = make_app(FILES)


def get(
    target: str,
    headers: list[tuple[str, str]] | None = None,
    app: App = APP,
    *,
    method: str = "GET",
    version: str = "1.1",
    host: str | None = "example.test",
) -> Reply:
    return roundtrip(app, request(target, headers or [], method=method, version=version, host=host))


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/", 200),
        ("/index.html", 200),
        ("/./index.html", 200),
        ("//index.html", 200),
        ("/docs/../index.html", 200),
        ("/docs/%2e%2e/index.html", 200),
        ("/%69ndex.html", 200),  # percent-decoding once
        ("/docs/a%20b.txt", 200),
        ("/docs/caf%C3%A9.txt", 200),
        ("/index.html?x=1&y=/../../etc", 200),  # the query plays no part in the lookup
        ("/..", 400),
        ("/../index.html", 400),
        ("/%2e%2e/index.html", 400),
        ("/%2E%2E%2Findex.html", 400),
        ("/docs/..%2f..%2findex.html", 400),
        ("/..%5cindex.html", 400),  # backslash, encoded
        ("/docs\\a.txt", 400),  # backslash, raw (slow path)
        ("/index.html%00.txt", 400),
        ("/%0aindex.html", 400),
        ("/%zz", 400),
        ("/%4", 400),
        ("/%c0%ae%c0%ae/index.html", 400),  # overlong UTF-8 dots
        ("/caf%e9.txt", 400),  # Latin-1, not UTF-8
        ("/%252e%252e/index.html", 404),  # double encoding decodes once: a file named "%2e%2e"
        ("/%252e", 200),  # ...which is how "%2e" is reached
        ("/index.html#frag", 400),
        ("/nope", 404),
        ("/index.html/", 404),
        ("/img/", 404),  # no index, no listing
    ],
)
def test_paths(target: str, status: int) -> None:
    assert get(target).status == status


@pytest.mark.parametrize("target", ["/.env", "/.git/config", "/.git/", "/noindex/.hidden", "/docs/../.env"])
def test_dotfiles_hidden(target: str) -> None:
    assert get(target).status == 404


def test_dotfiles_can_be_allowed_and_well_known_always_is() -> None:
    assert get("/.well-known/security.txt").status == 200
    app = make_app(FILES, SiteOptions(dotfiles=True))
    assert get("/.env", app=app).body == b"SECRET=1"


def test_directory_without_slash_redirects_with_query() -> None:
    reply = get("/docs?a=1&b")
    assert reply.status == 301 and reply.header("location") == "/docs/?a=1&b"
    assert get("/noindex").header("location") == "/noindex/"
    # the Location is rebuilt from the normalised path: never a "//host" reference
    app = make_app({"evil.example/index.html": b"x"})
    assert get("//evil.example", app=app).header("location") == "/evil.example/"
    assert get("/docs/index.html").body == b"docs index"
    assert get("/docs/").body == b"docs index"


def test_custom_and_builtin_404() -> None:
    reply = get("/missing")
    assert reply.status == 404 and reply.body == FILES["404.html"]
    assert reply.header("content-type") == "text/html; charset=utf-8"
    plain = make_app({"index.html": b"x"})
    reply = get("/missing", app=plain)
    assert reply.status == 404 and b"404 Not Found" in reply.body
    head = roundtrip(APP, request("/missing", method="HEAD"))
    assert (
        head.status == 404
        and head.body == b""
        and head.header("content-length") == str(len(FILES["404.html"]))
    )


def test_listing_when_enabled() -> None:
    app = make_app({**FILES, "noindex/<script>.txt": b"s"}, SiteOptions(listing=True))
    reply = get("/noindex/", app=app)
    assert reply.status == 200
    page = reply.body.decode()
    assert '<a href="sub/">sub/</a>' in page and '<a href="x.txt">x.txt</a>' in page
    assert "&lt;script&gt;.txt" in page and "<script>" not in page
    assert '<a href="%3Cscript%3E.txt">' in page
    assert ".hidden" not in page
    assert get("/docs/", app=app).body == b"docs index"  # an index wins over the listing


def test_content_types() -> None:
    assert get("/style.css").header("content-type") == "text/css; charset=utf-8"
    assert get("/img/logo.png").header("content-type") == "image/png"
    assert get("/data.bin").header("content-type") == "application/octet-stream"
    assert get("/.well-known/security.txt").header("content-type") == "text/plain; charset=utf-8"


def test_response_fields() -> None:
    reply = get("/style.css")
    assert reply.header("server") == "web"
    assert reply.header("date") == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert reply.header("last-modified") == "Mon, 13 Nov 2023 22:13:20 GMT"
    etag = reply.header("etag")
    assert etag is not None and etag.startswith('"') and len(etag) == 34
    assert reply.header("accept-ranges") == "bytes"
    assert reply.header("x-content-type-options") == "nosniff"
    assert reply.header("content-length") == str(len(FILES["style.css"]))
    head = roundtrip(APP, request("/style.css", method="HEAD"))
    assert head.headers == reply.headers and head.body == b""


def test_server_field_off_and_security_fields() -> None:
    opts = SiteOptions(
        server=None, nosniff=False, frame_options="DENY", csp="default-src 'self'", hsts="max-age=63072000"
    )
    app = App(Site.build(MemoryData(FILES, mtime=MTIME), opts), options=AppOptions(server=None))
    reply = get("/style.css", app=app)
    assert reply.header("server") is None and reply.header("x-content-type-options") is None
    assert reply.header("x-frame-options") == "DENY"
    assert reply.header("content-security-policy") == "default-src 'self'"
    assert reply.header("strict-transport-security") is None  # not over plain HTTP
    tls = roundtrip(app, request("/style.css"), is_tls=True)
    assert tls.header("strict-transport-security") == "max-age=63072000"
    assert roundtrip(app, request("/nope"), is_tls=True).header("strict-transport-security") is not None
    assert get("/x", app=app, method="POST").header("server") is None


def test_cache_control_rules_first_match_wins() -> None:
    rules = (("/img/*", "public, max-age=31536000, immutable"), ("*.css", "max-age=3600"), ("*", "no-cache"))
    app = make_app(FILES, SiteOptions(cache_control=rules))
    assert get("/img/logo.png", app=app).header("cache-control") == "public, max-age=31536000, immutable"
    assert get("/style.css", app=app).header("cache-control") == "max-age=3600"
    assert get("/", app=app).header("cache-control") == "no-cache"  # matched on /index.html
    assert get("/style.css").header("cache-control") is None


def test_gzip_negotiation() -> None:
    plain = get("/")
    assert plain.header("content-encoding") is None and plain.body == TEXT
    assert plain.header("vary") == "Accept-Encoding"
    for value in ["gzip", "gzip, deflate, br", "br;q=1.0, gzip;q=0.5", "*", "x-gzip", "GZIP;Q=0.001"]:
        reply = get("/", [("Accept-Encoding", value)])
        assert reply.header("content-encoding") == "gzip", value
        assert gzip.decompress(reply.body) == TEXT
        assert reply.header("vary") == "Accept-Encoding"
        assert reply.header("etag") != plain.header("etag")
        assert reply.header("accept-ranges") is None
    for value in [
        "gzip;q=0",
        "deflate, br",
        "*;q=0",
        "gzip;q=0.000, *",
        "identity",
        "",
        "gzip;q=2",
        "gzip;q=abc",
    ]:
        reply = get("/", [("Accept-Encoding", value)])
        assert reply.header("content-encoding") is None, value
        assert reply.body == TEXT
    # small files and binary types are never compressed, and do not vary
    small = get("/style.css", [("Accept-Encoding", "gzip")])
    assert small.header("content-encoding") is None and small.header("vary") is None
    assert get("/img/logo.png", [("Accept-Encoding", "gzip")]).header("content-encoding") is None
    assert make_app(FILES, SiteOptions(gzip=False)).default.resources["index.html"].gzip is None


def test_gz_sibling_used_when_not_older() -> None:
    packed = gzip.compress(TEXT)
    data = MemoryData({"page.html": TEXT}, mtime=MTIME)
    data.set("page.html.gz", packed, mtime=MTIME + 10)
    site = Site.build(data)
    res = site.resources["page.html"]
    assert res.gzip is not None and res.gzip.body == packed and res.gzip.key == "page.html.gz"
    stale = MemoryData({"page.html": TEXT}, mtime=MTIME)
    stale.set("page.html.gz", b"stale", mtime=MTIME - 10)
    res = Site.build(stale).resources["page.html"]
    assert res.gzip is not None and gzip.decompress(res.gzip.body or b"") == TEXT


def test_large_files_are_streamed_not_read() -> None:
    big = bytes(range(256)) * 1024  # 256 KiB, over the 64 KiB inline limit
    app = make_app({"big.bin": big, "big.txt": b"a" * 200_000})
    site = app.default
    res = site.resources["big.bin"]
    assert res.identity.body is None
    response = app.respond(_request(b"/big.bin"))
    assert response.body == b"" and response.parts == (FileSegment(site.data, "big.bin", 0, len(big)),)
    assert response.length == len(big) and wire_bytes(response) == big
    assert get("/big.bin", app=app).body == big
    # a large text file gets an in-memory gzip variant
    gz = site.resources["big.txt"].gzip
    assert gz is not None and gz.body is not None and gzip.decompress(gz.body) == b"a" * 200_000


def test_memory_budget_bounds_what_is_inlined() -> None:
    files = {f"f{i}.bin": bytes([i]) * 1000 for i in range(10)}
    site = Site.build(MemoryData(files, mtime=MTIME), SiteOptions(memory_budget=3500))
    inline = [k for k, r in site.resources.items() if r.identity.body is not None]
    assert len(inline) == 3
    app = App(site)
    for key, content in files.items():
        assert get("/" + key, app=app).body == content


def _request(path: bytes, method: bytes = b"GET", host: str = "", tls: bool = False) -> Request:
    return Request(method, path, b"1.1", [], {}, path, host, True, tls)


def test_vhosts_by_host_case_insensitive_port_stripped() -> None:
    a = Site.build(MemoryData({"index.html": b"site a"}, mtime=MTIME))
    b = Site.build(MemoryData({"index.html": b"site b"}, mtime=MTIME))
    default = Site.build(MemoryData({"index.html": b"default"}, mtime=MTIME))
    app = App(default, {"a.test": a, "B.Test": b})
    assert get("/", app=app, host="a.test").body == b"site a"
    assert get("/", app=app, host="A.TEST:8080").body == b"site a"
    assert get("/", app=app, host="b.test.").body == b"site b"
    assert get("/", app=app, host="c.test").body == b"default"
    assert get("/", app=app, host=None, version="1.0").body == b"default"


def test_health_endpoint() -> None:
    reply = get("/healthz", host="anything.test")
    assert (reply.status, reply.body, reply.header("cache-control")) == (200, b"ok\n", "no-store")
    assert get("/healthz?probe=1").status == 200
    assert roundtrip(APP, request("/healthz", method="HEAD")).body == b""
    off = make_app(FILES, app_options=AppOptions(health_path=None))
    assert get("/healthz", app=off).status == 404
    custom = make_app(FILES, app_options=AppOptions(health_path="/-/ready"))
    assert get("/-/ready", app=custom).body == b"ok\n"


def test_demo_site_builds_and_serves() -> None:
    root = Path(__file__).resolve().parents[2] / "appliances" / "web" / "data" / "site"
    app = App(Site.build(DirectoryData(root)))
    for target, ctype in [
        ("/", "text/html; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/logo.svg", "image/svg+xml"),
        ("/favicon.png", "image/png"),
    ]:
        reply = roundtrip(app, request(target))
        assert (reply.status, reply.header("content-type")) == (200, ctype)
    missing = roundtrip(app, request("/no-such-page"))
    assert missing.status == 404 and b"404" in missing.body
    assert NOW > 0


class _StaleStat(MemoryData):
    """A data device whose file grew after its entry was taken."""

    def stat(self, key: str) -> DataEntry:
        entry = super().stat(key)
        return DataEntry(entry.key, entry.size - 3, entry.mtime, "0" * 64)


def test_inline_content_is_described_as_read() -> None:
    app = App(Site.build(_StaleStat({"a.txt": b"0123456789"}, mtime=MTIME)))
    reply = get("/a.txt", app=app)
    assert reply.body == b"0123456789" and reply.header("content-length") == "10"
    assert reply.header("etag") != '"' + "0" * 32 + '"'
