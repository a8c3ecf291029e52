"""Helpers for the image tests: free host ports, a booted guest, DNS and HTTP
clients through QEMU's forwarded ports."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from runtime.build.qemu import BootSpec, Guest

__all__ = ["BOOT_TIMEOUT", "booted", "free_port", "line_exchange", "needs_qemu"]

#: a TCG boot takes seconds here; shared CI machines vary 2-3x, and more under load
BOOT_TIMEOUT = 180.0

needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None, reason="qemu-system-x86 is not installed"
)


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (QEMU binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


@contextmanager
def booted(
    image: Path,
    workdir: Path,
    forwards: list[str],
    cmdline_extra: str = "",
    wait_ready: bool = True,
    machine: str | None = None,
) -> Iterator[Guest]:
    """A TCG guest of ``image`` (ready to answer unless ``wait_ready`` is
    false), killed at the end whatever happened; the console is printed on
    failure by pytest's captured output."""
    guest = Guest(
        BootSpec.load(image),
        workdir,
        forwards=forwards,
        accel="tcg",
        cmdline_extra=cmdline_extra,
        machine=machine,
    )
    guest.start()
    try:
        if wait_ready:
            guest.wait_console(r"init: ready ", BOOT_TIMEOUT)
        yield guest
    finally:
        guest.kill()
        print(guest.console())


def line_exchange(port: int, line: str, timeout: float = 30.0) -> str:
    """One line to a guest's line service through a forwarded port, one line back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(line.encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.decode().strip()
