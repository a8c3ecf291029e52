"""Booting a built image under QEMU: the command line, KVM-or-TCG, a guest handle.

The guest gets user-mode networking (no root, no bridge) with host ports
forwarded to it on 127.0.0.1 only, a serial console, a QMP socket for the
power button (``system_powerdown``), and ``-no-reboot`` so that the guest's
power-off (or a panic, with ``panic=-1``) ends QEMU.

KVM is used when it works.  "Works" is checked, not assumed: some hosts
expose a paravirtual /dev/kvm on which stock kernels hang, so ``auto`` boots
the image once under KVM with a bound on the first ``init: boot`` line and
caches the verdict per host kernel; everything else runs under TCG.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .freeze import BuildError
from .kernel import cache_dir

__all__ = [
    "BOOT_FILE",
    "MACHINES",
    "BootSpec",
    "Guest",
    "detect_accel",
    "host_tsc_khz",
    "parse_forward",
    "qemu_command",
]

BOOT_FILE = "boot.json"
#: the guest's address on QEMU's user network (slirp's defaults: 10.0.2.0/24, gateway .2)
GUEST_NET = "ipv4=10.0.2.15/24 gateway=10.0.2.2"
#: how long a KVM probe may take to reach the init before KVM is judged broken
KVM_PROBE_TIMEOUT = 20.0


@dataclass(frozen=True)
class BootSpec:
    directory: Path
    kernel: str
    initrd: str
    cmdline: str
    memory_mb: int = 256
    disk: str | None = None
    forward: tuple[str, ...] = field(default_factory=tuple)
    #: "microvm" (fastest: no PCI, no firmware tables beyond a small ACPI) or "pc"
    machine: str = "microvm"

    @classmethod
    def load(cls, directory: Path) -> BootSpec:
        try:
            raw = json.loads((directory / BOOT_FILE).read_text())
        except FileNotFoundError:
            raise BuildError(f"{directory}: no {BOOT_FILE} (build it with --target qemu)") from None
        return cls(
            directory,
            raw["kernel"],
            raw["initrd"],
            raw["cmdline"],
            raw.get("memory_mb", 256),
            raw.get("disk"),
            tuple(raw.get("forward", ())),
            raw.get("machine", "microvm"),
        )

    def dump(self) -> str:
        record = {
            "kernel": self.kernel,
            "initrd": self.initrd,
            "cmdline": self.cmdline,
            "memory_mb": self.memory_mb,
            "disk": self.disk,
            "forward": list(self.forward),
            "machine": self.machine,
        }
        return json.dumps(record, indent=1, sort_keys=True) + "\n"


def parse_forward(text: str) -> str:
    """``udp:5353:53`` -> QEMU's ``hostfwd=udp:127.0.0.1:5353-:53``."""
    parts = text.split(":")
    if len(parts) != 3 or parts[0] not in ("udp", "tcp") or not all(p.isdigit() for p in parts[1:]):
        raise BuildError(f"--forward: expected udp|tcp:HOSTPORT:GUESTPORT, got {text!r}")
    return f"hostfwd={parts[0]}:127.0.0.1:{parts[1]}-:{parts[2]}"


MACHINES = ("microvm", "pc")


