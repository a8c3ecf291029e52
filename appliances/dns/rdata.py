"""RDATA: master-file text -> uncompressed wire form, per type.

Our own encoders rather than dnslib's: dnslib 0.9.26 has no SVCB, rejects the
``ech`` key of HTTPS and reports errors without positions; these are short and
strict, and every error is a ``ValueError`` whose message the zone parser puts
after ``file:line:``.

RDATA is stored uncompressed.  Only the types listed in ``COMPRESSIBLE`` get
their names compressed when an answer is written (RFC 3597 §4: NS, CNAME, SOA,
MX, PTR; SRV, NAPTR, DNAME and SVCB targets must not be).  Any type, known or not,
may be written in the RFC 3597 §5 generic form ``\\# <length> <hex>``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable

from . import names
from .svcb import encode_svcb

__all__ = [
    "COMPRESSIBLE",
    "SOA",
    "TYPES",
    "TYPE_NAMES",
    "char_string",
    "encode",
    "ipv4",
    "ipv6",
    "parse_ttl",
    "type_code",
    "type_name",
    "unescape",
]

TYPES: dict[str, int] = {
    "A": 1,
    "NS": 2,
    "CNAME": 5,
    "SOA": 6,
    "PTR": 12,
    "HINFO": 13,
    "MX": 15,
    "TXT": 16,
    "RP": 17,
    "AAAA": 28,
    "SRV": 33,
    "NAPTR": 35,
    "DNAME": 39,
    "OPT": 41,
    "DS": 43,
    "SSHFP": 44,
    "RRSIG": 46,
    "NSEC": 47,
    "DNSKEY": 48,
    "TLSA": 52,
    "SMIMEA": 53,
    "SVCB": 64,
    "HTTPS": 65,
    "SPF": 99,
    "IXFR": 251,
    "AXFR": 252,
    "ANY": 255,
    "CAA": 257,
}
TYPE_NAMES: dict[int, str] = {code: name for name, code in TYPES.items()}

#: type -> offset of the one compressible name (SOA, with two names, is handled apart)
COMPRESSIBLE: dict[int, int] = {2: 0, 5: 0, 12: 0, 15: 2}
SOA = 6

# Types that never appear as data in a zone file (meta and pseudo types, RFC 6895 §3.1).
_META = frozenset({41, 251, 252, 255})

_TTL = re.compile(r"(\d+)([smhdw]?)", re.IGNORECASE)
_TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: RFC 2181 §8: a TTL is an unsigned 31-bit value.
MAX_TTL = 2**31 - 1


def parse_ttl(text: str) -> int:
    """A TTL: plain seconds, or BIND's units in any combination (``1h30m``, ``1W2D``)."""
    if text.isdigit():
        value = int(text)
    else:
        value, pos = 0, 0
        for m in _TTL.finditer(text):
            if m.start() != pos or (not m.group(2) and m.end() != len(text)):
                break
            value += int(m.group(1)) * _TTL_UNITS[m.group(2).lower()]
            pos = m.end()
        if pos != len(text) or not text:
            raise ValueError(f"bad TTL {text!r} (seconds, or units s/m/h/d/w like 1h30m)")
    if value > MAX_TTL:
        raise ValueError(f"TTL {text!r} above 2^31-1 (RFC 2181 §8)")
    return value


def type_code(text: str) -> int | None:
    """The type code of a mnemonic or ``TYPEnnn`` (RFC 3597 §5), else None."""
    upper = text.upper()
    code = TYPES.get(upper)
    if code is not None:
        return code
    if upper.startswith("TYPE") and upper[4:].isdigit():
        value = int(upper[4:])
        if value <= 0xFFFF:
            return value
    return None


def type_name(code: int) -> str:
    return TYPE_NAMES.get(code, f"TYPE{code}")


# --------------------------------------------------------------------- field helpers


def _int(text: str, bits: int, what: str) -> int:
    if not text.isdigit():
        raise ValueError(f"{what}: expected an integer, got {text!r}")
    value = int(text)
    if value >= 1 << bits:
        raise ValueError(f"{what}: {value} does not fit in {bits} bits")
    return value


def _name(text: str, origin: bytes | None, what: str) -> bytes:
    if text.startswith('"'):
        raise ValueError(f"{what}: a name cannot be quoted")
    try:
        return names.from_text(text, origin)
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from None


def unescape(text: str) -> bytes:
    """Decode ``\\X`` and ``\\DDD`` escapes (RFC 1035 §5.1) of an unquoted text."""
    if "\\" not in text:
        return text.encode("utf-8")
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            digits = text[i + 1 : i + 4]
            if digits.isdigit() and len(digits) == 3:
                if int(digits) > 255:
                    raise ValueError(f"bad escape \\{digits}")
                out.append(int(digits))
                i += 4
                continue
            out += text[i + 1].encode("utf-8")
            i += 2
            continue
        out += c.encode("utf-8")
        i += 1
    return bytes(out)


