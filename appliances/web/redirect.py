"""The HTTP -> HTTPS redirect listener's answers (sans-IO, like ``App``).

Every request gets ``301 Moved Permanently`` to the same host and target on
the HTTPS port, whatever its method (nginx's ``return 301
https://$host$request_uri``), except the health path, answered 200 so that a
load balancer probing plain HTTP sees the appliance alive.  The host comes
from the request's Host (already validated by the core: no field-breaking
byte can reach the Location); a request without one (HTTP/1.0) is sent to
``fallback_host``.  The target keeps its query; bytes outside printable ASCII
are percent-encoded (RFC 3986 §2.1), so the Location is always a valid URI.
"""

from __future__ import annotations

from urllib.parse import quote

from .events import ProtocolError, Request
from .paths import split_target
from .response import Response, simple_response

__all__ = ["Redirector"]

#: RFC 3986 reserved and unreserved characters, plus "%" for existing escapes
_URI_SAFE = "/?#[]@!$&'()*+,;=:%~-._"


class Redirector:
    def __init__(
        self,
        *,
        port: int,
        fallback_host: str,
        server: str | None = "web",
        health_path: str | None = "/healthz",
    ) -> None:
        """``port`` is the HTTPS port (left out of the Location when 443)."""
        self.port_suffix = "" if port == 443 else f":{port}"
        self.fallback_host = fallback_host
        self.server = server
        self._health = health_path.encode() if health_path else None
        fields = (("Cache-Control", "no-store"),)
        kind = "text/plain; charset=utf-8"
        self._health_get = simple_response(200, server=server, body=b"ok\n", content_type=kind, fields=fields)
        self._health_head = simple_response(
            200, server=server, body=b"ok\n", content_type=kind, fields=fields, head_only=True
        )
        self._errors: dict[int, Response] = {}

    def location(self, request: Request) -> str:
        host = request.host or self.fallback_host
        target = quote(request.path, safe=_URI_SAFE) if request.path else "/"
        return f"https://{host}{self.port_suffix}{target}"

    def respond(self, request: Request) -> Response:
        if self._health is not None and split_target(request.path)[0] == self._health:
            return self._health_head if request.method == b"HEAD" else self._health_get
        return simple_response(
            301,
            server=self.server,
            fields=(("Location", self.location(request)),),
            head_only=request.method == b"HEAD",
        )

    def respond_error(self, error: ProtocolError) -> Response:
        response = self._errors.get(error.status)
        if response is None:
            response = simple_response(error.status, server=self.server, close=True)
            self._errors[error.status] = response
        return response
