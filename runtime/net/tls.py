"""TLS contexts from PEM bytes.

``ssl`` only loads certificates from paths, and appliances only have bytes (from
the data device or the store).  On Linux the PEM goes into an anonymous
``memfd`` and is loaded through ``/proc/self/fd``; elsewhere through a private
temporary file removed at once.
"""

from __future__ import annotations

import hashlib
import os
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

from ..devices import TLSConfig

__all__ = ["check_tls", "client_context", "server_context", "server_end_point"]


@contextmanager
def _pem_path(pem: bytes) -> Iterator[str]:
    memfd = getattr(os, "memfd_create", None)
    if memfd is not None and os.path.isdir("/proc/self/fd"):
        fd = memfd("tls-pem", 0)
        try:
            os.write(fd, pem)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    import tempfile  # here: only off Linux, and tempfile brings shutil and zlib into an image

    fd, path = tempfile.mkstemp(prefix="tls-", suffix=".pem")
    try:
        os.write(fd, pem)
        os.close(fd)
        yield path
    finally:
        os.unlink(path)


#: server contexts by configuration: a context loads its PEM files once, not
#: for every STARTTLS; a reloaded certificate is a new configuration
_SERVER_CONTEXTS: dict[TLSConfig, ssl.SSLContext] = {}
_MAX_CONTEXTS = 16


def check_tls(config: TLSConfig) -> None:
    """Raise ValueError (one line) unless ``config``'s certificate and key load
    as a server pair: for an appliance to refuse a reloaded pair up front."""
    server_context(config)


def server_context(config: TLSConfig) -> ssl.SSLContext:
    """The server context for ``config`` (cached)."""
    ctx = _SERVER_CONTEXTS.get(config)
    if ctx is None:
        ctx = _new_server_context(config)
        if len(_SERVER_CONTEXTS) >= _MAX_CONTEXTS:
            _SERVER_CONTEXTS.pop(next(iter(_SERVER_CONTEXTS)))
        _SERVER_CONTEXTS[config] = ctx
    return ctx


def _new_server_context(config: TLSConfig) -> ssl.SSLContext:
    """A server context: TLS 1.2 minimum (RFC 9325 §3.1.1), our cert and key."""
    if not config.cert_pem or not config.key_pem:
        raise ValueError("TLS needs both a certificate and a key (PEM)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    with _pem_path(config.cert_pem) as cert, _pem_path(config.key_pem) as key:
        try:
            ctx.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise ValueError(f"certificate and key do not load: {exc.reason or exc}") from None
    if config.alpn:
        ctx.set_alpn_protocols(list(config.alpn))
    return ctx


def client_context(config: TLSConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.ca_pem:
        ctx.load_verify_locations(cadata=config.ca_pem.decode("ascii"))
    if not config.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if config.cert_pem and config.key_pem:
        with _pem_path(config.cert_pem) as cert, _pem_path(config.key_pem) as key:
            ctx.load_cert_chain(cert, key)
    if config.alpn:
        ctx.set_alpn_protocols(list(config.alpn))
    return ctx


def server_end_point(cert_der: bytes) -> bytes:
    """RFC 5929 §4.1 tls-server-end-point: the certificate hashed with SHA-256
    (the rule maps MD5 and SHA-1 signature hashes to SHA-256, and we issue only
    SHA-256 or stronger certificates)."""
    return hashlib.sha256(cert_der).digest()
