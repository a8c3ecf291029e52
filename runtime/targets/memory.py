"""The memory target: every device in-process, for tests.  The same appliance
code runs here and on the host."""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping
from importlib.abc import Traversable

from ..appliance import NET, STORE, Appliance
from ..devices import Data, DataFile, Log
from ..errors import StartupError
from ..kv import MemoryData
from ..lifecycle import Lifecycle
from ..net.memory import MemoryNet, MemoryNetwork
from ..options import Options
from ..store.memory import MemoryStore
from .base import Devices, file_values

__all__ = ["load_embedded", "open_memory_devices"]


def load_embedded(package: str, directory: str, *, name: str) -> MemoryData:
    """The files under ``directory`` of ``package`` as a MemoryData."""
    files: dict[str, bytes] = {}

    def walk(node: Traversable, prefix: str) -> None:
        for child in node.iterdir():
            key = f"{prefix}{child.name}"
            if child.is_dir():
                walk(child, key + "/")
            elif child.is_file():
                files[key] = child.read_bytes()

    walk(importlib.resources.files(package).joinpath(directory), "")
    return MemoryData(files, name=name)


def _as_data(source: Data | Mapping[str, bytes], name: str) -> Data:
    return source if isinstance(source, Data) else MemoryData(source, name=name)


async def open_memory_devices(
    appliance: Appliance,
    options: Options,
    *,
    lifecycle: Lifecycle,
    log: Log,
    network: MemoryNetwork,
    data: Mapping[str, Data | Mapping[str, bytes]] | None = None,
    host: str = "127.0.0.1",
) -> Devices:
    devices = Devices()
    problems: list[str] = []
    given = dict(data or {})
    for spec in appliance.data:
        source = given.pop(spec.name, None)
        if source is None and spec.default:
            source = load_embedded(appliance.package, spec.default, name=spec.name)
        if source is None:
            problems.append(f"data {spec.name!r} ({spec.help}): nothing given")
        else:
            devices.data[spec.name] = _as_data(source, spec.name)
    # FILE options name keys in a data device given under the option's name.
    for option, keys in file_values(appliance, options).items():
        source = given.pop(option, None)
        if not keys:
            continue
        if source is None:
            problems.append(f"--{option.replace('_', '-')}: no data given for the files it names")
            continue
        device = _as_data(source, option)
        devices.files[option] = [DataFile(device, key) for key in keys]
        problems.extend(f"--{option.replace('_', '-')}: no file {key!r}" for key in keys if key not in device)
    for name in given:
        problems.append(f"data {name!r}: {appliance.name} declares no such data device")
    if NET in appliance.devices:
        devices.net = net = MemoryNet(network, lifecycle=lifecycle, log=log.child("net"), host=host)
        devices.closers.append(net.aclose)
    devices.service_net = service = MemoryNet(
        network, lifecycle=lifecycle, log=log.child("service"), host=host
    )
    devices.closers.append(service.aclose)
    if STORE in appliance.devices:
        store = MemoryStore()
        devices.store = store
        devices.closers.append(store.aclose)
    if problems:
        await devices.aclose()
        raise StartupError(problems)
    return devices
