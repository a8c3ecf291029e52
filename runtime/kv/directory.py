"""A data device over a host directory (also what the image bakes in)."""

from __future__ import annotations

import hashlib
import os
import stat as stat_module
from pathlib import Path
from typing import BinaryIO

from ..devices import DataEntry
from .keys import normalise_key

__all__ = ["DirectoryData"]


class DirectoryData:
    """Read-only view of ``root``.

    The file table (keys, sizes, mtimes) is read once at construction and again on
    ``refresh()``, so lookups never touch the file system; content hashes are
    computed on first ``stat`` and kept.  Symlinks are followed only while they
    stay inside the root.
    """

    def __init__(self, root: str | os.PathLike[str], *, name: str = "data") -> None:
        self._name = name
        self._root = Path(root).resolve(strict=True)
        if not self._root.is_dir():
            raise NotADirectoryError(str(root))
        self._table: dict[str, tuple[int, float]] = {}
        self._hashes: dict[str, str] = {}
        self.refresh()

    @property
    def name(self) -> str:
        return self._name

    @property
    def root(self) -> Path:
        return self._root

    def refresh(self) -> None:
        table: dict[str, tuple[int, float]] = {}
        root = str(self._root)
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            # Symlinked directories are not descended: they could loop or leave the root.
            dirnames[:] = sorted(d for d in dirnames if not os.path.islink(os.path.join(dirpath, d)))
            for fname in filenames:
                full = os.path.join(dirpath, fname)
                try:
                    real = os.path.realpath(full)
                    if os.path.commonpath([root, real]) != root:
                        continue
                    st = os.stat(real)
                except (OSError, ValueError):
                    continue
                if not stat_module.S_ISREG(st.st_mode):
                    continue
                key = os.path.relpath(full, root).replace(os.sep, "/")
                table[key] = (st.st_size, st.st_mtime)
        old = self._table
        self._table = table
        self._hashes = {k: h for k, h in self._hashes.items() if old.get(k) == table.get(k)}

    def _path(self, key: str) -> str:
        key = normalise_key(key)
        if key not in self._table:
            raise KeyError(key)
        return os.path.join(str(self._root), key)

    def keys(self, prefix: str = "") -> list[str]:
        prefix = normalise_key(prefix)
        if not prefix:
            return sorted(self._table)
        head = prefix + "/"
        return sorted(k for k in self._table if k.startswith(head))

    def stat(self, key: str) -> DataEntry:
        key = normalise_key(key)
        size, mtime = self._table[key]
        digest = self._hashes.get(key)
        if digest is None:
            digest = hashlib.sha256(self.read(key)).hexdigest()
            self._hashes[key] = digest
        return DataEntry(key, size, mtime, digest)

    def read(self, key: str) -> bytes:
        with open(self._path(key), "rb") as f:
            return f.read()

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def __contains__(self, key: object) -> bool:
        try:
            return isinstance(key, str) and normalise_key(key) in self._table
        except KeyError:
            return False
