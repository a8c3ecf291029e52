"""The data disk: the store on an ext4 disk image survives a reboot."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from image_helpers import BOOT_TIMEOUT, booted, free_port, needs_qemu

from runtime.build import build

pytestmark = [pytest.mark.slow, needs_qemu]


def say(port: int, line: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(line.encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.decode().strip()


def test_store_on_the_data_disk_survives_a_reboot(tmp_path: Path) -> None:
    image = tmp_path / "image"
    build("store_app", image, target="qemu", disk_size=16 * 1024 * 1024)
    assert (image / "disk.img").stat().st_size == 16 * 1024 * 1024
    port = free_port()
    for boot, (request, expected) in enumerate(
        [("put colour teal", "stored"), ("get colour", "teal")], start=1
    ):
        with booted(image, tmp_path / f"boot{boot}", [f"tcp:{port}:7000"], "listen=0.0.0.0:7000") as guest:
            if boot == 2:
                assert say(port, "get other") == "missing"
            assert say(port, request) == expected
            guest.power_button()
            assert guest.wait(BOOT_TIMEOUT) == 0
            console = guest.console()
        assert "modules=" in console and "virtio_blk" in console
        assert "init: store exited with status 0; powering off" in console
