"""Shared libraries an ELF file needs, found the way the loader finds them.

``ldd`` runs the host's loader in list mode, so RUNPATH, the multiarch
directories and ``ld.so.cache`` are honoured exactly as at run time.  The
interpreter and each extension module are asked; the union, plus the loader
itself, is everything the image takes from the host besides the interpreter.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable

__all__ = ["needed_libraries", "strip"]

_LINE = re.compile(r"^\s*(?:(\S+)\s+=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)$")


def needed_libraries(binaries: Iterable[str]) -> dict[str, str]:
    """``{path in the image: host file}`` for every library (and the loader)
    the binaries load.  Image paths are the host's resolved paths, so the
    loader's default search finds them without an ld.so.cache; libraries from
    elsewhere (a pyenv's libpython) go to the multiarch directory."""
    found: dict[str, str] = {}
    for binary in sorted(set(binaries)):
        result = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"ldd {binary}: {result.stderr.strip() or result.stdout.strip()}")
        for line in result.stdout.splitlines():
            match = _LINE.match(line)
            if match is None:
                continue
            soname, path = match.groups()
            host = os.path.realpath(path)
            if soname is None:  # the loader: keep its PT_INTERP path
                found[path] = host
            elif path.startswith(("/lib/", "/usr/lib/", "/lib64/")):
                found[os.path.join(os.path.dirname(path), soname)] = host
            else:
                found[f"/lib/x86_64-linux-gnu/{soname}"] = host
    return dict(sorted(found.items()))


def strip(data_path: str, out_path: str) -> None:
    """Debug symbols and the symbol table are dead weight in an image (the
    dynamic symbols the loader needs stay)."""
    subprocess.run(["strip", "--strip-unneeded", "-o", out_path, data_path], check=True)
