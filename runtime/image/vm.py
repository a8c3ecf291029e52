"""What PID 1 does in a VM that an ordinary process never has to: mount the
kernel's file systems, load kernel modules, bring up the network, wait for the
random pool, watch the power button, power off.

Everything goes through ``ctypes`` to libc (``mount(2)``, ``reboot(2)``,
``finit_module(2)``) or ``ioctl(2)`` on a socket: the image holds no
``mount``, ``modprobe`` or ``ip`` binaries, only the interpreter.
"""

from __future__ import annotations

import ctypes
import fcntl
import ipaddress
import os
import select
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "NetConfig",
    "configure_network",
    "disable_ctrl_alt_del",
    "load_modules",
    "mount",
    "mount_basics",
    "parse_cmdline",
    "power_off",
    "wait_for_entropy",
    "watch_power_button",
]

_libc = ctypes.CDLL(None, use_errno=True)

# <sys/reboot.h> / linux/reboot.h
_RB_POWER_OFF = 0x4321FEDC
_RB_DISABLE_CAD = 0
# asm/unistd_64.h: finit_module(int fd, const char *args, int flags)
_SYS_FINIT_MODULE = 313
# linux/sockios.h
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_SIOCSIFADDR = 0x8916
_SIOCSIFNETMASK = 0x891C
_SIOCADDRT = 0x890B
_IFF_UP = 0x1
_RTF_UP = 0x1
_RTF_GATEWAY = 0x2
# linux/input-event-codes.h; struct input_event is timeval (16) + u16 type + u16 code + s32 value
_EV_KEY = 0x01
_KEY_POWER = 116
_INPUT_EVENT = struct.Struct("llHHi")
# MS_NOSUID | MS_NODEV | MS_NOEXEC: nothing in these file systems is ours to run
_MS_SAFE = 0x2 | 0x4 | 0x8


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> None:
    os.makedirs(target, exist_ok=True)
    _check(
        _libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode() or None),
        f"mount {fstype} on {target}",
    )


def mount_basics() -> None:
    """proc, sys, devtmpfs and a small /tmp: what the interpreter, the module
    loader and the power button need, and nothing else (no /run, no cgroups)."""
    mount("proc", "/proc", "proc", _MS_SAFE)
    mount("sysfs", "/sys", "sysfs", _MS_SAFE)
    mount("devtmpfs", "/dev", "devtmpfs", 0x2 | 0x8, "mode=0755")
    mount("tmpfs", "/tmp", "tmpfs", _MS_SAFE, "mode=1777,size=16m")


def parse_cmdline(text: str) -> tuple[dict[str, str], str]:
    """The init's own ``key=value`` words, and the words meant for the appliance.

    Everything after ``--`` belongs to the init's argv (the interpreter's flags),
    so it is cut off; the kernel's own parameters stay in the appliance's part,
    where the option parser ignores every word that names no option.
    """
    before, _, _ = f" {text} ".partition(" -- ")
    keys: dict[str, str] = {}
    for word in before.split():
        key, eq, value = word.partition("=")
        if eq:
            keys[key] = value
    return keys, before.strip()


def load_modules(directory: str, names: Sequence[str], log: Callable[[str], None]) -> list[str]:
    """``finit_module`` each ``directory/NAME.ko`` in order (the build resolved
    dependencies).  A module already built in or loaded (EEXIST) is fine."""
    loaded: list[str] = []
    for name in names:
        path = os.path.join(directory, f"{name}.ko")
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            result = _libc.syscall(_SYS_FINIT_MODULE, fd, b"", 0)
        finally:
            os.close(fd)
        if result != 0:
            errno = ctypes.get_errno()
            if errno != 17:  # EEXIST
                log(f"init: cannot load kernel module {name}: {os.strerror(errno)}")
                continue
        loaded.append(name)
    return loaded


@dataclass(frozen=True)
class NetConfig:
    interface: str
    address: ipaddress.IPv4Interface | None
    gateway: ipaddress.IPv4Address | None

    @classmethod
    def from_keys(cls, keys: Mapping[str, str]) -> NetConfig:
        """``ipv4=10.0.2.15/24 gateway=10.0.2.2 iface=eth0`` (Mirage's boot keys).

        DHCP is not done: every target the build writes for (QEMU user
        networking, an ``xl`` vif) knows the address to give, and a DHCP client
        would be the largest piece of the init for no such case.
        """
        address = ipaddress.IPv4Interface(keys["ipv4"]) if keys.get("ipv4") else None
        gateway = ipaddress.IPv4Address(keys["gateway"]) if keys.get("gateway") else None
        return cls(keys.get("iface", "eth0"), address, gateway)


def _ifreq_addr(name: str, address: ipaddress.IPv4Address) -> bytes:
    sockaddr = struct.pack("=H2s4s8x", socket.AF_INET, b"\0\0", address.packed)
    return struct.pack("16s16s8x", name.encode(), sockaddr)


