"""One subdirectory of a data device, seen as a data device of its own.

Virtual hosts live in one data device (``--vhosts-root DIR``), one
subdirectory per host name; each host's :class:`~appliances.web.site.Site` is
built over a :class:`SubData` view of its subdirectory.  Keys are translated,
nothing is copied, and the view can reach nothing outside its prefix.
"""

from __future__ import annotations

import dataclasses
from typing import BinaryIO

from runtime import Data, DataEntry

__all__ = ["SubData", "subdirectories"]


class SubData:
    """The keys of ``data`` under ``prefix/``, with ``prefix/`` removed."""

    def __init__(self, data: Data, prefix: str) -> None:
        if not prefix or "/" in prefix or prefix in (".", ".."):
            raise ValueError(f"bad subdirectory name {prefix!r}")
        self._data = data
        self._prefix = prefix + "/"

    @property
    def name(self) -> str:
        return f"{self._data.name}/{self._prefix[:-1]}"

    def keys(self, prefix: str = "") -> list[str]:
        cut = len(self._prefix)
        inner = self._prefix + prefix if prefix else self._prefix[:-1]
        return [key[cut:] for key in self._data.keys(inner)]

    def stat(self, key: str) -> DataEntry:
        return dataclasses.replace(self._data.stat(self._prefix + key), key=key)

    def read(self, key: str) -> bytes:
        return self._data.read(self._prefix + key)

    def open(self, key: str) -> BinaryIO:
        return self._data.open(self._prefix + key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (self._prefix + key) in self._data


def subdirectories(data: Data) -> list[str]:
    """Names of the top-level subdirectories of ``data`` that hold files."""
    return sorted({key.partition("/")[0] for key in data.keys() if "/" in key})
