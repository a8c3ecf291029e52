"""Answering a GET or HEAD for one file: encoding, preconditions, ranges.

The order is RFC 9110 §13.2.2's: If-Match, If-Unmodified-Since (412),
If-None-Match, If-Modified-Since (304), then Range with If-Range (206/416).
A request with none of these fields gets a response prepared at build time.
If-Modified-Since is RFC 9110's "not modified since" (Last-Modified <= date);
nginx's default (``if_modified_since exact``) wants the dates equal.  A 304
carries ETag, Vary and Cache-Control but not Last-Modified (§15.4.5; nginx
sends it).

A ``Range`` request is always answered from the identity representation, even
if the client accepts gzip (as nginx, whose gzip filter turns ranges off):
byte offsets into a compressed variant are of no use to anyone.  The
``Vary: Accept-Encoding`` still says the response depends on that field.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from .dates import parse_http_date
from .events import Request
from .ranges import UNSATISFIABLE, multipart_layout, parse_range
from .response import FileSegment, Response, encode_head
from .site import Resource, Site, Variant

__all__ = ["accepts_gzip", "serve_resource"]

_GZIP_CACHE: dict[bytes, bool] = {}
#: distinct Accept-Encoding values remembered (bounded: peer-chosen)
_GZIP_CACHE_MAX = 256
#: RFC 9110 §12.4.2 qvalue
_QVALUE = re.compile(rb"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
#: RFC 9110 §8.8.3 entity-tag, capturing the weakness and the quoted opaque-tag
_ETAG = re.compile(rb'[ \t]*(W/)?("[\x21\x23-\x7e\x80-\xff]*")[ \t]*')


def _parse_gzip(value: bytes) -> bool:
    q_gzip: float | None = None
    q_any: float | None = None
    for item in value.split(b","):
        coding, _, params = item.partition(b";")
        coding = coding.strip().lower()
        q = 1.0
        for param in params.split(b";") if params else ():
            name, _, number = param.partition(b"=")
            if name.strip().lower() == b"q":
                number = number.strip()
                q = float(number) if _QVALUE.fullmatch(number) else 0.0
        if coding in (b"gzip", b"x-gzip"):
            q_gzip = q
        elif coding == b"*":
            q_any = q
    q_final = q_gzip if q_gzip is not None else q_any
    return q_final is not None and q_final > 0


def accepts_gzip(value: bytes) -> bool:
    """Whether an Accept-Encoding value allows gzip (RFC 9110 §12.5.3):
    listed (or ``*``) with a non-zero q.  ``gzip;q=0`` refuses it."""
    hit = _GZIP_CACHE.get(value)
    if hit is None:
        hit = _parse_gzip(value)
        if len(_GZIP_CACHE) >= _GZIP_CACHE_MAX:
            _GZIP_CACHE.clear()
        _GZIP_CACHE[value] = hit
    return hit


def _etags(value: bytes) -> list[tuple[bool, bytes]] | None:
    """``[(weak, tag)]`` of an entity-tag list, None if it does not parse."""
    tags = []
    for item in value.split(b","):
        if not item.strip(b" \t"):
            continue
        m = _ETAG.fullmatch(item)
        if m is None:
            return None
        tags.append((m.group(1) is not None, m.group(2)))
    return tags


def _match_weak(value: bytes, etag: bytes) -> bool:
    """If-None-Match (RFC 9110 §13.1.2): weak comparison, ``*`` matches."""
    if value == etag:
        return True
    if value.strip() == b"*":
        return True
    tags = _etags(value)
    return tags is not None and any(tag == etag for _, tag in tags)


def _match_strong(value: bytes, etag: bytes) -> bool:
    """If-Match (RFC 9110 §13.1.1): strong comparison, ``*`` matches."""
    if value.strip() == b"*":
        return True
    tags = _etags(value)
    return tags is not None and any(not weak and tag == etag for weak, tag in tags)


def _preconditions(
    site: Site, res: Resource, variant: Variant, fields: Mapping[bytes, bytes], head: bool
) -> Response | None:
    if_match = fields.get(b"if-match")
    if if_match is not None:
        if not _match_strong(if_match, variant.etag):
            return site.fixed(412).head if head else site.fixed(412).get
    else:
        since = fields.get(b"if-unmodified-since")
        if since is not None:
            date = parse_http_date(since)
            if date is not None and res.mtime > date:
                return site.fixed(412).head if head else site.fixed(412).get
    if_none_match = fields.get(b"if-none-match")
    if if_none_match is not None:
        if _match_weak(if_none_match, variant.etag):
            return variant.not_modified
        return None
    since = fields.get(b"if-modified-since")
    if since is not None:
        # RFC 9110 §13.1.3: ignored unless a valid HTTP-date
        date = parse_http_date(since)
        if date is not None and res.mtime <= date:
            return variant.not_modified
    return None


def _if_range_holds(value: bytes, res: Resource) -> bool:
    """RFC 9110 §13.1.5: a strong ETag match, or exactly the Last-Modified date."""
    value = value.strip()
    if value[:1] == b'"' or value[:2] == b"W/":
        return value == res.identity.etag  # a weak tag never matches
    date = parse_http_date(value)
    return date is not None and date == res.mtime


def _partial(site: Site, res: Resource, range_value: bytes) -> Response | None:
    variant = res.identity
    size = variant.size
    ranges = parse_range(range_value, size)
    if ranges is None:
        return None
    if ranges == UNSATISFIABLE:
        # RFC 9110 §15.5.17: 416 with Content-Range: bytes */length
        return site.fixed(416, (("Content-Range", f"bytes */{size}"),)).get
    assert not isinstance(ranges, str)
    fields = list(res.range_fields)
    if len(ranges) == 1:
        start, end = ranges[0]
        length = end - start + 1
        fields += [
            ("Content-Type", res.content_type),
            ("Content-Range", f"bytes {start}-{end}/{size}"),
            ("Content-Length", str(length)),
        ]
        head = encode_head(206, fields)
        if variant.body is not None:
            return Response(206, head, variant.body[start : end + 1], (), length)
        return Response(206, head, b"", (FileSegment(site.data, variant.key, start, length),), length)
    # Deterministic, and as unlikely to occur in the content as a random one.
    boundary = hashlib.sha256(variant.etag + range_value).hexdigest()[:32]
    layout = multipart_layout(ranges, size, res.content_type, boundary)
    parts: list[bytes | FileSegment] = []
    for piece in layout:
        if isinstance(piece, bytes):
            parts.append(piece)
        elif variant.body is not None:
            parts.append(variant.body[piece[0] : piece[0] + piece[1]])
        else:
            parts.append(FileSegment(site.data, variant.key, piece[0], piece[1]))
    length = sum(p.length if isinstance(p, FileSegment) else len(p) for p in parts)
    fields += [
        ("Content-Type", f"multipart/byteranges; boundary={boundary}"),
        ("Content-Length", str(length)),
    ]
    head = encode_head(206, fields)
    if variant.body is not None:
        return Response(206, head, b"".join(p for p in parts if isinstance(p, bytes)), (), length)
    return Response(206, head, b"", tuple(parts), length)


def serve_resource(site: Site, res: Resource, request: Request) -> Response:
    """The answer to a GET or HEAD for ``res``."""
    fields = request.fields
    head = request.method == b"HEAD"
    # RFC 9110 §14.2: Range is defined for GET only; HEAD ignores it.
    range_value = None if head else fields.get(b"range")
    variant = res.identity
    if res.gzip is not None and range_value is None:
        accept = fields.get(b"accept-encoding")
        if accept is not None and accepts_gzip(accept):
            variant = res.gzip
    if (
        b"if-none-match" in fields
        or b"if-modified-since" in fields
        or b"if-match" in fields
        or b"if-unmodified-since" in fields
    ):
        answer = _preconditions(site, res, variant, fields, head)
        if answer is not None:
            return answer
    if range_value is not None:
        if_range = fields.get(b"if-range")
        if if_range is None or _if_range_holds(if_range, res):
            answer = _partial(site, res, range_value)
            if answer is not None:
                return answer
    return variant.ok_head if head else variant.ok
