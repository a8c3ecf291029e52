"""The request handler: virtual hosts, health, methods, then the site.

Method choices (RFC 9110 §9.1 and §15.5.6, §15.6.2): GET and HEAD are served.
The other methods RFC 9110 and RFC 5789 define (POST, PUT, DELETE, CONNECT,
OPTIONS, TRACE, PATCH) are recognised and answered 405 with ``Allow: GET,
HEAD``; OPTIONS too, as nginx does for static files.  Any other token, lowercase
``get`` included (method names are case-sensitive, §9.1), is a method we do not
recognise: 501, as §9.1 asks of an origin server.  nginx differs: it answers
400 to lowercase methods (its parser takes only A-Z) and 405 to unknown
uppercase ones.  All of these keep the connection open: the framing is sound.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .events import ProtocolError, Request
from .paths import split_target
from .respond import serve_resource
from .response import Response, simple_response
from .site import Fixed, Redirect, Resource, Site

__all__ = ["App", "AppOptions"]

_KNOWN_METHODS = frozenset({b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH"})
_ALLOW = (("Allow", "GET, HEAD"),)


@dataclass(frozen=True, slots=True)
class AppOptions:
    #: the Server field of answers made before a site is chosen; None leaves it out
    server: str | None = "web"
    #: answered 200 "ok" before any site lookup, whatever the Host; None: off
    health_path: str | None = "/healthz"


class App:
    """Several sites chosen by Host (case-insensitive, port stripped), a default."""

    def __init__(
        self, default: Site, vhosts: Mapping[str, Site] | None = None, options: AppOptions | None = None
    ):
        self.options = options or AppOptions()
        self.default = default
        self.vhosts = {name.lower().rstrip("."): site for name, site in (vhosts or {}).items()}
        server = self.options.server
        self._health = self.options.health_path.encode() if self.options.health_path else None
        self._health_get = simple_response(
            200,
            server=server,
            body=b"ok\n",
            content_type="text/plain; charset=utf-8",
            fields=(("Cache-Control", "no-store"),),
        )
        self._health_head = simple_response(
            200,
            server=server,
            body=b"ok\n",
            content_type="text/plain; charset=utf-8",
            fields=(("Cache-Control", "no-store"),),
            head_only=True,
        )
        self._not_allowed = simple_response(405, server=server, fields=_ALLOW)
        self._not_implemented = simple_response(501, server=server, fields=_ALLOW)
        self._errors: dict[int, Response] = {}

    def site_for(self, host: str) -> Site:
        return self.vhosts.get(host, self.default) if self.vhosts else self.default

    def respond(self, request: Request) -> Response:
        """The answer to a request event."""
        method = request.method
        if method != b"GET" and method != b"HEAD":
            return self._not_allowed if method in _KNOWN_METHODS else self._not_implemented
        path, query = split_target(request.path)
        if path == self._health:
            return self._health_head if method == b"HEAD" else self._health_get
        site = self.vhosts.get(request.host, self.default) if self.vhosts else self.default
        found = site.lookup(path)
        if type(found) is Resource:
            response = serve_resource(site, found, request)
        elif type(found) is Fixed:
            response = found.head if method == b"HEAD" else found.get
        else:
            assert isinstance(found, Redirect)
            response = self._redirect(site, found.location + query.decode("latin-1"), method == b"HEAD")
        if request.is_tls and site.hsts_line:
            return Response(
                response.status,
                response.head + site.hsts_line,
                response.body,
                response.parts,
                response.length,
                response.close,
            )
        return response

    def _redirect(self, site: Site, location: str, head: bool) -> Response:
        # RFC 9110 §10.2.2: a relative reference is resolved against the target
        # URI; ours is always an absolute-path (one leading slash: no
        # "//host" open redirect whatever the request path was).
        fixed = site.fixed(301, (("Location", location),))
        return fixed.head if head else fixed.get

    def respond_error(self, error: ProtocolError) -> Response:
        """The answer to a ProtocolError event; the connection closes after it."""
        response = self._errors.get(error.status)
        if response is None:
            fields = _ALLOW if error.status in (405, 501) else ()
            response = simple_response(error.status, server=self.options.server, close=True, fields=fields)
            self._errors[error.status] = response
        return response
