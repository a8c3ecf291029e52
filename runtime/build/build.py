"""``python -m runtime build`` and ``python -m runtime boot``.

    python -m runtime build dns [--data zones=DIR] [--target qemu|xen|oci|bundle] -o OUT
        [--option NAME=VALUE] [--disk SIZE] [--kernel FILE] [--compression zstd|gzip|none] [--report]
    python -m runtime boot OUT [--forward udp:5353:53 ...] [--accel auto|kvm|tcg] [--cmdline WORDS]

Outputs in OUT, by target:

    qemu    vmlinuz, initramfs.img, boot.json (what ``boot`` runs), disk.img with --disk
    xen     vmlinuz, initramfs.img, NAME.cfg (``xl create NAME.cfg``), disk.img with --disk
    oci     NAME-oci.tar (``docker load``) and rootfs/ (for the top-level Dockerfile)
    bundle  NAME.pyz (``python3 NAME.pyz [OPTIONS]`` on a host with the same Python)

Same inputs give byte-identical outputs (the data disk aside: it is state, not
an artifact).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.resources
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..appliance import Appliance, load
from ..image import INIT_ARGS, PYTHON
from ..options import ADDRESS, FILE, SIZE
from .compress import COMPRESSIONS, compress, default_compression
from .freeze import BuildError, freeze, select, trace
from .kernel import Kernel, fetch_kernel, module_order, target_modules
from .manifest import load_manifest
from .qemu import BOOT_FILE, GUEST_NET, MACHINES, BootSpec, Guest, detect_accel, parse_forward, qemu_command
from .report import size_report
from .rootfs import FILE_ROOT, build_tree
from .tree import Tree

__all__ = [
    "BakedOptions",
    "BuildResult",
    "baked_data_dirs",
    "baked_options",
    "boot_main",
    "build",
    "build_main",
    "kernel_cmdline",
    "trace_options",
]

TARGETS = ("qemu", "xen", "oci", "bundle")
INITRD = "initramfs.img"
KERNEL = "vmlinuz"
DISK = "disk.img"
#: the guest's memory: the unpacked initramfs (~25 MB) lives in RAM, plus the interpreter
MEMORY_MB = 256
#: options the build itself sets in an image (``--data`` names the data)
_BUILD_SET = ("config", "state_dir", "data", "version")
#: what the tracing pass binds instead of an address baked into the image
_TRACE_ADDRESS = "127.0.0.1:0"


@dataclass
class BuildResult:
    appliance: str
    target: str
    outputs: list[Path] = field(default_factory=list)
    tree: Tree | None = None
    modules: int = 0
    report: str = ""


def kernel_cmdline(console: str, *, network: str = "") -> str:
    """The command line the kernel gets; after ``--`` come the init's argv.

    ``rdinit`` runs the interpreter itself as PID 1 (no shell, no /init
    script); ``panic=-1`` turns a dead init into a reboot, which the VM
    configuration turns into the end of the guest; ``quiet`` keeps the slow
    emulated serial port for what matters.  ``cryptomgr.notests`` skips the
    self-tests the kernel runs on each crypto algorithm it registers (meant
    for FIPS mode), about a fifth of its boot under QEMU's TCG (0.2-0.4 s);
    the algorithms still work (module signatures, ext4's crc32c), and the
    appliance's own TLS and hashing are the interpreter's business.
    """
    words = [f"console={console}", "quiet", "cryptomgr.notests=1", "panic=-1", f"rdinit={PYTHON}"]
    if network:
        words.append(network)
    return " ".join([*words, "--", *INIT_ARGS])


def baked_data_dirs(appliance: Appliance, given: Sequence[str]) -> dict[str, str]:
    """The directory baked for each data device: ``--data NAME=DIR``, else
    the appliance's embedded default."""
    specs = {spec.name: spec for spec in appliance.data}
    chosen: dict[str, str] = {}
    for entry in given:
        name, eq, directory = entry.partition("=")
        if not eq or name not in specs:
            known = ", ".join(sorted(specs)) or "none"
            raise BuildError(f"--data: expected NAME=DIR with NAME one of {known}, got {entry!r}")
        if not os.path.isdir(directory):
            raise BuildError(f"--data {name}: {directory} is not a directory")
        chosen[name] = os.path.abspath(directory)
    for spec in appliance.data:
        if spec.name not in chosen and spec.default:
            chosen[spec.name] = str(importlib.resources.files(appliance.package).joinpath(spec.default))
    return chosen


@dataclass(frozen=True)
class BakedOptions:
    """Option values given with ``build --option NAME=VALUE`` (as text: the
    image's option parser converts them, as it does the manifest's)."""

    #: for the image's config; a FILE option's value is its path in the image
    image: dict[str, Any] = field(default_factory=dict)
    #: image path -> host file, for the files of FILE options
    files: dict[str, str] = field(default_factory=dict)
    #: the image paths of those files whose option is secret (a key)
    secret: set[str] = field(default_factory=set)
    #: for the tracing pass on the host: the host's files
    trace: dict[str, Any] = field(default_factory=dict)


def baked_options(appliance: Appliance, given: Sequence[str]) -> BakedOptions:
    """``NAME=VALUE`` entries checked against the appliance's options (a
    repeatable one may be given several times); a FILE option's file is
    baked at ``FILE_ROOT/NAME/<its name>``."""
    declared = {option.name: option for option in appliance.all_options()}
    texts: dict[str, list[str]] = {}
    for entry in given:
        key, eq, value = entry.partition("=")
        name = key.removeprefix("--").replace("-", "_")
        option = declared.get(name)
        if name in _BUILD_SET:
            raise BuildError(f"--option {name}: the build sets it (data: --data NAME=DIR; the store: --disk)")
        if not eq or option is None:
            raise BuildError(
                f"--option: expected NAME=VALUE with NAME an option of {appliance.name} "
                f"(see python -m runtime describe {appliance.name}), got {entry!r}"
            )
        if name in texts and not option.repeat:
            raise BuildError(f"--option {name}: given twice (it is not repeatable)")
        texts.setdefault(name, []).append(value)
    baked = BakedOptions()
    for name, values in texts.items():
        option = declared[name]
        try:
            converted = [option.kind.convert(value) for value in values]
            option.validate(converted if option.repeat else converted[0])
        except ValueError as exc:
            raise BuildError(f"--option {name}: bad value {', '.join(values)!r}: {exc}") from None
        image, host = list(values), list(values)
        if option.kind is FILE:
            for index, value in enumerate(values):
                if not os.path.isfile(value):
                    raise BuildError(f"--option {name}: {value} is not a readable file")
                host[index] = os.path.abspath(value)
                image[index] = f"{FILE_ROOT}/{name}/{os.path.basename(host[index])}"
                if image[index] in baked.files:
                    raise BuildError(f"--option {name}: two files named {os.path.basename(value)!r}")
                baked.files[image[index]] = host[index]
                if option.secret:
                    baked.secret.add(image[index])
        baked.image[name] = image if option.repeat else image[0]
        baked.trace[name] = host if option.repeat else host[0]
    return baked


def trace_options(appliance: Appliance, values: dict[str, Any]) -> dict[str, Any]:
    """The image's option values as the tracing pass on the host takes them:
    every address on loopback port 0; and the console switched on when its
    keys are baked (its listen address may come at boot, on the kernel
    command line), so that what it imports is in the image."""
    traced = dict(values)
    declared = {option.name: option for option in appliance.all_options()}
    for name, value in values.items():
        option = declared.get(name)
        if option is not None and option.kind is ADDRESS and value:
            traced[name] = [_TRACE_ADDRESS] if option.repeat else _TRACE_ADDRESS
    if traced.get("console_keys") and not traced.get("console_listen"):
        traced["console_listen"] = _TRACE_ADDRESS
    return traced


def _load(name: str) -> Appliance:
    """An installed appliance, else a module whose ``APPLIANCE`` is one (a
    test's own appliance)."""
    try:
        return load(name)
    except LookupError as exc:
        try:
            candidate = getattr(importlib.import_module(name), "APPLIANCE", None)
        except ImportError:
            candidate = None
        if isinstance(candidate, Appliance):
            return candidate
        raise BuildError(str(exc)) from None


def _make_disk(path: Path, size: int) -> None:
    """An empty ext4 file system for the store, owned by root (the init)."""
    with open(path, "wb") as f:
        f.truncate(size)
    env = dict(os.environ, E2FSPROGS_FAKE_TIME=os.environ.get("SOURCE_DATE_EPOCH", "0"))
    result = subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-L", "appliance", "-E", "root_owner=0:0", str(path)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise BuildError(f"mkfs.ext4 {path}: {result.stderr.strip()}")


def build(
    name: str,
    out: Path,
    *,
    target: str = "qemu",
    data: Sequence[str] = (),
    options: Sequence[str] = (),
    disk_size: int | None = None,
    kernel_file: str | None = None,
    compression: str | None = None,
    report: bool = False,
) -> BuildResult:
    if target not in TARGETS:
        raise BuildError(f"--target: expected one of {', '.join(TARGETS)}, got {target!r}")
    if options and target == "bundle":
        raise BuildError("--option: the bundle takes its options when it runs (python3 NAME.pyz --flag)")
    appliance = _load(name)
    manifest = load_manifest(appliance.package)
    data_dirs = baked_data_dirs(appliance, data)
    baked = baked_options(appliance, options)
    image_options = {**manifest.options, **baked.image}
    traced = trace(appliance, data_dirs, trace_options(appliance, {**manifest.options, **baked.trace}))
    frozen = freeze(select(traced.modules, manifest), traced.generated)
    out.mkdir(parents=True, exist_ok=True)
    result = BuildResult(appliance.name, target, modules=len(frozen.modules))

    if target == "bundle":
        from .bundle import write_bundle

        path = out / f"{appliance.name}.pyz"
        path.write_bytes(write_bundle(appliance, frozen, data_dirs))
        path.chmod(0o755)
        result.outputs.append(path)
        return result

    vm = target in ("qemu", "xen")
    modules: list[tuple[str, Path]] = []
    kernel: Kernel | None = None
    if vm:
        if kernel_file:
            kernel = Kernel(Path(kernel_file), None, "custom")
        else:
            kernel = fetch_kernel()
        if kernel.modules is not None:
            modules = module_order(kernel.modules, target_modules(target, disk=disk_size is not None))
    disk_device = None
    if disk_size is not None and vm:
        disk_device = "/dev/xvda" if target == "xen" else "/dev/vda"
    tree = build_tree(
        appliance,
        frozen,
        data_dirs,
        image_options,
        kernel_modules=modules,
        disk=disk_device,
        vm=vm,
        files=baked.files,
        secret_files=baked.secret,
    )
    result.tree = tree
    compressed: dict[str, int] = {}

    if vm:
        assert kernel is not None
        method = compression or default_compression()
        initrd = compress(tree.cpio(), method)
        compressed[f"{INITRD} ({method})"] = len(initrd)
        (out / INITRD).write_bytes(initrd)
        shutil.copyfile(kernel.image, out / KERNEL)
        result.outputs += [out / KERNEL, out / INITRD]
        if disk_size is not None:
            _make_disk(out / DISK, disk_size)
            result.outputs.append(out / DISK)
        if target == "qemu":
            spec = BootSpec(
                out,
                KERNEL,
                INITRD,
                kernel_cmdline("ttyS0", network=GUEST_NET),
                MEMORY_MB,
                DISK if disk_size is not None else None,
                manifest.forward,
            )
            (out / BOOT_FILE).write_text(spec.dump())
            result.outputs.append(out / BOOT_FILE)
        else:
            from .xen import xl_config

            config = out / f"{appliance.name}.cfg"
            config.write_text(
                xl_config(
                    appliance.name,
                    kernel=str((out / KERNEL).resolve()),
                    ramdisk=str((out / INITRD).resolve()),
                    cmdline=kernel_cmdline("hvc0", network="ipv4=10.0.0.2/24 gateway=10.0.0.1"),
                    memory_mb=MEMORY_MB,
                    disk=str((out / DISK).resolve()) if disk_size is not None else None,
                )
            )
            result.outputs.append(config)
    else:
        from .oci import write_oci

        path = out / f"{appliance.name}-oci.tar"
        path.write_bytes(write_oci(appliance, tree))
        compressed[path.name] = path.stat().st_size
        rootfs = out / "rootfs"
        if rootfs.exists():
            shutil.rmtree(rootfs)
        tree.write_dir(rootfs)
        result.outputs += [path, rootfs]
    if report:
        result.report = size_report(tree, compressed)
    return result


def build_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime build", description="build an appliance image")
    parser.add_argument("appliance")
    parser.add_argument("-o", "--output", required=True, help="output directory")
    parser.add_argument("--target", choices=TARGETS, default="qemu")
    parser.add_argument(
        "--data", action="append", default=[], metavar="NAME=DIR", help="bake DIR as data NAME"
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="bake an option value into the image (repeatable); a FILE option's file is baked with it",
    )
    parser.add_argument("--disk", metavar="SIZE", help="a data disk of SIZE (e.g. 64M) for the store")
    parser.add_argument(
        "--kernel",
        metavar="FILE",
        help="a kernel image instead of the Debian cloud kernel (drivers built in: no modules are added)",
    )
    parser.add_argument("--compression", choices=COMPRESSIONS, help="initramfs compression (default zstd)")
    parser.add_argument("--report", action="store_true", help="list every file and module with its size")
    args = parser.parse_args(list(argv))
    try:
        disk_size = SIZE.parse(args.disk) if args.disk else None
        result = build(
            args.appliance,
            Path(args.output),
            target=args.target,
            data=args.data,
            options=args.option,
            disk_size=disk_size,
            kernel_file=args.kernel,
            compression=args.compression,
            report=args.report,
        )
    except (BuildError, ValueError) as exc:
        print(f"build: {exc}", file=sys.stderr)
        return 2
    if result.report:
        print(result.report, end="")
    for path in result.outputs:
        print(f"wrote {path}")
    return 0


def boot_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runtime boot", description="boot a built image under QEMU"
    )
    parser.add_argument("directory")
    parser.add_argument("--forward", action="append", default=None, metavar="udp|tcp:HOSTPORT:GUESTPORT")
    parser.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    parser.add_argument("--cmdline", default="", help="extra kernel command line words (option=value)")
    parser.add_argument("--machine", choices=MACHINES, help="QEMU machine (default: the image's, microvm)")
    args = parser.parse_args(list(argv))
    try:
        spec = BootSpec.load(Path(args.directory))
        forwards = spec.forward if args.forward is None else tuple(args.forward)
        for forward in forwards:
            parse_forward(forward)
        with tempfile.TemporaryDirectory(prefix="appliance-boot-") as tmp:
            accel = detect_accel(spec, Path(tmp)) if args.accel == "auto" else args.accel
            return _boot_foreground(spec, forwards, accel, args.cmdline, Path(tmp), args.machine)
    except BuildError as exc:
        print(f"boot: {exc}", file=sys.stderr)
        return 2


def _boot_foreground(
    spec: BootSpec, forwards: Sequence[str], accel: str, extra: str, tmp: Path, machine: str | None
) -> int:
    """Console on stdout; Ctrl-C (or SIGTERM) presses the power button, a
    second one stops QEMU at once."""
    qmp = str(tmp / "qmp.sock")
    command = qemu_command(
        spec, forwards=forwards, accel=accel, serial="stdio", qmp=qmp, cmdline_extra=extra, machine=machine
    )
    print(f"boot: {accel.upper()}, forwarding {', '.join(forwards) or 'nothing'}", file=sys.stderr)
    # A session of its own: the terminal's Ctrl-C reaches only us, and we turn
    # it into an ACPI power-button press (a graceful stop in the guest).
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
    guest = Guest.__new__(Guest)
    guest.qmp_path = Path(qmp)
    presses = 0

    def on_signal(signum: int, frame: object) -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            try:
                guest.power_button()
            except OSError:
                process.kill()
        else:
            process.kill()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return process.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
