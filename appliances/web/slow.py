"""The slow path: every request head the fast path did not take.

Two layers.  First a strict gate over the raw lines closes what h11 0.16 lets
through (measured): heads over the size limits even when they arrive in one
read, bare LF line ends, obs-fold (h11 unfolds it), versions other than 1.0/1.1
(h11 takes ``HTTP/3.0``), repeated or list-valued Content-Length (h11 merges
``1, 1``), Content-Length together with Transfer-Encoding (h11 lets chunked win
and keeps the connection: a smuggled request would be answered), and
Transfer-Encoding on HTTP/1.0.  Then h11 parses the head and, for chunked
content, decodes the body we read and discard.
"""

from __future__ import annotations

import re

import h11

from .errors import RemoteProtocolError
from .events import Request
from .fast import TOKEN, build_fields, parse_host, wants_keep_alive
from .limits import Limits

__all__ = ["parse_slow"]

_METHOD = re.compile(TOKEN)
#: RFC 9112 §3.2: a request-target is VCHARs (no obs-text, no whitespace)
_TARGET = re.compile(rb"[!-~]+")
#: RFC 9112 §2.3: HTTP-version = HTTP-name "/" DIGIT "." DIGIT (case-sensitive)
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])")
#: a field line: token, colon right after it (RFC 9112 §5.1), value bytes without CTL but HTAB
_FIELD_LINE = re.compile(TOKEN + rb":[\t -~\x80-\xff]*")
#: RFC 3986 §3.1 scheme, for absolute-form targets (RFC 9112 §3.2.2)
_ABSOLUTE = re.compile(rb"([A-Za-z][-A-Za-z0-9+.]*)://([^/?#]*)(.*)", re.DOTALL)
_DIGITS = re.compile(rb"[0-9]+")
#: Content-Length digits we bother converting; anything longer is over any limit
_MAX_LENGTH_DIGITS = 18


def _gate(head: bytes, limits: Limits) -> tuple[list[bytes], dict[bytes, list[bytes]]]:
    """Check the raw head; return its lines and the raw values of framing fields."""
    body = head[:-4]  # the head always ends with CRLF CRLF (the caller found it)
    first_end = body.find(b"\r\n")
    if (first_end if first_end >= 0 else len(body)) > limits.max_request_line:
        raise RemoteProtocolError(414, "request line too long")
    if len(head) > limits.max_head:
        raise RemoteProtocolError(431, "request head too large")
    # RFC 9112 §2.2: we do not take a bare LF as a line end (a MAY that nginx
    # and h11 take: a parser difference is what smuggling is made of), and a
    # bare CR makes the element invalid.  NUL is a CTL no field or target may hold (§5.5).
    crlf = body.count(b"\r\n")
    if body.count(b"\n") != crlf:
        raise RemoteProtocolError(400, "bare LF in request head")
    if body.count(b"\r") != crlf:
        raise RemoteProtocolError(400, "bare CR in request head")
    if b"\x00" in body:
        raise RemoteProtocolError(400, "NUL in request head")
    lines = body.split(b"\r\n")
    if len(lines) - 1 > limits.max_fields:
        raise RemoteProtocolError(431, "too many header fields")
    framing: dict[bytes, list[bytes]] = {b"host": [], b"content-length": [], b"transfer-encoding": []}
    for line in lines[1:]:
        if len(line) > limits.max_field_line:
            raise RemoteProtocolError(431, "header field too large")
        if line[:1] in (b" ", b"\t"):
            # RFC 9112 §5.2: obs-fold may be rejected with 400; unfolding is
            # what lets two parsers read different fields.
            raise RemoteProtocolError(400, "obsolete line folding")
        if _FIELD_LINE.fullmatch(line) is None:
            raise RemoteProtocolError(400, "invalid header field line")
        name, _, value = line.partition(b":")
        values = framing.get(name.lower())
        if values is not None:
            values.append(value.strip())
    return lines, framing


def _request_line(line: bytes) -> tuple[bytes, bytes, bytes]:
    parts = line.split(b" ")
    if len(parts) != 3:
        raise RemoteProtocolError(400, "malformed request line")
    method, target, version = parts
    if _METHOD.fullmatch(method) is None or _TARGET.fullmatch(target) is None:
        raise RemoteProtocolError(400, "malformed request line")
    m = _VERSION.fullmatch(version)
    if m is None:
        raise RemoteProtocolError(400, "malformed HTTP version")
    if m.group(1) != b"1" or m.group(2) not in (b"0", b"1"):
        # Deliberate: RFC 9110 §2.5 says to treat HTTP/1.2+ as the highest 1.x
        # we implement, and nginx does; we answer 505 to anything but 1.0/1.1,
        # so no version we have not tested is ever served.
        raise RemoteProtocolError(505, "HTTP version not supported")
    return method, target, version[5:]


