"""The image's file tree: interpreter, libraries, frozen archive, extensions,
baked data, init configuration and (for VMs) kernel modules.

Layout (the init's paths are in ``runtime.image``)::

    usr/bin/python3                 the interpreter, stripped
    usr/lib/python3.X/              every module, as a sourceless .pyc (getpath's stdlib directory)
    usr/lib/python3.X/lib-dynload/  top-level extension modules, stripped
    usr/lib/ext/<dotted name>.so    extension modules inside packages (uvloop.loop), stripped
    lib/x86_64-linux-gnu/...        the shared libraries they link, lib64/ld-linux-x86-64.so.2
    usr/lib/generated-code.marshal  generated methods and regexes, precompiled (runtime.image.codegen)
    lib/modules/<name>.ko           kernel modules (VM targets)
    data/<device>/...               the data devices' files
    etc/files/<option>/<name>       files of FILE options baked with ``build --option NAME=FILE``
    etc/appliance.json, .toml       what to run, and the baked option values
    dev/console, dev/null           for the kernel to open the init's stdio (VM targets)
"""

from __future__ import annotations

import os
import sys
import sysconfig
import tempfile
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from ..appliance import Appliance
from ..image import (
    CONFIG_TOML,
    DATA_ROOT,
    EXT_DIR,
    GENERATED_CODE,
    IMAGE_CONFIG,
    MODULE_DIR,
    PYTHON,
    STATE_DIR,
)
from .elf import needed_libraries, strip
from .freeze import Frozen, compile_module, toml_text
from .tree import Tree

__all__ = [
    "FILE_ROOT",
    "NOBODY",
    "STDLIB",
    "add_data",
    "add_option_files",
    "build_tree",
    "image_config",
    "interpreter",
]

#: The standard library's directory, on sys.path: the frozen modules go here as
#: sourceless ``.pyc`` files.  Not one zip for zipimport, which unmarshals every
#: module twice (once for its file name when finding it, ``spec_from_loader`` ->
#: ``get_filename``, once to run it): about a seventh of the interpreter's
#: start-up work in a DNS image.
STDLIB = f"usr/lib/python{sys.version_info.major}.{sys.version_info.minor}"
#: the platform-dependent directory getpath puts on sys.path: top-level extension modules
DYNLOAD = f"{STDLIB}/lib-dynload"
#: getpath finds the standard library by this file (``os.py`` or ``os.pyc``);
#: ``os`` itself is frozen into the interpreter, so the build adds it for that.
LANDMARK = "os"
#: where a FILE option's baked file goes: ``FILE_ROOT/<option>/<file name>`` (the name kept:
#: some options read meaning into it, as ``--zone example.org.zone`` does)
FILE_ROOT = "/etc/files"
#: the user a container runs as (nobody), owner of the store directory there
NOBODY = 65534


def interpreter() -> str:
    """The interpreter the build runs on (a venv's python resolved to its base):
    the bytecode it compiles is for exactly this version."""
    return os.path.realpath(sys.executable)


