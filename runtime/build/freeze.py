"""Freeze: what the appliance really imports, compiled to bytecode.

1. Trace: start the image's own init in a subprocess, as in a container, on
   the host's files (``--listen 127.0.0.1:0``, a temporary state directory);
   it stops itself at the appliance's ``ready`` and writes ``sys.modules``.
   Tracing the real start-up (not a static import scan) catches lazy imports
   and skips code that is never run.  The manifest's stand-ins take their
   modules' names and its excluded modules cannot be imported, as in the image.
2. Select: the traced set, plus the manifest's ``include``, minus its
   ``exclude``; modules built into (or frozen in) the interpreter need no file.
3. Compile: one sourceless ``.pyc`` per module (unchecked hash-based pycs,
   PEP 552: no timestamp, so the same source gives the same bytes), laid out
   as the standard library's directory in an image and as a zip in a bundle;
   extension modules are listed apart, they are copied as files.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import marshal
import os
import pkgutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib._bootstrap_external import _code_to_hash_pyc  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

from ..appliance import Appliance
from ..image.codegen import ENV_RECORD, compile_table
from .manifest import Manifest, load_manifest, matches

__all__ = [
    "STAND_INS",
    "BuildError",
    "Frozen",
    "Trace",
    "compile_module",
    "excluder",
    "freeze",
    "stand_in_source",
    "toml_text",
    "trace",
    "trace_imports",
]

#: the tracing pass gets this long to reach ``ready`` (zone loading, cold caches)
TRACE_TIMEOUT = 120.0
#: modules never frozen: the tracing harness's own entry point
_NEVER = ("__main__",)
#: always frozen: the init runs as ``__main__`` in the tracing pass, so it is not
#: in the traced ``sys.modules`` under its own name
ALWAYS = ("runtime.image.init",)
#: the stand-ins a manifest can name (``stand_in = ["ssl"]``), one ``NAME.py`` each
STAND_INS = Path(__file__).with_name("standins")

#: The tracing pass's ``-c`` program.  It runs before anything is imported but
#: ``sys`` (so it adds nothing to the trace) and makes the manifest's excluded
#: modules fail to import as they do in the image, so the trace follows the
#: same fallbacks.  Built-in modules are never blocked: the image has them too.
_EXCLUDER = """\
import sys
class ExcludedFinder:
    def find_spec(self, name, path=None, target=None):
        if name not in sys.builtin_module_names and (name in {exact!r} or name.startswith({prefixes!r})):
            raise ModuleNotFoundError(f"No module named {{name!r}} (excluded by the manifest)", name=name)
        return None
sys.meta_path.insert(0, ExcludedFinder())
"""
_RUN_INIT = """\
import runpy
runpy.run_module("runtime.image.init", run_name="__main__", alter_sys=True)
"""


class BuildError(Exception):
    """The build cannot go on; the message says why, in one line or a log."""


@dataclass
class Frozen:
    #: path under a sys.path entry (``runtime/run.pyc``) -> pyc bytes
    modules: dict[str, bytes] = field(default_factory=dict)
    #: dotted name -> host path of the extension module
    extensions: dict[str, str] = field(default_factory=dict)
    #: the marshal table of generated code (``runtime.image.codegen``), empty for none
    generated: bytes = b""


def toml_text(values: Mapping[str, object]) -> str:
    """Flat TOML for option values (strings, numbers, booleans, lists of them):
    JSON's literals and string escapes are valid TOML for these."""
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in sorted(values.items()))


def stand_in_source(name: str) -> str:
    """The source of the stand-in for top-level module ``name``."""
    path = STAND_INS / f"{name}.py"
    if "." in name or name.startswith("_") or not path.is_file():
        known = ", ".join(sorted(p.stem for p in STAND_INS.glob("[!_]*.py"))) or "none"
        raise BuildError(f"manifest stand_in {name!r}: no such stand-in (there are: {known})")
    return str(path)


def excluder(exclude: tuple[str, ...]) -> str:
    """Python that makes the modules matching ``exclude`` fail to import."""
    exact = tuple(sorted(p[:-2] if p.endswith(".*") else p for p in exclude))
    prefixes = tuple(sorted(p[:-1] for p in exclude if p.endswith(".*")))
    return _EXCLUDER.format(exact=exact, prefixes=prefixes)


