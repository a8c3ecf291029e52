"""Request-head grammar and the strict fast path (RFC 9112 §2-§5).

The fast path takes the common case, a well-formed ``GET``/``HEAD`` with no
content, in one regular-expression match over the whole head.  It never guesses:
whatever its pattern does not cover (another method, a body, an absolute-form
target, odd spacing, a long head...) is handed to the strict h11 path in
``slow.py`` by returning ``None``.  What both paths share (field table, Host,
keep-alive) lives here so that they cannot drift apart; a differential fuzz test
holds them to the same answers as h11.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .errors import RemoteProtocolError
from .events import Request

__all__ = [
    "FAST_MAX_HEAD",
    "TOKEN",
    "build_fields",
    "parse_fast",
    "parse_host",
    "wants_keep_alive",
]

#: RFC 9110 §5.6.2 tchar
TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
#: RFC 9110 §5.5: a field value is field-vchar (VCHAR, obs-text) runs separated
#: by SP/HTAB: no CTL but HTAB, so no NUL, bare CR or LF.  The class below is the
#: value with its surrounding OWS (RFC 9112 §5); callers strip the trailing OWS
#: (a structured pattern costs twice the time for the same set of inputs).
_VALUE_OWS = rb"[\t -~\x80-\xff]*"
#: RFC 9112 §5: field-line = field-name ":" OWS field-value OWS, CRLF-terminated;
#: no whitespace between name and colon (RFC 9112 §5.1), no obs-fold (a line
#: cannot start with SP/HTAB since a name is a token).
_FIELD_LINE = TOKEN + rb":" + _VALUE_OWS + rb"\r\n"

# The fast path: request-line = method SP request-target SP HTTP-version CRLF
# (RFC 9112 §3) with the method GET or HEAD, an origin-form target made of the
# characters of RFC 3986 path and query (pchar, "/", "?"; "%" is checked when the
# path is decoded), HTTP/1.0 or 1.1, then field lines and the empty line.
_FAST = re.compile(
    rb"(GET|HEAD) (/[-A-Za-z0-9._~!$&'()*+,;=:@/?%]*) HTTP/(1\.[01])\r\n"
    rb"((?:" + _FIELD_LINE + rb")*)\r\n"
)
_FIELD = re.compile(rb"(" + TOKEN + rb"):[\t ]*(" + _VALUE_OWS + rb")\r\n")

#: heads longer than this always take the slow path, which checks the per-line
#: limits; a head this short cannot break any of them (see limits.py).
FAST_MAX_HEAD = 8 * 1024

# RFC 9110 §7.2 / RFC 3986 §3.2.2: Host = uri-host [ ":" port ]
_HOST = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[-A-Za-z0-9._~!$&'()*+,;=%]*)(?::[0-9]*)?")
_HOST_CACHE: dict[bytes, str] = {}
#: distinct Host values remembered (bounded: the value is peer-chosen)
_HOST_CACHE_MAX = 1024


def parse_host(value: bytes) -> str:
    """The vhost name of a Host value: lowercased, no port, no trailing dot.

    An invalid Host is a 400 (RFC 9112 §3.2: "a server MUST respond with a 400
    ... to any request message that ... contains more than one Host header
    field line or a Host header field with an invalid field value").
    """
    host = _HOST_CACHE.get(value)
    if host is not None:
        return host
    m = _HOST.fullmatch(value)
    if m is None:
        raise RemoteProtocolError(400, "invalid Host")
    host = m.group(1).decode("ascii").lower().rstrip(".")
    if len(_HOST_CACHE) >= _HOST_CACHE_MAX:
        _HOST_CACHE.clear()
    _HOST_CACHE[value] = host
    return host


def build_fields(pairs: Sequence[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """Fields by (lowercased) name; repeated list fields joined (RFC 9110 §5.3).

    A second Host is a 400 (RFC 9112 §3.2), and so is a repeated Content-Length
    even with equal values: RFC 9112 §6.3 allows either, refusing is the choice
    that leaves no room for two parsers to disagree.
    """
    fields = dict(pairs)
    if len(fields) == len(pairs):
        return fields
    fields = {}
    for name, value in pairs:
        old = fields.get(name)
        if old is None:
            fields[name] = value
        elif name == b"host":
            raise RemoteProtocolError(400, "more than one Host")
        elif name == b"content-length":
            raise RemoteProtocolError(400, "more than one Content-Length")
        else:
            fields[name] = old + b", " + value
    return fields


def wants_keep_alive(version: bytes, fields: dict[bytes, bytes]) -> bool:
    """RFC 9112 §9.3: 1.1 persists unless "close"; 1.0 only with "keep-alive"."""
    conn = fields.get(b"connection")
    if conn is None:
        return version == b"1.1"
    if conn == b"keep-alive":  # what browsers send: skip the split
        return True
    tokens = [t.strip() for t in conn.lower().split(b",")]
    if b"close" in tokens:
        return False
    return version == b"1.1" or b"keep-alive" in tokens


def parse_fast(buf: bytes, start: int = 0, end: int | None = None, is_tls: bool = False) -> Request | None:
    """Parse the complete head ``buf[start:end]`` (ending in CRLF CRLF).

    Returns a :class:`Request` when the head is a plain GET/HEAD without
    content, ``None`` to hand it to the slow path, or raises
    :class:`RemoteProtocolError` for a head it matched but must refuse (Host).
    """
    if end is None:
        end = len(buf)
    if end - start > FAST_MAX_HEAD:
        return None
    m = _FAST.fullmatch(buf, start, end)
    if m is None:
        return None
    method, target, version, _ = m.groups()
    fields_start, fields_end = m.span(4)
    # rstrip() drops the trailing OWS: the value holds no other whitespace byte.
    pairs = [(name.lower(), value.rstrip()) for name, value in _FIELD.findall(buf, fields_start, fields_end)]
    fields = build_fields(pairs)
    if b"content-length" in fields or b"transfer-encoding" in fields:
        return None  # content framing is the slow path's business
    host_value = fields.get(b"host")
    if host_value is None:
        if version == b"1.1":
            raise RemoteProtocolError(400, "missing Host")
        host = ""
    else:
        host = parse_host(host_value)
    keep_alive = wants_keep_alive(version, fields)
    return Request(method, target, version, pairs, fields, target, host, keep_alive, is_tls)
