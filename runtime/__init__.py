"""The appliance runtime: a narrow, typed device API on an asyncio event loop.

An appliance imports only this module (and its own protocol libraries)::

    from runtime import NET, Appliance, Context, Option, INT, main

Everything here is public and stable; submodules are the runtime's own.
"""

# First: importing it makes the code that dataclasses and namedtuples generate
# come precompiled in an image (see runtime/image/codegen.py).
from .image import codegen as _codegen  # noqa: F401

# isort: split
from typing import TYPE_CHECKING, Any

from .appliance import NET, STORE, Appliance, Context, DataSpec, discover, load
from .console import Call, Command, Reply, UsageError, find_service, table_text
from .devices import (
    Address,
    Clock,
    Data,
    DataEntry,
    DataFile,
    DatagramEndpoint,
    Limits,
    Log,
    Metrics,
    Net,
    Random,
    Store,
    Stream,
    StreamListener,
    TLSConfig,
    TLSInfo,
    format_address,
)
from .errors import ConfigError, DeviceError, StartupError
from .options import ADDRESS, BOOL, DURATION, FILE, FLOAT, INT, PATH, SIZE, STR, Kind, Option, Options, choice
from .run import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_STARTUP, main, run

if TYPE_CHECKING:
    from .net.certs import certificate_fingerprint, make_self_signed, tls_server_end_point
    from .net.tls import check_tls

__all__ = [
    "ADDRESS",
    "BOOL",
    "DURATION",
    "EXIT_CONFIG",
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_STARTUP",
    "FILE",
    "FLOAT",
    "INT",
    "NET",
    "PATH",
    "SIZE",
    "STORE",
    "STR",
    "Address",
    "Appliance",
    "Call",
    "Clock",
    "Command",
    "ConfigError",
    "Context",
    "Data",
    "DataEntry",
    "DataFile",
    "DataSpec",
    "DatagramEndpoint",
    "DeviceError",
    "Kind",
    "Limits",
    "Log",
    "Metrics",
    "Net",
    "Option",
    "Options",
    "Random",
    "Reply",
    "StartupError",
    "Store",
    "Stream",
    "StreamListener",
    "TLSConfig",
    "TLSInfo",
    "UsageError",
    "certificate_fingerprint",
    "check_tls",
    "choice",
    "discover",
    "find_service",
    "format_address",
    "load",
    "main",
    "make_self_signed",
    "run",
    "table_text",
    "tls_server_end_point",
]


_CERTIFICATE_HELPERS = ("make_self_signed", "certificate_fingerprint", "tls_server_end_point")


def __getattr__(name: str) -> Any:
    # The certificate helpers are imported on first use: they pull in cryptography (a
    # 14 MB shared object), which an appliance that makes no certificate (the
    # DNS image) must not carry.
    if name in _CERTIFICATE_HELPERS:
        from .net import certs

        return getattr(certs, name)
    if name == "check_tls":
        from .net import tls

        return tls.check_tls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
