"""The image target: what runs inside a built image (VM or container).

``init`` is PID 1 (or the container's entry point): it prepares the VM (mounts,
kernel modules, network, randomness, power button), then runs the appliance on
host-style devices whose paths are fixed by the build (data baked under
``/data``, the store under ``/var/lib/appliance``).  ``importer`` finds the
extension modules that sit beside the frozen archive.  Paths shared with the
build live here, so the two cannot drift apart.
"""

from __future__ import annotations

import os
import signal

__all__ = [
    "CONFIG_TOML",
    "DATA_ROOT",
    "EARLY_STOP",
    "EXT_DIR",
    "GENERATED_CODE",
    "IMAGE_CONFIG",
    "INIT_ARGS",
    "MODULE_DIR",
    "PYTHON",
    "STATE_DIR",
]

#: the interpreter.  Under /usr, not /: getpath finds the standard library (by
#: its landmark, ``lib/python3.X/os.pyc``) by searching up from the executable's
#: directory and never looks at / itself.
PYTHON = "/usr/bin/python3"

#: the build's record of what to run (JSON: appliance module, kernel modules, disk)
IMAGE_CONFIG = "/etc/appliance.json"
#: option values baked by the build (TOML, the lowest source above the defaults,
#: so the kernel command line and flags still override them)
CONFIG_TOML = "/etc/appliance.toml"
#: one directory per data device
DATA_ROOT = "/data"
#: where the store lives: the data disk's mount point when there is one
STATE_DIR = "/var/lib/appliance"
#: extension modules inside packages (``<dotted name><EXT_SUFFIX>``), found by name
EXT_DIR = "/usr/lib/ext"
#: the code of the methods dataclasses and namedtuples generate, compiled by the
#: build (marshal: ``{(mode, source): code}``; see ``runtime.image.codegen``)
GENERATED_CODE = "/usr/lib/generated-code.marshal"
#: kernel modules, flat, loaded in the order IMAGE_CONFIG lists
MODULE_DIR = "/lib/modules"
#: the interpreter's arguments: isolated (no PYTHON* from the kernel's
#: environment, no user site), no site module (nothing to find), the init module
INIT_ARGS = ("-I", "-S", "-m", "runtime.image.init")

#: SIGTERM/SIGINT that reached PID 1 before the runtime had its handlers; the
#: init acts on them at ``ready``
EARLY_STOP: list[int] = []


def _remember_stop(signum: int, frame: object) -> None:
    EARLY_STOP.append(signum)


if os.getpid() == 1:
    # PID 1 (an image's init, in a VM or a container) gets no default action
    # for a signal: without a handler, a stop asked for during start-up (the
    # power button, ``docker stop``) would be lost.  The first runtime import
    # comes here (runtime/__init__ imports codegen first), as early as can be.
    signal.signal(signal.SIGTERM, _remember_stop)
    signal.signal(signal.SIGINT, _remember_stop)
