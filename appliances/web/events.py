"""Events the connection core hands to its driver (h11's ``_events.py`` shape).

``next_event()`` returns a :class:`Request`, a :class:`ProtocolError` or one of
the sentinels: :data:`NEED_DATA` (feed more bytes), :data:`PAUSED` (answer the
request you were given first) and :data:`CLOSED` (close the connection).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["CLOSED", "NEED_DATA", "PAUSED", "Phase", "ProtocolError", "Request", "Sentinel"]


class Sentinel(enum.Enum):
    NEED_DATA = "NEED_DATA"
    PAUSED = "PAUSED"
    CLOSED = "CLOSED"

    def __repr__(self) -> str:
        return self.value


NEED_DATA: Final = Sentinel.NEED_DATA
PAUSED: Final = Sentinel.PAUSED
CLOSED: Final = Sentinel.CLOSED


class Phase(enum.Enum):
    """What the connection is waiting for; the edge picks its read timeout by it."""

    #: nothing of the next request yet (keep-alive idle, or a fresh connection)
    IDLE = "idle"
    #: part of a request head has arrived (header timeout: slowloris)
    HEAD = "head"
    #: a request body is being read and discarded (body timeout)
    BODY = "body"
    #: a request was handed out; the core reads nothing until it is answered
    RESPONDING = "responding"
    #: the connection must be closed once the last response is written
    CLOSED = "closed"


@dataclass(frozen=True, slots=True, eq=False)
class Request:
    """One complete request head (any body has already been read and discarded).

    ``headers`` keep the received order with lowercased names and values
    without surrounding whitespace (as h11 gives them); ``fields`` is the same
    as a mapping, repeated fields joined with ``", "`` (RFC 9110 §5.3).
    """

    method: bytes
    #: the request-target as received (for the log)
    target: bytes
    #: b"1.0" or b"1.1"
    version: bytes
    headers: Sequence[tuple[bytes, bytes]]
    fields: Mapping[bytes, bytes]
    #: the origin-form (absolute-path [ "?" query ]); equals ``target`` except for
    #: absolute-form targets (RFC 9112 §3.2.2) and ``*`` / authority-form (b"")
    path: bytes
    #: lowercased host without port or trailing dot, "" if none was given
    host: str
    #: what the request asks for (RFC 9112 §9.3); the connection may still close
    keep_alive: bool
    is_tls: bool


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """The peer sent something we will not process: answer ``status``, then close."""

    status: int
    reason: str