def char_string(text: str) -> bytes:
    """One <character-string> (RFC 1035 §3.3): quoted or not, escapes decoded, <= 255 octets."""
    data = unescape(text[1:-1] if text.startswith('"') else text)
    if len(data) > 255:
        raise ValueError(f"character-string of {len(data)} octets, limit 255 (RFC 1035 §3.3)")
    return data


def _hex(tokens: list[str], what: str, *, allow_empty: bool = False) -> bytes:
    text = "".join(tokens)
    if text == "-" and allow_empty:
        return b""
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{what}: bad hex {text[:40]!r}") from None
    if not data and not allow_empty:
        raise ValueError(f"{what}: missing hex data")
    return data


def _b64(tokens: list[str], what: str) -> bytes:
    try:
        return base64.b64decode("".join(tokens), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what}: bad base64") from None


def _count(tokens: list[str], n: int, what: str) -> None:
    if len(tokens) != n:
        raise ValueError(f"{what} takes {n} field{'s' if n != 1 else ''}, got {len(tokens)}")


def ipv4(text: str) -> bytes:
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts):
        raise ValueError(f"bad IPv4 address {text!r}")
    return bytes(int(p) for p in parts)


def ipv6(text: str) -> bytes:
    try:
        return ipaddress.IPv6Address(text).packed
    except ValueError:
        raise ValueError(f"bad IPv6 address {text!r}") from None


# --------------------------------------------------------------------- per-type encoders

Encoder = Callable[[list[str], "bytes | None"], bytes]


def _a(t: list[str], o: bytes | None) -> bytes:
    _count(t, 1, "A")
    return ipv4(t[0])


def _aaaa(t: list[str], o: bytes | None) -> bytes:
    _count(t, 1, "AAAA")
    return ipv6(t[0])


def _single_name(kind: str) -> Encoder:
    def enc(t: list[str], o: bytes | None) -> bytes:
        _count(t, 1, kind)
        return _name(t[0], o, kind)

    return enc


def _soa(t: list[str], o: bytes | None) -> bytes:
    _count(t, 7, "SOA")
    out = _name(t[0], o, "SOA MNAME") + _name(t[1], o, "SOA RNAME")
    out += _int(t[2], 32, "SOA SERIAL").to_bytes(4, "big")
    for field, what in zip(t[3:], ("REFRESH", "RETRY", "EXPIRE", "MINIMUM"), strict=True):
        try:
            out += parse_ttl(field).to_bytes(4, "big")
        except ValueError as e:
            raise ValueError(f"SOA {what}: {e}") from None
    return out


def _mx(t: list[str], o: bytes | None) -> bytes:
    _count(t, 2, "MX")
    return _int(t[0], 16, "MX preference").to_bytes(2, "big") + _name(t[1], o, "MX exchange")


def _txt(t: list[str], o: bytes | None) -> bytes:
    if not t:
        raise ValueError("TXT needs at least one character-string")
    out = bytearray()
    for s in t:
        data = char_string(s)
        out.append(len(data))
        out += data
    return bytes(out)


def _hinfo(t: list[str], o: bytes | None) -> bytes:
    _count(t, 2, "HINFO")
    return _txt(t, o)


def _rp(t: list[str], o: bytes | None) -> bytes:
    _count(t, 2, "RP")
    return _name(t[0], o, "RP mbox") + _name(t[1], o, "RP txt")


def _srv(t: list[str], o: bytes | None) -> bytes:
    _count(t, 4, "SRV")
    return (
        _int(t[0], 16, "SRV priority").to_bytes(2, "big")
        + _int(t[1], 16, "SRV weight").to_bytes(2, "big")
        + _int(t[2], 16, "SRV port").to_bytes(2, "big")
        + _name(t[3], o, "SRV target")
    )


def _naptr(t: list[str], o: bytes | None) -> bytes:
    _count(t, 6, "NAPTR")
    out = bytearray(_int(t[0], 16, "NAPTR order").to_bytes(2, "big"))
    out += _int(t[1], 16, "NAPTR preference").to_bytes(2, "big")
    for s in t[2:5]:
        data = char_string(s)
        out.append(len(data))
        out += data
    return bytes(out) + _name(t[5], o, "NAPTR replacement")


def _ds(t: list[str], o: bytes | None) -> bytes:
    if len(t) < 4:
        raise ValueError("DS takes key tag, algorithm, digest type and digest")
    return (
        _int(t[0], 16, "DS key tag").to_bytes(2, "big")
        + bytes((_int(t[1], 8, "DS algorithm"), _int(t[2], 8, "DS digest type")))
        + _hex(t[3:], "DS digest")
    )


