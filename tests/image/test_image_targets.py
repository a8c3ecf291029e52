"""The xen and oci targets: the xl configuration checked against xl.cfg(5),
the OCI image's layout, config and digests, its rootfs run as nobody."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest
from image_helpers import free_port
from test_image_dns import unpack_initramfs

from runtime.build import build
from runtime.image import INIT_ARGS

pytestmark = pytest.mark.slow

# xl.cfg(5): the actions allowed for on_poweroff/on_reboot/on_crash
XL_ACTIONS = {"destroy", "restart", "rename-restart", "preserve", "coredump-destroy", "coredump-restart",
              "soft-reset"}  # fmt: skip
# xl-network-configuration(5) keys of a vif spec
VIF_KEYS = {"mac", "bridge", "gatewaydev", "type", "model", "vifname", "script", "ip", "backend", "rate",
            "mtu", "devid"}  # fmt: skip
# xl-disk-configuration(5) keys of a disk spec
DISK_KEYS = {"target", "format", "vdev", "access", "devtype", "backend", "backendtype", "script"}


def parse_xl(text: str) -> dict[str, Any]:
    """xl.cfg's syntax: ``KEY = VALUE`` with VALUE a "string", a number or a
    [ list, of, "strings" ]; ``#`` starts a comment."""
    values: dict[str, Any] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+?)\s*;?", line)
        assert match, f"line {number}: not KEY = VALUE: {raw!r}"
        key, value = match.groups()
        assert key not in values, f"line {number}: {key} set twice"
        if value.startswith("["):
            assert value.endswith("]"), f"line {number}: unterminated list"
            items = re.findall(r'"([^"\\]*)"|(\d+)', value[1:-1])
            values[key] = [text or int(num) for text, num in items]
        elif value.startswith('"'):
            assert re.fullmatch(r'"[^"\\]*"', value), f"line {number}: bad string {value}"
            values[key] = value[1:-1]
        else:
            assert re.fullmatch(r"\d+", value), f"line {number}: bad number {value}"
            values[key] = int(value)
    return values


def test_xen_target_writes_a_valid_pvh_config(tmp_path: Path) -> None:
    build("dns", tmp_path, target="xen", disk_size=8 * 1024 * 1024)
    config = parse_xl((tmp_path / "dns.cfg").read_text())
    assert config["type"] == "pvh"
    assert config["name"] == "dns"
    for key in ("kernel", "ramdisk"):
        assert os.path.isabs(config[key]) and os.path.isfile(config[key])
    assert isinstance(config["memory"], int) and config["memory"] >= 64
    assert isinstance(config["vcpus"], int) and config["vcpus"] >= 1
    cmdline = config["cmdline"]
    assert "console=hvc0" in cmdline.split()
    assert cmdline.split(" -- ")[1] == "-I -S -m runtime.image.init"
    assert re.search(r"\bipv4=\d+\.\d+\.\d+\.\d+/\d+ gateway=\d+\.\d+\.\d+\.\d+\b", cmdline)
    for action in ("on_poweroff", "on_reboot", "on_crash"):
        assert config[action] in XL_ACTIONS
    for vif in config["vif"]:
        keys = {item.split("=", 1)[0] for item in vif.split(",")}
        assert keys <= VIF_KEYS and "bridge" in keys
    (disk,) = config["disk"]
    items = disk.split(",")
    assert {item.split("=", 1)[0] for item in items} <= DISK_KEYS
    assert items[-1].startswith("target="), "target= must come last: it may contain commas"
    assert os.path.isfile(items[-1].removeprefix("target="))
    files = unpack_initramfs(Path(config["ramdisk"]))
    image_config = json.loads(files["etc/appliance.json"][1])
    assert "xen_netfront" in image_config["kernel_modules"]
    assert not [m for m in image_config["kernel_modules"] if m.startswith("virtio")]
    assert image_config["disk"] == "/dev/xvda"


def read_oci(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_oci_image_layout_config_and_reproducible_digests(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    build("dns", first, target="oci")
    build("dns", second, target="oci")
    assert (first / "dns-oci.tar").read_bytes() == (second / "dns-oci.tar").read_bytes()
    files = read_oci(first / "dns-oci.tar")
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    (entry,) = json.loads(files["index.json"])["manifests"]
    manifest = json.loads(files["blobs/sha256/" + entry["digest"].removeprefix("sha256:")])
    config = json.loads(files["blobs/sha256/" + manifest["config"]["digest"].removeprefix("sha256:")])
    assert config["config"]["User"] == "65534:65534"
    assert config["config"]["Entrypoint"] == ["/usr/bin/python3", "-I", "-S", "-m", "runtime.image.init"]
    (docker,) = json.loads(files["manifest.json"])
    assert docker["Config"] == "blobs/sha256/" + manifest["config"]["digest"].removeprefix("sha256:")
    (layer_ref,) = manifest["layers"]
    layer = files["blobs/sha256/" + layer_ref["digest"].removeprefix("sha256:")]
    assert config["rootfs"]["diff_ids"] == [layer_ref["digest"]]
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert "usr/bin/python3" in members and "etc/appliance.json" in members
    assert not [name for name in members if name.endswith(".py") or name.startswith("dev/")]
    assert members["var/lib/appliance"].uid == 65534


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("chroot") is None, reason="needs root for chroot")
def test_oci_rootfs_serves_as_nobody(tmp_path: Path) -> None:
    build("dns", tmp_path, target="oci")
    rootfs = tmp_path / "rootfs"
    port = free_port()
    env = {"APPLIANCE_CONTAINER": "1", "DNS_LISTEN": f"127.0.0.1:{port}"}
    chroot = shutil.which("chroot") or "chroot"
    command = [chroot, "--userspec=65534:65534", str(rootfs), "/usr/bin/python3", *INIT_ARGS]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if " ready " in line:
                break
        query = dns.message.make_query("www.example.test", "A")
        reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=10)
        assert reply.rcode() == dns.rcode.NOERROR
    finally:
        process.send_signal(signal.SIGTERM)
        status = process.wait(30)
        if process.stderr is not None:
            process.stderr.close()
    assert status == 0
