"""A site: the files of one Data device, with all their metadata loaded once.

``Site.build`` reads every key's entry (size, mtime, SHA-256), keeps small
files in memory and prepares the 200/304 responses of every file (GET and
HEAD, identity and gzip) so that serving one is a dictionary lookup.  Large
files are never read: their responses name a file segment the edge streams.

Compression is done here, once: text-like files between ``gzip_min_size`` and
``gzip_max_size`` get a gzip variant (level 9, deterministic) if it is smaller.
A ``name.gz`` next to ``name`` (nginx's gzip_static) is used instead when it is
at least as new as ``name``; an older one is taken for stale and ignored.  No
Brotli or zstd: the standard library has neither (zstd arrives in 3.14).
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from fnmatch import fnmatchcase
from html import escape
from urllib.parse import quote

from runtime import Data, DataEntry

from .dates import format_http_date
from .errors import RemoteProtocolError
from .mime import content_type, is_compressible
from .paths import decode_path
from .response import FileSegment, Response, encode_head, simple_response

__all__ = ["Fixed", "Redirect", "Resource", "Site", "SiteOptions", "Variant"]


@dataclass(frozen=True, slots=True)
class SiteOptions:
    #: file names tried for a directory path (nginx's ``index``)
    index: tuple[str, ...] = ("index.html",)
    #: serve files and directories whose name starts with "."; ``/.well-known/``
    #: (RFC 8615: ACME, security.txt) is served either way
    dotfiles: bool = False
    #: an HTML listing for directories without an index (nginx's autoindex)
    listing: bool = False
    #: the site's page for 404 (status stays 404); a built-in one if absent
    not_found_page: str | None = "404.html"
    #: ``(glob, value)`` rules matched against the file's URL path (``/a/b.css``;
    #: fnmatch, ``*`` crosses ``/``); the first match gives Cache-Control
    cache_control: tuple[tuple[str, str], ...] = ()
    gzip: bool = True
    #: below this a gzip variant rarely pays for its header (Akamai uses 860)
    gzip_min_size: int = 256
    #: larger text files are compressed only from a ``.gz`` sibling
    gzip_max_size: int = 4 * 1024 * 1024
    #: files up to this size are kept in memory (nginx's open_file_cache does
    #: not hold content; 64 KiB keeps a typical site's pages and assets)
    inline_max: int = 64 * 1024
    #: total bytes kept in memory for one site (content and gzip variants)
    memory_budget: int = 64 * 1024 * 1024
    #: the Server field; None leaves it out (nginx's ``server_tokens`` goes only
    #: as far as hiding the version)
    server: str | None = "web"
    #: Strict-Transport-Security value, sent over TLS only (RFC 6797 §7.2)
    hsts: str | None = None
    #: X-Content-Type-Options: nosniff
    nosniff: bool = True
    #: X-Frame-Options value (DENY, SAMEORIGIN)
    frame_options: str | None = None
    #: Content-Security-Policy value
    csp: str | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Variant:
    """One representation of a file (identity or gzip) and its prepared answers."""

    etag: bytes
    size: int
    #: the content if in memory, else it is streamed from ``key``
    body: bytes | None
    key: str
    ok: Response
    ok_head: Response
    not_modified: Response


@dataclass(frozen=True, slots=True, eq=False)
class Resource:
    key: str
    content_type: str
    #: whole seconds: HTTP dates have no fraction, and If-Modified-Since compares them
    mtime: int
    last_modified: bytes
    identity: Variant
    gzip: Variant | None
    #: fields of a 206 answer besides Content-Type/Length/Range
    range_fields: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, eq=False)
class Fixed:
    """A lookup result answered the same way every time (404, 400, a listing)."""

    get: Response
    head: Response


@dataclass(frozen=True, slots=True)
class Redirect:
    """A directory asked for without its slash: 301 to ``location`` + the query."""

    location: str


Lookup = Resource | Fixed | Redirect

#: distinct request paths remembered per site (bounded: paths are peer-chosen)
_LOOKUP_CACHE_MAX = 4096


class Site:
    def __init__(self, data: Data, options: SiteOptions) -> None:
        """Use :meth:`build`."""
        self.data = data
        self.options = options
        self.resources: dict[str, Resource] = {}
        self.directories: set[str] = {""}
        self._common: list[tuple[str, str]] = []
        self._cache: dict[bytes, Lookup] = {}
        self._budget = options.memory_budget
        self.not_found: Fixed
        self.hsts_line = f"Strict-Transport-Security: {options.hsts}\r\n".encode() if options.hsts else b""

    @classmethod
    def build(cls, data: Data, options: SiteOptions | None = None) -> Site:
        site = cls(data, options or SiteOptions())
        site._load()
        return site

    # ----------------------------------------------------------------- build

    def _load(self) -> None:
        opts = self.options
        common: list[tuple[str, str]] = []
        if opts.server:
            common.append(("Server", opts.server))
        if opts.nosniff:
            common.append(("X-Content-Type-Options", "nosniff"))
        if opts.frame_options:
            common.append(("X-Frame-Options", opts.frame_options))
        if opts.csp:
            common.append(("Content-Security-Policy", opts.csp))
        self._common = common
        keys = self.data.keys()
        entries = {key: self.data.stat(key) for key in keys}
        for key in keys:
            parts = key.split("/")
            for i in range(1, len(parts)):
                self.directories.add("/".join(parts[:i]))
        for key in keys:
            self.resources[key] = self._resource(entries[key], entries.get(key + ".gz"))
        page = opts.not_found_page
        resource = self.resources.get(page) if page else None
        if resource is not None and resource.identity.body is not None:
            fields = [*common, ("Content-Type", resource.content_type)]
            body = resource.identity.body
            self.not_found = Fixed(
                Response(404, self._head(404, fields, len(body)), body, (), len(body)),
                Response(404, self._head(404, fields, len(body))),
            )
        else:
            self.not_found = self.fixed(404)

    def _take(self, size: int) -> bool:
        if size > self._budget:
            return False
        self._budget -= size
        return True

    def _head(self, status: int, fields: list[tuple[str, str]], length: int | None) -> bytes:
        if length is not None:
            fields = [*fields, ("Content-Length", str(length))]
        return encode_head(status, fields)

    def _resource(self, entry: DataEntry, gz_entry: DataEntry | None) -> Resource:
        opts = self.options
        key = entry.key
        ctype = content_type(key)
        mtime = int(entry.mtime)
        last_modified = format_http_date(mtime)
        body: bytes | None = None
        size, sha256 = entry.size, entry.sha256
        if size <= opts.inline_max and self._take(size):
            body = self.data.read(key)
            if len(body) != size:  # changed since stat(): describe what we hold
                size, sha256 = len(body), hashlib.sha256(body).hexdigest()
        gz: tuple[str, bytes | None, str, int] | None = None  # key, body, etag hex, size
        if opts.gzip and is_compressible(key) and entry.size >= opts.gzip_min_size:
            if gz_entry is not None and gz_entry.mtime >= entry.mtime:
                gz_body = None
                gz_size, gz_hash = gz_entry.size, gz_entry.sha256
                if gz_size <= opts.inline_max and self._take(gz_size):
                    gz_body = self.data.read(gz_entry.key)
                    if len(gz_body) != gz_size:
                        gz_size, gz_hash = len(gz_body), hashlib.sha256(gz_body).hexdigest()
                gz = (gz_entry.key, gz_body, gz_hash, gz_size)
            elif size <= opts.gzip_max_size:
                content = body if body is not None else self.data.read(key)
                packed = gzip.compress(content, compresslevel=9, mtime=0)
                if len(packed) < len(content) and self._take(len(packed)):
                    gz = (key, packed, hashlib.sha256(packed).hexdigest(), len(packed))
        cache = next(
            (value for pattern, value in opts.cache_control if fnmatchcase("/" + key, pattern)), None
        )
        base = [*self._common, ("Content-Type", ctype), ("Last-Modified", last_modified)]
        meta: list[tuple[str, str]] = []
        if cache is not None:
            meta.append(("Cache-Control", cache))
        if gz is not None:
            meta.append(("Vary", "Accept-Encoding"))
        identity = self._variant(key, sha256, size, body, base, meta, [("Accept-Ranges", "bytes")])
        gz_variant = None
        if gz is not None:
            gz_key, gz_body, gz_hash, gz_size = gz
            gz_variant = self._variant(
                gz_key, gz_hash, gz_size, gz_body, base, meta, [("Content-Encoding", "gzip")]
            )
        range_fields = (
            *self._common,
            ("Last-Modified", last_modified),
            ("ETag", identity.etag.decode()),
            *meta,
        )
        return Resource(key, ctype, mtime, last_modified.encode(), identity, gz_variant, range_fields)

    def _variant(
        self,
        key: str,
        sha256: str,
        size: int,
        body: bytes | None,
        base: list[tuple[str, str]],
        meta: list[tuple[str, str]],
        extra: list[tuple[str, str]],
    ) -> Variant:
        # A strong validator (RFC 9110 §8.8.3) from the content hash: 128 bits are plenty.
        etag = f'"{sha256[:32]}"'
        head = self._head(200, [*base, ("ETag", etag), *meta, *extra], size)
        if body is not None:
            ok = Response(200, head, body, (), size)
        else:
            ok = Response(200, head, b"", (FileSegment(self.data, key, 0, size),), size)
        # RFC 9110 §15.4.5: a 304 carries the fields a 200 would have among
        # Cache-Control, Content-Location, Date, ETag, Expires and Vary, and
        # should not carry other representation metadata.
        not_modified = Response(304, encode_head(304, [*self._common, ("ETag", etag), *meta]))
        return Variant(etag.encode(), size, body, key, ok, Response(200, head), not_modified)

    def fixed(
        self, status: int, fields: tuple[tuple[str, str], ...] = (), body: bytes | None = None
    ) -> Fixed:
        """A built-in answer carrying this site's common fields."""
        get = simple_response(status, server=None, fields=(*self._common, *fields), body=body)
        head = simple_response(
            status, server=None, fields=(*self._common, *fields), body=body, head_only=True
        )
        return Fixed(get, head)

    # ----------------------------------------------------------------- lookup

    def lookup(self, raw_path: bytes) -> Lookup:
        """What a request path names (``raw_path`` is the path without its query)."""
        hit = self._cache.get(raw_path)
        if hit is None:
            hit = self._resolve(raw_path)
            if len(self._cache) >= _LOOKUP_CACHE_MAX:
                self._cache.clear()
            self._cache[raw_path] = hit
        return hit

    def _resolve(self, raw_path: bytes) -> Lookup:
        try:
            segments, is_dir = decode_path(raw_path)
        except RemoteProtocolError as exc:
            return self.fixed(exc.status)
        if not self.options.dotfiles:
            for i, segment in enumerate(segments):
                if segment.startswith(".") and not (i == 0 and segment == ".well-known"):
                    return self.not_found
        key = "/".join(segments)
        if not is_dir:
            resource = self.resources.get(key)
            if resource is not None:
                return resource
            if key in self.directories:
                return Redirect("/" + quote(key) + "/")
            return self.not_found
        if key not in self.directories:
            return self.not_found
        for name in self.options.index:
            resource = self.resources.get(f"{key}/{name}" if key else name)
            if resource is not None:
                return resource
        if self.options.listing:
            return self._listing(key)
        return self.not_found

    def _listing(self, directory: str) -> Fixed:
        prefix = directory + "/" if directory else ""
        names: set[str] = set()
        for key in self.resources:
            if not key.startswith(prefix):
                continue
            rest = key[len(prefix) :]
            head, sep, _ = rest.partition("/")
            names.add(head + sep)
        if not self.options.dotfiles:
            names = {n for n in names if not n.startswith(".")}
        title = escape(f"Index of /{prefix}")
        rows = ['<li><a href="../">../</a></li>'] if directory else []
        for name in sorted(names, key=lambda n: (not n.endswith("/"), n)):
            rows.append(f'<li><a href="{quote(name)}">{escape(name)}</a></li>')
        page = (
            f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>'
            f"<body><h1>{title}</h1><ul>\n" + "\n".join(rows) + "\n</ul></body></html>\n"
        )
        return self.fixed(200, body=page.encode())
