"""What every target shares: the opened devices and where data comes from."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..appliance import Appliance
from ..devices import Address, Data, DataFile, Net, Store
from ..options import FILE, Options

__all__ = ["Devices", "data_dirs", "file_values"]


@dataclass
class Devices:
    net: Net | None = None
    #: the runtime's own endpoints (metrics, console), kept apart from the appliance's
    service_net: Net | None = None
    store: Store | None = None
    data: dict[str, Data] = field(default_factory=dict)
    #: files named by FILE options, per option name
    files: dict[str, list[DataFile]] = field(default_factory=dict)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    #: where the runtime keeps its own small state (the console host key); None: nowhere
    state_dir: Path | None = None

    @property
    def bound(self) -> list[tuple[str, Address]]:
        """("tcp" | "udp", address) for every endpoint bound so far."""
        return list(getattr(self.net, "bound", []))

    async def aclose(self) -> None:
        while self.closers:
            await self.closers.pop()()


def data_dirs(appliance: Appliance, options: Options) -> tuple[dict[str, str], list[str]]:
    """Directory per declared data device, and one problem line per bad setting.

    Order of precedence: ``--data NAME=DIR`` < the spec's own option (``--root``)
    < nothing given, which means the embedded default in the package.
    """
    problems: list[str] = []
    chosen: dict[str, str] = {}
    specs = {spec.name: spec for spec in appliance.data}
    for entry in options.get("data") if "data" in options.declared else []:
        name, eq, directory = entry.partition("=")
        if not eq or not directory:
            problems.append(f"--data: expected NAME=DIR, got {entry!r}")
        elif name not in specs:
            known = ", ".join(sorted(specs)) or "none"
            problems.append(f"--data: {appliance.name} has no data device {name!r} (it has: {known})")
        else:
            chosen[name] = directory
    for spec in appliance.data:
        if spec.option and options.get(spec.option):
            chosen[spec.name] = options.get(spec.option)
        elif spec.name not in chosen and spec.default:
            # Imported here: importlib.resources brings tempfile, shutil and zlib,
            # and an image never gets here (the build bakes every default).
            import importlib.resources

            embedded = importlib.resources.files(appliance.package).joinpath(spec.default)
            chosen[spec.name] = str(embedded)
        if spec.name not in chosen:
            how = f"--{spec.option.replace('_', '-')} DIR" if spec.option else f"--data {spec.name}=DIR"
            problems.append(f"data {spec.name!r} ({spec.help}): no directory given (use {how})")
    return chosen, problems


def file_values(appliance: Appliance, options: Options) -> dict[str, list[str]]:
    """The values of every FILE option, as lists (empty when unset)."""
    found: dict[str, list[str]] = {}
    for option in appliance.all_options():
        if option.kind is FILE:
            value = options.get(option.name)
            found[option.name] = list(value) if option.repeat else ([value] if value else [])
    return found
