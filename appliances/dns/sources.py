"""Where primary zones come from, and loading them one file at a time.

A zone source is one master file on a data device: a ``--zone FILE``, every
``*.zone`` of ``--zone-dir DIR``, or the embedded demo.  Each file is loaded on
its own, so that one broken file does not stop the others: a file that fails
is not served (at start) or keeps the version loaded before (on reload), and
its errors are reported with ``file:line``.

The origin of a file: its leading ``$ORIGIN`` if it has one (before any
record), else its name without ``.zone`` (``example.org.zone`` -> ``example.org.``),
else the owner of its SOA.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from runtime import Data

from .errors import Problem, ZoneError
from .loader import ZONE_SUFFIX, confined_include
from .zone import Zone, load_zone

__all__ = ["Loaded", "Source", "file_origin", "load_sources"]


@dataclass(frozen=True, slots=True)
class Source:
    """One master file: ``label`` names it in logs (``zones:example.org.zone``)."""

    label: str
    data: Data
    key: str


@dataclass(frozen=True, slots=True)
class Loaded:
    #: the zone each source serves now, by source label
    zones: Mapping[str, Zone]
    errors: tuple[Problem, ...]
    warnings: tuple[Problem, ...]
    #: sources that failed and kept their previous zone
    kept: tuple[str, ...]


def file_origin(text: bytes, key: str) -> str | None:
    """The origin to load ``key`` with (see the module docstring)."""
    for raw in text.splitlines():
        line = raw.split(b";", 1)[0].strip()
        if not line:
            continue
        if line[:1] != b"$":
            break
        words = line.split()
        if words[0].upper() == b"$ORIGIN" and len(words) > 1:
            try:
                return words[1].decode("ascii")
            except UnicodeDecodeError:
                break
        if words[0].upper() != b"$TTL":
            break
    base = posixpath.basename(key)
    if base.endswith(ZONE_SUFFIX) and len(base) > len(ZONE_SUFFIX):
        return base[: -len(ZONE_SUFFIX)] + "."
    return None


def _load(source: Source) -> tuple[Zone, tuple[Problem, ...]]:
    try:
        text = source.data.read(source.key)
    except (OSError, KeyError) as e:
        raise ZoneError([Problem(source.label, 0, f"cannot read: {e}")]) from None
    include = confined_include(source.data, posixpath.dirname(source.key))
    loaded = load_zone(text, file_origin(text, source.key), filename=source.label, include=include)
    return loaded.zone, loaded.warnings


def load_sources(sources: Sequence[Source], previous: Mapping[str, Zone] | None = None) -> Loaded:
    """Load every source; a failing one keeps its zone from ``previous`` if any.

    Two sources serving the same origin: the first (in order) wins, the other is
    an error.
    """
    previous = previous or {}
    zones: dict[str, Zone] = {}
    errors: list[Problem] = []
    warnings: list[Problem] = []
    kept: list[str] = []
    owners: dict[bytes, str] = {}
    for source in sources:
        try:
            zone, found = _load(source)
            other = owners.get(zone.origin)
            if other is not None:
                raise ZoneError(
                    [Problem(source.label, 1, f"zone {zone.name} is already loaded from {other}")]
                )
        except ZoneError as e:
            errors.extend(e.problems)
            old = previous.get(source.label)
            if old is not None and old.origin not in owners:
                zones[source.label] = old
                owners[old.origin] = source.label
                kept.append(source.label)
            continue
        warnings.extend(found)
        zones[source.label] = zone
        owners[zone.origin] = source.label
    return Loaded(zones, tuple(errors), tuple(warnings), tuple(kept))
