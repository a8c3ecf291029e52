"""Freeze: what the appliance really imports, compiled to one archive.

1. Trace: start the image's own init in a subprocess, as in a container, on
   the host's files (``--listen 127.0.0.1:0``, a temporary state directory);
   it stops itself at the appliance's ``ready`` and writes ``sys.modules``.
   Tracing the real start-up (not a static import scan) catches lazy imports
   and skips code that is never run.
2. Select: the traced set, plus the manifest's ``include``, minus its
   ``exclude``; modules built into (or frozen in) the interpreter need no file.
3. Compile: one sourceless ``.pyc`` per module (unchecked hash-based pycs,
   PEP 552: no timestamp, so the same source gives the same bytes), stored in
   a zip with fixed dates that ``zipimport`` reads; extension modules are
   listed apart, they are copied beside the archive.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import io
import json
import os
import pkgutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib._bootstrap_external import _code_to_hash_pyc  # type: ignore[attr-defined]

from ..appliance import Appliance
from .manifest import Manifest, matches

__all__ = ["BuildError", "Frozen", "freeze", "toml_text", "trace_imports"]

#: the tracing pass gets this long to reach ``ready`` (zone loading, cold caches)
TRACE_TIMEOUT = 120.0
#: modules never frozen: the tracing harness's own entry point
_NEVER = ("__main__",)
#: always frozen: the init runs as ``__main__`` in the tracing pass, so it is not
#: in the traced ``sys.modules`` under its own name
ALWAYS = ("runtime.image.init",)


class BuildError(Exception):
    """The build cannot go on; the message says why, in one line or a log."""


@dataclass
class Frozen:
    #: archive path (``runtime/run.pyc``) -> pyc bytes
    modules: dict[str, bytes] = field(default_factory=dict)
    #: dotted name -> host path of the extension module
    extensions: dict[str, str] = field(default_factory=dict)

    def archive(self) -> bytes:
        """The zip read by ``zipimport``: entries sorted, dated 1980-01-01,
        stored (the initramfs compresses the whole; zipimport reads stored
        members without zlib)."""
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
            for path in sorted(self.modules):
                info = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                info.create_system = 3
                archive.writestr(info, self.modules[path])
        return out.getvalue()


def toml_text(values: Mapping[str, object]) -> str:
    """Flat TOML for option values (strings, numbers, booleans, lists of them):
    JSON's literals and string escapes are valid TOML for these."""
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in sorted(values.items()))


