"""The per-appliance image manifest (``appliances/NAME/manifest.toml``).

The tracing pass finds what the appliance imports on its way to ``ready``;
the manifest adds what it imports later (on a code path start-up does not
take) and removes what start-up imports but the image never needs, in the
spirit of MicroPython's ``manifest.py``::

    [modules]
    include = ["encodings.idna"]          # exact names, or "package.*"
    exclude = ["unittest.*"]
    stand_in = ["ssl"]                    # runtime/build/standins/ssl.py instead of ssl

``exclude`` is applied to the tracing pass too: an excluded module cannot be
imported there, as in the image, so the trace follows the fallbacks the image
will take (``hashlib`` without ``_hashlib`` imports ``_sha256`` and friends).
A ``stand_in`` is for a module the appliance imports (or its libraries do) but
never uses: a small module from ``runtime/build/standins/`` takes its name in
the tracing pass and in the image, defines what importers read at import time
and raises a clear error on use (the ``ssl`` one keeps ``_ssl``, libssl and,
with ``_hashlib`` excluded, libcrypto out of an image that speaks no TLS).

    [image]
    listen = ["0.0.0.0:53"]               # option values baked into the image
    forward = ["udp:5353:53", "tcp:5353:53"]   # boot's default port forwards
"""

from __future__ import annotations

import importlib.resources
import tomllib
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Manifest", "load_manifest", "matches"]

MANIFEST = "manifest.toml"


@dataclass(frozen=True)
class Manifest:
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    #: top-level modules replaced by the stand-in of that name (``runtime/build/standins/``)
    stand_in: tuple[str, ...] = ()
    #: option values for the image's baked config file (TOML keys are option names)
    options: dict[str, Any] = field(default_factory=dict)
    forward: tuple[str, ...] = ()


def matches(name: str, patterns: tuple[str, ...]) -> bool:
    for pattern in patterns:
        if pattern.endswith(".*"):
            base = pattern[:-2]
            if name == base or name.startswith(base + "."):
                return True
        elif name == pattern:
            return True
    return False


def load_manifest(package: str) -> Manifest:
    """The manifest next to the appliance's package, or an empty one."""
    try:
        node = importlib.resources.files(package).joinpath(MANIFEST)
    except TypeError:  # a plain module (a test's appliance): no manifest
        return Manifest()
    if not node.is_file():
        return Manifest()
    raw = tomllib.loads(node.read_text())
    modules = raw.get("modules", {})
    image = dict(raw.get("image", {}))
    forward = tuple(image.pop("forward", ()))
    return Manifest(
        include=tuple(modules.get("include", ())),
        exclude=tuple(modules.get("exclude", ())),
        stand_in=tuple(modules.get("stand_in", ())),
        options=image,
        forward=forward,
    )
