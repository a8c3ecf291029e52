"""Zones from a data device: every ``<origin>.zone`` under a prefix.

The file name gives the origin (``example.test.zone`` -> ``example.test.``;
``$ORIGIN`` inside may still move relative names).  ``$INCLUDE`` is resolved
relative to the including zone's directory inside the data device and cannot
leave it: the data device already refuses ``..`` and absolute escapes, and we
refuse any path that would climb out of the zone's directory.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass

from runtime import Data

from .errors import Problem, ZoneError
from .zone import Zone, load_zone

__all__ = ["ZONE_SUFFIX", "LoadedZones", "confined_include", "load_zones"]

ZONE_SUFFIX = ".zone"


@dataclass(frozen=True, slots=True)
class LoadedZones:
    zones: tuple[Zone, ...]
    warnings: tuple[Problem, ...]


def confined_include(data: Data, directory: str) -> Callable[[str], bytes]:
    """An ``include`` callback reading ``directory/<name>`` from ``data`` and nothing outside it."""

    def include(name: str) -> bytes:
        path = posixpath.normpath(posixpath.join(directory, name)) if directory else posixpath.normpath(name)
        escapes = path.startswith("..") or (directory and not path.startswith(directory + "/"))
        if name.startswith("/") or escapes:
            raise ValueError("outside the zone's directory")
        if path not in data:
            raise KeyError(f"no such file {path!r} in {data.name}")
        return data.read(path)

    return include


def load_zones(data: Data, prefix: str = "") -> LoadedZones:
    """Load every ``*.zone`` key under ``prefix``.  Raises ``ZoneError`` with every
    error of every file (nothing is served from a set with a bad zone)."""
    zones: list[Zone] = []
    warnings: list[Problem] = []
    errors: list[Problem] = []
    seen: dict[bytes, str] = {}
    for key in data.keys(prefix):
        if not key.endswith(ZONE_SUFFIX):
            continue
        origin = posixpath.basename(key)[: -len(ZONE_SUFFIX)] + "."
        include = confined_include(data, posixpath.dirname(key))
        try:
            loaded = load_zone(data.read(key), origin, filename=key, include=include)
        except ZoneError as e:
            errors.extend(e.problems)
            continue
        if loaded.zone.origin in seen:
            other = seen[loaded.zone.origin]
            errors.append(Problem(key, 1, f"zone {loaded.zone.name} also loaded from {other}"))
            continue
        seen[loaded.zone.origin] = key
        zones.append(loaded.zone)
        warnings.extend(loaded.warnings)
    if errors:
        raise ZoneError(errors)
    return LoadedZones(tuple(zones), tuple(warnings))