def trace_imports(
    appliance: Appliance,
    data_dirs: Mapping[str, str],
    options: Mapping[str, object],
    *,
    python: str = sys.executable,
    timeout: float = TRACE_TIMEOUT,
) -> dict[str, str | None]:
    """``{module: origin}`` after the appliance started and stopped."""
    with tempfile.TemporaryDirectory(prefix="appliance-trace-") as tmp:
        values = dict(options)
        values.update(
            listen=["127.0.0.1:0"],
            state_dir=os.path.join(tmp, "state"),
            data=[f"{name}={path}" for name, path in sorted(data_dirs.items())],
        )
        if not appliance.listen:
            values.pop("listen")
        toml = os.path.join(tmp, "appliance.toml")
        with open(toml, "w") as f:
            f.write(toml_text(values))
        config = os.path.join(tmp, "appliance.json")
        with open(config, "w") as f:
            json.dump(
                {
                    "appliance": appliance.name,
                    "module": appliance.package,
                    "config": toml,
                    "ext_dir": os.path.join(tmp, "no-ext"),
                },
                f,
            )
        trace = os.path.join(tmp, "modules.json")
        env = {k: v for k, v in os.environ.items() if not k.startswith(appliance.name.upper() + "_")}
        env.update(
            APPLIANCE_IMAGE_CONFIG=config,
            APPLIANCE_TRACE=trace,
            PYTHONPATH=os.pathsep.join(_import_roots(appliance)),
        )
        env.pop("PYTHONSTARTUP", None)
        # -S: no site, as in the image, so site's own imports are not recorded.
        command = [python, "-S", "-m", "runtime.image.init"]
        try:
            result = subprocess.run(
                command, env=env, cwd=tmp, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise BuildError(f"tracing {appliance.name}: not ready within {timeout:.0f}s") from exc
        if result.returncode != 0 or not os.path.exists(trace):
            raise BuildError(
                f"tracing {appliance.name} failed (status {result.returncode}):\n{result.stderr.strip()}"
            )
        with open(trace) as f:
            modules: dict[str, str | None] = json.load(f)
    return modules


def _import_roots(appliance: Appliance) -> list[str]:
    """sys.path for the tracing pass: where ``runtime`` and the appliance's
    package come from (an editable install finds them through a meta path
    hook that ``-S`` leaves out), then this process's own path."""
    roots: list[str] = []
    for package in ("runtime", appliance.package.partition(".")[0]):
        spec = importlib.util.find_spec(package)
        for location in (spec.submodule_search_locations or []) if spec else []:
            roots.append(os.path.dirname(os.path.abspath(location)))
    roots.extend(os.path.abspath(p) for p in sys.path if p)
    return list(dict.fromkeys(roots))


def _expand(pattern: str) -> dict[str, str | None]:
    """A manifest ``include`` entry as ``{module: origin}``."""
    base = pattern[:-2] if pattern.endswith(".*") else pattern
    spec = importlib.util.find_spec(base)
    if spec is None:
        raise BuildError(f"manifest includes {pattern!r}, which is not importable here")
    found: dict[str, str | None] = {base: spec.origin}
    if pattern.endswith(".*") and spec.submodule_search_locations:
        for info in pkgutil.walk_packages(spec.submodule_search_locations, prefix=base + "."):
            sub = importlib.util.find_spec(info.name)
            if sub is not None:
                found[info.name] = sub.origin
    return found


def select(traced: Mapping[str, str | None], manifest: Manifest) -> dict[str, str | None]:
    chosen = dict(traced)
    for pattern in (*ALWAYS, *manifest.include):
        chosen.update(_expand(pattern))
    for name in list(chosen):
        parent = name.rpartition(".")[0]
        # a package's parents must be importable for the package to be
        while parent and parent not in chosen:
            parent_spec = importlib.util.find_spec(parent)
            chosen[parent] = parent_spec.origin if parent_spec is not None else None
            parent = parent.rpartition(".")[0]
    return {
        name: origin
        for name, origin in sorted(chosen.items())
        if name not in _NEVER and not matches(name, manifest.exclude)
    }


def _compile(name: str, origin: str, package: bool) -> tuple[str, bytes]:
    with open(origin, "rb") as f:
        source = f.read()
    stem = name.replace(".", "/") + ("/__init__" if package else "")
    # The code's file name is the module's path in the archive: tracebacks stay
    # readable and no host path ends up in the image.
    code = compile(source, f"{stem}.py", "exec", dont_inherit=True)
    pyc = _code_to_hash_pyc(code, importlib.util.source_hash(source), checked=False)
    return f"{stem}.pyc", bytes(pyc)


def freeze(modules: Mapping[str, str | None]) -> Frozen:
    frozen = Frozen()
    packages = {name.rpartition(".")[0] for name in modules if "." in name}
    for name, origin in modules.items():
        if origin in ("built-in", "frozen"):
            continue
        if origin is None or origin == "namespace":
            if name in packages:  # a namespace package: zipimport needs an __init__
                frozen.modules[name.replace(".", "/") + "/__init__.pyc"] = bytes(
                    _code_to_hash_pyc(compile("", f"{name}/__init__.py", "exec"), b"\0" * 8, checked=False)
                )
            continue
        if any(origin.endswith(suffix) for suffix in importlib.machinery.EXTENSION_SUFFIXES):
            if os.path.basename(origin).partition(".")[0] != name.rpartition(".")[2]:
                continue  # a submodule an extension registers itself (cryptography's _rust.*)
            frozen.extensions[name] = origin
        elif origin.endswith(".py"):
            path, data = _compile(name, origin, os.path.basename(origin) == "__init__.py")
            frozen.modules[path] = data
        else:
            raise BuildError(f"module {name}: cannot freeze {origin}")
    return frozen
