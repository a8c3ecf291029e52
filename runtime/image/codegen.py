"""Precompiled what modules compile as they are imported: the methods that
dataclasses and namedtuples generate, and regular expressions.

``@dataclass`` writes the source of ``__init__``, ``__repr__``, ``__eq__``...
for each class it decorates and compiles it with ``exec``;
``collections.namedtuple`` does the same for ``__new__`` with ``eval``; and a
module-level ``re.compile`` runs the regular expression parser and compiler,
both written in Python.  On the DNS appliance's way to ``ready`` that is the
compiler run some 330 times and the regex compiler some 50, over a quarter of
the start-up's work (and under QEMU's TCG the compiler's machine code to
translate besides): about 0.3 s of a TCG boot.

So the build's tracing pass records those inputs (``ENV_RECORD``), the build
compiles them with the same interpreter into one marshal file in the image
(``GENERATED_CODE``), and there ``install`` makes the three call sites take
their result from that table:

* ``dataclasses``' ``exec`` and ``collections``' ``eval`` (module globals that
  shadow the builtins for those two modules only) get the code object the
  compiler makes of that source (``"<string>"``, no inherited flags, as an
  ``exec`` of a string there does);
* ``re._compiler.compile`` gets the arguments its last line passes to
  ``_sre.compile`` (flags, program, group count and names).

Same inputs, same results; an input the table lacks goes to the compiler as
before.  ``install`` runs when this module is imported, first thing in
``runtime/__init__`` (the image's init is ``runtime.image.init``: nothing of
ours runs earlier); on a host it costs one failed ``open``.
"""

from __future__ import annotations

import builtins
import marshal
import os
import sys
from collections.abc import Iterable
from typing import Any

from . import GENERATED_CODE

__all__ = ["ENV_RECORD", "INSTALLED", "compile_table", "install"]

#: set (to a file) in the build's tracing pass: the inputs are written there at exit (marshal)
ENV_RECORD = "APPLIANCE_CODEGEN_RECORD"

#: a key is ("exec" | "eval", source) or ("re", pattern, flags); in an image,
#: entries are dropped as they are used
_table: dict[tuple[Any, ...], Any] = {}
_recorded: list[tuple[Any, ...]] = []
_recording = False
#: re._compiler.compile as it was, _sre.compile, and re's DEBUG flag (set by install)
_regex_compile: Any = None
_sre_compile: Any = None
_DEBUG = 128


def _code(source: str, mode: str) -> Any:
    code = _table.pop((mode, source), None)
    if code is None:
        if _recording:
            _recorded.append((mode, source))
        code = compile(source, "<string>", mode, dont_inherit=True)
    return code


def _namespaces(globals: Any, locals: Any) -> tuple[Any, Any]:
    """What the builtins default to: the caller's namespaces (our caller's caller)."""
    if globals is None:
        frame = sys._getframe(2)
        globals = frame.f_globals
        if locals is None:
            locals = frame.f_locals
    return globals, locals


def _exec(source: Any, globals: Any = None, locals: Any = None, /) -> None:
    globals, locals = _namespaces(globals, locals)
    builtins.exec(_code(source, "exec") if isinstance(source, str) else source, globals, locals)


def _eval(source: Any, globals: Any = None, locals: Any = None, /) -> Any:
    globals, locals = _namespaces(globals, locals)
    return builtins.eval(_code(source, "eval") if isinstance(source, str) else source, globals, locals)


def _regex(pattern: Any, flags: int = 0) -> Any:
    if isinstance(pattern, (str, bytes)) and not flags & _DEBUG:
        key = ("re", pattern, int(flags))
        program = _table.pop(key, None)
        if program is not None:
            return _sre_compile(pattern, *program)
        if _recording:
            _recorded.append(key)
    return _regex_compile(pattern, flags)


def _regex_program(pattern: str | bytes, flags: int) -> tuple[Any, ...]:
    """What ``re._compiler.compile`` (3.11) passes to ``_sre.compile`` after the pattern."""
    import re  # noqa: F401  (its internals, by their 3.11 names:)

    compiler: Any = sys.modules["re._compiler"]
    parsed = sys.modules["re._parser"].parse(pattern, flags)
    code = compiler._code(parsed, flags)
    groupindex = parsed.state.groupdict
    indexgroup: list[str | None] = [None] * parsed.state.groups
    for name, index in groupindex.items():
        indexgroup[index] = name
    # plain ints: the opcodes are int subclasses, which marshal refuses
    program = [int(word) for word in code]
    groups = int(parsed.state.groups) - 1
    return (int(flags | parsed.state.flags), program, groups, dict(groupindex), tuple(indexgroup))


def _write_record(path: str) -> None:
    with open(path, "wb") as f:
        f.write(marshal.dumps(_recorded))


def install(path: str = GENERATED_CODE) -> bool:
    """Use the table at ``path`` (an image), or record (the tracing pass);
    False, and nothing changed, elsewhere."""
    global _recording, _regex_compile, _sre_compile, _DEBUG
    import collections

    if getattr(collections, "eval", None) is _eval:
        return True  # installed already
    record = os.environ.get(ENV_RECORD)
    if not record:
        try:
            with open(path, "rb") as f:
                data = f.read()  # whole: marshal.load(f) would read it piece by piece, 10x slower
        except FileNotFoundError:
            return False
        _table.update(marshal.loads(data))
    _recording = bool(record)
    # collections and re first: dataclasses' own imports (inspect, dis) make
    # namedtuples and compile regular expressions.
    collections.eval = _eval  # type: ignore[attr-defined]
    import re  # noqa: F401  (for re._compiler, which it imports)

    compiler: Any = sys.modules["re._compiler"]
    _regex_compile = compiler.compile
    _sre_compile = compiler._sre.compile
    _DEBUG = compiler.SRE_FLAG_DEBUG
    compiler.compile = _regex
    import dataclasses

    dataclasses.exec = _exec  # type: ignore[attr-defined]
    if record:
        import atexit

        atexit.register(_write_record, record)
    return True


def compile_table(inputs: Iterable[tuple[Any, ...]]) -> bytes:
    """The marshal file for ``GENERATED_CODE`` from the recorded inputs:
    sorted, so that the same inputs give the same bytes."""
    table: dict[tuple[Any, ...], Any] = {}
    for key in sorted(set(inputs), key=repr):
        if key[0] == "re":
            key = ("re", key[1], int(key[2]))  # a plain int: marshal refuses RegexFlag
            table[key] = _regex_program(key[1], key[2])
        else:
            table[key] = compile(key[1], "<string>", key[0], dont_inherit=True)
    return marshal.dumps(table)


#: whether this process takes that work from the table (or records it)
INSTALLED = install()
