"""web: a static-site server (HTTP/1.1, HTTPS, virtual hosts) on the narrow runtime.

    python -m appliances.web                      # the embedded demo site on 127.0.0.1:8080
    python -m appliances.web --root ./public --listen 0.0.0.0:80 \\
        --tls-listen 0.0.0.0:443 --tls-cert cert.pem --tls-key key.pem \\
        --redirect-listen 0.0.0.0:8080 --vhosts-root ./vhosts

Files come from the ``site`` data device (``--root DIR``; default: the demo
site in ``data/site``).  Virtual hosts come from the ``vhosts`` data device
(``--vhosts-root DIR``), one subdirectory per host name; the default site
answers every other Host.  TLS certificate and key are FILE options read
through the data device; with ``--tls-listen`` and no certificate a
self-signed one is made at start (kept in memory only) and its SHA-256
fingerprint logged.  SIGHUP (or the console's ``reload``) rebuilds every site
from its re-read directory and swaps them in at once; a changed certificate
is only reported (see ``server.py``).

The sans-IO HTTP core is ``connection`` (bytes in, events out), ``app`` and
``site`` (requests to prepared responses); ``server`` is the I/O edge.
"""

from runtime import (
    ADDRESS,
    BOOL,
    DURATION,
    FILE,
    INT,
    NET,
    SIZE,
    STR,
    Appliance,
    DataSpec,
    Option,
    choice,
)

from .console import COMMANDS as CONSOLE_COMMANDS
from .options import check_cache_control, check_health_path, check_names
from .server import serve

__all__ = ["APPLIANCE"]

APPLIANCE = Appliance(
    name="web",
    summary="serves static sites over HTTP/1.1 and HTTPS",
    package=__name__,
    main=serve,
    devices=frozenset({NET}),
    data=(
        DataSpec("site", "the default site's files", default="data/site", option="root"),
        DataSpec(
            "vhosts",
            "virtual hosts, one subdirectory per host name",
            default="data/vhosts",
            option="vhosts_root",
        ),
    ),
    options=(
        Option("tls_listen", ADDRESS, [], "HTTPS address (repeatable)", repeat=True, metavar="ADDR:PORT"),
        Option(
            "tls_cert", FILE, None, "PEM certificate chain for HTTPS (default: self-signed)", metavar="FILE"
        ),
        Option("tls_key", FILE, None, "PEM private key for --tls-cert", metavar="FILE", secret=True),
        Option(
            "self_signed_name",
            STR,
            ["localhost", "127.0.0.1", "::1"],
            "names in the self-signed certificate made when --tls-cert is not given (repeatable)",
            repeat=True,
            check=check_names,
            metavar="NAME",
        ),
        Option(
            "redirect_listen",
            ADDRESS,
            [],
            "plain-HTTP address answering 301 to HTTPS (repeatable; needs --tls-listen)",
            repeat=True,
            metavar="ADDR:PORT",
        ),
        Option("listing", BOOL, False, "HTML listing of directories without an index"),
        Option("dotfiles", BOOL, False, "serve names starting with '.' (/.well-known/ is always served)"),
        Option("gzip", BOOL, True, "serve gzip variants of text files to clients that accept them"),
        Option("server_header", BOOL, True, "send 'Server: web'"),
        Option(
            "cache_control",
            STR,
            [],
            "Cache-Control for URL paths matching GLOB (starts with / or *), first match wins (repeatable)",
            repeat=True,
            check=check_cache_control,
            metavar="GLOB=VALUE",
        ),
        Option("hsts", BOOL, False, "send Strict-Transport-Security (max-age two years) over HTTPS"),
        Option(
            "security_headers",
            BOOL,
            False,
            "send X-Frame-Options: SAMEORIGIN and Content-Security-Policy: default-src 'self'",
        ),
        Option(
            "access_log",
            choice("off", "combined", "json"),
            "combined",
            "one log line per request (component web.access): combined format, JSON fields, or none",
        ),
        Option(
            "health_path",
            STR,
            "/healthz",
            "path answered 200 'ok' on every host ('' turns it off)",
            check=check_health_path,
            metavar="PATH",
        ),
        Option("max_requests", INT, 1000, "requests per connection before it is closed", minimum=1),
        Option("header_timeout", DURATION, 60.0, "time to receive a whole request head", minimum=0.001),
        Option(
            "keepalive_timeout", DURATION, 75.0, "close a keep-alive connection idle this long", minimum=0.001
        ),
        Option("body_timeout", DURATION, 60.0, "time between two reads of a request body", minimum=0.001),
        Option(
            "max_body", SIZE, 1024 * 1024, "largest request body read (and discarded); beyond: 413", minimum=0
        ),
    ),
    listen=("127.0.0.1:8080",),
    workers=True,
    console=CONSOLE_COMMANDS,
)
