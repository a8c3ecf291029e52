"""Fast checks of the image pieces that need no VM: the init's command-line
split, its ready watch, the reproducible archive writers, the manifest, the
option values a build bakes."""

from __future__ import annotations

import io
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from test_image_dns import read_cpio

from appliances.dns import APPLIANCE as DNS
from runtime.build.build import baked_options, trace_options
from runtime.build.freeze import BuildError
from runtime.build.manifest import matches
from runtime.build.qemu import BootSpec, qemu_command
from runtime.build.rootfs import NOBODY, add_option_files
from runtime.build.tree import Tree
from runtime.build.xen import xl_config
from runtime.image.init import ReadyWatch
from runtime.image.vm import NetConfig, parse_cmdline


def test_cmdline_split_keeps_the_init_args_away_from_the_appliance() -> None:
    words_given = "console=ttyS0 quiet ipv4=10.0.2.15/24 gateway=10.0.2.2 max-connections=5"
    keys, words = parse_cmdline(f"{words_given} -- -I -S -m runtime.image.init\n")
    assert keys["ipv4"] == "10.0.2.15/24" and keys["max-connections"] == "5"
    assert words == words_given
    config = NetConfig.from_keys(keys)
    assert config.interface == "eth0"
    assert config.address == ipaddress.IPv4Interface("10.0.2.15/24")
    assert config.gateway == ipaddress.IPv4Address("10.0.2.2")
    assert NetConfig.from_keys({}).address is None


def test_ready_watch_fires_once_on_the_ready_record() -> None:
    out = io.StringIO()
    fired: list[int] = []
    watch = ReadyWatch(out, lambda: fired.append(1))
    watch.write("2026-11-28T20:00:00.000Z INFO  dns: loading zone origin=ready.\n")
    assert fired == []
    watch.write("2026-11-28T20:00:00.000Z INFO  dns: ready listening=udp/0.0.0.0:53\n")
    watch.write("2026-11-28T20:00:01.000Z INFO  dns: ready listening=udp/0.0.0.0:53\n")
    assert fired == [1]
    assert out.getvalue().count("\n") == 3


def test_cpio_and_tar_are_reproducible_and_sorted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")

    def make(order: list[str]) -> Tree:
        tree = Tree()
        for name in order:
            tree.file(f"usr/lib/{name}", name.encode())
        tree.symlink("bin", "usr/bin")
        tree.char("dev/console", 5, 1)
        return tree

    first, second = make(["b", "a", "c"]), make(["c", "b", "a"])
    assert first.cpio() == second.cpio()
    assert first.tar() == second.tar()
    entries = read_cpio(first.cpio())
    assert list(entries) == sorted(entries)
    assert entries["usr/lib/a"][1] == b"a"
    assert entries["dev/console"][0] & 0o170000 == 0o020000
    assert b"%08X" % 1700000000 in first.cpio()


def test_manifest_patterns() -> None:
    assert matches("unittest.mock", ("unittest.*",))
    assert matches("unittest", ("unittest.*",))
    assert not matches("unittestx", ("unittest.*",))
    assert matches("bz2", ("bz2",)) and not matches("bz2x", ("bz2",))


def test_xl_config_refuses_what_xl_cannot_parse() -> None:
    with pytest.raises(ValueError):
        xl_config("dns", kernel="/k", ramdisk="/r", cmdline='say "hi"')


def test_build_options_are_checked_and_file_options_bake_their_file(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first, second = tmp_path / "one" / "a.test.zone", tmp_path / "two" / "b.test.zone"
    for path in (first, second):
        path.write_text("")
    keys = tmp_path / "authorized_keys"
    keys.write_text("")
    given = [f"zone={first}", f"zone={second}", f"--console-keys={keys}", "max-connections=5"]
    baked = baked_options(DNS, given)
    assert baked.image == {
        "zone": ["/etc/files/zone/a.test.zone", "/etc/files/zone/b.test.zone"],
        "console_keys": "/etc/files/console_keys/authorized_keys",
        "max_connections": "5",
    }
    assert baked.files == {
        "/etc/files/zone/a.test.zone": str(first),
        "/etc/files/zone/b.test.zone": str(second),
        "/etc/files/console_keys/authorized_keys": str(keys),
    }
    # the tracing pass reads the host's files, binds loopback, and has the console on
    traced = trace_options(DNS, {"listen": ["0.0.0.0:53"], **baked.trace})
    assert traced["zone"] == [str(first), str(second)] and traced["console_keys"] == str(keys)
    assert traced["listen"] == ["127.0.0.1:0"] and traced["console_listen"] == "127.0.0.1:0"
    (tmp_path / "three").mkdir()
    (tmp_path / "three" / "a.test.zone").write_text("")
    for bad in (
        "nope=1",  # no such option
        "state_dir=/srv",  # the build's own
        "idle-timeout=0s",  # below the minimum
        "listen=0.0.0.0",  # not an address with a port
        "max-connections=5",  # given twice, not repeatable
        f"zone={tmp_path / 'missing.zone'}",
        f"zone={tmp_path / 'three' / 'a.test.zone'}",  # the same name in the image
    ):
        with pytest.raises(BuildError, match=r"^--option") as raised:
            baked_options(DNS, [*given, bad])
        assert "\n" not in str(raised.value)


def test_bare_cmdline_words_are_refused_before_they_reach_the_init(tmp_path: Path) -> None:
    """The kernel passes words it does not know, without '=', to the init as
    arguments: the interpreter would take the first for a script and stop."""
    spec = BootSpec(
        tmp_path, "vmlinuz", "initramfs.img", "console=ttyS0 quiet -- -I -S -m runtime.image.init"
    )
    kwargs: dict[str, Any] = {"forwards": [], "accel": "tcg", "serial": "stdio", "machine": "pc"}
    with pytest.raises(BuildError) as refused:
        qemu_command(spec, cmdline_extra="listen=0.0.0.0:53 nokaslr", **kwargs)
    assert "'nokaslr' has no '='" in str(refused.value)
    command = qemu_command(spec, cmdline_extra="listen=0.0.0.0:53 quiet", **kwargs)
    appended = command[command.index("-append") + 1]
    assert appended.endswith("listen=0.0.0.0:53 quiet -- -I -S -m runtime.image.init")


def test_files_of_secret_options_are_readable_by_the_appliance_only(tmp_path: Path) -> None:
    """A baked key is mode 0400, owned by the user a container runs as (root
    in a VM reads it anyway); other baked files stay world-readable."""
    from appliances.xmpp import APPLIANCE as XMPP

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("cert")
    key.write_text("key")
    baked = baked_options(XMPP, [f"tls-cert={cert}", f"tls-key={key}"])
    assert baked.secret == {"/etc/files/tls_key/key.pem"}
    tree = Tree()
    add_option_files(tree, baked.files, baked.secret)
    entries = {entry.path: (entry.mode, entry.uid, entry.data) for entry in tree.files()}
    assert entries["etc/files/tls_key/key.pem"] == (0o400, NOBODY, b"key")
    assert entries["etc/files/tls_cert/cert.pem"] == (0o644, 0, b"cert")
