"""From a request path to a data key, with no way out of the root.

One decoding, then normalisation (RFC 3986 §5.2.4 dot segments, merged
slashes), on the decoded text: ``%2e%2e`` and ``%2f`` are a ``..`` and a ``/``
like their plain forms, and ``..`` can never climb above the root (400, as
nginx).  What cannot name a file is refused with 400: a fragment, a bad
``%`` escape, NUL and other controls, a backslash (a separator elsewhere),
and bytes that are not strict UTF-8 (which also refuses overlong forms such as
``%c0%ae``).  A double encoding (``%252e``) is decoded once only, so it names
the file ``%2e`` (a 404), never ``.``.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from .errors import RemoteProtocolError

__all__ = ["decode_path", "split_target"]

_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
#: controls, DEL and backslash: never part of a key we serve
_BAD_BYTE = re.compile(rb"[\x00-\x1f\x7f\\]")


def split_target(path: bytes) -> tuple[bytes, bytes]:
    """``(path, query)`` of an origin-form target; the query keeps its ``?``."""
    q = path.find(b"?")
    if q < 0:
        return path, b""
    return path[:q], path[q:]


def decode_path(raw: bytes) -> tuple[list[str], bool]:
    """The normalised segments of ``raw`` and whether it names a directory.

    Raises :class:`RemoteProtocolError` (400) for paths no file can have.
    """
    if raw[:1] != b"/" or b"#" in raw:
        raise RemoteProtocolError(400, "invalid path", close=False)
    if b"%" in raw:
        if _BAD_ESCAPE.search(raw) is not None:
            raise RemoteProtocolError(400, "invalid percent-encoding", close=False)
        raw = unquote_to_bytes(raw)
    if _BAD_BYTE.search(raw) is not None:
        raise RemoteProtocolError(400, "control character or backslash in path", close=False)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError(400, "path is not UTF-8", close=False) from None
    segments: list[str] = []
    parts = text.split("/")
    for part in parts[1:]:
        if part == "" or part == ".":
            continue
        if part == "..":
            if not segments:
                raise RemoteProtocolError(400, "path climbs above the root", close=False)
            segments.pop()
            continue
        segments.append(part)
    last = parts[-1]
    return segments, last in ("", ".", "..")
