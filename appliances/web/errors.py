"""Errors of the HTTP core, split by whose fault they are (h11's habit).

A :class:`RemoteProtocolError` means the peer sent something we will not
process; it carries the status to answer with and whether the connection must
close afterwards.  A :class:`LocalProtocolError` means the code driving the core
misused it (our bug): it is never answered on the wire.
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "RemoteProtocolError"]


class RemoteProtocolError(Exception):
    """The peer broke the protocol; answer ``status`` and (usually) close.

    ``close`` is True whenever we cannot be sure where the next request starts
    (RFC 9112 §6.3: a message whose framing is in doubt must end the
    connection), which is every parse error of a head or a body.
    """

    def __init__(self, status: int, reason: str, *, close: bool = True) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.close = close


class LocalProtocolError(Exception):
    """The caller drove the core in an order it does not allow."""
