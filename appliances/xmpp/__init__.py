"""xmpp: an XMPP server (RFC 6120/6121) on the narrow runtime.

    python -m appliances.xmpp                         # domain localhost on 127.0.0.1:5222
    python -m appliances.xmpp user add alice@localhost   # asks for the password
    python -m appliances.xmpp --domain example.org --listen 0.0.0.0:5222 \\
        --tls-listen 0.0.0.0:5223 --tls-cert cert.pem --tls-key key.pem

Everything durable (accounts as salted SCRAM keys, rosters and subscriptions,
offline messages, vCards, block lists, the self-signed certificate made on
first start) lives in the store.

Sans-IO cores: ``xmlstream`` (XML stream parser and serializer), ``scram``
(SASL), ``c2s`` (stream negotiation); ``im`` and ``services`` route and answer
stanzas; ``server`` is the I/O edge; ``storage`` the tables.
"""

from runtime import ADDRESS, BOOL, DURATION, FILE, INT, NET, SIZE, STORE, STR, Appliance, Option

from .commands import COMMANDS
from .console import CONSOLE_COMMANDS
from .options import check_component, check_domain
from .server import serve

__all__ = ["APPLIANCE"]

APPLIANCE = Appliance(
    name="xmpp",
    summary="serves XMPP instant messaging (RFC 6120/6121) for one domain",
    package=__name__,
    main=serve,
    devices=frozenset({NET, STORE}),
    options=(
        Option("domain", STR, "localhost", "the XMPP domain served", check=check_domain, metavar="DOMAIN"),
        Option(
            "tls_listen",
            ADDRESS,
            [],
            "Direct TLS address (XEP-0368; repeatable)",
            repeat=True,
            metavar="ADDR:PORT",
        ),
        Option(
            "component_listen",
            ADDRESS,
            [],
            "address for external components (XEP-0114; repeatable)",
            repeat=True,
            metavar="ADDR:PORT",
        ),
        Option(
            "component",
            STR,
            [],
            "an external component's domain and shared secret (repeatable)",
            repeat=True,
            check=check_component,
            metavar="NAME=SECRET",
            secret=True,
        ),
        Option(
            "tls_cert",
            FILE,
            None,
            "PEM certificate chain (default: self-signed, kept in the store)",
            metavar="FILE",
        ),
        Option("tls_key", FILE, None, "PEM private key for --tls-cert", metavar="FILE", secret=True),
        Option(
            "max_stanza",
            SIZE,
            256 * 1024,
            "largest stanza accepted (RFC 6120 §13.12: >= 10000)",
            minimum=10000,
        ),
        Option("max_offline", INT, 1000, "offline messages kept per account", minimum=0),
        Option("max_resources", INT, 10, "sessions one account may have at once", minimum=1),
        Option(
            "receive_rate",
            SIZE,
            256 * 1024,
            "bytes per second one client may send, bursts of 4 s (0: no limit)",
            minimum=0,
        ),
        Option(
            "max_send_buffer",
            SIZE,
            1024 * 1024,
            "bytes queued for one slow client before it is closed",
            minimum=65536,
        ),
        Option(
            "ping_interval", DURATION, 120.0, "ping a bound client quiet this long (XEP-0199)", minimum=0.01
        ),
        Option("ping_timeout", DURATION, 30.0, "close a client not answering a ping this long", minimum=0.01),
        Option(
            "resume_timeout",
            DURATION,
            300.0,
            "how long a broken session waits for its client to resume (XEP-0198)",
            minimum=0.01,
        ),
        Option(
            "max_unacked",
            INT,
            10000,
            "stanzas a client may leave unacknowledged (XEP-0198) before it is closed",
            minimum=1,
        ),
        Option("register", BOOL, False, "let clients create accounts in-band (XEP-0077)"),
        Option(
            "register_limit",
            INT,
            5,
            "accounts one client address may create in-band per hour",
            minimum=1,
        ),
        Option("auth_failures", INT, 5, "failed logins per client address per minute", minimum=1),
        Option("version_iq", BOOL, True, "answer XEP-0092 software version queries"),
    ),
    listen=("127.0.0.1:5222",),
    commands=COMMANDS,
    console=CONSOLE_COMMANDS,
)
