"""Xen's shutdown request without Xen.

On Xen, ``xl shutdown`` makes the guest kernel run ``poweroff_cmd`` as a
usermode helper; the init sets that to a one-line program that sends SIGTERM
to PID 1 (``runtime.image.init.XEN_POWEROFF_CMD``).  QEMU here has no Xen
(its Xen HVM emulation needs QEMU 8 and KVM), so a test appliance plays the
kernel's part: it reads the sysctl and runs the command as the kernel would
(see ``poweroff_app``).  What this leaves to Xen itself is only the xenbus
watch that calls ``orderly_poweroff``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from image_helpers import BOOT_TIMEOUT, booted, free_port, line_exchange, needs_qemu

from runtime.build import build
from runtime.image.init import XEN_POWEROFF_CMD

pytestmark = [pytest.mark.slow, needs_qemu]


def test_the_kernels_poweroff_command_stops_the_appliance_gracefully(tmp_path: Path) -> None:
    image = tmp_path / "image"
    build("poweroff_app", image, target="qemu")
    port = free_port()
    with booted(image, tmp_path / "boot", [f"tcp:{port}:7001"], "listen=0.0.0.0:7001") as guest:
        assert line_exchange(port, "poweroff") == f"ran {XEN_POWEROFF_CMD}"
        assert guest.wait(BOOT_TIMEOUT) == 0
        console = guest.console()
    assert "poweroff: stopping signal=SIGTERM" in console
    assert "init: poweroff exited with status 0; powering off" in console
