"""The data disk: the store on an ext4 disk image survives a reboot."""

from __future__ import annotations

from pathlib import Path

import pytest
from image_helpers import BOOT_TIMEOUT, booted, free_port, line_exchange, needs_qemu

from runtime.build import build

pytestmark = [pytest.mark.slow, needs_qemu]


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
                assert line_exchange(port, "get other") == "missing"
            assert line_exchange(port, request) == expected
            guest.power_button()
            assert guest.wait(BOOT_TIMEOUT) == 0
            console = guest.console()
        assert "modules=" in console and "virtio_blk" in console
        assert "init: store exited with status 0; powering off" in console
