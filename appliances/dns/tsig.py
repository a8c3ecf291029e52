"""TSIG (RFC 8945): HMAC signatures on DNS messages, on the wire, sans-IO.

The TSIG record is the last record of the additional section (§4.2): owner the
key name, type 250, class ANY, TTL 0, and RDATA

    algorithm name | time signed (48 bits) | fudge | MAC size | MAC |
    original ID | error | other len | other data

The MAC (§4.3) is an HMAC over, in order:

1. for a response, the request's MAC (its 2-octet size, then the MAC) (§4.3.1);
   for the later messages of a multi-message answer (AXFR), the previous
   message's MAC instead (§4.3.2);
2. the message without its TSIG record, ARCOUNT decremented, with the original ID;
3. the TSIG variables (§4.3.3): key name and algorithm name in canonical
   (lowercase, uncompressed) form, class ANY, TTL 0, time signed, fudge, error,
   other len, other data -- or, for the later messages of a multi-message answer,
   only the timers (time signed and fudge).

We sign every message of a transfer (RFC 8945 §5.3.1 allows it; it is simpler
than signing every 100th) and accept transfers signed either way.

Verification order and answers (§5.2): an unknown key or a key used with another
algorithm is BADKEY, a wrong MAC (or a truncated one: we never accept MAC
truncation, §5.2.2.1 makes it optional) is BADSIG, both answered with rcode
NOTAUTH and an unsigned TSIG carrying the error (§5.3.2); a time outside the
fudge is BADTIME, answered signed, with our time in other data (§5.2.3).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from . import names
from .message import MessageError, read_name

__all__ = [
    "ALGORITHMS",
    "BADKEY",
    "BADSIG",
    "BADTIME",
    "DEFAULT_FUDGE",
    "NOERROR",
    "NOTAUTH",
    "TSIG",
    "Key",
    "TsigRecord",
    "error_response",
    "find_tsig",
    "parse_key",
    "sign",
    "verify",
]

TSIG = 250
_ANY = 255
NOERROR, NOTAUTH = 0, 9
BADSIG, BADKEY, BADTIME = 16, 17, 18
#: RFC 8945 §10: "The RECOMMENDED value is 300 seconds."
DEFAULT_FUDGE = 300

#: algorithm name (text, as in RFC 8945 §6) -> hashlib name
ALGORITHMS: dict[str, str] = {
    "hmac-md5.sig-alg.reg.int": "md5",
    "hmac-sha1": "sha1",
    "hmac-sha224": "sha224",
    "hmac-sha256": "sha256",
    "hmac-sha384": "sha384",
    "hmac-sha512": "sha512",
}
_SHORT = {"hmac-md5": "hmac-md5.sig-alg.reg.int"}
_U48 = struct.Struct("!HI")


@dataclass(frozen=True, slots=True)
class Key:
    #: canonical (lowercase, uncompressed) wire form of the key name
    name: bytes
    #: canonical wire form of the algorithm name
    algorithm: bytes
    secret: bytes
    digest: str

    @property
    def text(self) -> str:
        return names.to_text(self.name)

    def __repr__(self) -> str:  # never show the secret
        return f"Key({self.text!r}, {names.to_text(self.algorithm)!r})"


def parse_key(text: str) -> Key:
    """``NAME:ALGORITHM:BASE64SECRET`` (as ``tsig-keygen``/``ldns-keygen`` print
    them); raises ValueError with a message fit for an option error."""
    parts = text.strip().split(":")
    if len(parts) != 3:
        raise ValueError("expected NAME:ALGORITHM:BASE64SECRET")
    name_text, algorithm_text, secret_text = parts
    algorithm_text = _SHORT.get(algorithm_text.lower(), algorithm_text.lower()).rstrip(".")
    if algorithm_text not in ALGORITHMS:
        raise ValueError(f"unknown TSIG algorithm {parts[1]!r} (known: {', '.join(sorted(ALGORITHMS))})")
    try:
        secret = base64.b64decode(secret_text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the secret is not base64") from None
    if not secret:
        raise ValueError("empty secret")
    try:
        name = names.from_text(name_text if name_text.endswith(".") else name_text + ".", None).lower()
    except ValueError as e:
        raise ValueError(f"bad key name {name_text!r}: {e}") from None
    algorithm = names.from_text(algorithm_text + ".", None)
    return Key(name, algorithm, secret, ALGORITHMS[algorithm_text])


@dataclass(frozen=True, slots=True)
class TsigRecord:
    """A TSIG found in a message, and the message as it was before signing."""

    key_name: bytes
    algorithm: bytes
    time_signed: int
    fudge: int
    mac: bytes
    original_id: int
    error: int
    other: bytes
    #: the message without the TSIG record, ARCOUNT decremented, the original ID
    unsigned: bytes


def _skip_rr(data: bytes, pos: int) -> tuple[int, int]:
    """(end, type) of the record at ``pos``."""
    _, pos = read_name(data, pos)
    if pos + 10 > len(data):
        raise MessageError("record cut short")
    rtype = (data[pos] << 8) | data[pos + 1]
    rdlen = (data[pos + 8] << 8) | data[pos + 9]
    pos += 10 + rdlen
    if pos > len(data):
        raise MessageError("RDATA runs past the end")
    return pos, rtype


def find_tsig(data: bytes) -> TsigRecord | None:
    """The TSIG of a message, or None when it has none.  Raises ``MessageError``
    for a malformed message or a TSIG that is not the last record (§5.1: FORMERR)."""
    if len(data) < 12:
        raise MessageError("shorter than a header")
    qd, an, ns, ar = struct.unpack_from("!4H", data, 4)
    if ar == 0:
        return None
    pos = 12
    for _ in range(qd):
        _, pos = read_name(data, pos)
        pos += 4
    for _ in range(an + ns + ar - 1):
        pos, rtype = _skip_rr(data, pos)
        if rtype == TSIG:
            raise MessageError("TSIG is not the last record (RFC 8945 §5.1)")
    last = pos
    owner, pos = read_name(data, pos)
    if pos + 10 > len(data):
        raise MessageError("record cut short")
    rtype, rclass, _ttl, rdlen = struct.unpack_from("!HHIH", data, pos)
    if rtype != TSIG:
        return None
    pos += 10
    end = pos + rdlen
    if end != len(data) or rclass != _ANY:
        raise MessageError("malformed TSIG record")
    algorithm, pos = read_name(data, pos)
    if pos + 10 > end:
        raise MessageError("TSIG RDATA cut short")
    high, low = _U48.unpack_from(data, pos)
    fudge, mac_size = struct.unpack_from("!HH", data, pos + 6)
    pos += 10
    mac = data[pos : pos + mac_size]
    pos += mac_size
    if pos + 6 > end:
        raise MessageError("TSIG RDATA cut short")
    original_id, error, other_len = struct.unpack_from("!3H", data, pos)
    pos += 6
    other = data[pos : pos + other_len]
    if pos + other_len != end:
        raise MessageError("TSIG RDATA length mismatch")
    unsigned = struct.pack("!H", original_id) + data[2:10] + struct.pack("!H", ar - 1) + data[12:last]
    return TsigRecord(
        owner.lower(), algorithm.lower(), (high << 32) | low, fudge, mac, original_id, error, other, unsigned
    )


def _variables(key: Key, time_signed: int, fudge: int, error: int, other: bytes, timers_only: bool) -> bytes:
    timers = _U48.pack(time_signed >> 32, time_signed & 0xFFFFFFFF) + struct.pack("!H", fudge)
    if timers_only:
        return timers
    return (
        key.name
        + struct.pack("!HI", _ANY, 0)
        + key.algorithm
        + timers
        + struct.pack("!HH", error, len(other))
        + other
    )


def _mac(key: Key, prior: bytes, unsigned: bytes, variables: bytes) -> bytes:
    h = hmac.new(key.secret, digestmod=key.digest)
    if prior:
        h.update(struct.pack("!H", len(prior)) + prior)
    h.update(unsigned)
    h.update(variables)
    return h.digest()


def sign(
    message: bytes,
    key: Key,
    now: int,
    *,
    prior: bytes = b"",
    fudge: int = DEFAULT_FUDGE,
    error: int = NOERROR,
    other: bytes = b"",
    timers_only: bool = False,
    with_mac: bool = True,
) -> tuple[bytes, bytes]:
    """``message`` with a TSIG appended, and the MAC (for chaining).

    ``prior``: the request MAC when signing a response, the previous message's MAC
    for the later messages of a transfer.  ``with_mac`` False writes an empty MAC
    (BADKEY/BADSIG answers, §5.3.2).
    """
    mac = (
        _mac(key, prior, message, _variables(key, now, fudge, error, other, timers_only)) if with_mac else b""
    )
    original_id = message[:2]
    rdata = (
        key.algorithm
        + _U48.pack(now >> 32, now & 0xFFFFFFFF)
        + struct.pack("!HH", fudge, len(mac))
        + mac
        + original_id
        + struct.pack("!HH", error, len(other))
        + other
    )
    record = key.name + struct.pack("!HHIH", TSIG, _ANY, 0, len(rdata)) + rdata
    arcount = ((message[10] << 8) | message[11]) + 1
    return message[:10] + struct.pack("!H", arcount) + message[12:] + record, mac


def verify(
    record: TsigRecord,
    keys: Mapping[bytes, Key],
    now: int,
    *,
    prior: bytes = b"",
    timers_only: bool = False,
) -> tuple[int, Key | None]:
    """(TSIG error, key): NOERROR and the key when the MAC and time are good;
    BADKEY with None; BADSIG or BADTIME with the key (§5.2)."""
    key = keys.get(record.key_name)
    if key is None or key.algorithm != record.algorithm:
        return BADKEY, None
    variables = _variables(key, record.time_signed, record.fudge, record.error, record.other, timers_only)
    expected = _mac(key, prior, record.unsigned, variables)
    if not hmac.compare_digest(expected, record.mac):
        return BADSIG, key
    if abs(now - record.time_signed) > record.fudge:
        return BADTIME, key
    return NOERROR, key


def error_response(
    request: bytes, question_end: int, record: TsigRecord, error: int, key: Key | None, now: int
) -> bytes:
    """The answer to a request whose TSIG failed (§5.3.2): rcode NOTAUTH, the
    question echoed, a TSIG with the error; signed only for BADTIME."""
    flags = 0x8000 | (request[2] << 8 & 0x7900) | NOTAUTH
    body = request[:2] + struct.pack("!5H", flags, 1 if question_end > 12 else 0, 0, 0, 0)
    body += request[12:question_end]
    signer = key or Key(record.key_name, record.algorithm, b"\x00", "sha256")
    if error == BADTIME and key is not None:
        other = _U48.pack(now >> 32, now & 0xFFFFFFFF)
        signed, _ = sign(
            body, key, record.time_signed, prior=record.mac, fudge=record.fudge, error=error, other=other
        )
        return signed
    signed, _ = sign(body, signer, record.time_signed, fudge=record.fudge, error=error, with_mac=False)
    return signed
