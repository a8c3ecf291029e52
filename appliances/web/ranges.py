"""Byte ranges (RFC 9110 §14): parsing ``Range`` and laying out 206 content.

Choices, compared with nginx: a ``Range`` we cannot parse, or one that is not
in bytes, is ignored and the whole representation is sent (RFC 9110 §14.2
allows ignoring it; nginx answers 416 for some malformed ones).  Overlapping
and adjacent ranges are merged and the result sorted (§14.2: "a server MAY
coalesce"), which also defeats the many-overlapping-ranges amplification
(CVE-2011-3192); more than ``MAX_RANGES`` distinct ranges and we send the
whole representation (Apache's MaxRanges policy; nginx's max_ranges is off by
default).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["MAX_RANGES", "UNSATISFIABLE", "multipart_layout", "parse_range"]

#: distinct ranges we serve as multipart/byteranges; beyond, a 200
MAX_RANGES = 16
#: specs we even look at (a longer list is ignored before any work)
_MAX_SPECS = 100
UNSATISFIABLE: Final = "unsatisfiable"

_SPEC = re.compile(rb"[ \t]*(?:([0-9]{1,18})-([0-9]{0,18})|-([0-9]{1,18}))[ \t]*")


def parse_range(value: bytes, size: int) -> list[tuple[int, int]] | str | None:
    """``[(first, last), ...]`` (inclusive, sorted, merged), ``UNSATISFIABLE``,
    or ``None`` when the field is to be ignored."""
    unit, eq, specs = value.partition(b"=")
    if not eq or unit.strip().lower() != b"bytes":
        return None
    items = specs.split(b",")
    if len(items) > _MAX_SPECS:
        return None
    ranges: list[tuple[int, int]] = []
    seen_spec = False
    for item in items:
        if not item.strip(b" \t"):
            continue  # RFC 9110 §5.6.1: empty list elements are ignored
        m = _SPEC.fullmatch(item)
        if m is None:
            return None
        seen_spec = True
        first, last, suffix = m.groups()
        if suffix is not None:
            length = int(suffix)
            if length == 0 or size == 0:
                continue  # §14.1.1: a zero-length suffix is unsatisfiable
            ranges.append((max(0, size - length), size - 1))
            continue
        start = int(first)
        end = int(last) if last else size - 1
        if last and end < start:
            return None  # §14.1.1: last-pos < first-pos makes the spec invalid
        if start >= size:
            continue  # unsatisfiable on its own
        ranges.append((start, min(end, size - 1)))
    if not seen_spec:
        return None
    if not ranges:
        return UNSATISFIABLE
    ranges.sort()
    merged = [ranges[0]]
    for start, end in ranges[1:]:
        last_start, last_end = merged[-1]
        if start <= last_end + 1:
            merged[-1] = (last_start, max(last_end, end))
        else:
            merged.append((start, end))
    if len(merged) > MAX_RANGES:
        return None
    return merged


def multipart_layout(
    ranges: list[tuple[int, int]], size: int, content_type: str, boundary: str
) -> list[bytes | tuple[int, int]]:
    """The multipart/byteranges content (RFC 9110 §14.6) as bytes pieces and
    ``(offset, length)`` slices of the representation, in order."""
    out: list[bytes | tuple[int, int]] = []
    for start, end in ranges:
        out.append(
            (
                f"\r\n--{boundary}\r\nContent-Type: {content_type}\r\n"
                f"Content-Range: bytes {start}-{end}/{size}\r\n\r\n"
            ).encode("latin-1")
        )
        out.append((start, end - start + 1))
    out.append(f"\r\n--{boundary}--\r\n".encode("latin-1"))
    return out
