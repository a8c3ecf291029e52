"""Key rules shared by every data device."""

from __future__ import annotations

__all__ = ["normalise_key"]


def normalise_key(key: str) -> str:
    """Return the canonical form of a data key or raise ``KeyError``.

    Keys are relative ``/``-separated paths.  Empty segments and ``.`` are
    dropped; ``..``, NUL and backslashes are refused outright rather than
    resolved, so no key can name anything outside the data root.
    """
    if not isinstance(key, str) or "\x00" in key or "\\" in key:
        raise KeyError(key)
    parts = [p for p in key.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise KeyError(key)
    return "/".join(parts)
