"""One HTTP/1.1 server connection, sans-IO (h11's ``Connection`` shape).

Rules (the whole state machine; ``_next`` below is this table in code):

1. ``IDLE`` --complete head, no content--> ``RESPONDING``, hands out a Request.
2. ``IDLE`` --complete head with content--> ``BODY``; the content is read and
   discarded (we serve files only), then the Request is handed out as in 1.
   Content-Length past ``max_body`` is refused at once (413, nginx's
   client_max_body_size check), chunked content once it gets there.
3. Any malformed or refused head or body --> ``ERROR``, hands out a
   ProtocolError carrying the status to answer.  Nothing more is parsed: the
   framing of what follows is in doubt (RFC 9112 §6.3, §11.2).
4. ``RESPONDING``/``ERROR`` --send(response)--> ``IDLE`` when the connection
   persists, else ``CLOSED``.  It persists only if the request asked for it
   (RFC 9112 §9.3), the response does not need a close, fewer than
   ``max_requests`` were answered, ``begin_shutdown()`` was not called, and the
   state was not ``ERROR``.  Pipelined requests wait in the buffer, so they are
   answered strictly in order: while a request is unanswered ``next_event()``
   returns PAUSED.
5. End of stream while a head or body is incomplete --> ``CLOSED`` without a
   response (the client has gone; nginx logs "client prematurely closed").
   Complete requests received before the end are still answered.
"""

from __future__ import annotations

import enum

import h11

from .dates import date_line
from .errors import LocalProtocolError, RemoteProtocolError
from .events import CLOSED, NEED_DATA, PAUSED, Phase, ProtocolError, Request, Sentinel
from .fast import FAST_MAX_HEAD, parse_fast
from .limits import DEFAULT_LIMITS, Limits
from .response import Response
from .slow import parse_slow

__all__ = ["Connection"]


class _State(enum.Enum):
    IDLE = 1
    BODY = 2
    RESPONDING = 3
    ERROR = 4
    CLOSED = 5


_IDLE = _State.IDLE
_BODY = _State.BODY
_RESPONDING = _State.RESPONDING
_ERROR = _State.ERROR
_CLOSED = _State.CLOSED

_CLOSE_LINE = b"Connection: close\r\n"
_KEEP_ALIVE_LINE = b"Connection: keep-alive\r\n"

Event = Request | ProtocolError | Sentinel