def _sshfp(t: list[str], o: bytes | None) -> bytes:
    if len(t) < 3:
        raise ValueError("SSHFP takes algorithm, fingerprint type and fingerprint")
    return bytes((_int(t[0], 8, "SSHFP algorithm"), _int(t[1], 8, "SSHFP type"))) + _hex(t[2:], "SSHFP")


def _tlsa(t: list[str], o: bytes | None) -> bytes:
    if len(t) < 4:
        raise ValueError("TLSA takes usage, selector, matching type and data")
    head = bytes((_int(t[0], 8, "TLSA usage"), _int(t[1], 8, "TLSA selector"), _int(t[2], 8, "TLSA type")))
    return head + _hex(t[3:], "TLSA data")


def _dnskey(t: list[str], o: bytes | None) -> bytes:
    if len(t) < 4:
        raise ValueError("DNSKEY takes flags, protocol, algorithm and key")
    head = _int(t[0], 16, "DNSKEY flags").to_bytes(2, "big")
    return (
        head
        + bytes((_int(t[1], 8, "DNSKEY protocol"), _int(t[2], 8, "DNSKEY algorithm")))
        + _b64(t[3:], "DNSKEY key")
    )


_CAA_TAG = re.compile(r"[A-Za-z0-9]+")


def _caa(t: list[str], o: bytes | None) -> bytes:
    _count(t, 3, "CAA")
    flags = _int(t[0], 8, "CAA flags")
    tag = t[1]
    if not _CAA_TAG.fullmatch(tag) or len(tag) > 255:
        raise ValueError(f"CAA tag {tag!r} must be letters and digits (RFC 8659 §4.1)")
    # The value is the rest of the RDATA, without a length octet (RFC 8659 §4.1.1).
    value = unescape(t[2][1:-1] if t[2].startswith('"') else t[2])
    return bytes((flags, len(tag))) + tag.encode("ascii") + value


def _svcb(t: list[str], o: bytes | None) -> bytes:
    if len(t) < 2:
        raise ValueError("SVCB/HTTPS takes priority, target and parameters")
    priority = _int(t[0], 16, "SVCB priority").to_bytes(2, "big")
    return priority + _name(t[1], o, "SVCB target") + encode_svcb(t[2:])


_ENCODERS: dict[int, Encoder] = {
    1: _a,
    2: _single_name("NS"),
    5: _single_name("CNAME"),
    6: _soa,
    12: _single_name("PTR"),
    13: _hinfo,
    15: _mx,
    16: _txt,
    17: _rp,
    28: _aaaa,
    33: _srv,
    35: _naptr,
    39: _single_name("DNAME"),
    43: _ds,
    44: _sshfp,
    48: _dnskey,
    52: _tlsa,
    53: _tlsa,
    64: _svcb,
    65: _svcb,
    99: _txt,
    257: _caa,
}


def _check_names(rtype: int, data: bytes) -> None:
    """Generic-form RDATA of a type whose names we compress must hold plain names."""
    try:
        if rtype == SOA:
            end = names.name_end(data, names.name_end(data, 0)) + 20
        elif rtype in COMPRESSIBLE:
            end = names.name_end(data, COMPRESSIBLE[rtype])
        else:
            return
    except (IndexError, ValueError):
        raise ValueError(f"generic RDATA is not a valid {type_name(rtype)}") from None
    if end != len(data):
        raise ValueError(f"generic RDATA is not a valid {type_name(rtype)}")


def encode(rtype: int, tokens: list[str], origin: bytes | None) -> bytes:
    """Wire RDATA for ``tokens``; raises ``ValueError`` with a message for the user."""
    if tokens and tokens[0] == "\\#":
        # RFC 3597 §5: \# <length> <hex>; a length of 0 has no hex.
        if len(tokens) < 2 or not tokens[1].isdigit():
            raise ValueError("generic RDATA: expected '\\# <length> <hex>' (RFC 3597 §5)")
        length = int(tokens[1])
        data = _hex(tokens[2:], "generic RDATA", allow_empty=True) if len(tokens) > 2 else b""
        if len(data) != length:
            raise ValueError(f"generic RDATA: length {length} but {len(data)} octets of hex")
        if length > 0xFFFF:
            raise ValueError("generic RDATA longer than 65535 octets")
        _check_names(rtype, data)
        return data
    if rtype in _META:
        raise ValueError(f"{type_name(rtype)} is a meta type and cannot be zone data (RFC 6895 §3.1)")
    encoder = _ENCODERS.get(rtype)
    if encoder is None:
        name = type_name(rtype)
        raise ValueError(f"no text format known for {name}: use '\\# <length> <hex>' (RFC 3597 §5)")
    data = encoder(tokens, origin)
    if len(data) > 0xFFFF:
        raise ValueError("RDATA longer than 65535 octets")
    return data
