"""Responses as the core hands them to the edge: an encoded head and a body.

A :class:`Response` is immutable and holds no per-request data, so the site
builds the common ones once (200 and 304 for every file, HEAD included) and the
hot path only picks one.  The connection adds the ``Date`` and ``Connection``
lines and the empty line when it sends it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from runtime import Data

__all__ = [
    "REASONS",
    "FileSegment",
    "Response",
    "encode_head",
    "simple_response",
]

#: RFC 9110 §15 reason phrases for the statuses we send (and a few more)
REASONS: dict[int, str] = {
    200: "OK",
    204: "No Content",
    206: "Partial Content",
    301: "Moved Permanently",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    412: "Precondition Failed",
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


@dataclass(frozen=True, slots=True)
class FileSegment:
    """``length`` bytes of ``data[key]`` from ``offset``: for the edge to sendfile.

    The edge opens ``data.open(key)``; if the file turns out shorter than the
    segment (it changed since the site was built) it must close the
    connection, since the Content-Length already sent can no longer be met.
    """

    data: Data
    key: str
    offset: int
    length: int


@dataclass(frozen=True, slots=True, eq=False)
class Response:
    """What to write for one request.

    ``head`` is the status line and field lines (each ending CRLF) without
    ``Date``/``Connection`` and without the empty line; the content is ``body``
    followed by ``parts`` in order (bytes, or file segments to stream).
    """

    status: int
    head: bytes
    body: bytes = b""
    parts: tuple[bytes | FileSegment, ...] = ()
    #: content bytes on the wire (body + parts), for the access log
    length: int = 0
    #: the connection must close after this response
    close: bool = False


def encode_head(status: int, fields: Sequence[tuple[str, str]]) -> bytes:
    """Encode a status line and fields; values are ours, checked to be one line."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"]
    for name, value in fields:
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"field {name!r} would break the head: {value!r}")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1")


def _error_page(status: int) -> bytes:
    title = escape(f"{status} {REASONS.get(status, 'Error')}")
    return (
        f"<!DOCTYPE html>\n<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>\n"
    ).encode()


def simple_response(
    status: int,
    *,
    server: str | None,
    head_only: bool = False,
    close: bool = False,
    fields: Sequence[tuple[str, str]] = (),
    body: bytes | None = None,
    content_type: str = "text/html; charset=utf-8",
) -> Response:
    """A small generated response (errors, redirects, health) with a built-in page."""
    if body is None:
        body = _error_page(status)
    all_fields: list[tuple[str, str]] = []
    if server:
        all_fields.append(("Server", server))
    all_fields.append(("Content-Type", content_type))
    all_fields.append(("Content-Length", str(len(body))))
    all_fields.extend(fields)
    head = encode_head(status, all_fields)
    if head_only:
        return Response(status, head, close=close)
    return Response(status, head, body, (), len(body), close)
