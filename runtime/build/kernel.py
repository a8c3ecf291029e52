"""The stock Debian cloud kernel, fetched once, and the few modules a target needs.

``linux-image-cloud-amd64`` is a metapackage; its dependency is the real
kernel package, fetched with ``apt-get download`` (no install, no root needed
beyond apt's cache) and unpacked with ``dpkg-deb -x`` under the cache
directory (``$APPLIANCE_IMAGE_CACHE``, else ``~/.cache/appliance-images``).

Kernel modules are picked, not copied wholesale: the target's list, plus
their dependencies read from each ``.ko``'s ``.modinfo`` section (the
``depends=`` field ``depmod`` itself reads), in load order.
"""

from __future__ import annotations

import os
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .freeze import BuildError

__all__ = ["Kernel", "cache_dir", "fetch_kernel", "module_order", "target_modules"]

META_PACKAGE = "linux-image-cloud-amd64"


def cache_dir() -> Path:
    base = os.environ.get("APPLIANCE_IMAGE_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "appliance-images"


@dataclass(frozen=True)
class Kernel:
    image: Path
    #: ``lib/modules/<release>`` of the unpacked package (None for a --kernel FILE)
    modules: Path | None
    release: str


def _run(command: list[str], cwd: Path | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildError(f"{' '.join(command)}: {result.stderr.strip()}")
    return result.stdout


def fetch_kernel(cache: Path | None = None) -> Kernel:
    """The cached kernel, fetching it first if there is none."""
    root = (cache or cache_dir()) / "kernel"
    found = sorted(root.glob("*/boot/vmlinuz-*"))
    if not found:
        depends = _run(["apt-cache", "depends", META_PACKAGE])
        packages = [line.split(":", 1)[1].strip() for line in depends.splitlines() if "Depends:" in line]
        package = next((p for p in packages if p.startswith("linux-image-")), None)
        if package is None:
            raise BuildError(f"apt-cache depends {META_PACKAGE}: no linux-image package")
        download = root / "deb"
        download.mkdir(parents=True, exist_ok=True)
        _run(["apt-get", "download", package], cwd=download)
        debs = sorted(download.glob(f"{package}_*.deb"))
        if not debs:
            raise BuildError(f"apt-get download {package}: no .deb")
        unpacked = root / package
        _run(["dpkg-deb", "-x", str(debs[-1]), str(unpacked)])
        found = sorted(root.glob("*/boot/vmlinuz-*"))
        if not found:
            raise BuildError(f"{debs[-1]}: no /boot/vmlinuz-*")
    image = found[-1]
    release = image.name.removeprefix("vmlinuz-")
    modules = image.parent.parent / "lib" / "modules" / release
    return Kernel(image, modules if modules.is_dir() else None, release)


def target_modules(target: str, *, disk: bool) -> list[str]:
    """The modules a target needs (their dependencies come with them)."""
    if target == "xen":
        return ["xen_netfront", *(["xen_blkfront"] if disk else [])]
    # QEMU: virtio over MMIO (microvm) and over PCI (pc), so one image boots on
    # both machines (the transport with no device binds nothing); the ACPI
    # power button and the evdev node it is read from.
    return ["virtio_mmio", "virtio_pci", "virtio_net", *(["virtio_blk"] if disk else []), "button", "evdev"]


def _modinfo(path: Path) -> dict[str, str]:
    """The ``.modinfo`` section of an ELF64 little-endian ``.ko``."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise BuildError(f"{path}: not an ELF64 kernel module")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names_offset = sections[shstrndx][4]
    info: dict[str, str] = {}
    for section in sections:
        name_end = data.index(b"\0", names_offset + section[0])
        if data[names_offset + section[0] : name_end] == b".modinfo":
            body = data[section[4] : section[4] + section[5]]
            for field in body.split(b"\0"):
                key, eq, value = field.decode(errors="replace").partition("=")
                if eq:
                    info.setdefault(key, value)
    return info


def module_order(modules_dir: Path, wanted: list[str]) -> list[tuple[str, Path]]:
    """``(name, .ko path)`` for ``wanted`` and their dependencies, each after
    what it depends on.  A wanted module that is built in is skipped."""
    index: dict[str, Path] = {}
    for path in sorted(modules_dir.rglob("*.ko")):
        index[path.stem.replace("-", "_")] = path
    order: list[tuple[str, Path]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in seen:
            return
        seen.add(name)
        path = index.get(name)
        if path is None:
            return  # built into the kernel
        for dependency in filter(None, _modinfo(path).get("depends", "").split(",")):
            visit(dependency)
        order.append((name, path))

    for name in wanted:
        visit(name)
    return order
