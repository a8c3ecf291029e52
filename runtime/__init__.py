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
    "Address",
    "Appliance",
    "BOOL",
    "Clock",
    "ConfigError",
    "Context",
    "DURATION",
    "Data",
    "DataEntry",
    "DataFile",
    "DataSpec",
    "DatagramEndpoint",
    "DeviceError",
    "EXIT_CONFIG",
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_STARTUP",
    "FILE",
    "FLOAT",
    "INT",
    "Kind",
    "Limits",
    "Log",
    "Metrics",
    "NET",
    "Net",
    "Option",
    "Options",
    "PATH",
    "Random",
    "SIZE",
    "STORE",
    "STR",
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
    "make_self_signed",
    "main",
    "run",
]
