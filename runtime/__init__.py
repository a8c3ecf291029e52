"""The appliance runtime: a narrow, typed device API on an asyncio event loop.

An appliance imports only this module (and its own protocol libraries)::

    from runtime import NET, Appliance, Context, Option, INT, main

Everything here is public and stable; submodules are the runtime's own.
"""

from .appliance import NET, STORE, Appliance, Context, DataSpec, discover, load
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
from .net.certs import make_self_signed
from .options import ADDRESS, BOOL, DURATION, FILE, FLOAT, INT, PATH, SIZE, STR, Kind, Option, Options, choice
from .run import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_STARTUP, main, run

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
    "Clock",
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
    "StartupError",
    "Store",
    "Stream",
    "StreamListener",
    "TLSConfig",
    "TLSInfo",
    "choice",
    "discover",
    "format_address",
    "load",
    "main",
    "make_self_signed",
    "run",
]
