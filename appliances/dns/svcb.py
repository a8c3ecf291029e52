"""SvcParams of SVCB and HTTPS records (RFC 9460 §2.1, §7, Appendix A), text -> wire."""

from __future__ import annotations

import base64
import binascii
import ipaddress

__all__ = ["encode_svcb"]

_KEYS = {"mandatory": 0, "alpn": 1, "no-default-alpn": 2, "port": 3, "ipv4hint": 4, "ech": 5, "ipv6hint": 6}


def _key(text: str) -> int:
    code = _KEYS.get(text.lower())
    if code is not None:
        return code
    if text.lower().startswith("key") and text[3:].isdigit() and int(text[3:]) <= 0xFFFF:
        return int(text[3:])
    raise ValueError(f"unknown SvcParamKey {text!r} (RFC 9460 §14.3.2)")


def _decode(text: str) -> bytes:
    """char-string decoding of a value (RFC 9460 Appendix A.1)."""
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            digits = text[i + 1 : i + 4]
            if len(digits) == 3 and digits.isdigit() and int(digits) <= 255:
                out.append(int(digits))
                i += 4
                continue
            out += text[i + 1].encode("utf-8")
            i += 2
            continue
        out += c.encode("utf-8")
        i += 1
    return bytes(out)


def _value_list(text: str) -> list[bytes]:
    """A comma-separated list (RFC 9460 Appendix A.1): the value is decoded as a
    char-string first, then split on commas; a comma stays in an item when the
    decoded text escapes it with a backslash (so the zone file says ``\\\\,``)."""
    data = _decode(text)
    items, current = [], bytearray()
    i = 0
    while i < len(data):
        b = data[i]
        if b == 0x5C and i + 1 < len(data):
            current.append(data[i + 1])
            i += 2
            continue
        if b == 0x2C:
            items.append(bytes(current))
            current = bytearray()
        else:
            current.append(b)
        i += 1
    items.append(bytes(current))
    return items


def _param_value(code: int, text: str | None) -> bytes:
    if code == 2:
        if text is not None:
            raise ValueError("no-default-alpn takes no value")
        return b""
    if text is None:
        raise ValueError(f"SvcParam key{code} needs a value")
    if code == 0:
        keys = sorted(_key(k) for k in text.split(","))
        if len(set(keys)) != len(keys) or 0 in keys:
            raise ValueError("mandatory lists a key twice or lists itself (RFC 9460 §8)")
        return b"".join(k.to_bytes(2, "big") for k in keys)
    if code == 1:
        out = bytearray()
        for item in _value_list(text):
            if not item or len(item) > 255:
                raise ValueError("alpn ids must be 1-255 octets")
            out.append(len(item))
            out += item
        return bytes(out)
    if code == 3:
        if not text.isdigit() or int(text) > 0xFFFF:
            raise ValueError(f"bad port {text!r}")
        return int(text).to_bytes(2, "big")
    if code == 4 or code == 6:
        family = ipaddress.IPv4Address if code == 4 else ipaddress.IPv6Address
        try:
            return b"".join(family(a).packed for a in text.split(","))
        except ValueError:
            raise ValueError(f"bad address list {text!r}") from None
    if code == 5:
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("ech: bad base64") from None
    return _decode(text)


def encode_svcb(tokens: list[str]) -> bytes:
    """Wire SvcParams, sorted by key as RFC 9460 §2.2 requires."""
    params: dict[int, bytes] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        key_text, eq, value = token.partition("=")
        text: str | None = value if eq else None
        if eq and not value and i < len(tokens) and tokens[i].startswith('"'):
            text = tokens[i]
            i += 1
        if text is not None and text.startswith('"'):
            text = text[1:-1]
        code = _key(key_text)
        if code in params:
            raise ValueError(f"SvcParamKey {key_text!r} given twice (RFC 9460 §2.2)")
        data = _param_value(code, text)
        if len(data) > 0xFFFF:
            raise ValueError("SvcParam value too long")
        params[code] = data
    return b"".join(k.to_bytes(2, "big") + len(v).to_bytes(2, "big") + v for k, v in sorted(params.items()))
