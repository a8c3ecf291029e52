"""A file tree held in memory, written out reproducibly as a cpio archive
(initramfs), a tar layer (OCI) or a directory (``docker build``).

Every entry has a fixed owner (root) and a fixed mtime (``SOURCE_DATE_EPOCH``,
else 0), and every writer emits entries sorted by path, so the same inputs
give byte-identical archives.
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Entry", "Tree", "build_epoch"]

FILE, DIR, SYMLINK, CHAR = "file", "dir", "symlink", "char"


def build_epoch() -> int:
    """``SOURCE_DATE_EPOCH`` (reproducible-builds.org), else 0."""
    try:
        return int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    except ValueError:
        return 0


@dataclass(frozen=True)
class Entry:
    path: str  # relative, no leading slash
    kind: str
    mode: int
    data: bytes = b""
    target: str = ""  # symlink target
    device: tuple[int, int] = (0, 0)  # major, minor for a char device
    #: what the entry is, for the size report ("module", "extension", "library", "data", ...)
    role: str = ""
    uid: int = 0


class Tree:
    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def _parents(self, path: str) -> None:
        parent = os.path.dirname(path)
        while parent and parent not in self.entries:
            self.entries[parent] = Entry(parent, DIR, 0o755)
            parent = os.path.dirname(parent)

    def add(self, entry: Entry) -> None:
        path = entry.path.strip("/")
        if not path:
            raise ValueError("empty path")
        self._parents(path)
        self.entries[path] = Entry(
            path, entry.kind, entry.mode, entry.data, entry.target, entry.device, entry.role, entry.uid
        )

    def file(self, path: str, data: bytes, mode: int = 0o644, role: str = "", uid: int = 0) -> None:
        self.add(Entry(path, FILE, mode, data, role=role, uid=uid))

    def dir(self, path: str, mode: int = 0o755, uid: int = 0) -> None:
        """A directory (``uid`` and gid alike: the owner of a writable one)."""
        self.add(Entry(path, DIR, mode, uid=uid))

    def symlink(self, path: str, target: str) -> None:
        self.add(Entry(path, SYMLINK, 0o777, target=target))

    def char(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self.add(Entry(path, CHAR, mode, device=(major, minor)))

    def sorted(self) -> list[Entry]:
        return [self.entries[p] for p in sorted(self.entries)]

    def files(self) -> list[Entry]:
        return [e for e in self.sorted() if e.kind == FILE]

    @property
    def size(self) -> int:
        return sum(len(e.data) for e in self.entries.values())

    # ----------------------------------------------------------------- writers

    def cpio(self) -> bytes:
        """SVR4 "newc" cpio, what the kernel unpacks as an initramfs
        (Documentation/driver-api/early-userspace/buffer-format.rst)."""
        out = io.BytesIO()
        mtime = build_epoch()
        for ino, entry in enumerate(self.sorted(), start=1):
            body = (
                entry.data if entry.kind == FILE else entry.target.encode() if entry.kind == SYMLINK else b""
            )
            kind_bits = {FILE: 0o100000, DIR: 0o040000, SYMLINK: 0o120000, CHAR: 0o020000}[entry.kind]
            _cpio_entry(out, entry.path, ino, kind_bits | entry.mode, entry.uid, mtime, body, entry.device)
        _cpio_entry(out, "TRAILER!!!", 0, 0, 0, 0, b"", (0, 0))
        return out.getvalue()

    def tar(self, *, prefix: str = "") -> bytes:
        """A POSIX tar of the tree (an OCI layer), entries sorted, owner root."""
        out = io.BytesIO()
        mtime = build_epoch()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for entry in self.sorted():
                info = tarfile.TarInfo(prefix + entry.path)
                info.mode = entry.mode
                info.mtime = mtime
                info.uid = info.gid = entry.uid
                info.uname = info.gname = ""
                if entry.kind == FILE:
                    info.size = len(entry.data)
                    tar.addfile(info, io.BytesIO(entry.data))
                    continue
                if entry.kind == DIR:
                    info.type = tarfile.DIRTYPE
                elif entry.kind == SYMLINK:
                    info.type = tarfile.SYMTYPE
                    info.linkname = entry.target
                else:
                    info.type = tarfile.CHRTYPE
                    info.devmajor, info.devminor = entry.device
                tar.addfile(info)
        return out.getvalue()

    def write_dir(self, root: Path) -> None:
        """The tree as files under ``root`` (device nodes are left out: a
        container runtime provides /dev)."""
        for entry in self.sorted():
            path = root / entry.path
            if entry.kind == DIR:
                path.mkdir(parents=True, exist_ok=True)
                path.chmod(entry.mode)
            elif entry.kind == FILE:
                path.write_bytes(entry.data)
                path.chmod(entry.mode)
            elif entry.kind == SYMLINK:
                if path.is_symlink() or path.exists():
                    path.unlink()
                path.symlink_to(entry.target)


def _cpio_entry(
    out: io.BytesIO,
    name: str,
    ino: int,
    mode: int,
    uid: int,
    mtime: int,
    body: bytes,
    device: tuple[int, int],
) -> None:
    encoded = name.encode() + b"\0"
    links = 2 if mode & 0o040000 else 1
    fields = (ino, mode, uid, uid, links, mtime, len(body), 0, 0, device[0], device[1], len(encoded), 0)
    out.write(b"070701" + b"".join(b"%08X" % value for value in fields))
    out.write(encoded)
    out.write(b"\0" * (-(110 + len(encoded)) % 4))
    out.write(body)
    out.write(b"\0" * (-len(body) % 4))
