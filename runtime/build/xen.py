"""The ``xl`` domain configuration for the image (xl.cfg(5)), PVH guest.

PVH boots the kernel's PVH entry point directly (no firmware, no device
model), which is the closest Xen comes to Mirage's unikernel boot.  The
console is ``hvc0``; the network is one netfront vif (``xen_netfront``).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["xl_config"]


def _quote(value: str) -> str:
    if '"' in value or "\\" in value or "\n" in value:
        raise ValueError(f"xl.cfg string cannot hold {value!r}")
    return f'"{value}"'


def xl_config(
    name: str,
    *,
    kernel: str,
    ramdisk: str,
    cmdline: str,
    memory_mb: int = 256,
    vcpus: int = 1,
    bridge: str = "xenbr0",
    disk: str | None = None,
    mac: str | None = None,
) -> str:
    vif = [f"bridge={bridge}"] + ([f"mac={mac}"] if mac else [])
    lines = [
        f"# xl create {name}.cfg  (xl.cfg(5); written by python -m runtime build --target xen)",
        f"name = {_quote(name)}",
        'type = "pvh"',
        f"kernel = {_quote(kernel)}",
        f"ramdisk = {_quote(ramdisk)}",
        f"cmdline = {_quote(cmdline)}",
        f"memory = {memory_mb}",
        f"vcpus = {vcpus}",
        f"vif = [ {_quote(','.join(vif))} ]",
    ]
    disks: Sequence[str] = [f"format=raw,vdev=xvda,access=rw,target={disk}"] if disk else []
    if disks:
        lines.append("disk = [ " + ", ".join(_quote(d) for d in disks) + " ]")
    lines += ['on_poweroff = "destroy"', 'on_reboot = "destroy"', 'on_crash = "destroy"']
    return "\n".join(lines) + "\n"
