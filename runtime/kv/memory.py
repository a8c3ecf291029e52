"""An in-memory data device, for tests and for data generated at start."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from typing import BinaryIO

from ..devices import DataEntry
from .keys import normalise_key

__all__ = ["MemoryData"]


class MemoryData:
    def __init__(
        self, files: Mapping[str, bytes] | None = None, *, name: str = "data", mtime: float = 0.0
    ) -> None:
        self._name = name
        self._files: dict[str, bytes] = {}
        self._entries: dict[str, DataEntry] = {}
        for key, content in (files or {}).items():
            self.set(key, content, mtime=mtime)

    @property
    def name(self) -> str:
        return self._name

    def set(self, key: str, content: bytes, *, mtime: float = 0.0) -> None:
        """Add or replace a file (the memory device is writable by its owner,
        read-only to the appliance)."""
        key = normalise_key(key)
        if not key:
            raise KeyError(key)
        self._files[key] = bytes(content)
        self._entries[key] = DataEntry(key, len(content), mtime, hashlib.sha256(content).hexdigest())

    def remove(self, key: str) -> None:
        key = normalise_key(key)
        del self._files[key]
        del self._entries[key]

    def keys(self, prefix: str = "") -> list[str]:
        prefix = normalise_key(prefix)
        if not prefix:
            return sorted(self._files)
        head = prefix + "/"
        return sorted(k for k in self._files if k.startswith(head))

    def stat(self, key: str) -> DataEntry:
        return self._entries[normalise_key(key)]

    def read(self, key: str) -> bytes:
        return self._files[normalise_key(key)]

    def open(self, key: str) -> BinaryIO:
        return io.BytesIO(self.read(key))

    def __contains__(self, key: object) -> bool:
        try:
            return isinstance(key, str) and normalise_key(key) in self._files
        except KeyError:
            return False
