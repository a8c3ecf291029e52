"""``python -m runtime``: list, describe, scaffold and run appliances.

python -m runtime list
python -m runtime describe dns
python -m runtime new NAME [--dir DIR]
python -m runtime run NAME [OPTIONS...]
python -m runtime build NAME -o DIR [--target qemu|xen|oci|bundle] [--data NAME=DIR] [--disk SIZE] [--report]
python -m runtime boot DIR [--forward udp:5353:53 ...]
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence

from .appliance import Appliance, discover, load
from .run import EXIT_CONFIG, EXIT_OK, run

__all__ = ["cli", "describe"]

USAGE = """usage: python -m runtime COMMAND

commands:
  list                     installed appliances
  describe NAME            an appliance's devices, data and options
  new NAME [--dir DIR]     write a working skeleton of a new appliance, with its test
  run NAME [OPTIONS...]    run an appliance (same as python -m appliances.NAME)
  build NAME -o DIR [...]  freeze an appliance into an image (--target qemu|xen|oci|bundle)
  boot DIR [--forward ...] boot a built image under QEMU
"""


def describe(appliance: Appliance) -> str:
    lines = [
        f"{appliance.name} {appliance.version}",
        f"  {appliance.summary}",
        f"  package: {appliance.package}",
    ]
    devices = [*sorted(appliance.devices), "clock", "random", "log", "metrics"]
    lines.append("  devices: " + ", ".join(devices))
    for spec in appliance.data:
        where = f"--{spec.option.replace('_', '-')} DIR or " if spec.option else ""
        default = f", default: embedded {spec.default}" if spec.default else ""
        lines.append(f"  data {spec.name}: {spec.help} ({where}--data {spec.name}=DIR{default})")
    lines.append(f"  workers: {'yes (SO_REUSEPORT)' if appliance.workers else 'single process'}")
    for command in appliance.commands:
        lines.append(f"  command {command.usage_line}: {command.help}")
    for command in appliance.console:
        lines.append(f"  console {command.usage_line}: {command.help}")
    lines.append("  options:")
    for option in appliance.all_options():
        default = option.show(option.default)
        lines.append(f"    {option.flag:<22} {option.kind.name:<12} default {default:<18} {option.help}")
    return "\n".join(lines)


def cli(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return EXIT_OK if args else EXIT_CONFIG
    command, rest = args[0], args[1:]
    if command == "list":
        found = _all_appliances()
        if not found:
            print("no appliances installed")
        for name in sorted(found):
            print(f"{name:<12} {found[name].summary}")
        return EXIT_OK
    if command in ("describe", "run") and rest:
        try:
            appliance = load(rest[0])
        except LookupError as exc:
            print(f"runtime: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        if command == "describe":
            print(describe(appliance))
            return EXIT_OK
        return run(appliance, rest[1:], os.environ)
    if command in ("build", "boot"):
        from .build.build import boot_main, build_main

        return build_main(rest) if command == "build" else boot_main(rest)
    if command == "new" and rest:
        from .scaffold import ScaffoldError, write_skeleton

        directory = "."
        if len(rest) == 3 and rest[1] == "--dir":
            directory = rest[2]
        elif len(rest) != 1:
            print(USAGE, end="", file=sys.stderr)
            return EXIT_CONFIG
        try:
            written = write_skeleton(rest[0], directory)
        except ScaffoldError as exc:
            print(f"runtime new: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        for path in written:
            print(f"wrote {path}")
        print(f"run it:   python -m appliances.{rest[0]}")
        print(f"test it:  python -m pytest tests/{rest[0]}")
        return EXIT_OK
    print(USAGE, end="", file=sys.stderr)
    return EXIT_CONFIG


def _all_appliances() -> dict[str, Appliance]:
    """Entry-point appliances, plus those in the ``appliances`` namespace of a
    source checkout (so ``list`` works before ``pip install``)."""
    found = discover()
    # Looked up by name: the runtime depends on no appliance.
    spec = importlib.util.find_spec("appliances")
    for path in spec.submodule_search_locations or [] if spec is not None else []:
        try:
            names = sorted(os.listdir(path))
        except OSError:
            continue
        for name in names:
            if name not in found and os.path.isfile(os.path.join(path, name, "__init__.py")):
                try:
                    found[name] = load(name)
                except (LookupError, ImportError):
                    continue
    return found


if __name__ == "__main__":
    sys.exit(cli())
