"""Access log lines: the Combined Log Format (Apache, nginx's ``combined``) or JSON.

The core knows the request, the response and the time; the edge passes the
peer address.  Peer-chosen text is escaped as nginx does (``\\xHH`` for
quotes, backslashes, controls and non-ASCII), so a line can never be split or
forged.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from .events import ProtocolError, Request
from .response import Response

__all__ = ["access_fields", "combined_line", "json_line"]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_UNSAFE = re.compile(rb'["\\\x00-\x1f\x7f-\xff]')


def _escape(value: bytes | None) -> str:
    if not value:
        return "-"
    return _UNSAFE.sub(lambda m: f"\\x{m.group()[0]:02X}".encode(), value).decode("ascii")


def _field(request: Request | None, name: bytes) -> bytes | None:
    return request.fields.get(name) if request is not None else None


def combined_line(request: Request | ProtocolError | None, response: Response, peer: str, now: float) -> str:
    """``peer - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 2326 "referer" "agent"``.

    ``request`` is the event that was answered (a ProtocolError has no request
    line: it is logged as ``"-"``).
    """
    req = request if isinstance(request, Request) else None
    d = datetime.fromtimestamp(int(now), UTC)
    stamp = (
        f"{d.day:02d}/{_MONTHS[d.month - 1]}/{d.year:04d}:{d.hour:02d}:{d.minute:02d}:{d.second:02d} +0000"
    )
    line = _escape(req.method + b" " + req.target + b" HTTP/" + req.version) if req is not None else "-"
    return (
        f'{peer} - - [{stamp}] "{line}" {response.status} {response.length} '
        f'"{_escape(_field(req, b"referer"))}" "{_escape(_field(req, b"user-agent"))}"'
    )


def access_fields(
    request: Request | ProtocolError | None, response: Response, peer: str
) -> dict[str, object]:
    """The facts of one exchange as a flat record (log fields, or JSON with a time)."""
    req = request if isinstance(request, Request) else None
    record: dict[str, object] = {
        "peer": peer,
        "method": req.method.decode("latin-1") if req else None,
        "target": req.target.decode("latin-1") if req else None,
        "version": req.version.decode("latin-1") if req else None,
        "host": req.host if req else None,
        "status": response.status,
        "bytes": response.length,
        "referer": _decode(_field(req, b"referer")),
        "user_agent": _decode(_field(req, b"user-agent")),
    }
    if isinstance(request, ProtocolError):
        record["error"] = request.reason
    return record


def json_line(request: Request | ProtocolError | None, response: Response, peer: str, now: float) -> str:
    """One JSON object per line with the same facts (and the Host)."""
    stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
    record: dict[str, object] = {
        "time": stamp.replace("+00:00", "Z"),
        **access_fields(request, response, peer),
    }
    return json.dumps(record, separators=(",", ":"))


def _decode(value: bytes | None) -> str | None:
    # Field values may hold obs-text: keep them visible, never fail.
    return value.decode("utf-8", "backslashreplace") if value is not None else None