class Connection:
    """Feed bytes with :meth:`receive_data`, take events with :meth:`next_event`,
    answer each Request or ProtocolError with :meth:`send`."""

    def __init__(self, *, is_tls: bool = False, limits: Limits = DEFAULT_LIMITS) -> None:
        self.is_tls = is_tls
        self.limits = limits
        #: requests answered so far
        self.requests = 0
        self._state = _IDLE
        self._buf = b""
        self._pos = 0
        #: ``_buf[:_searched]`` holds no CRLF CRLF (so a slow head is scanned once)
        self._searched = 0
        self._eof = False
        self._shutdown = False
        self._request: Request | None = None
        self._body_left = 0
        self._body_seen = 0
        self._chunked: h11.Connection | None = None
        self._fast_max = min(FAST_MAX_HEAD, limits.max_head, limits.max_request_line, limits.max_field_line)
        self._deadline_key: tuple[Phase, int] | None = None
        self._deadline = 0.0

    # ----------------------------------------------------------------- input

    def receive_data(self, data: bytes) -> None:
        """Add received bytes; ``b""`` means the peer closed its side.

        Read from the socket only after NEED_DATA (as h11 asks): that is what
        keeps the buffer within one read plus the head limit."""
        if not data:
            self._eof = True
            return
        pos = self._pos
        if pos >= len(self._buf):
            self._buf = data
            self._searched = 0
        else:
            self._buf = self._buf[pos:] + data
            self._searched = max(0, self._searched - pos)
        self._pos = 0

    def next_event(self) -> Event:
        state = self._state
        if state is _RESPONDING or state is _ERROR:
            return PAUSED
        if state is _CLOSED:
            return CLOSED
        try:
            if state is _BODY:
                return self._read_body()
            return self._read_head()
        except RemoteProtocolError as exc:
            self._state = _ERROR
            return ProtocolError(exc.status, exc.reason)

    def _read_head(self) -> Event:
        buf = self._buf
        pos = self._pos
        # RFC 9112 §2.2: a server SHOULD ignore empty lines before a request-line.
        while buf.startswith(b"\r\n", pos):
            pos += 2
        self._pos = pos
        end = buf.find(b"\r\n\r\n", max(pos, self._searched - 3))
        if end < 0:
            self._check_partial(buf, pos)
            self._searched = len(buf)
            if self._eof:
                self._state = _CLOSED
                return CLOSED
            return NEED_DATA
        end += 4
        self._pos = self._searched = end
        request = None
        if end - pos <= self._fast_max:
            request = parse_fast(buf, pos, end, self.is_tls)
            if request is not None and len(request.headers) > self.limits.max_fields:
                request = None  # let the slow path refuse it with its status
        if request is None:
            request, length, chunked = parse_slow(buf[pos:end], self.is_tls, self.limits)
            if length is None or length > 0:
                self._request = request
                self._body_left = length or 0
                self._body_seen = 0
                self._chunked = chunked
                self._state = _BODY
                return self._read_body()
        self._request = request
        self._state = _RESPONDING
        return request

    def _check_partial(self, buf: bytes, pos: int) -> None:
        """Refuse an incomplete head as soon as it is sure to be refused."""
        limits = self.limits
        pending = len(buf) - pos
        line_end = buf.find(b"\r\n", pos, pos + limits.max_request_line + 1)
        if line_end < 0 and pending > limits.max_request_line:
            raise RemoteProtocolError(414, "request line too long")
        if pending > limits.max_head:
            raise RemoteProtocolError(431, "request head too large")
        # A bare LF never completes a CRLF CRLF head: answer it now rather than
        # at the header timeout (RFC 9112 §2.2; slow.py refuses it in full heads).
        lf = buf.find(b"\n", max(pos, self._searched))
        while lf >= 0:
            if lf == pos or buf[lf - 1] != 13:
                raise RemoteProtocolError(400, "bare LF in request head")
            lf = buf.find(b"\n", lf + 1)

    def _read_body(self) -> Event:
        buf = self._buf
        pos = self._pos
        chunked = self._chunked
        if chunked is None:
            take = min(len(buf) - pos, self._body_left)
            self._pos = pos + take
            self._body_left -= take
            if self._body_left:
                return self._starved()
        else:
            if pos < len(buf):
                chunked.receive_data(buf[pos:])
                self._buf = b""
                self._pos = self._searched = 0
            while True:
                try:
                    event = chunked.next_event()
                except h11.RemoteProtocolError as exc:
                    raise RemoteProtocolError(400, f"bad chunked content: {exc}") from None
                if type(event) is h11.Data:
                    self._body_seen += len(event.data)
                    if self._body_seen > self.limits.max_body:
                        raise RemoteProtocolError(413, "request content too large")
                elif type(event) is h11.EndOfMessage:
                    self._buf = chunked.trailing_data[0]
                    self._pos = self._searched = 0
                    self._chunked = None
                    break
                else:  # NEED_DATA (h11 never sees our end of stream)
                    return self._starved()
        request = self._request
        assert request is not None
        self._state = _RESPONDING
        return request

    def _starved(self) -> Event:
        if self._eof:
            self._state = _CLOSED
            return CLOSED
        return NEED_DATA

    # ----------------------------------------------------------------- output

    def send(self, response: Response, now: float) -> bytes:
        """The bytes to write for the answer to the last event (head and ``body``).

        Then write ``response.parts`` in order; then close if :attr:`must_close`.
        """
        state = self._state
        if state is not _RESPONDING and state is not _ERROR:
            raise LocalProtocolError(f"send() without a request to answer (state {state.name})")
        request = self._request
        self.requests += 1
        close = (
            state is _ERROR
            or response.close
            or request is None
            or not request.keep_alive
            or self.requests >= self.limits.max_requests
            or self._shutdown
        )
        self._request = None
        if close or request is None:
            self._state = _CLOSED
            return response.head + date_line(now) + _CLOSE_LINE + b"\r\n" + response.body
        self._state = _IDLE
        if request.version == b"1.0":
            return response.head + date_line(now) + _KEEP_ALIVE_LINE + b"\r\n" + response.body
        return response.head + date_line(now) + b"\r\n" + response.body

    # ----------------------------------------------------------------- control

    def begin_shutdown(self) -> None:
        """Graceful stop: answer what is in progress with ``Connection: close``.

        If nothing is in progress the state becomes CLOSED at once (check
        :attr:`must_close` and close)."""
        self._shutdown = True
        if self._state is _IDLE and self._pos >= len(self._buf):
            self._state = _CLOSED

    @property
    def must_close(self) -> bool:
        """True once the connection is to be closed after the bytes sent so far."""
        return self._state is _CLOSED

    @property
    def phase(self) -> Phase:
        state = self._state
        if state is _IDLE:
            return Phase.HEAD if self._pos < len(self._buf) else Phase.IDLE
        if state is _BODY:
            return Phase.BODY
        if state is _CLOSED:
            return Phase.CLOSED
        return Phase.RESPONDING

    def deadline(self, now: float) -> float:
        """When to give up waiting for bytes, as a time on ``now``'s clock.

        Call it after each NEED_DATA with the current (monotonic) time.  A head
        gets ``header_timeout`` counted from the first call that saw it started,
        whatever arrives meanwhile (a slowloris cannot stretch it); a body gets
        ``body_timeout`` from every call (between two reads, as nginx); an idle
        keep-alive connection gets ``keepalive_timeout``, and a fresh one the
        header timeout.  On expiry, close (nginx closes silently; a 408 is also
        allowed, RFC 9110 §15.5.9).
        """
        phase = self.phase
        limits = self.limits
        if phase is Phase.BODY:
            return now + limits.body_timeout
        key = (phase, self.requests)
        if key != self._deadline_key:
            self._deadline_key = key
            if phase is Phase.IDLE and self.requests:
                self._deadline = now + limits.keepalive_timeout
            else:
                self._deadline = now + limits.header_timeout
        return self._deadline