def host_tsc_khz() -> int | None:
    """The host's TSC frequency: under TCG the guest reads the host's TSC, and
    on microvm (no HPET, no PIT calibration worth waiting for) the kernel is
    told the rate (``tsc_early_khz``) instead of measuring it."""
    try:
        return int(Path("/sys/devices/system/cpu/cpu0/tsc_freq_khz").read_text())
    except (OSError, ValueError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return int(float(line.split(":")[1]) * 1000)
    except (OSError, ValueError, IndexError):
        pass
    return None


#: bare kernel command-line words the kernel consumes itself (others reach the init)
KERNEL_FLAGS = frozenset({"quiet", "debug"})


def qemu_command(
    spec: BootSpec,
    *,
    forwards: Sequence[str],
    accel: str,
    serial: str,
    qmp: str | None = None,
    cmdline_extra: str = "",
    machine: str | None = None,
) -> list[str]:
    """The QEMU command line.  ``microvm`` (the default) boots about a third of
    a second faster under TCG than ``pc``: no PCI enumeration, no legacy
    devices; it needs the PIT, PIC and RTC switched on for this kernel, and
    its virtio devices are ``virtio-*-device`` (MMIO) instead of ``-pci``."""
    machine = machine or spec.machine
    if machine not in MACHINES:
        raise BuildError(f"--machine: expected one of {', '.join(MACHINES)}, got {machine!r}")
    netdev = ",".join(["user,id=n0", *(parse_forward(f) for f in forwards)])
    cpu = "host" if accel == "kvm" else "qemu64,+rdrand"  # RDRAND seeds the guest's CRNG at boot
    for word in cmdline_extra.split():
        if "=" not in word and word not in KERNEL_FLAGS:
            raise BuildError(
                f"--cmdline: {word!r} has no '=': the kernel hands words it does not know to the init"
                " as arguments, where they would stop the interpreter; give option=value words"
            )
    words = [cmdline_extra] if cmdline_extra else []
    bus = "pci"
    machine_arg = "pc"
    if machine == "microvm":
        bus = "device"
        machine_arg = "microvm,pit=on,pic=on,rtc=on"
        khz = host_tsc_khz() if accel == "tcg" else None
        if khz:
            words = [f"tsc_early_khz={khz}", "tsc=reliable", *words]
    cmdline = spec.cmdline.replace(" -- ", f" {' '.join(words)} -- ", 1) if words else spec.cmdline
    command = [
        "qemu-system-x86_64",
        "-M", machine_arg,
        "-accel", accel,
        "-cpu", cpu,
        "-m", str(spec.memory_mb),
        "-smp", "1",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-serial", serial,
        "-kernel", str(spec.directory / spec.kernel),
        "-initrd", str(spec.directory / spec.initrd),
        "-append", cmdline,
        "-netdev", netdev,
        "-device", f"virtio-net-{bus},netdev=n0",
    ]  # fmt: skip
    if spec.disk:
        command += [
            "-drive", f"file={spec.directory / spec.disk},format=raw,if=none,id=d0",
            "-device", f"virtio-blk-{bus},drive=d0",
        ]  # fmt: skip
    if qmp:
        command += ["-qmp", f"unix:{qmp},server=on,wait=off"]
    return command


def _kvm_usable() -> bool:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def detect_accel(spec: BootSpec, workdir: Path) -> str:
    """``kvm`` if a guest really boots under it here, else ``tcg`` (cached)."""
    forced = os.environ.get("APPLIANCE_ACCEL")
    if forced in ("kvm", "tcg"):
        return forced
    if not _kvm_usable():
        return "tcg"
    verdict_file = cache_dir() / f"accel-{platform.release()}.json"
    try:
        return str(json.loads(verdict_file.read_text())["accel"])
    except (OSError, ValueError, KeyError):
        pass
    guest = Guest(spec, workdir / "kvm-probe", accel="kvm")
    guest.start()
    try:
        guest.wait_console(r"init: boot ", KVM_PROBE_TIMEOUT)
        verdict = "kvm"
    except TimeoutError:
        verdict = "tcg"
    finally:
        guest.kill()
    verdict_file.parent.mkdir(parents=True, exist_ok=True)
    verdict_file.write_text(json.dumps({"accel": verdict}))
    return verdict


class Guest:
    """One QEMU guest with its console in ``workdir/console.log``."""

    def __init__(
        self,
        spec: BootSpec,
        workdir: Path,
        *,
        forwards: Sequence[str] = (),
        accel: str = "tcg",
        cmdline_extra: str = "",
        machine: str | None = None,
    ) -> None:
        self.spec = spec
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.console_path = workdir / "console.log"
        self.qmp_path = workdir / "qmp.sock"
        self.command = qemu_command(
            spec,
            forwards=forwards,
            accel=accel,
            serial=f"file:{self.console_path}",
            qmp=str(self.qmp_path),
            cmdline_extra=cmdline_extra,
            machine=machine,
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> None:
        self.console_path.write_bytes(b"")
        self.qmp_path.unlink(missing_ok=True)
        self.started = time.monotonic()
        with open(self.workdir / "qemu.stderr", "wb") as stderr:
            self.process = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
            )

    def console(self) -> str:
        return self.console_path.read_bytes().decode(errors="replace")

    def wait_console(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first match of ``pattern`` on the console, waiting up to ``timeout``."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = compiled.search(self.console())
            if found:
                return found
            if self.process is not None and self.process.poll() is not None:
                raise TimeoutError(f"QEMU exited ({self.process.returncode}) before {pattern!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {pattern!r} on the console within {timeout:.0f}s")
            time.sleep(0.05)

    def qmp(self, command: str) -> dict[str, object]:
        """One QMP command (after the capabilities handshake)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(self.qmp_path))
            stream = sock.makefile("rwb")
            json.loads(stream.readline())  # the greeting
            for request in ({"execute": "qmp_capabilities"}, {"execute": command}):
                stream.write(json.dumps(request).encode() + b"\n")
                stream.flush()
                while True:
                    reply = json.loads(stream.readline())
                    if "return" in reply or "error" in reply:
                        break
            return dict(reply)

    def power_button(self) -> None:
        self.qmp("system_powerdown")

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
