"""``python -m runtime build`` and ``python -m runtime boot`` as commands."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest
from image_helpers import BOOT_TIMEOUT, free_port, needs_qemu

pytestmark = pytest.mark.slow


def runtime_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args], capture_output=True, text=True, timeout=600, check=False
    )


def test_build_report_lists_every_file_and_module_largest_first(tmp_path: Path) -> None:
    result = runtime_cli("build", "dns", "--target", "oci", "-o", str(tmp_path), "--report")
    assert result.returncode == 0, result.stderr
    listing, _, totals = result.stdout.partition("\ntotals:\n")
    rows = [line for line in listing.splitlines() if re.match(r"\s*[\d,]+  \S", line)]
    sizes = [int(row.split()[0].replace(",", "")) for row in rows]
    assert len(sizes) > 100 and sizes == sorted(sizes, reverse=True)
    assert "files in the image (uncompressed)" in totals
    text = result.stdout
    assert re.search(r"interpreter\s+/usr/bin/python3", text)
    assert re.search(r"module\s+appliances\.dns\.server\b", text)
    assert re.search(r"data\s+/data/zones/example\.test\.zone", text)
    assert "files in the image (uncompressed)" in text and "dns-oci.tar" in text
    assert f"wrote {tmp_path / 'dns-oci.tar'}" in text


def test_build_refuses_unknown_data_names(tmp_path: Path) -> None:
    result = runtime_cli("build", "dns", "--data", f"nope={tmp_path}", "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.startswith("build: --data") and len(result.stderr.splitlines()) == 1


def test_build_refuses_bad_option_values(tmp_path: Path) -> None:
    result = runtime_cli("build", "dns", "--option", "max-connections=0", "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr == "build: --option max_connections: bad value '0': expected at least 1\n"


@needs_qemu
def test_boot_command_forwards_ports_and_ctrl_c_powers_off(tmp_path: Path) -> None:
    out = tmp_path / "image"
    assert runtime_cli("build", "dns", "-o", str(out)).returncode == 0
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "runtime", "boot", str(out), "--accel", "tcg",
         "--forward", f"udp:{port}:53", "--forward", f"tcp:{port}:53"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT
        reply = None
        while reply is None and time.monotonic() < deadline and process.poll() is None:
            try:
                query = dns.message.make_query("www.example.test", "A")
                reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
            except (OSError, dns.exception.Timeout):
                continue
        assert reply is not None and reply.rcode() == dns.rcode.NOERROR
        process.send_signal(signal.SIGINT)  # what Ctrl-C does: the power button
        stdout, stderr = process.communicate(timeout=BOOT_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "init: dns exited with status 0; powering off" in stdout
    assert "boot: TCG" in stderr
