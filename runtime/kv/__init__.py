"""Read-only data devices: a host directory, an in-memory mapping (and, in an
image, the baked tree, which is a directory too)."""

from .directory import DirectoryData
from .keys import normalise_key
from .memory import MemoryData

__all__ = ["DirectoryData", "MemoryData", "normalise_key"]
