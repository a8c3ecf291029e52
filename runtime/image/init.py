"""The image's init: PID 1 in a VM, the entry point in a container.

    python3 -I -S -m runtime.image.init

In a VM (PID 1 with no /proc yet) it mounts proc/sys/devtmpfs/tmp, loads the
kernel modules the build listed (in dependency order), mounts the data disk
at the store's directory, brings up loopback and the interface from the
kernel command line (``ipv4=10.0.2.15/24 gateway=10.0.2.2``, or ``ipv4=dhcp``),
waits for the random pool, routes Ctrl-Alt-Del, the ACPI power button and Xen's shutdown
request to SIGTERM, runs the appliance with the kernel command line as an
option source, and powers off with the status on the console, whatever
happened.  In a container (or under ``build``'s tracing pass) only the last
part runs and the status becomes the exit status.

Timing lines (``init: boot ...``, ``init: ready ...``) give the boot breakdown
the benchmarks read from the console.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, TextIO, cast

from . import CONFIG_TOML, EARLY_STOP, EXT_DIR, IMAGE_CONFIG, MODULE_DIR, PYTHON, STATE_DIR
from .importer import install

__all__ = ["ReadyWatch", "is_vm", "main", "run_image"]

#: environment of the tracing pass and the bundle (never read in a VM)
ENV_CONFIG = "APPLIANCE_IMAGE_CONFIG"
ENV_TRACE = "APPLIANCE_TRACE"
#: set to 1 to force container behaviour even as PID 1 with no /proc
ENV_CONTAINER = "APPLIANCE_CONTAINER"

#: ``poweroff_cmd`` the kernel runs on Xen's "poweroff" request (xenbus
#: control/shutdown): no spaces inside the code, the kernel splits on them
XEN_POWEROFF_CMD = f"{PYTHON} -I -S -c __import__('os').kill(1,15)"
#: how long the init waits for the data disk to appear after virtio_blk loads
DISK_WAIT = 10.0

#: the ``ready`` record in the text format (``INFO  dns: ready ...``) or the JSON one
_READY = re.compile(r' INFO  [a-z0-9_.-]+: ready(?: |$)|"msg": "ready"')


def is_vm() -> bool:
    """PID 1 of a VM: nothing has mounted /proc yet (a container runtime has)."""
    if os.environ.get(ENV_CONTAINER) == "1":
        return False
    return os.getpid() == 1 and not os.path.exists("/proc/self")


def _uptime() -> float:
    """Seconds since boot: /proc/uptime's clock (and, near enough, the kernel
    log's), read to the nanosecond rather than /proc/uptime's hundredth."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _rss_kib() -> int:
    """This process's resident set (the whole appliance: it runs in PID 1)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _process_start() -> float:
    """Seconds after boot at which this process was forked (for PID 1, the
    kernel thread that later exec's the init: a fallback only)."""
    with open("/proc/self/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


class ReadyWatch(io.TextIOBase):
    """The appliance's log stream: passes every line to ``out`` and calls
    ``on_ready`` once, at the appliance's ``ready`` record."""

    def __init__(self, out: Any, on_ready: Callable[[], None]) -> None:
        super().__init__()
        self._out = out
        self._on_ready: Callable[[], None] | None = on_ready

    def write(self, text: str) -> int:
        self._out.write(text)
        if self._on_ready is not None and _READY.search(text):
            callback, self._on_ready = self._on_ready, None
            self._out.flush()
            callback()
        return len(text)

    def flush(self) -> None:
        self._out.flush()

    def isatty(self) -> bool:
        return bool(self._out.isatty())

    def writable(self) -> bool:
        return True


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _prepare_vm(config: dict[str, Any]) -> str:
    """The VM-only steps; returns the kernel command line meant for the appliance."""
    from . import vm

    vm.mount_basics()
    at_main = _uptime()
    exec_at = vm.init_exec_uptime()
    started = exec_at if exec_at is not None else _process_start()
    with open("/proc/cmdline") as f:
        keys, appliance_words = vm.parse_cmdline(f.read())
    loaded = vm.load_modules(MODULE_DIR, vm.for_this_machine(config.get("kernel_modules", [])), _say)
    disk = config.get("disk")
    if disk:
        deadline = time.monotonic() + DISK_WAIT
        while not os.path.exists(disk) and time.monotonic() < deadline:
            time.sleep(0.01)
        # nosuid/nodev/noexec: the disk holds the store, never anything to run
        vm.mount(disk, STATE_DIR, "ext4", 0x2 | 0x4 | 0x8)
    vm.configure_network(vm.NetConfig.from_keys(keys), _say)
    waited = vm.wait_for_entropy(_say)
    vm.disable_ctrl_alt_del()
    vm.watch_power_button(lambda: os.kill(1, signal.SIGTERM))
    try:
        with open("/proc/sys/kernel/poweroff_cmd", "w") as f:
            f.write(XEN_POWEROFF_CMD)
    except OSError:
        pass
    now = _uptime()
    _say(
        f"init: boot kernel={started:.3f}s python={at_main - started:.3f}s "
        f"setup={now - at_main:.3f}s entropy_wait={waited:.3f}s modules={','.join(loaded) or '-'}"
    )
    return appliance_words


def run_image(config: dict[str, Any], *, vm: bool, trace: str | None = None) -> int:
    """Run the appliance the image was built for; returns its exit status."""
    install(config.get("ext_dir", EXT_DIR))
    kernel_words = _prepare_vm(config) if vm else None
    import importlib

    if trace is not None:
        # The tracing pass runs as in a container; the VM steps' imports
        # (ctypes, fcntl, ...) must be recorded all the same.
        importlib.import_module("runtime.image.vm")

    from ..run import run

    appliance = importlib.import_module(config["module"]).APPLIANCE

    def on_ready() -> None:
        if vm:
            _say(f"init: ready uptime={_uptime():.3f}s rss={_rss_kib()}KiB")
        if trace is not None:
            os.kill(os.getpid(), signal.SIGTERM)  # the tracing pass stops once serving
        elif EARLY_STOP:
            # a stop asked for during start-up, now that the runtime handles it
            _say(f"init: {signal.Signals(EARLY_STOP[0]).name} came during start-up; stopping now")
            os.kill(os.getpid(), EARLY_STOP[0])

    # In a container, arguments after the image name are flags (the highest source).
    argv = ["--config", config.get("config", CONFIG_TOML), *([] if vm else sys.argv[1:])]
    environ = {} if vm else dict(os.environ)
    watch = cast(TextIO, ReadyWatch(sys.stderr, on_ready))
    status = run(appliance, argv, environ, kernel_cmdline=kernel_words, stderr=watch)
    if trace is not None:
        modules = {
            name: _origin(module) for name, module in sorted(sys.modules.items()) if module is not None
        }
        with open(trace, "w") as f:
            json.dump(modules, f, indent=0, sort_keys=True)
    return status


def _origin(module: Any) -> str | None:
    """Where a module came from: its spec's origin, else its ``__file__`` (a
    few packages, cryptography among them, leave some modules without a spec)."""
    origin = getattr(getattr(module, "__spec__", None), "origin", None)
    return origin if origin else getattr(module, "__file__", None)


def main() -> None:
    vm = is_vm()
    status = 1
    name = "appliance"
    try:
        path = IMAGE_CONFIG if vm else os.environ.get(ENV_CONFIG, IMAGE_CONFIG)
        with open(path) as f:
            config = json.load(f)
        name = config.get("appliance", name)
        status = run_image(config, vm=vm, trace=None if vm else os.environ.get(ENV_TRACE))
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        status = 1
    if not vm:
        sys.exit(status)
    _say(f"init: {name} exited with status {status}; powering off")
    from . import vm as vm_steps

    vm_steps.power_off()


if __name__ == "__main__":
    main()
