"""The DNS appliance frozen into images: the bundle on the host, the qemu
image booted under TCG and asked over UDP and TCP through forwarded ports,
stopped with the power button; what the image holds; reproducibility."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest
from image_helpers import BOOT_TIMEOUT, booted, free_port, needs_qemu

from appliances.dns import APPLIANCE
from runtime.build import build
from runtime.build.freeze import ALWAYS, trace_imports
from runtime.build.manifest import load_manifest, matches

pytestmark = [pytest.mark.slow, needs_qemu]


def read_cpio(data: bytes) -> dict[str, tuple[int, bytes]]:
    """``{path: (mode, body)}`` of a newc cpio archive."""
    entries: dict[str, tuple[int, bytes]] = {}
    offset = 0
    while True:
        assert data[offset : offset + 6] == b"070701"
        fields = [int(data[offset + 6 + 8 * i : offset + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_start = offset + 110
        name = data[name_start : name_start + namesize - 1].decode()
        body_start = name_start + namesize + (-(110 + namesize) % 4)
        body = data[body_start : body_start + size]
        offset = body_start + size + (-size % 4)
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, body)


def unpack_initramfs(path: Path) -> dict[str, tuple[int, bytes]]:
    raw = subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
    return read_cpio(raw)


@pytest.fixture(scope="module")
def dns_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dns-qemu")
    build("dns", out, target="qemu")
    return out


def ask(port: int, name: str = "www.example.test", tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, "A")
    if tcp:
        return dns.query.tcp(query, "127.0.0.1", port=port, timeout=10)
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=10)


def test_bundle_serves_on_the_host(tmp_path: Path) -> None:
    build("dns", tmp_path, target="bundle")
    bundle = tmp_path / "dns.pyz"
    port = free_port()
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    process = subprocess.Popen(
        [
            sys.executable,
            "-I",
            str(bundle),
            "--listen",
            f"127.0.0.1:{port}",
            "--state-dir",
            str(tmp_path / "s"),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if " ready " in line:
                break
        reply = ask(port)
        assert reply.rcode() == dns.rcode.NOERROR
        assert "192.0.2.80" in reply.to_text()
    finally:
        process.terminate()
        status = process.wait(30)
        if process.stderr is not None:
            process.stderr.close()
    assert status == 0


def test_image_holds_only_bytecode_of_the_traced_modules(dns_image: Path) -> None:
    files = unpack_initramfs(dns_image / "initramfs.img")
    assert not [name for name in files if name.endswith(".py")]
    archives = [name for name in files if re.fullmatch(r"usr/lib/python3\d+\.zip", name)]
    assert len(archives) == 1
    with zipfile.ZipFile(io.BytesIO(files[archives[0]][1])) as archive:
        members = archive.namelist()
    assert members and all(m.endswith(".pyc") for m in members)
    names = {m.removesuffix(".pyc").removesuffix("/__init__").replace("/", ".") for m in members}
    manifest = load_manifest(APPLIANCE.package)
    data = {"zones": str(Path(sys.modules["appliances.dns"].__file__ or "").parent / "data")}
    traced = set(trace_imports(APPLIANCE, data, manifest.options))
    allowed = traced | set(ALWAYS)
    outside = {
        n
        for n in names
        if n not in allowed and not matches(n, manifest.include) and not _parent_of(n, allowed)
    }
    assert outside == set()
    # nothing of the host but the interpreter, its libraries and what the build made
    assert "usr/bin/python3" in files
    assert not [n for n in files if n.startswith(("root/", "home/", "usr/local/", "work/"))]
    assert "cryptography" not in names  # only the web appliance makes certificates


def _parent_of(name: str, modules: set[str]) -> bool:
    return any(m.startswith(name + ".") for m in modules)


def test_two_builds_are_byte_identical(dns_image: Path, tmp_path: Path) -> None:
    build("dns", tmp_path, target="qemu")
    for name in ("initramfs.img", "vmlinuz", "boot.json"):
        assert (tmp_path / name).read_bytes() == (dns_image / name).read_bytes(), name


@pytest.mark.parametrize("machine", ["microvm", "pc"])
def test_boot_answers_udp_and_tcp_then_powers_off(dns_image: Path, tmp_path: Path, machine: str) -> None:
    port = free_port()
    with booted(dns_image, tmp_path, [f"udp:{port}:53", f"tcp:{port}:53"], machine=machine) as guest:
        udp = ask(port)
        assert udp.rcode() == dns.rcode.NOERROR
        assert "192.0.2.80" in udp.to_text()
        tcp = ask(port, tcp=True)
        assert tcp.answer == udp.answer
        assert ask(port, "nothing.example.test").rcode() == dns.rcode.NXDOMAIN
        guest.power_button()
        assert guest.wait(BOOT_TIMEOUT) == 0
        console = guest.console()
    assert "dns: stopping signal=SIGTERM" in console
    assert "init: dns exited with status 0; powering off" in console


def test_bad_kernel_command_line_value_powers_off_with_status(dns_image: Path, tmp_path: Path) -> None:
    with booted(dns_image, tmp_path, [], cmdline_extra="max-connections=0", wait_ready=False) as guest:
        assert guest.wait(BOOT_TIMEOUT) == 0
        console = guest.console()
    lines = [line for line in console.splitlines() if "max-connections" in line or "max_connections" in line]
    assert len(lines) == 1 and lines[0].startswith("dns: "), console
    assert "Traceback" not in console
    assert "init: dns exited with status 2; powering off" in console
