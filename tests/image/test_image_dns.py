"""The DNS appliance frozen into images: the bundle on the host, the qemu
image booted under TCG and asked over UDP and TCP through forwarded ports,
stopped with the power button; the network from QEMU's DHCP server; what the
image holds; reproducibility."""

from __future__ import annotations

import marshal
import os
import re
import subprocess
import sys
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
from runtime.image import GENERATED_CODE

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


#: the standard library's directory in the image: every frozen module, as a .pyc
STDLIB = f"usr/lib/python{sys.version_info.major}.{sys.version_info.minor}"


def test_image_holds_only_bytecode_of_the_traced_modules(dns_image: Path) -> None:
    files = unpack_initramfs(dns_image / "initramfs.img")
    assert not [name for name in files if name.endswith(".py")]
    members = [
        name[len(STDLIB) + 1 :]
        for name in files
        if name.startswith(f"{STDLIB}/") and not name.startswith(f"{STDLIB}/lib-dynload")
    ]
    modules = [m for m in members if files[f"{STDLIB}/{m}"][0] & 0o170000 == 0o100000]
    assert modules and all(m.endswith(".pyc") for m in modules)
    names = {m.removesuffix(".pyc").removesuffix("/__init__").replace("/", ".") for m in modules}
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


def test_image_speaks_no_tls_and_carries_no_openssl(dns_image: Path) -> None:
    """The manifest's ssl stand-in and its _hashlib exclusion keep _ssl,
    libssl and libcrypto out; hashlib uses the interpreter's own modules."""
    files = unpack_initramfs(dns_image / "initramfs.img")
    openssl = [n for n in files if re.search(r"/(libssl|libcrypto)\.so|/_(ssl|hashlib)\.", n)]
    assert openssl == []
    assert [n for n in files if re.search(r"/_sha256\.cpython", n)]
    stand_in = marshal.loads(files[f"{STDLIB}/ssl.pyc"][1][16:])
    assert "STAND_IN" in stand_in.co_names
    # the start-up's generated methods and regexes, precompiled, and what reads them
    assert files[GENERATED_CODE.lstrip("/")][1] and f"{STDLIB}/runtime/image/codegen.pyc" in files


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


def test_boot_with_dhcp_answers_on_the_leased_address(dns_image: Path, tmp_path: Path) -> None:
    """``ipv4=dhcp`` (after the image's static words: the last one counts):
    QEMU's user network leases 10.0.2.15, where its port forward delivers."""
    port = free_port()
    with booted(dns_image, tmp_path, [f"udp:{port}:53"], cmdline_extra="ipv4=dhcp") as guest:
        reply = ask(port)
        assert reply.rcode() == dns.rcode.NOERROR and "192.0.2.80" in reply.to_text()
        guest.power_button()
        assert guest.wait(BOOT_TIMEOUT) == 0
        console = guest.console()
    # the lease as the init took it for QEMU's NIC (its default MAC): address, router, name
    # server (written to /etc/resolv.conf)
    leased = "10.0.2.15/24 router=10.0.2.2 dns=10.0.2.3 lease=86400s server=10.0.2.2"
    assert f"init: dhcp eth0 52:54:00:12:34:56 {leased}" in console
    assert "init: dhcp eth0:" not in console and "init: dhcp: " not in console  # no failure lines
    assert "init: dns exited with status 0; powering off" in console
