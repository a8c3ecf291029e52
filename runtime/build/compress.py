"""Initramfs compression.  The cloud kernel unpacks gzip and zstd
(CONFIG_RD_GZIP, CONFIG_RD_ZSTD); zstd is smaller and faster to unpack (see
bench/image), so it is the default when the ``zstd`` tool is there.  Both are
written without timestamps or file names, so output depends on input only."""

from __future__ import annotations

import gzip
import shutil
import subprocess

__all__ = ["COMPRESSIONS", "compress", "default_compression"]

COMPRESSIONS = ("zstd", "gzip", "none")
#: zstd level: 19 is the highest "normal" level; the kernel's decompressor
#: window limit (8 MB for level <= 19 at this size) is respected without --ultra
ZSTD_LEVEL = 19


def default_compression() -> str:
    return "zstd" if shutil.which("zstd") else "gzip"


def compress(data: bytes, method: str) -> bytes:
    if method == "none":
        return data
    if method == "gzip":
        return gzip.compress(data, compresslevel=9, mtime=0)
    if method == "zstd":
        # --no-check: the kernel's zstd does not need the checksum; -T1 keeps the
        # frame layout independent of the machine's core count.
        result = subprocess.run(
            ["zstd", f"-{ZSTD_LEVEL}", "-T1", "-q", "-c", "--no-check"],
            input=data,
            capture_output=True,
            check=True,
        )
        return result.stdout
    raise ValueError(f"unknown compression {method!r} (use {', '.join(COMPRESSIONS)})")