def _set_up(sock: socket.socket, name: str) -> None:
    request = struct.pack("16sH22x", name.encode(), 0)
    flags = struct.unpack("16sH22x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
    fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH22x", name.encode(), flags | _IFF_UP))


class _RtEntry(ctypes.Structure):
    # struct rtentry from <net/route.h>; ctypes lays out the padding as the C compiler does.
    _fields_ = [
        ("rt_pad1", ctypes.c_ulong),
        ("rt_dst", ctypes.c_ubyte * 16),
        ("rt_gateway", ctypes.c_ubyte * 16),
        ("rt_genmask", ctypes.c_ubyte * 16),
        ("rt_flags", ctypes.c_ushort),
        ("rt_pad2", ctypes.c_short),
        ("rt_pad3", ctypes.c_ulong),
        ("rt_pad4", ctypes.c_void_p),
        ("rt_metric", ctypes.c_short),
        ("rt_dev", ctypes.c_char_p),
        ("rt_mtu", ctypes.c_ulong),
        ("rt_window", ctypes.c_ulong),
        ("rt_irtt", ctypes.c_ushort),
    ]


def _sockaddr(address: ipaddress.IPv4Address) -> ctypes.Array[ctypes.c_ubyte]:
    # bytes, not c_char: a c_char array stops copying at the first NUL
    packed = struct.pack("=H2s4s8x", socket.AF_INET, b"\0\0", address.packed)
    return (ctypes.c_ubyte * 16).from_buffer_copy(packed)


def configure_network(config: NetConfig) -> None:
    """Loopback up; then the interface's address, netmask, up, default route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        _set_up(sock, "lo")
        if config.address is None:
            return
        name = config.interface
        fcntl.ioctl(sock, _SIOCSIFADDR, _ifreq_addr(name, config.address.ip))
        fcntl.ioctl(sock, _SIOCSIFNETMASK, _ifreq_addr(name, config.address.network.netmask))
        _set_up(sock, name)
        if config.gateway is not None:
            route = _RtEntry()
            zero = ipaddress.IPv4Address(0)
            route.rt_dst = _sockaddr(zero)
            route.rt_genmask = _sockaddr(zero)
            route.rt_gateway = _sockaddr(config.gateway)
            route.rt_flags = _RTF_UP | _RTF_GATEWAY
            fcntl.ioctl(sock, _SIOCADDRT, bytes(route))


def wait_for_entropy(log: Callable[[str], None], warn_after: float = 5.0) -> float:
    """Block until the kernel's CRNG is initialised (``getrandom`` without
    GRND_NONBLOCK), so no key, TSIG nonce or DNS ID is drawn from an unseeded
    pool.  With RDRAND (or Xen's/virtio's seed) this is immediate."""
    started = time.monotonic()
    done = threading.Event()

    def nag() -> None:
        if not done.wait(warn_after):
            log("init: waiting for the kernel's random pool (give the VM rdrand or virtio-rng)")

    threading.Thread(target=nag, daemon=True).start()
    os.getrandom(16)
    done.set()
    return time.monotonic() - started


def disable_ctrl_alt_del() -> None:
    """Ctrl-Alt-Del then sends SIGINT to PID 1 instead of an immediate reboot."""
    _check(_libc.reboot(_RB_DISABLE_CAD), "reboot(CAD_OFF)")


def watch_power_button(on_press: Callable[[], None], directory: str = "/dev/input") -> bool:
    """Call ``on_press`` (from a daemon thread) when an input device reports
    KEY_POWER (the ACPI power button, QMP ``system_powerdown``).  False if
    there is no input device."""
    try:
        names = sorted(n for n in os.listdir(directory) if n.startswith("event"))
    except FileNotFoundError:
        return False
    fds = [os.open(os.path.join(directory, name), os.O_RDONLY | os.O_CLOEXEC) for name in names]
    if not fds:
        return False

    def watch() -> None:
        while True:
            ready, _, _ = select.select(fds, [], [])
            for fd in ready:
                data = os.read(fd, _INPUT_EVENT.size * 16)
                for offset in range(0, len(data) - _INPUT_EVENT.size + 1, _INPUT_EVENT.size):
                    _, _, kind, code, value = _INPUT_EVENT.unpack_from(data, offset)
                    if kind == _EV_KEY and code == _KEY_POWER and value == 1:
                        on_press()

    threading.Thread(target=watch, name="power-button", daemon=True).start()
    return True


def power_off() -> None:
    """Flush and power the VM off; never returns (PID 1 must not exit: the
    kernel would panic)."""
    os.sync()
    _libc.reboot(_RB_POWER_OFF)
    while True:  # reboot(2) only returns on failure; there is nothing else to do
        signal.pause()
