"""XEP-0198 stream management for one session (sans-IO): counters, the queue
of stanzas the client has not acknowledged, and resumption.

* ``handled``: stanzas received from the client and handled to their end (the
  ``h`` we report in ``<a/>`` and ``<resumed/>``).
* ``sent``: stanzas sent to the client; the last ``len(unacked)`` of them are
  kept until the client's ``<a h=.../>`` covers them.  Counters wrap at 2^32
  (§4).
* One ack request in flight at a time: ``outbound`` asks for an ack with the
  first stanza after the last answer (the ``<r/>`` rides in the same write),
  and ``acked`` asks again while stanzas remain unacknowledged.

When the connection of a resumable session breaks, the session hibernates
(``server.XMPPService``): stanzas for it keep queueing here; a ``<resume/>``
within the timeout acknowledges what the client got (its ``h``) and the rest
is sent again; otherwise the session ends and what was never acknowledged is
treated as not delivered (``IMServer.undelivered``).
"""

from __future__ import annotations

from collections import deque

__all__ = [
    "ACK_REQUEST",
    "NS_SM",
    "AckError",
    "StreamManagement",
    "answer",
    "enabled",
    "failed",
    "parse_h",
    "resumed",
]

NS_SM = "urn:xmpp:sm:3"
MOD = 2**32
ACK_REQUEST = b"<r xmlns='urn:xmpp:sm:3'/>"


class AckError(Exception):
    """The client acknowledged stanzas we never sent (§4: undefined-condition)."""


class StreamManagement:
    def __init__(self, sm_id: str, *, resumable: bool, timeout: float, max_unacked: int) -> None:
        self.id = sm_id
        self.resumable = resumable
        self.timeout = timeout
        self.max_unacked = max_unacked
        self.handled = 0
        self.sent = 0
        self.unacked: deque[bytes] = deque()
        self.requested = False

    def outbound(self, stanza: bytes) -> bytes:
        """Count ``stanza`` (one stanza's bytes); returns what to send: the
        stanza, with an ack request after it when none is in flight."""
        self.unacked.append(stanza)
        self.sent = (self.sent + 1) % MOD
        if self.requested:
            return stanza
        self.requested = True
        return stanza + ACK_REQUEST

    def inbound(self) -> None:
        self.handled = (self.handled + 1) % MOD

    def acked(self, h: int) -> bytes:
        """The client's ``<a h=.../>``; returns a new ack request when some
        stanzas are still unacknowledged.  Raises ``AckError``."""
        self._drop(h)
        self.requested = bool(self.unacked)
        return ACK_REQUEST if self.requested else b""

    def resume(self, h: int) -> list[bytes]:
        """Resumption with the client's ``h``: what to send again, in order
        (still counted as unacknowledged).  Raises ``AckError``."""
        self._drop(h)
        self.requested = False
        return list(self.unacked)

    def _drop(self, h: int) -> None:
        first_unacked = (self.sent - len(self.unacked)) % MOD
        count = (h - first_unacked) % MOD
        if count > len(self.unacked):
            raise AckError(f"acknowledged {h} stanzas, {self.sent} were sent")
        for _ in range(count):
            self.unacked.popleft()


def parse_h(text: str | None) -> int:
    """An ``h`` attribute: an unsigned 32-bit integer (else ``AckError``)."""
    if text is None or not text.isdigit() or len(text) > 10:
        raise AckError(f"bad h {text!r}")
    value = int(text)
    if value >= MOD:
        raise AckError(f"bad h {text!r}")
    return value


def enabled(sm: StreamManagement) -> bytes:
    if sm.resumable:
        return f"<enabled xmlns='{NS_SM}' id='{sm.id}' resume='true' max='{int(sm.timeout)}'/>".encode()
    return f"<enabled xmlns='{NS_SM}'/>".encode()


def answer(sm: StreamManagement) -> bytes:
    return f"<a xmlns='{NS_SM}' h='{sm.handled}'/>".encode()


def resumed(sm: StreamManagement) -> bytes:
    return f"<resumed xmlns='{NS_SM}' h='{sm.handled}' previd='{sm.id}'/>".encode()


def failed(condition: str, h: int | None = None) -> bytes:
    attrs = "" if h is None else f" h='{h}'"
    return (
        f"<failed xmlns='{NS_SM}'{attrs}><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>"
    ).encode()
