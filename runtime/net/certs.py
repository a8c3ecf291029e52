"""Self-signed certificates for local use and first start (cryptography, which
asyncssh already depends on)."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["certificate_fingerprint", "make_self_signed", "tls_server_end_point"]


def make_self_signed(
    names: Sequence[str], *, days: int = 825, now: float | None = None
) -> tuple[bytes, bytes]:
    """A P-256 key and a certificate for ``names`` (DNS names or IP literals),
    as (certificate PEM, key PEM).  825 days is the longest validity Apple
    platforms accept for TLS server certificates."""
    if not names:
        raise ValueError("a certificate needs at least one name")
    key = ec.generate_private_key(ec.SECP256R1())
    start = (
        datetime.datetime.fromtimestamp(now, datetime.UTC)
        if now is not None
        else datetime.datetime.now(datetime.UTC)
    ) - datetime.timedelta(minutes=5)
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert_pem, key_pem


def _leaf(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise ValueError(f"not a PEM certificate: {exc}") from None


def certificate_fingerprint(pem: bytes) -> str:
    """``AB:CD:...``: SHA-256 of the first (leaf) certificate in ``pem``, the form
    browsers and ``openssl x509 -fingerprint -sha256`` show."""
    digest = _leaf(pem).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)


def tls_server_end_point(pem: bytes) -> bytes | None:
    """RFC 5929 §4.1 tls-server-end-point channel binding data for the leaf
    certificate in ``pem``: its DER hashed with the hash of its signature
    algorithm, SHA-256 in place of MD5 and SHA-1.  None where the algorithm
    names no single hash (Ed25519, RSA-PSS without parameters read here)."""
    cert = _leaf(pem)
    algorithm = cert.signature_hash_algorithm
    if algorithm is None:
        return None
    if algorithm.name in ("md5", "sha1"):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(cert.public_bytes(serialization.Encoding.DER))
    return digest.finalize()
