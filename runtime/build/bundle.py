"""The bundle target: one file for a host with the same Python.

A zipapp (PEP 441): the frozen ``.pyc`` modules at the top, ``__main__.pyc``
from ``runtime.image.bundle``, and ``_image/`` with the data, the extension
modules that are not part of the standard library, and the option values.
Entries are sorted and dated 1980-01-01, so the bundle is reproducible.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

from ..appliance import Appliance
from .elf import strip
from .freeze import Frozen, freeze
from .rootfs import add_data
from .tree import Tree

__all__ = ["write_bundle"]


def _dynload() -> str:
    """The standard library's extension directory (the host's Python has its own)."""
    # the base installation's, not a venv's (a venv has no lib-dynload of its own)
    base = sysconfig.get_paths(vars={"platbase": sys.base_exec_prefix, "base": sys.base_prefix})
    return str((Path(base["platstdlib"]) / "lib-dynload").resolve())


def write_bundle(appliance: Appliance, frozen: Frozen, data_dirs: Mapping[str, str]) -> bytes:
    members: dict[str, tuple[bytes, int]] = {path: (data, 0o644) for path, data in frozen.modules.items()}
    spec = importlib.util.find_spec("runtime.image.bundle")
    assert spec is not None and spec.origin is not None
    entry = freeze({"runtime.image.bundle": spec.origin})
    members["__main__.pyc"] = (entry.modules["runtime/image/bundle.pyc"], 0o644)
    members.update({path: (data, 0o644) for path, data in entry.modules.items()})
    dynload = _dynload()
    for name, origin in sorted(frozen.extensions.items()):
        if str(Path(origin).resolve().parent) == dynload:
            continue  # the host's matching Python has these
        with tempfile.TemporaryDirectory() as tmp:
            stripped = f"{tmp}/so"
            strip(origin, stripped)
            suffix = (
                origin[origin.index(".cpython") :]
                if ".cpython" in origin
                else origin[origin.rindex(".abi3") :]
            )
            members[f"_image/ext/{name}{suffix}"] = (Path(stripped).read_bytes(), 0o755)
    tree = Tree()
    add_data(tree, data_dirs, root="_image/data")
    for item in tree.files():
        members[item.path] = (item.data, 0o644)
    record = {"module": appliance.package, "data": sorted(data_dirs), "options": {}}
    members["_image/bundle.json"] = (json.dumps(record, sort_keys=True).encode(), 0o644)

    out = io.BytesIO()
    out.write(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(members):
            data, mode = members[path]
            info = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = mode << 16
            info.create_system = 3
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data, compresslevel=9)
    return out.getvalue()