def _stripped(path: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out")
        strip(path, out)
        return Path(out).read_bytes()


def add_data(tree: Tree, data_dirs: Mapping[str, str], root: str = DATA_ROOT) -> None:
    """Each data directory's regular files (symlinks inside the root are
    followed, as the data device does; others are left out)."""
    for name, directory in sorted(data_dirs.items()):
        base = os.path.realpath(directory)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for fname in sorted(filenames):
                full = os.path.join(dirpath, fname)
                real = os.path.realpath(full)
                if os.path.commonpath([base, real]) != base or not os.path.isfile(real):
                    continue
                key = os.path.relpath(full, base).replace(os.sep, "/")
                tree.file(f"{root}/{name}/{key}", Path(real).read_bytes(), role="data")


def image_config(
    appliance: Appliance,
    data_dirs: Mapping[str, str],
    options: Mapping[str, object],
    *,
    kernel_modules: Sequence[str] = (),
    disk: str | None = None,
) -> tuple[bytes, bytes]:
    """``/etc/appliance.json`` and ``/etc/appliance.toml``."""
    import json

    values = dict(options)
    values["state_dir"] = STATE_DIR
    if data_dirs:
        values["data"] = [f"{name}={DATA_ROOT}/{name}" for name in sorted(data_dirs)]
    config = {
        "appliance": appliance.name,
        "module": appliance.package,
        "config": CONFIG_TOML,
        "ext_dir": EXT_DIR,
        "kernel_modules": list(kernel_modules),
        "disk": disk,
    }
    return (json.dumps(config, indent=1, sort_keys=True) + "\n").encode(), toml_text(values).encode()


def add_option_files(tree: Tree, files: Mapping[str, str], secret_files: Collection[str] = ()) -> None:
    """The files of baked FILE options (image path -> host file); a secret
    option's (a key) is readable by the appliance's user only: mode 0400,
    owned by NOBODY, whom a container runs as (root in a VM reads it anyway)."""
    for image_path, host in sorted(files.items()):
        data = Path(host).read_bytes()
        if image_path in secret_files:
            tree.file(image_path.lstrip("/"), data, 0o400, role="data", uid=NOBODY)
        else:
            tree.file(image_path.lstrip("/"), data, role="data")


def build_tree(
    appliance: Appliance,
    frozen: Frozen,
    data_dirs: Mapping[str, str],
    options: Mapping[str, object],
    *,
    kernel_modules: Sequence[tuple[str, Path]] = (),
    disk: str | None = None,
    vm: bool = True,
    files: Mapping[str, str] | None = None,
    secret_files: Collection[str] = (),
) -> Tree:
    """``files``: image path -> host file, for the files of baked FILE options
    (``secret_files``: see ``add_option_files``)."""
    tree = Tree()
    python = interpreter()
    tree.file(PYTHON, _stripped(python), 0o755, role="interpreter")
    tree.dir(DYNLOAD)
    modules = dict(frozen.modules)
    if f"{LANDMARK}.pyc" not in modules:
        modules.update([compile_module(LANDMARK, os.path.join(sysconfig.get_path("stdlib"), "os.py"))])
    for module_path, pyc in sorted(modules.items()):
        tree.file(f"{STDLIB}/{module_path}", pyc, role="module")
    if frozen.generated:
        tree.file(GENERATED_CODE, frozen.generated, role="generated code")
    for name, origin in sorted(frozen.extensions.items()):
        suffix = next(s for s in sorted(_suffixes(), key=len, reverse=True) if origin.endswith(s))
        # Top-level extensions go where the interpreter looks by default (the
        # runtime package imports _socket before the init can install its
        # finder); extensions inside packages go to EXT_DIR, for the finder.
        where = EXT_DIR.strip("/") if "." in name else DYNLOAD
        tree.file(f"{where}/{name}{suffix}", _stripped(origin), 0o755, role="extension")
    for image_path, host in needed_libraries([python, *frozen.extensions.values()]).items():
        role = "loader" if "ld-linux" in image_path else "library"
        tree.file(image_path, _stripped(host), 0o755, role=role)
    add_data(tree, data_dirs)
    add_option_files(tree, files or {}, secret_files)
    for name, path in kernel_modules:
        tree.file(f"{MODULE_DIR}/{name}.ko", path.read_bytes(), role="kernel module")
    config_json, config_toml = image_config(
        appliance, data_dirs, options, kernel_modules=[n for n, _ in kernel_modules], disk=disk
    )
    tree.file(IMAGE_CONFIG, config_json, role="config")
    tree.file(CONFIG_TOML, config_toml, role="config")
    for mount_point in ("proc", "sys", "dev"):
        tree.dir(mount_point)
    tree.dir("tmp", 0o1777)
    if vm:
        # The kernel opens /dev/console for the init's stdin/stdout/stderr before
        # anything is mounted; devtmpfs replaces /dev right after.
        tree.char("dev/console", 5, 1)
        tree.char("dev/null", 1, 3, 0o666)
        tree.dir(STATE_DIR, 0o700)
    else:
        # Owned by nobody in the OCI layer; sticky and world-writable too because
        # a Dockerfile's COPY resets every owner to root (and the container has
        # one user only).
        tree.dir(STATE_DIR, 0o1777, uid=NOBODY)
    return tree


def _suffixes() -> list[str]:
    import importlib.machinery

    return list(importlib.machinery.EXTENSION_SUFFIXES)
