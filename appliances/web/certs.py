"""What the edge needs to know about a PEM certificate, without ``ssl``.

The net device builds the TLS context from PEM bytes; the appliance only logs
the certificate's SHA-256 fingerprint (what browsers show, and what
``openssl x509 -fingerprint -sha256`` prints) so that an operator can check a
self-signed certificate before trusting it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

__all__ = ["fingerprint", "first_certificate_der"]

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.*?)\s*-----END CERTIFICATE-----", re.DOTALL)


def first_certificate_der(pem: bytes) -> bytes:
    """The DER bytes of the first certificate in ``pem`` (the leaf of a chain)."""
    match = _PEM_CERT.search(pem)
    if match is None:
        raise ValueError("no PEM certificate found")
    try:
        return base64.b64decode(b"".join(match.group(1).split()), validate=True)
    except binascii.Error:
        raise ValueError("the PEM certificate is not valid base64") from None


def fingerprint(pem: bytes) -> str:
    """``AB:CD:...``: SHA-256 of the leaf certificate's DER, upper-case hex pairs."""
    return ":".join(f"{b:02X}" for b in hashlib.sha256(first_certificate_der(pem)).digest())
