"""Bounds on what one HTTP connection may make us buffer, read or wait for.

Each number says where it comes from; they are the defaults of servers people
already trust, so that our answers to big or slow clients match theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    #: the whole request head (request line + fields); h11's
    #: DEFAULT_MAX_INCOMPLETE_EVENT_SIZE is 16 KiB.  Beyond: 431.
    max_head: int = 16 * 1024
    #: the request line; nginx's large_client_header_buffers is 4 x 8k and a
    #: request line that does not fit one buffer gets 414.
    max_request_line: int = 8 * 1024
    #: one field line; the same nginx buffer (nginx answers 400 "Request Header
    #: Or Cookie Too Large", we answer 431 as RFC 6585 §5 defines).
    max_field_line: int = 8 * 1024
    #: number of field lines; Apache's LimitRequestFields default.  Beyond: 431.
    max_fields: int = 100
    #: request content we read and discard; nginx's client_max_body_size 1m.  Beyond: 413.
    max_body: int = 1024 * 1024
    #: requests per connection; nginx's keepalive_requests default (since 1.19.10).
    max_requests: int = 1000
    #: seconds to receive a whole request head once it has started; nginx's
    #: client_header_timeout.  Also bounds the wait for the first request.
    header_timeout: float = 60.0
    #: seconds between two reads of a request body; nginx's client_body_timeout.
    body_timeout: float = 60.0
    #: seconds an idle keep-alive connection is kept; nginx's keepalive_timeout.
    keepalive_timeout: float = 75.0


DEFAULT_LIMITS = Limits()
