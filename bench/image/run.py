"""Images: size and boot time of the frozen appliance vs the same appliance on
the full interpreter and standard library, side by side in one run.

    python3 -m bench.image.run [--boots 3] [--appliances dns,web,xmpp] [--accel tcg] [--no-record]

Per appliance (the first answer: a DNS query, an HTTP GET, XMPP stream
features), two qemu images from the same build code:

* ``narrow``: what ``python -m runtime build`` makes (traced modules only);
* ``full``: the same plus every standard-library module (``test`` and the
  GUI/IDE packages aside, and the real module wherever the manifest has a
  stand-in), every stdlib extension module and the libraries they link, as
  an image with "the whole Python" would be.

Reported: initramfs size uncompressed, zstd (what ships) and gzip, file
count, kernel modules loaded, and over ``--boots`` round-robin boots (the
variants take turns, so a slow spell of the shared machine hits both): wall
time from QEMU's start to the first answer from the host, the guest's uptime
at ``ready`` and its breakdown from the init's console lines (kernel until
the init's exec, interpreter start and the runtime's imports, the VM setup,
the appliance's imports and start), and the guest's RSS at ready.  Medians;
no thresholds.  A dated section is appended to bench/RESULTS.md
(``--no-record``: print only).
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import importlib.util
import platform
import shlex
import socket
import statistics
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import dns.exception  # noqa: E402
import dns.message  # noqa: E402
import dns.query  # noqa: E402

from bench import procstats  # noqa: E402
from runtime.appliance import load  # noqa: E402
from runtime.build import build  # noqa: E402
from runtime.build.build import INITRD, KERNEL, MEMORY_MB, baked_data_dirs, kernel_cmdline  # noqa: E402
from runtime.build.compress import compress  # noqa: E402
from runtime.build.freeze import freeze, select, trace  # noqa: E402
from runtime.build.kernel import fetch_kernel, module_order, target_modules  # noqa: E402
from runtime.build.manifest import load_manifest  # noqa: E402
from runtime.build.qemu import BOOT_FILE, GUEST_NET, BootSpec, Guest  # noqa: E402
from runtime.build.rootfs import build_tree  # noqa: E402
from runtime.build.tree import Tree  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
#: stdlib packages an appliance image would never carry even when "full"
LEFT_OUT = ("test", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip", "distutils", "pydoc_data")
BOOT_TIMEOUT = 300.0
GUEST_PORT = {"dns": 53, "web": 80, "xmpp": 5222}
XMPP_HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
)


@dataclass
class Variant:
    appliance: str
    name: str
    directory: Path
    tree: Tree
    zstd: int
    gzip: int
    boots: list[dict[str, float]] = field(default_factory=list)
    modules_loaded: str = ""


def stdlib_modules() -> dict[str, str | None]:
    """Every importable stdlib module (source or extension), by name."""
    import pkgutil

    paths = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})
    found: dict[str, str | None] = {}
    for info in pkgutil.walk_packages([paths["stdlib"], str(Path(paths["platstdlib"]) / "lib-dynload")],
                                      onerror=lambda name: None):  # fmt: skip
        if info.name.split(".")[0] in LEFT_OUT or info.name.startswith("__") or "site-packages" in info.name:
            continue
        try:
            spec = importlib.util.find_spec(info.name)
        except Exception:  # a module that runs code to be found (e.g. platform-only ones)
            continue
        if spec is not None and spec.origin not in (None, "built-in", "frozen"):
            found[info.name] = spec.origin
    return found


def build_full(name: str, out: Path) -> Tree:
    """The qemu image with the whole standard library added."""
    appliance = load(name)
    manifest = load_manifest(appliance.package)
    data_dirs = baked_data_dirs(appliance, ())
    traced = trace(appliance, data_dirs, manifest.options)
    modules = select(traced.modules, manifest)
    modules.update(stdlib_modules())  # as they are: the real ssl, not a stand-in
    compilable: dict[str, str | None] = {}
    for module, origin in modules.items():
        try:
            freeze({module: origin})
        except (SyntaxError, ValueError, UnicodeDecodeError):  # stdlib test data and py2-only files
            continue
        compilable[module] = origin
    frozen = freeze(compilable, traced.generated)  # the same precompiled start-up work
    kernel = fetch_kernel()
    assert kernel.modules is not None
    kos = module_order(kernel.modules, target_modules("qemu", disk=False))
    tree = build_tree(appliance, frozen, data_dirs, manifest.options, kernel_modules=kos)
    out.mkdir(parents=True, exist_ok=True)
    (out / INITRD).write_bytes(compress(tree.cpio(), "zstd"))
    (out / KERNEL).write_bytes(kernel.image.read_bytes())
    spec = BootSpec(out, KERNEL, INITRD, kernel_cmdline("ttyS0", network=GUEST_NET), MEMORY_MB, None, ())
    (out / BOOT_FILE).write_text(spec.dump())
    return tree


def answer(appliance: str, port: int) -> bool:
    try:
        if appliance == "dns":
            query = dns.message.make_query("www.example.test", "A")
            dns.query.udp(query, "127.0.0.1", port=port, timeout=0.2)
            return True
        if appliance == "xmpp":
            # the stream features offering STARTTLS: the server answers
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(XMPP_HEADER)
                got = b""
                while b"</stream:features>" not in got:
                    chunk = sock.recv(4096)
                    if not chunk:
                        return False
                    got += chunk
                return b"urn:ietf:params:xml:ns:xmpp-tls" in got
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
        try:
            connection.request("GET", "/")
            return connection.getresponse().status == 200
        finally:
            connection.close()
    except (OSError, dns.exception.Timeout, http.client.HTTPException):
        return False


def boot_once(variant: Variant, workdir: Path, port: int, accel: str) -> dict[str, float]:
    forwards = [f"{kind}:{port}:{GUEST_PORT[variant.appliance]}" for kind in ("udp", "tcp")]
    if variant.appliance in ("web", "xmpp"):
        forwards = forwards[1:]
    guest = Guest(BootSpec.load(variant.directory), workdir, forwards=forwards, accel=accel)
    guest.start()
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while not answer(variant.appliance, port):
            if time.monotonic() > deadline or (guest.process and guest.process.poll() is not None):
                raise TimeoutError(f"{variant.appliance}/{variant.name}: no answer\n{guest.console()}")
            time.sleep(0.02)
        wall = time.monotonic() - guest.started
        ready = guest.wait_console(r"init: ready uptime=([\d.]+)s rss=(\d+)KiB", 30)
        boot = guest.wait_console(r"init: boot kernel=([\d.]+)s python=([\d.]+)s setup=([\d.]+)s", 1)
        variant.modules_loaded = guest.wait_console(r"modules=(\S+)", 1).group(1)
        guest.power_button()
        guest.wait(120)
    finally:
        guest.kill()
    kernel, python, setup = (float(x) for x in boot.groups())
    uptime = float(ready.group(1))
    return {
        "wall": wall,
        "uptime": uptime,
        "kernel": kernel,
        "python": python,
        "setup": setup,
        "appliance": uptime - kernel - python - setup,
        "rss": int(ready.group(2)) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--boots", type=int, default=3)
    parser.add_argument("--appliances", default="dns,web,xmpp")
    parser.add_argument("--accel", choices=("tcg", "kvm"), default="tcg")
    parser.add_argument("--no-record", action="store_true", help=f"do not append to {RESULTS}")
    args = parser.parse_args()
    variants: list[Variant] = []
    with tempfile.TemporaryDirectory(prefix="bench-image-") as tmp:
        work = Path(tmp)
        for name in args.appliances.split(","):
            narrow_dir = work / f"{name}-narrow"
            result = build(name, narrow_dir, target="qemu")
            assert result.tree is not None
            trees = {"narrow": (narrow_dir, result.tree), "full": (work / f"{name}-full", Tree())}
            trees["full"] = (work / f"{name}-full", build_full(name, work / f"{name}-full"))
            for label, (directory, tree) in trees.items():
                cpio = tree.cpio()
                variants.append(
                    Variant(
                        name,
                        label,
                        directory,
                        tree,
                        (directory / INITRD).stat().st_size,
                        len(compress(cpio, "gzip")),
                    )
                )
                print(f"built {name}/{label}: {len(cpio):,} bytes, zstd {variants[-1].zstd:,}", flush=True)
        for round_number in range(args.boots):
            for variant in variants:
                stats = boot_once(variant, work / f"boot-{variant.appliance}-{variant.name}-{round_number}",
                                  procstats.free_port(udp=True), args.accel)  # fmt: skip
                variant.boots.append(stats)
                print(f"{variant.appliance}/{variant.name} boot {round_number + 1}: "
                      + " ".join(f"{k}={v:.2f}" for k, v in stats.items()), flush=True)  # fmt: skip
    report(variants, args)


def report(variants: list[Variant], args: argparse.Namespace) -> None:
    def med(variant: Variant, key: str) -> float:
        return statistics.median(b[key] for b in variant.boots)

    rows = [
        "| appliance | image | cpio | zstd | gzip | zstd vs full | files | wall to first answer | "
        "uptime at ready | kernel | interpreter + runtime imports | VM setup | appliance imports + start "
        "| guest RSS |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    full_size = {v.appliance: v.zstd for v in variants if v.name == "full"}
    for v in variants:
        rows.append(
            f"| {v.appliance} | {v.name} | {len(v.tree.cpio()) / 1e6:.1f} MB | {v.zstd / 1e6:.2f} MB | "
            f"{v.gzip / 1e6:.2f} MB | {v.zstd / full_size[v.appliance]:.0%} | {len(v.tree.files())} | "
            f"{med(v, 'wall'):.2f} s | {med(v, 'uptime'):.2f} s | {med(v, 'kernel'):.2f} s | "
            f"{med(v, 'python'):.2f} s | {med(v, 'setup'):.2f} s | {med(v, 'appliance'):.2f} s | "
            f"{med(v, 'rss'):.0f} MiB |"
        )
    modules = sorted({v.modules_loaded for v in variants})
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = "\n".join(
        [
            f"## images: frozen appliance vs full stdlib, QEMU {args.accel.upper()} ({now})",
            "",
            f"Command: `python3 -m bench.image.run {shlex.join(sys.argv[1:])}`",
            "",
            f"Machine: {platform.machine()}, Linux {platform.release()}, Python {platform.python_version()}; "
            f"{args.boots} round-robin boots per image, medians; "
            f"QEMU `-M microvm,pit=on,pic=on,rtc=on -cpu qemu64,+rdrand -m {MEMORY_MB}` "
            "(tsc_early_khz from the host).",
            f"Kernel modules loaded: {', '.join(modules)}.",
            "",
            *rows,
            "",
            "Breakdown columns add up to the uptime at ready: kernel = guest uptime when the kernel "
            "exec'd the init (its `Run /usr/bin/python3 as init process` record: the initramfs "
            "unpacking is the kernel's); interpreter + runtime imports = from that exec to the init's "
            "first step (after mounting /proc); appliance imports + start = from the VM setup's end "
            "to `ready`.",
            "",
        ]
    )
    print(section)
    if args.no_record:
        return
    with RESULTS.open("a") as f:
        f.write("\n" + section)


if __name__ == "__main__":
    main()
