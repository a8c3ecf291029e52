"""What PID 1 does in a VM that an ordinary process never has to: mount the
kernel's file systems, load kernel modules, bring up the network (static, or
by DHCP: ``dhcp``), wait for the random pool, watch the power button, power off.

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

from . import dhcp

__all__ = [
    "NetConfig",
    "configure_interface",
    "configure_network",
    "disable_ctrl_alt_del",
    "for_this_machine",
    "init_exec_uptime",
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
_SIOCGIFHWADDR = 0x8927
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
#: what the C library reads for its DNS servers (at most 3: glibc's MAXNS)
RESOLV_CONF = "/etc/resolv.conf"
_MAX_NAMESERVERS = 3
#: how long the boot waits for a first DHCP lease (4 DISCOVERs at RFC 2131's
#: 4, 8, 16 s spacing); then it goes on, and the lease keeper goes on asking
DHCP_TIMEOUT = 30.0


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


def init_exec_uptime(kmsg: str = "/dev/kmsg") -> float | None:
    """Seconds after boot at which the kernel exec'd the init, from its
    ``Run /usr/bin/python3 as init process`` record in the kernel log (logged
    whatever ``quiet`` says).  ``/proc/self/stat``'s start time will not do:
    PID 1 is forked as a kernel thread early in boot and only exec's the init
    after the initcalls and the initramfs unpacking, so its start time hides
    most of the kernel's part in the interpreter's."""
    try:
        fd = os.open(kmsg, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        while True:
            try:
                record = os.read(fd, 8192)  # one record per read: "prio,seq,usec,flags;text\n"
            except BlockingIOError:
                return None  # the end of the log: no such record (or it was overwritten)
            except BrokenPipeError:
                continue  # records overwritten under us: the read goes on from the oldest left
            header, _, text = record.partition(b";")
            if text.startswith(b"Run ") and b" as init process" in text:
                return int(header.split(b",")[2]) / 1e6
    finally:
        os.close(fd)


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


def for_this_machine(names: Sequence[str], pci_devices: str = "/sys/bus/pci/devices") -> list[str]:
    """``names`` without the virtio PCI transport when the machine has no PCI
    device: one image boots on QEMU's ``pc`` (virtio over PCI) and ``microvm``
    (virtio over MMIO, no PCI bus), and on the latter loading the three PCI
    modules only costs time (a fifth of the VM setup under TCG)."""
    try:
        has_pci = bool(os.listdir(pci_devices))
    except FileNotFoundError:
        has_pci = False
    return [name for name in names if has_pci or not name.startswith("virtio_pci")]


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
    nameservers: tuple[ipaddress.IPv4Address, ...] = ()
    #: ``ipv4=dhcp``: the address, gateway and name servers come from a DHCP lease
    dhcp: bool = False

    @classmethod
    def from_keys(cls, keys: Mapping[str, str]) -> NetConfig:
        """``ipv4=10.0.2.15/24 gateway=10.0.2.2 nameserver=10.0.2.3 iface=eth0``
        (Mirage's boot keys; ``nameserver`` as dracut's, comma-separated), or
        ``ipv4=dhcp``; with DHCP, ``gateway`` and ``nameserver`` given still win
        over the lease's."""
        ipv4 = keys.get("ipv4", "")
        dhcp_wanted = ipv4 == "dhcp"
        address = ipaddress.IPv4Interface(ipv4) if ipv4 and not dhcp_wanted else None
        gateway = ipaddress.IPv4Address(keys["gateway"]) if keys.get("gateway") else None
        nameservers = tuple(
            ipaddress.IPv4Address(part) for part in keys.get("nameserver", "").split(",") if part
        )
        return cls(keys.get("iface", "eth0"), address, gateway, nameservers, dhcp_wanted)


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


def configure_network(config: NetConfig, log: Callable[[str], None]) -> None:
    """Loopback up; then the interface: as given, or from a DHCP lease."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        _set_up(sock, "lo")
    if config.dhcp:
        start_dhcp(config, log)
    else:
        configure_interface(config)


def configure_interface(config: NetConfig) -> None:
    """The interface's address, netmask, up, default route; the name servers."""
    if config.nameservers:
        with open(RESOLV_CONF, "w") as f:
            f.writelines(f"nameserver {server}\n" for server in config.nameservers[:_MAX_NAMESERVERS])
    if config.address is None:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
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


def _hardware_address(sock: socket.socket, name: str) -> bytes:
    # struct ifreq: the name, then a struct sockaddr whose sa_data holds the MAC
    reply = fcntl.ioctl(sock, _SIOCGIFHWADDR, struct.pack("16s16s8x", name.encode(), b""))
    return reply[18:24]


def start_dhcp(config: NetConfig, log: Callable[[str], None], timeout: float = DHCP_TIMEOUT) -> bool:
    """Bring the interface up, wait (at most ``timeout``) for a first lease and
    configure it as a static address would be; a daemon thread then keeps the
    lease (renews it, or asks again).  False if no lease came in time."""
    name = config.interface
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        _set_up(sock, name)
        mac = _hardware_address(sock, name)

    def apply(lease: dhcp.Lease) -> None:
        given = NetConfig(
            name, lease.address, config.gateway or lease.router, config.nameservers or lease.dns
        )
        try:
            configure_interface(given)
        except OSError as exc:
            log(f"init: dhcp: cannot configure {name} with {lease.address}: {exc}")

    def clear() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            fcntl.ioctl(sock, _SIOCSIFADDR, _ifreq_addr(name, ipaddress.IPv4Address(0)))

    keeper = dhcp.Keeper(
        dhcp.UdpLink(name), dhcp.Client(mac, dhcp.xid_source), name, apply=apply, clear=clear, log=log
    )
    got = keeper.acquire(timeout)
    if not got:
        log(f"init: dhcp: no lease for {name} within {timeout:.0f}s; still asking")
    keeper.start()
    return got


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
