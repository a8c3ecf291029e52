"""dns: an authoritative DNS server (primary and secondary), on the appliance runtime.

``python -m appliances.dns`` with no arguments serves the embedded demo zone
(``data/example.test.zone``) on 127.0.0.1:5353, UDP and TCP.  Real zones come
from ``--zone FILE`` (repeatable) or ``--zone-dir DIR`` (every ``*.zone`` in it;
the origin is the file's ``$ORIGIN``, else its name: ``example.org.zone``), or
from a primary with ``--secondary ZONE=ADDR:PORT[@KEY]``.  See ``config`` for
the syntax of the transfer, NOTIFY and TSIG options, ``server`` for the edge,
``authority`` for how answers are made (ANY is answered with one RRset, as
RFC 8482 §4.2 allows), ``rrl`` for response rate limiting.

Multi-process: ``--workers N`` runs N processes on the same ports (SO_REUSEPORT).
Each worker loads the zones and pulls its secondary zones itself; only the first
sends NOTIFY.
"""

from runtime import BOOL, DURATION, FILE, INT, NET, STORE, STR, Appliance, DataSpec, Option

from .config import check_each, parse_keyed_address, parse_secondary, parse_transfer_rule
from .console import COMMANDS as CONSOLE_COMMANDS
from .rrl import DEFAULT_RATE, DEFAULT_SLIP, parse_prefix
from .server import serve
from .tsig import parse_key

__all__ = ["APPLIANCE"]

APPLIANCE = Appliance(
    name="dns",
    summary="authoritative DNS server: zone files, AXFR/IXFR, NOTIFY, TSIG, secondary zones, RRL",
    package=__name__,
    main=serve,
    devices=frozenset({NET, STORE}),
    data=(DataSpec("zones", "zone files (every *.zone)", default="data", option="zone_dir"),),
    options=(
        Option("zone", FILE, [], "a zone file to serve (repeatable)", repeat=True, metavar="FILE"),
        Option(
            "allow_transfer",
            STR,
            [],
            "who may AXFR/IXFR: PREFIX, or PREFIX@KEY to require a TSIG key (repeatable; default nobody)",
            repeat=True,
            metavar="PREFIX[@KEY]",
            check=check_each(parse_transfer_rule),
        ),
        Option(
            "tsig_key",
            STR,
            [],
            "a TSIG key, NAME:ALGORITHM:BASE64SECRET (repeatable; also tsig_key = [...] in the config file)",
            repeat=True,
            secret=True,
            metavar="NAME:ALG:SECRET",
            check=check_each(parse_key),
        ),
        Option(
            "notify",
            STR,
            [],
            "send NOTIFY to this secondary when a zone changes (repeatable)",
            repeat=True,
            metavar="ADDR:PORT[@KEY]",
            check=check_each(parse_keyed_address),
        ),
        Option(
            "secondary",
            STR,
            [],
            "serve ZONE as a secondary of the primary at ADDR:PORT (repeatable)",
            repeat=True,
            metavar="ZONE=ADDR:PORT[@KEY]",
            check=check_each(parse_secondary),
        ),
        Option("ixfr_versions", INT, 16, "zone versions kept per zone for IXFR", minimum=0, maximum=1000),
        Option(
            "rrl_rate",
            INT,
            DEFAULT_RATE,
            "UDP answers per second per client /24 or /56 and answer (0: no rate limiting)",
            minimum=0,
        ),
        Option(
            "rrl_slip",
            INT,
            DEFAULT_SLIP,
            "every Nth limited answer is sent truncated (TC=1) instead of dropped (0: never)",
            minimum=0,
            maximum=10,
        ),
        Option(
            "rrl_exempt",
            STR,
            ["127.0.0.0/8", "::1/128"],
            "clients never rate limited (repeatable)",
            repeat=True,
            metavar="PREFIX",
            check=check_each(parse_prefix),
        ),
        Option("query_log", BOOL, False, "log every query (one structured line each)"),
        Option(
            "udp_payload",
            INT,
            1232,
            "largest UDP answer with EDNS (RFC 6891; 1232 avoids fragments)",
            minimum=512,
            maximum=4096,
        ),
        Option("cache_size", INT, 100_000, "encoded answers kept per zone set", minimum=0),
        Option(
            "idle_timeout",
            DURATION,
            10.0,
            "close an idle TCP connection after this long (RFC 7766 §6.2.3)",
            minimum=0.001,
        ),
    ),
    listen=("127.0.0.1:5353",),
    workers=True,
    console=CONSOLE_COMMANDS,
)
