"""What an appliance declares, and the context it is handed.

An appliance is a Python package whose ``APPLIANCE`` is an ``Appliance``
record: its name, the devices it needs, its options and its main coroutine.
The runtime opens exactly the declared devices for the chosen target (host,
memory, image) and calls ``main(ctx)``.  Appliances are discovered through
the ``runtime.appliances`` entry-point group, so a third-party package
appears next to ours.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .devices import Address, Clock, Data, DataFile, Log, Metrics, Net, Random, Store
from .errors import DeviceError
from .lifecycle import Lifecycle
from .options import ADDRESS, BOOL, DURATION, FILE, INT, PATH, STR, Option, Options, choice

if TYPE_CHECKING:
    from .console.command import Command

__all__ = [
    "ENTRY_POINT_GROUP",
    "NET",
    "STORE",
    "Appliance",
    "Context",
    "DataSpec",
    "common_options",
    "discover",
    "load",
]

ENTRY_POINT_GROUP = "runtime.appliances"

_T = TypeVar("_T")

#: device names an appliance may declare (clock, random, log and metrics are ambient)
NET = "net"
STORE = "store"


@dataclass(frozen=True)
class DataSpec:
    """A named read-only data device.

    ``default`` is a directory inside the appliance's package holding its
    embedded demo data (``"data/site"`` relative to the package), so that the
    appliance serves something real with no arguments.  ``option`` names a
    dedicated option that sets the directory (``--root DIR``); ``--data NAME=DIR``
    always works too.
    """

    name: str
    help: str
    default: str | None = None
    option: str | None = None


@dataclass(frozen=True)
class Appliance:
    name: str
    summary: str
    main: Callable[[Context], Coroutine[Any, Any, None]]
    #: the Python package holding the appliance (for embedded data)
    package: str
    version: str = "0.1.0"
    devices: frozenset[str] = frozenset()
    data: tuple[DataSpec, ...] = ()
    options: tuple[Option, ...] = ()
    #: the ``--listen`` default; empty means the appliance has no main listener
    listen: tuple[str, ...] = ()
    #: the appliance may run as several processes sharing listeners (SO_REUSEPORT)
    workers: bool = False
    #: the appliance's own console commands, after the runtime's (``runtime.console``)
    console: tuple[Command, ...] = ()
    #: commands on the appliance's state, run from the command line without
    #: serving (``python -m appliances.NAME user add ...``) and in the console
    commands: tuple[Command, ...] = ()

    def all_options(self) -> list[Option]:
        """Common options first, then data options, then the appliance's own."""
        own = {opt.name for opt in self.options}
        result = [opt for opt in common_options(self) if opt.name not in own]
        for spec in self.data:
            if spec.option and spec.option not in own:
                result.append(Option(spec.option, PATH, None, f"directory for {spec.help}", metavar="DIR"))
        result.extend(self.options)
        return result


def common_options(appliance: Appliance) -> list[Option]:
    """The conventions every appliance shares, so operators can rely on them."""
    options = [
        Option("config", PATH, None, "TOML file with option values", metavar="FILE"),
        Option(
            "state_dir",
            PATH,
            None,
            "where the durable store lives (default: per-user data directory)",
            metavar="DIR",
        ),
        Option(
            "log_level",
            STR,
            "info",
            "LEVEL or COMPONENT=LEVEL,... (debug, info, warning, error)",
            metavar="LEVEL",
        ),
        Option("log_format", choice("text", "json"), "text", "log line format"),
        Option(
            "log_file",
            STR,
            [],
            "write COMPONENT's records (e.g. web.access) to FILE, bare, reopened on SIGHUP (repeatable)",
            repeat=True,
            metavar="COMPONENT=FILE",
        ),
        Option("loop", choice("uvloop", "asyncio"), "uvloop", "event loop implementation"),
        Option("workers", INT, 1, "worker processes sharing the listeners", minimum=1, maximum=256),
        Option("drain_timeout", DURATION, 10.0, "on stop, how long in-flight work may take", minimum=0),
        Option("max_connections", INT, 1024, "stream connections per listener", minimum=1),
        Option("idle_timeout", DURATION, 60.0, "close a stream connection idle this long", minimum=0.001),
        Option(
            "metrics_listen", ADDRESS, None, "serve Prometheus metrics over HTTP here", metavar="ADDR:PORT"
        ),
        Option(
            "console_listen",
            ADDRESS,
            None,
            "serve the SSH admin console here (needs --console-keys)",
            metavar="ADDR:PORT",
        ),
        Option(
            "console_keys",
            FILE,
            None,
            "OpenSSH authorized_keys file of the console's operators",
            metavar="FILE",
        ),
        Option(
            "console_host_key",
            FILE,
            None,
            "the console's SSH host key (default: made once, kept in the state directory)",
            metavar="FILE",
            secret=True,
        ),
        Option("data", STR, [], "data directory for a named data device", repeat=True, metavar="NAME=DIR"),
        Option("version", BOOL, False, "print the version and exit"),
    ]
    if appliance.listen or NET in appliance.devices:
        default = [Address.parse(text) for text in appliance.listen]
        options.insert(
            0,
            Option(
                "listen",
                ADDRESS,
                default,
                "address to serve on (repeatable)",
                repeat=True,
                metavar="ADDR:PORT",
            ),
        )
    return options


