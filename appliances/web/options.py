"""From the appliance's typed options to the core's settings.

The checks run when options are parsed, so a bad value fails at start with
one line naming the flag; the builders run in ``serve`` and on reload.
"""

from __future__ import annotations

from runtime import Limits as NetLimits
from runtime import Options

from .app import AppOptions
from .limits import Limits as HttpLimits
from .site import SiteOptions

__all__ = [
    "CSP",
    "FRAME_OPTIONS",
    "HSTS",
    "SERVER",
    "app_options",
    "cache_rules",
    "check_cache_control",
    "check_health_path",
    "check_names",
    "http_limits",
    "net_limits",
    "site_options",
]

#: the Server field value (no version: nothing to help an attacker pick an exploit)
SERVER = "web"
#: two years, with no includeSubDomains (it would bind hosts we know nothing of);
#: the value hstspreload.org and Mozilla's web security guidelines recommend
HSTS = "max-age=63072000"
#: framing only by the site itself (RFC 7034)
FRAME_OPTIONS = "SAMEORIGIN"
#: everything from the site's own origin; inline scripts and styles are refused
CSP = "default-src 'self'; frame-ancestors 'self'"


def _one_line(text: str) -> bool:
    return text.isprintable() and text == text.strip()


def _join_continuations(values: list[str]) -> list[str]:
    """Undo the split of an environment list at commas inside a VALUE.

    ``WEB_CACHE_CONTROL="/a/*=public, max-age=60"`` reaches us as
    ``["/a/*=public", " max-age=60"]`` (flags are never split).  A GLOB always
    starts with ``/`` or ``*`` and a Cache-Control directive never does, so a
    part that does not is the rest of the previous value."""
    joined: list[str] = []
    for value in values:
        if joined and not value.strip().startswith(("/", "*")):
            joined[-1] += "," + value
        else:
            joined.append(value)
    return joined


def check_cache_control(values: list[str]) -> str | None:
    for value in _join_continuations(values):
        glob, eq, field = value.partition("=")
        if not eq or not glob.strip() or not field.strip():
            return f"expected GLOB=VALUE, got {value!r}"
        if not glob.strip().startswith(("/", "*")):
            return f"the GLOB is matched against URL paths and must start with '/' or '*': {glob!r}"
        if not field.strip().isprintable():
            return f"the VALUE must be printable text: {field!r}"
    return None


def check_health_path(value: str) -> str | None:
    if value and (not value.startswith("/") or not _one_line(value) or " " in value or "?" in value):
        return "expected an absolute path such as /healthz, or '' for none"
    return None


def check_names(values: list[str]) -> str | None:
    if not values:
        return "a certificate needs at least one name"
    for value in values:
        if not value or not _one_line(value) or " " in value:
            return f"bad name {value!r}"
    return None


def cache_rules(values: list[str]) -> tuple[tuple[str, str], ...]:
    rules = []
    for value in _join_continuations(values):
        glob, _, field = value.partition("=")
        rules.append((glob.strip(), field.strip()))
    return tuple(rules)


def site_options(options: Options) -> SiteOptions:
    return SiteOptions(
        dotfiles=options.dotfiles,
        listing=options.listing,
        gzip=options.gzip,
        cache_control=cache_rules(options.cache_control),
        server=SERVER if options.server_header else None,
        hsts=HSTS if options.hsts else None,
        frame_options=FRAME_OPTIONS if options.security_headers else None,
        csp=CSP if options.security_headers else None,
    )


def app_options(options: Options) -> AppOptions:
    return AppOptions(
        server=SERVER if options.server_header else None, health_path=options.health_path or None
    )


def http_limits(options: Options) -> HttpLimits:
    return HttpLimits(
        max_body=options.max_body,
        max_requests=options.max_requests,
        header_timeout=options.header_timeout,
        body_timeout=options.body_timeout,
        keepalive_timeout=options.keepalive_timeout,
    )


def net_limits(options: Options) -> NetLimits:
    return NetLimits(
        max_connections=options.max_connections,
        idle_timeout=options.idle_timeout,
        drain_timeout=options.drain_timeout,
    )
