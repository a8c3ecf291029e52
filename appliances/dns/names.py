"""Domain names: master-file text <-> wire form, and the helpers the zone index needs.

Names are kept in uncompressed wire form (RFC 1035 §3.1: length-prefixed labels
ending with the root's zero byte).  Lookup keys are the wire form lowercased with
``bytes.lower()``, which folds ASCII only, as RFC 4343 §3 asks: label lengths are
below 64 and so never change under ``lower()``.
"""

from __future__ import annotations

__all__ = [
    "MAX_LABEL",
    "MAX_NAME",
    "ROOT",
    "from_text",
    "is_below",
    "label_offsets",
    "name_end",
    "parent",
    "to_text",
]

#: RFC 1035 §2.3.4 size limits (the name limit counts the wire form).
MAX_LABEL = 63
MAX_NAME = 255
ROOT = b"\x00"

_DIGITS = frozenset("0123456789")
# Bytes written as-is in text form; everything else is escaped (RFC 4343 §2.1).
_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_*/+=")


def _unescape_label(text: str) -> bytes:
    """Turn one label's text (``\\.``, ``\\DDD`` and ``\\X`` escapes, RFC 1035 §5.1) into bytes."""
    if "\\" not in text:
        try:
            return text.encode("ascii")
        except UnicodeEncodeError:
            return text.encode("utf-8")
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
            continue
        if i + 1 >= n:
            raise ValueError("dangling backslash in name")
        if text[i + 1] in _DIGITS:
            digits = text[i + 1 : i + 4]
            if len(digits) != 3 or not all(d in _DIGITS for d in digits) or int(digits) > 255:
                raise ValueError(f"bad \\DDD escape {text[i : i + 4]!r} in name")
            out.append(int(digits))
            i += 4
        else:
            out += text[i + 1].encode("utf-8")
            i += 2
    return bytes(out)


def _split_labels(text: str) -> list[str]:
    """Split on dots that are not escaped."""
    if "\\" not in text:
        return text.split(".")
    labels: list[str] = []
    start = i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == ".":
            labels.append(text[start:i])
            start = i + 1
        i += 1
    labels.append(text[start:])
    return labels


def from_text(text: str, origin: bytes | None) -> bytes:
    """Wire form of a master-file name; relative names get ``origin`` appended.

    ``@`` is the origin (RFC 1035 §5.1).  Case is kept.  Raises ``ValueError``.
    """
    if text == "@":
        if origin is None:
            raise ValueError("'@' used with no origin set")
        return origin
    if text == ".":
        return ROOT
    if not text:
        raise ValueError("empty name")
    labels = _split_labels(text)
    absolute = labels[-1] == ""
    if absolute:
        labels.pop()
    out = bytearray()
    for label_text in labels:
        label = _unescape_label(label_text)
        if not label:
            raise ValueError(f"empty label in name {text!r}")
        if len(label) > MAX_LABEL:
            raise ValueError(f"label longer than {MAX_LABEL} octets in name {text!r} (RFC 1035 §2.3.4)")
        out.append(len(label))
        out += label
    if absolute:
        out.append(0)
    else:
        if origin is None:
            raise ValueError(f"relative name {text!r} with no origin set")
        out += origin
    if len(out) > MAX_NAME:
        raise ValueError(f"name {text!r} longer than {MAX_NAME} octets (RFC 1035 §2.3.4)")
    return bytes(out)


def to_text(wire: bytes) -> str:
    """Master-file text of an uncompressed wire name, absolute (with the final dot)."""
    if wire == ROOT:
        return "."
    parts: list[str] = []
    i = 0
    while wire[i]:
        n = wire[i]
        label = wire[i + 1 : i + 1 + n]
        parts.append(
            "".join(
                chr(b) if b in _PLAIN else (f"\\{chr(b)}" if 0x21 <= b < 0x7F else f"\\{b:03d}")
                for b in label
            )
        )
        i += 1 + n
    return ".".join(parts) + "."


def name_end(wire: bytes, offset: int) -> int:
    """Offset just past an uncompressed name starting at ``offset`` (``IndexError`` if cut)."""
    while True:
        n = wire[offset]
        if n == 0:
            return offset + 1
        if n > MAX_LABEL:
            raise ValueError("compressed or extended label where a plain name was expected")
        offset += n + 1


def label_offsets(wire: bytes) -> list[int]:
    """Start offsets of every suffix of ``wire``: the name itself first, the root last."""
    offsets = []
    i = 0
    while True:
        offsets.append(i)
        n = wire[i]
        if n == 0:
            return offsets
        i += n + 1


def parent(wire: bytes) -> bytes:
    """The name one label up (the root's parent is the root)."""
    return wire[wire[0] + 1 :] if wire[0] else wire


def is_below(name: bytes, ancestor: bytes) -> bool:
    """True when ``name`` equals ``ancestor`` or lies under it (both lowercase wire)."""
    if not name.endswith(ancestor):
        return False
    cut = len(name) - len(ancestor)
    i = 0
    while i < cut:
        i += name[i] + 1
    return i == cut
