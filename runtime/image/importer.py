"""Extension modules beside the frozen modules.

Pure-Python modules are compiled to ``.pyc`` files, laid out as the standard
library's directory in an image and zipped in a bundle.  A shared object
cannot be loaded from a zip (``dlopen`` needs a file), so every
extension module sits in one directory named by its full dotted name
(``uvloop.loop.cpython-311-x86_64-linux-gnu.so``), and this finder, put first
on ``sys.meta_path`` by the init, maps names to those files.  Top-level and
nested extensions are found the same way, whatever package ``__path__`` says.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

__all__ = ["ExtensionFinder", "install"]


class ExtensionFinder:
    """A meta path finder for ``{dotted name: .so path}``."""

    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = paths

    @classmethod
    def from_directory(cls, directory: str) -> ExtensionFinder:
        paths: dict[str, str] = {}
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            names = []
        for name in names:
            for known in importlib.machinery.EXTENSION_SUFFIXES:
                if name.endswith(known):
                    paths[name[: -len(known)]] = os.path.join(directory, name)
                    break
        return cls(paths)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        location = self.paths.get(fullname)
        if location is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, location)
        return importlib.machinery.ModuleSpec(fullname, loader, origin=location)


def install(directory: str) -> ExtensionFinder:
    """Put the finder for ``directory`` first on ``sys.meta_path`` (once)."""
    for finder in sys.meta_path:
        if isinstance(finder, ExtensionFinder):
            return finder
    finder = ExtensionFinder.from_directory(directory)
    sys.meta_path.insert(0, finder)
    return finder
