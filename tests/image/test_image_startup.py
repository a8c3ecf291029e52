"""What keeps an image small and its start-up short, checked without a VM:
the precompiled start-up work (runtime.image.codegen), the ssl stand-in, the
tracing pass's exclusions, the kernel modules a machine gets."""

from __future__ import annotations

import marshal
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runtime.build.freeze import BuildError, excluder, stand_in_source
from runtime.build.manifest import load_manifest
from runtime.image import codegen
from runtime.image.vm import for_this_machine

ROOT = Path(__file__).resolve().parents[2]

#: start-up work of the three kinds the table holds
WORK = textwrap.dedent(
    """
    import collections, dataclasses, re, typing

    @dataclasses.dataclass(frozen=True, slots=True)
    class Point:
        x: int
        y: int = 2

    Pair = collections.namedtuple("Pair", "left right")

    class Named(typing.NamedTuple):
        name: str
        size: int = 0

    WORD = re.compile(r"(?P<word>[a-z]+)(?:-(?P<n>\\d+))?", re.I)
    RAW = re.compile(rb"\\x00+(?P<tail>.)", re.S)
    assert Point(1) == Point(1, 2) and repr(Point(1)) == "Point(x=1, y=2)"
    assert Pair(1, 2).right == 2 and Named("a").size == 0
    assert WORD.match("Abc-12").groupdict() == {"word": "Abc", "n": "12"}
    assert RAW.search(b"a\\x00\\x00b").group("tail") == b"b"
    """
)


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-S", "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def record(tmp_path: Path, code: str) -> set[tuple[object, ...]]:
    path = tmp_path / "record.marshal"
    recorded = run_python("import runtime.image.codegen\n" + code, {codegen.ENV_RECORD: str(path)})
    assert recorded.returncode == 0, recorded.stderr
    return set(marshal.loads(path.read_bytes()))


def test_recorded_work_replays_from_the_table_with_no_compiler(tmp_path: Path) -> None:
    inputs = record(tmp_path, WORK)
    work = inputs - record(tmp_path, "")  # what WORK itself compiled (the runtime's own imports aside)
    assert {key[0] for key in work} == {"exec", "eval", "re"}
    assert ("re", rb"\x00+(?P<tail>.)", re.S) in work
    table = tmp_path / "generated.marshal"
    table.write_bytes(codegen.compile_table(inputs))
    (tmp_path / "work.marshal").write_bytes(marshal.dumps(sorted(work, key=repr)))
    # Replayed: WORK's inputs are all found (and used up), and it does what it did.
    replay = f"""
import marshal
from runtime.image import codegen
assert codegen.install({str(table)!r})
{WORK}
with open({str(tmp_path / "work.marshal")!r}, "rb") as f:
    work = {{tuple(key) for key in marshal.loads(f.read())}}
assert not work & set(codegen._table), sorted(map(repr, work & set(codegen._table)))
"""
    replayed = run_python(replay, {})
    assert replayed.returncode == 0, replayed.stderr


def test_table_holds_what_the_compilers_make() -> None:
    patterns = [
        ("re", r"(?P<a>x)|(?P<b>y)\b", 0),
        ("re", r"(?x) a  b # spaced", re.IGNORECASE),
        ("re", rb"[\x00-\x1f]+", 0),
    ]
    function = "def __create_fn__():\n def f(self):\n  return self\n return f"
    sources = [("exec", function), ("eval", "lambda a: a")]
    table = marshal.loads(codegen.compile_table([*patterns, *sources, *sources]))
    assert len(table) == 5  # duplicates folded
    for key in patterns:
        program = table[key]
        # Patterns compare equal when their flags, source and compiled program are equal.
        assert re._compiler._sre.compile(key[1], *program) == re._compiler.compile(key[1], key[2])  # type: ignore[attr-defined]
    for mode, source in sources:
        assert table[(mode, source)] == compile(source, "<string>", mode, dont_inherit=True)
    shuffled = reversed([*patterns, *sources])
    assert codegen.compile_table(shuffled) == codegen.compile_table([*sources, *patterns])


def test_install_without_a_table_changes_nothing(tmp_path: Path) -> None:
    probe = f"""
import collections, dataclasses
from runtime.image import codegen
assert not codegen.install({str(tmp_path / "none")!r})
assert "exec" not in vars(dataclasses) and "eval" not in vars(collections)
"""
    result = run_python(probe, {})
    assert result.returncode == 0, result.stderr


def test_ssl_stand_in_satisfies_importers_and_refuses_tls(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "ssl.py").write_text(Path(stand_in_source("ssl")).read_text())
    probe = """
import asyncio, asyncio.sslproto, ssl, uvloop
assert ssl.STAND_IN and issubclass(ssl.SSLWantReadError, ssl.SSLError)
for make in (ssl.SSLContext, ssl.create_default_context, ssl.MemoryBIO):
    try:
        make()
    except ssl.SSLError as exc:
        assert "built without TLS" in str(exc) and "stand_in" in str(exc)
    else:
        raise AssertionError(make)
"""
    result = run_python(probe, {"PYTHONPATH": os.pathsep.join([str(shadow), str(ROOT), *sys.path[1:]])})
    assert result.returncode == 0, result.stderr


def test_stand_ins_are_named_and_known() -> None:
    assert load_manifest("appliances.dns").stand_in == ("ssl",)
    with pytest.raises(BuildError, match="no such stand-in"):
        stand_in_source("nonesuch")
    with pytest.raises(BuildError):
        stand_in_source("os.path")


def test_tracing_pass_excluder_blocks_what_the_manifest_excludes() -> None:
    probe = excluder(("_hashlib", "xml.*", "sys")) + textwrap.dedent(
        """
        import hashlib, importlib
        assert type(hashlib.sha256()).__module__ == "_sha256"  # hashlib's fallback, as in the image
        for name in ("_hashlib", "xml", "xml.dom"):
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as exc:
                assert "excluded by the manifest" in str(exc)
            else:
                raise AssertionError(name)
        import sys, xmlrpc  # built-in modules and look-alike names are left alone
        """
    )
    result = run_python(probe, {})
    assert result.returncode == 0, result.stderr


def test_virtio_pci_is_loaded_only_where_there_is_pci(tmp_path: Path) -> None:
    names = ["virtio_ring", "virtio", "virtio_mmio", "virtio_pci_modern_dev", "virtio_pci", "virtio_net"]
    devices = tmp_path / "devices"
    assert for_this_machine(names, str(devices)) == ["virtio_ring", "virtio", "virtio_mmio", "virtio_net"]
    devices.mkdir()
    assert for_this_machine(names, str(devices)) == ["virtio_ring", "virtio", "virtio_mmio", "virtio_net"]
    (devices / "0000:00:03.0").mkdir()
    assert for_this_machine(names, str(devices)) == names
