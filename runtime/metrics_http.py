"""The metrics device's HTTP endpoint (``--metrics-listen``): Prometheus
scrapes answered with h11.

Apart from ``runtime.metrics`` so that h11 and ``http`` are imported only when
the endpoint is switched on (an image's start-up is measured in such imports);
the build's tracing pass switches it on, so an image has them all the same.
"""

from __future__ import annotations

import http

import h11

from .devices import Metrics, Stream, StreamListener
from .metrics import CONTENT_TYPE

__all__ = ["MAX_DISCARDED_BODY", "MAX_REQUEST_HEAD", "serve_metrics"]

#: Bound on an HTTP request head: 16 KiB is half nginx's default large_client_header_buffers
#: (4 x 8 KiB) and far above what a Prometheus scraper sends (~300 bytes).
MAX_REQUEST_HEAD = 16 * 1024
#: A request body is read and dropped up to this size so that the connection can be
#: kept alive; past it we answer and close.  Scrapes send no body; 64 KiB is four times
#: nginx's default client_body_buffer_size (16 KiB on 64-bit).
MAX_DISCARDED_BODY = 64 * 1024

#: Bytes asked of the stream per receive: a whole scrape request fits in one.
_RECEIVE_SIZE = 16 * 1024
_INDEX_PAGE = (
    b'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Metrics</title></head>\n'
    b'<body><a href="/metrics">/metrics</a></body></html>\n'
)
_PAGES = {b"/metrics", b"/"}
_METHODS = {b"GET", b"HEAD"}


async def serve_metrics(listener: StreamListener, registry: Metrics) -> None:
    """Answer Prometheus scrapes on ``listener`` until cancelled.

    ``GET``/``HEAD /metrics`` renders ``registry``; ``/`` is a link page; other
    paths get 404, other methods 405.  Connections are kept alive between
    requests.  A malformed request gets h11's status hint (400; 431 for a head
    over ``MAX_REQUEST_HEAD``, 501 for an unknown transfer coding) and a close.
    """

    async def handle(stream: Stream) -> None:
        await _serve_connection(stream, registry)

    await listener.serve(handle)


async def _serve_connection(stream: Stream, registry: Metrics) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
    try:
        while True:
            request = await _next_request(conn, stream)
            if request is None:
                return
            whole = await _discard_body(conn, stream)
            status, headers, body = _route(request, registry)
            if not whole:
                headers.append((b"Connection", b"close"))
            await _send(conn, stream, status, headers, body, head_only=request.method == b"HEAD")
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
    except h11.RemoteProtocolError as exc:
        await _send_error(conn, stream, exc.error_status_hint)
    except (TimeoutError, ConnectionError):
        pass  # an idle or vanished client: nothing to answer
    finally:
        await stream.aclose()


async def _next_request(conn: h11.Connection, stream: Stream) -> h11.Request | None:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive(_RECEIVE_SIZE))
        elif isinstance(event, h11.Request):
            return event
        else:  # ConnectionClosed: the client is done
            return None


async def _discard_body(conn: h11.Connection, stream: Stream) -> bool:
    """Read and drop the request body (a scrape has none, a stray POST might).
    Returns False if it is over ``MAX_DISCARDED_BODY``: then we answer and close."""
    discarded = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive(_RECEIVE_SIZE))
        elif isinstance(event, h11.Data):
            discarded += len(event.data)
            if discarded > MAX_DISCARDED_BODY:
                return False
        else:  # EndOfMessage
            return True


def _route(request: h11.Request, registry: Metrics) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    path = request.target.split(b"?", 1)[0]
    if path not in _PAGES:
        return 404, [(b"Content-Type", b"text/plain; charset=utf-8")], b"Not Found\n"
    if request.method not in _METHODS:
        return (
            405,
            [(b"Content-Type", b"text/plain; charset=utf-8"), (b"Allow", b"GET, HEAD")],
            b"Method Not Allowed\n",
        )
    if path == b"/":
        return 200, [(b"Content-Type", b"text/html; charset=utf-8")], _INDEX_PAGE
    return 200, [(b"Content-Type", CONTENT_TYPE.encode())], registry.render().encode()


async def _send(
    conn: h11.Connection,
    stream: Stream,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    *,
    head_only: bool = False,
) -> None:
    """One whole response in one write.  For HEAD, the length GET would have, no body."""
    reason = http.HTTPStatus(status).phrase.encode()
    headers = [*headers, (b"Content-Length", str(len(body)).encode())]
    parts = [conn.send(h11.Response(status_code=status, reason=reason, headers=headers)) or b""]
    if body and not head_only:
        parts.append(conn.send(h11.Data(data=body)) or b"")
    parts.append(conn.send(h11.EndOfMessage()) or b"")
    await stream.send(b"".join(parts))


async def _send_error(conn: h11.Connection, stream: Stream, status: int) -> None:
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return  # a response is already under way: closing is all that is left
    body = f"{http.HTTPStatus(status).phrase}\n".encode()
    headers = [(b"Content-Type", b"text/plain; charset=utf-8"), (b"Connection", b"close")]
    try:
        await _send(conn, stream, status, headers, body)
    except (h11.LocalProtocolError, TimeoutError, ConnectionError):
        pass  # the peer is gone or h11 cannot frame a reply: closing says enough