class Context:
    """Everything an appliance gets: its options, its devices, the stop signal.

    Devices the appliance did not declare raise ``DeviceError`` when used.
    """

    def __init__(
        self,
        appliance: Appliance,
        options: Options,
        *,
        lifecycle: Lifecycle,
        log: Log,
        metrics: Metrics,
        clock: Clock,
        random: Random,
        net: Net | None = None,
        store: Store | None = None,
        data: dict[str, Data] | None = None,
        extras: dict[str, Any] | None = None,
    ) -> None:
        self.appliance = appliance
        self.options = options
        self.lifecycle = lifecycle
        self.log = log
        self.metrics = metrics
        self.clock = clock
        self.random = random
        self._net = net
        self._store = store
        self._data = data or {}
        self._reload_hooks: list[Callable[[], Awaitable[None] | None]] = []
        self._services: list[object] = []
        self._ready = asyncio.Event()
        #: target-specific facts (e.g. the listeners actually bound, the worker index)
        self.extras: dict[str, Any] = extras or {}

    @property
    def net(self) -> Net:
        if self._net is None:
            raise DeviceError(f"appliance {self.appliance.name!r} did not declare the net device")
        return self._net

    @property
    def store(self) -> Store:
        if self._store is None:
            raise DeviceError(f"appliance {self.appliance.name!r} did not declare the store device")
        return self._store

    def data(self, name: str) -> Data:
        try:
            return self._data[name]
        except KeyError:
            raise DeviceError(
                f"appliance {self.appliance.name!r} did not declare data device {name!r}"
            ) from None

    def data_files(self, option: str) -> list[DataFile]:
        """The files named by a FILE option (``--zone FILE``), each as its data
        device and key."""
        devices = self.extras.get("devices")
        files = getattr(devices, "files", {})
        if option not in files:
            raise DeviceError(f"appliance {self.appliance.name!r} has no file option {option!r}")
        return list(files[option])

    def replace_data(self, name: str, data: Data) -> None:
        """Swap a data device (the runtime does this on reload when the directory was re-read)."""
        self._data[name] = data

    def ready(self, **fields: Any) -> None:
        """Say that the appliance is serving (every listener bound).  Logs one
        ``ready`` line with the bound endpoints; tests and supervisors wait for it."""
        devices = self.extras.get("devices")
        bound = getattr(devices, "bound", [])
        listening = ",".join(f"{kind}/{address}" for kind, address in bound)
        self.log.info("ready", listening=listening, **fields)
        self._ready.set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    @property
    def is_ready(self) -> bool:
        return self._ready.is_set()

    @property
    def stopping(self) -> bool:
        return self.lifecycle.stopping

    async def wait_stopping(self, timeout: float | None = None) -> bool:
        """Until the appliance is stopping (True) or ``timeout`` seconds have
        passed (False): a periodic task's pause that a stop cuts short."""
        if timeout is None:
            await self.lifecycle.wait_stopping()
            return True
        try:
            await asyncio.wait_for(self.lifecycle.wait_stopping(), timeout)
        except TimeoutError:
            return self.lifecycle.stopping
        return True

    def request_stop(self) -> None:
        self.lifecycle.request_stop()

    def provide(self, service: object) -> None:
        """Make the appliance's running service object findable by class, for
        its console commands (``ctx.service(DnsServer)``)."""
        self._services.append(service)

    def service(self, kind: type[_T]) -> _T | None:
        """The object of class ``kind`` given to ``provide``, or None."""
        for service in self._services:
            if isinstance(service, kind):
                return service
        return None

    def on_reload(self, hook: Callable[[], Awaitable[None] | None]) -> None:
        """Call ``hook`` on SIGHUP and on the console's ``reload``."""
        self._reload_hooks.append(hook)

    @property
    def reload_hooks(self) -> Sequence[Callable[[], Awaitable[None] | None]]:
        return tuple(self._reload_hooks)


def load(name: str) -> Appliance:
    """The installed appliance called ``name`` (entry point, or ``appliances.<name>``)."""
    found = discover()
    if name in found:
        return found[name]
    try:
        module = importlib.import_module(f"appliances.{name}")
    except ImportError:
        raise LookupError(
            f"no appliance named {name!r} (installed: {', '.join(sorted(found)) or 'none'})"
        ) from None
    appliance = getattr(module, "APPLIANCE", None)
    if not isinstance(appliance, Appliance):
        raise LookupError(f"appliances.{name} has no APPLIANCE declaration")
    return appliance


def discover() -> dict[str, Appliance]:
    """Every appliance declared in the ``runtime.appliances`` entry-point group."""
    found: dict[str, Appliance] = {}
    # Imported here: importlib.metadata brings zipfile, csv and email, which an
    # appliance that only runs (an image's init) never needs.
    import importlib.metadata

    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            value = entry.load()
        except Exception:  # a broken third-party package must not hide the others
            continue
        if isinstance(value, Appliance):
            found[value.name] = value
    return found
