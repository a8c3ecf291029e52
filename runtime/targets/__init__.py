"""Targets open the declared devices for one place to run: the host (OS
sockets, directories, an SQLite file), memory (tests), and the image (later)."""

from .base import Devices, data_dirs

__all__ = ["Devices", "data_dirs"]