@dataclass(frozen=True)
class Trace:
    #: ``{module: origin}``; a stand-in's origin is its source in ``runtime/build/standins``
    modules: dict[str, str | None]
    #: what was compiled on the way, for ``runtime.image.codegen``: ``("exec" | "eval", source)``
    #: for dataclasses' and namedtuples' methods, ``("re", pattern, flags)`` for regular expressions
    generated: tuple[tuple[Any, ...], ...] = ()


def trace_imports(
    appliance: Appliance,
    data_dirs: Mapping[str, str],
    options: Mapping[str, object],
    *,
    manifest: Manifest | None = None,
    python: str = sys.executable,
    timeout: float = TRACE_TIMEOUT,
) -> dict[str, str | None]:
    """``{module: origin}`` after the appliance started and stopped (``trace``'s modules)."""
    return trace(appliance, data_dirs, options, manifest=manifest, python=python, timeout=timeout).modules


def trace(
    appliance: Appliance,
    data_dirs: Mapping[str, str],
    options: Mapping[str, object],
    *,
    manifest: Manifest | None = None,
    python: str = sys.executable,
    timeout: float = TRACE_TIMEOUT,
) -> Trace:
    """What the appliance imported (and generated) on its way to ``ready``,
    with the manifest's (by default the appliance's own) stand-ins and
    exclusions in force."""
    if manifest is None:
        manifest = load_manifest(appliance.package)
    stand_ins = {name: stand_in_source(name) for name in manifest.stand_in}
    with tempfile.TemporaryDirectory(prefix="appliance-trace-") as tmp:
        shadow = os.path.join(tmp, "stand-ins")
        os.mkdir(shadow)
        for name, source in stand_ins.items():
            with open(source, "rb") as src, open(os.path.join(shadow, f"{name}.py"), "wb") as dst:
                dst.write(src.read())
        values = dict(options)
        values.update(
            listen=["127.0.0.1:0"],
            state_dir=os.path.join(tmp, "state"),
            data=[f"{name}={path}" for name, path in sorted(data_dirs.items())],
        )
        if not appliance.listen:
            values.pop("listen")
        # The metrics endpoint on, so that what it imports (h11) is in the image
        # for a boot that switches it on (metrics_listen= on the kernel command line).
        if any(option.name == "metrics_listen" for option in appliance.all_options()):
            values["metrics_listen"] = "127.0.0.1:0"
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
        generated = os.path.join(tmp, "generated.marshal")
        env = {k: v for k, v in os.environ.items() if not k.startswith(appliance.name.upper() + "_")}
        env.update(
            APPLIANCE_IMAGE_CONFIG=config,
            APPLIANCE_TRACE=trace,
            # the stand-ins first: they shadow the standard modules of their names
            PYTHONPATH=os.pathsep.join([shadow, *_import_roots(appliance)]),
        )
        env[ENV_RECORD] = generated
        env.pop("PYTHONSTARTUP", None)
        # -S: no site, as in the image, so site's own imports are not recorded.
        command = [python, "-S", "-c", excluder(manifest.exclude) + _RUN_INIT]
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
        for name, source in stand_ins.items():
            if name not in modules:
                continue  # never imported: nothing to stand in for
            if modules[name] != os.path.join(shadow, f"{name}.py"):
                raise BuildError(f"stand-in {name}: the tracing pass imported {name} from {modules[name]}")
            modules[name] = source
        with open(generated, "rb") as f:
            inputs = tuple(tuple(key) for key in marshal.loads(f.read()))
    return Trace(modules, inputs)


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


def compile_module(name: str, origin: str) -> tuple[str, bytes]:
    """``(path under a sys.path entry, pyc bytes)`` of module ``name`` from its source."""
    return _compile(name, origin, os.path.basename(origin) == "__init__.py")


def _compile(name: str, origin: str, package: bool) -> tuple[str, bytes]:
    with open(origin, "rb") as f:
        source = f.read()
    stem = name.replace(".", "/") + ("/__init__" if package else "")
    # The code's file name is the module's path in the archive: tracebacks stay
    # readable and no host path ends up in the image.
    code = compile(source, f"{stem}.py", "exec", dont_inherit=True)
    pyc = _code_to_hash_pyc(code, importlib.util.source_hash(source), checked=False)
    return f"{stem}.pyc", bytes(pyc)


def freeze(modules: Mapping[str, str | None], generated: Sequence[tuple[Any, ...]] = ()) -> Frozen:
    frozen = Frozen(generated=compile_table(generated) if generated else b"")
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