def _content_length(values: list[bytes], te: list[bytes], version: bytes, limits: Limits) -> int | None:
    """Content length in bytes, ``None`` for chunked (RFC 9112 §6.1-§6.3)."""
    if te:
        if values:
            # §6.1: "A server MAY reject a request that contains both ... ";
            # we must, to stay out of request smuggling (§11.2).
            raise RemoteProtocolError(400, "Content-Length with Transfer-Encoding")
        if version == b"1.0":
            # §6.1: HTTP/1.0 framing with Transfer-Encoding is faulty.
            raise RemoteProtocolError(400, "Transfer-Encoding in HTTP/1.0")
        codings = [c.strip().lower() for c in b",".join(te).split(b",")]
        if codings[-1] != b"chunked" or b"chunked" in codings[:-1]:
            # §6.3 rule 4: chunked not final -> 400 and close
            raise RemoteProtocolError(400, "chunked is not the final transfer coding")
        if len(codings) > 1:
            # §6.1: a transfer coding we do not understand -> 501
            raise RemoteProtocolError(501, "transfer coding not implemented")
        return None
    if not values:
        return 0
    if len(values) > 1:
        raise RemoteProtocolError(400, "more than one Content-Length")
    value = values[0]
    if _DIGITS.fullmatch(value) is None:
        # §6.3 rule 5: an invalid Content-Length is unrecoverable -> 400
        raise RemoteProtocolError(400, "invalid Content-Length")
    if len(value) > _MAX_LENGTH_DIGITS or int(value) > limits.max_body:
        raise RemoteProtocolError(413, "request content too large")
    return int(value)


def _origin(method: bytes, target: bytes) -> tuple[bytes, bytes | None]:
    """The origin-form of ``target`` and, for absolute-form, its authority."""
    if target[:1] == b"/":
        return target, None
    m = _ABSOLUTE.fullmatch(target)
    if m is not None:
        # RFC 9112 §3.2.2: a server MUST accept the absolute-form, and its
        # authority replaces the Host field.
        if m.group(1).lower() not in (b"http", b"https") or b"@" in m.group(2):
            raise RemoteProtocolError(400, "invalid absolute-form target")
        rest = m.group(3)
        return (rest if rest[:1] == b"/" else b"/" + rest), m.group(2)
    if method in (b"GET", b"HEAD"):
        # asterisk-form is for OPTIONS, authority-form for CONNECT (§3.2.3-4)
        raise RemoteProtocolError(400, "invalid request target")
    return b"", None


def parse_slow(
    head: bytes, is_tls: bool, limits: Limits
) -> tuple[Request, int | None, h11.Connection | None]:
    """Parse the complete head ``head`` (ending in CRLF CRLF).

    Returns the request, its content length (``None`` for chunked) and, for
    chunked content, the h11 connection that will decode it.  Raises
    :class:`RemoteProtocolError` with the status to answer.
    """
    lines, framing = _gate(head, limits)
    method, target, version = _request_line(lines[0])
    length = _content_length(framing[b"content-length"], framing[b"transfer-encoding"], version, limits)
    hosts = framing[b"host"]
    if len(hosts) > 1 or (not hosts and version == b"1.1"):
        raise RemoteProtocolError(400, "missing or repeated Host")  # RFC 9112 §3.2
    path, authority = _origin(method, target)
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_head)
    conn.receive_data(head)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError as exc:
        raise RemoteProtocolError(exc.error_status_hint, str(exc)) from None
    if not isinstance(event, h11.Request):  # cannot happen with a complete head
        raise RemoteProtocolError(400, "incomplete request head")
    pairs = list(event.headers)
    fields = build_fields(pairs)
    if authority is not None:
        host = parse_host(authority)
    else:
        host = parse_host(hosts[0]) if hosts else ""
    request = Request(
        method, target, version, pairs, fields, path, host, wants_keep_alive(version, fields), is_tls
    )
    return request, length, (conn if length is None else None)
