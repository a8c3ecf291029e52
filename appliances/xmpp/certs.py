"""Our certificate, seen without ``ssl``: its DER, and the RFC 5929 §4.1
``tls-server-end-point`` channel-binding data computed from it.

§4.1: the binding is the hash of the certificate with the hash function of
its signature algorithm, except that MD5 and SHA-1 become SHA-256.  The
signature algorithm is read from the DER (the ``signatureAlgorithm`` field of
RFC 5280 §4.1.1.2); an algorithm with no single hash (Ed25519) gives no
binding, and then the -PLUS mechanisms are not offered.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

__all__ = ["end_point_binding", "fingerprint", "first_certificate_der"]

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.*?)\s*-----END CERTIFICATE-----", re.DOTALL)

#: signature algorithm OID (DER content bytes, as dotted text) -> hashlib name for the binding
_SIG_HASHES = {
    "1.2.840.113549.1.1.4": "sha256",  # md5WithRSAEncryption -> SHA-256 (§4.1)
    "1.2.840.113549.1.1.5": "sha256",  # sha1WithRSAEncryption -> SHA-256 (§4.1)
    "1.2.840.113549.1.1.11": "sha256",
    "1.2.840.113549.1.1.12": "sha384",
    "1.2.840.113549.1.1.13": "sha512",
    "1.2.840.10045.4.1": "sha256",  # ecdsa-with-SHA1 -> SHA-256
    "1.2.840.10045.4.3.2": "sha256",
    "1.2.840.10045.4.3.3": "sha384",
    "1.2.840.10045.4.3.4": "sha512",
}


def first_certificate_der(pem: bytes) -> bytes:
    match = _PEM_CERT.search(pem)
    if match is None:
        raise ValueError("no PEM certificate found")
    try:
        return base64.b64decode(b"".join(match.group(1).split()), validate=True)
    except binascii.Error:
        raise ValueError("the PEM certificate is not valid base64") from None


def fingerprint(pem: bytes) -> str:
    return ":".join(f"{b:02X}" for b in hashlib.sha256(first_certificate_der(pem)).digest())


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at ``pos``."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _oid_text(content: bytes) -> str:
    parts = [content[0] // 40, content[0] % 40]
    value = 0
    for byte in content[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(str(p) for p in parts)


def end_point_binding(der: bytes) -> bytes | None:
    """RFC 5929 tls-server-end-point data for our certificate, or None."""
    try:
        tag, start, _ = _tlv(der, 0)  # Certificate ::= SEQUENCE
        if tag != 0x30:
            return None
        _, _, tbs_end = _tlv(der, start)  # tbsCertificate
        tag, alg_start, _ = _tlv(der, tbs_end)  # signatureAlgorithm ::= SEQUENCE
        tag2, oid_start, oid_end = _tlv(der, alg_start)
        if tag != 0x30 or tag2 != 0x06:
            return None
        name = _SIG_HASHES.get(_oid_text(der[oid_start:oid_end]))
    except (ValueError, IndexError):
        return None
    return hashlib.new(name, der).digest() if name else None
