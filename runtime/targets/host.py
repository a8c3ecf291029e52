"""The host target: the appliance as an ordinary process."""

from __future__ import annotations

import os
from pathlib import Path

from ..appliance import NET, STORE, Appliance
from ..devices import DataFile, Log
from ..errors import StartupError
from ..kv import DirectoryData
from ..lifecycle import Lifecycle
from ..net.host import HostNet
from ..options import Options
from ..store import StoreError, open_sqlite_store
from .base import Devices, data_dirs, file_values

__all__ = ["default_state_dir", "open_host_devices"]

STORE_FILE = "store.sqlite3"


def default_state_dir(appliance: str) -> Path:
    """``$XDG_DATA_HOME/appliances/NAME``, else ``~/.local/share/appliances/NAME``."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "appliances" / appliance


def _open_data(appliance: Appliance, options: Options, devices: Devices) -> list[str]:
    """Data directories and FILE options (start-up work: blocking is fine here)."""
    problems: list[str] = []
    dirs, dir_problems = data_dirs(appliance, options)
    problems.extend(dir_problems)
    for name, directory in dirs.items():
        try:
            devices.data[name] = DirectoryData(directory, name=name)
        except (OSError, NotADirectoryError) as exc:
            problems.append(f"data {name!r}: cannot read directory {directory}: {exc.strerror or exc}")

    directories: dict[str, DirectoryData] = {}
    for option, paths in file_values(appliance, options).items():
        devices.files[option] = []
        for path in paths:
            full = Path(path).resolve()
            if not full.is_file():
                problems.append(f"--{option.replace('_', '-')}: {path} is not a readable file")
                continue
            parent = str(full.parent)
            if parent not in directories:
                directories[parent] = DirectoryData(parent, name=f"{option}:{parent}")
            devices.files[option].append(DataFile(directories[parent], full.name))
    return problems


async def open_host_devices(
    appliance: Appliance, options: Options, *, lifecycle: Lifecycle, log: Log, reuse_port: bool = False
) -> Devices:
    """Open every declared device, or raise StartupError listing each problem."""
    devices = Devices()
    devices.state_dir = state_dir = Path(options.get("state_dir") or default_state_dir(appliance.name))
    problems = _open_data(appliance, options, devices)

    if NET in appliance.devices:
        devices.net = net = HostNet(lifecycle=lifecycle, log=log.child("net"), reuse_port=reuse_port)
        devices.closers.append(net.aclose)
    devices.service_net = service = HostNet(
        lifecycle=lifecycle, log=log.child("service"), reuse_port=reuse_port
    )
    devices.closers.append(service.aclose)

    if STORE in appliance.devices and not problems:
        try:
            store = await open_sqlite_store(state_dir / STORE_FILE, log=log.child("store"))
        except StoreError as exc:
            problems.append(f"store: {exc}")
        else:
            devices.store = store
            devices.closers.append(store.aclose)

    if problems:
        await devices.aclose()
        raise StartupError(problems)
    return devices
