"""The bundle's entry point (``python3 dns.pyz [OPTIONS]``).

A bundle is a zip of the frozen modules with this module as ``__main__``,
plus ``_image/``: the baked data, the extension modules from outside the
standard library (uvloop's loop) and the image's option values.  Data and
extensions must be real files (a data device is a directory; ``dlopen``
needs a path), so they are unpacked once into a cache directory named by
the bundle's hash, then the image's init runs as in a container, with the
command line's flags on top.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import zipfile

__all__ = ["main", "unpack"]

PREFIX = "_image/"


def _cache_root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "appliance-bundles")


def unpack(bundle: str) -> str:
    """Unpack ``_image/`` once; returns the directory.  Written to a temporary
    name and renamed, so a crash never leaves a half-unpacked cache."""
    with open(bundle, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    target = os.path.join(_cache_root(), digest)
    if os.path.isdir(target):
        return target
    partial = f"{target}.{os.getpid()}.tmp"
    with zipfile.ZipFile(bundle) as archive:
        for info in archive.infolist():
            if not info.filename.startswith(PREFIX) or info.is_dir():
                continue
            relative = info.filename[len(PREFIX) :]
            if relative.startswith("/") or ".." in relative.split("/"):
                continue
            path = os.path.join(partial, relative)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with archive.open(info) as source, open(path, "wb") as dest:
                dest.write(source.read())
            if relative.startswith("ext/"):
                os.chmod(path, 0o755)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    try:
        os.rename(partial, target)
    except OSError:  # another process unpacked it first
        pass
    return target


def main() -> None:
    bundle = os.path.abspath(sys.argv[0])
    root = unpack(bundle)
    with open(os.path.join(root, "bundle.json")) as f:
        record = json.load(f)
    values = dict(record["options"])
    if record["data"]:
        values["data"] = [f"{name}={os.path.join(root, 'data', name)}" for name in record["data"]]
    toml = os.path.join(root, "appliance.toml")
    if not os.path.exists(toml):
        with open(toml + ".tmp", "w") as f:
            f.write("".join(f"{key} = {json.dumps(value)}\n" for key, value in sorted(values.items())))
        os.replace(toml + ".tmp", toml)
    # Absolute imports: this module also runs as the bundle's __main__.
    from runtime.image.importer import install
    from runtime.run import run

    install(os.path.join(root, "ext"))
    import importlib

    appliance = importlib.import_module(record["module"]).APPLIANCE
    sys.exit(run(appliance, ["--config", toml, *sys.argv[1:]], os.environ))


if __name__ == "__main__":
    main()
