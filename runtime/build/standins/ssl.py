"""A stand-in for ``ssl`` in an image built without TLS (``stand_in = ["ssl"]``).

uvloop (``uvloop/includes/stdlib.pxi``), asyncio's ``sslproto`` and the
runtime's net device import ``ssl`` at import time and read the names below
from it; nothing else runs until an appliance asks for TLS, which an
appliance with this stand-in never does.  Leaving the real module out drops
``_ssl`` and libssl from the image, and libcrypto too once ``_hashlib`` is
excluded (``hashlib`` then uses the interpreter's own hash modules).

Whatever would start TLS (a context, a TLS object, a memory BIO) raises
``SSLError`` saying so, so a TLS option given to such an image fails at start
with that message instead of later.  The error codes are OpenSSL's
(``include/openssl/ssl.h``), as the real module has them.
"""

from __future__ import annotations

from typing import Any, NoReturn

__all__ = [
    "SSL_ERROR_EOF",
    "SSL_ERROR_SSL",
    "SSL_ERROR_SYSCALL",
    "SSL_ERROR_WANT_READ",
    "SSL_ERROR_WANT_WRITE",
    "SSL_ERROR_ZERO_RETURN",
    "STAND_IN",
    "CertificateError",
    "MemoryBIO",
    "SSLCertVerificationError",
    "SSLContext",
    "SSLEOFError",
    "SSLError",
    "SSLObject",
    "SSLSocket",
    "SSLSyscallError",
    "SSLWantReadError",
    "SSLWantWriteError",
    "SSLZeroReturnError",
    "create_default_context",
]

#: true here only: code (and tests) can tell the stand-in from the real module
STAND_IN = True

_WHY = (
    "this image was built without TLS: its ssl module is a stand-in "
    '(stand_in = ["ssl"] in the appliance\'s manifest.toml)'
)

SSL_ERROR_SSL = 1
SSL_ERROR_WANT_READ = 2
SSL_ERROR_WANT_WRITE = 3
SSL_ERROR_SYSCALL = 5
SSL_ERROR_ZERO_RETURN = 6
SSL_ERROR_EOF = 8


class SSLError(OSError):
    pass


class SSLZeroReturnError(SSLError):
    pass


class SSLWantReadError(SSLError):
    pass


class SSLWantWriteError(SSLError):
    pass


class SSLSyscallError(SSLError):
    pass


class SSLEOFError(SSLError):
    pass


class SSLCertVerificationError(SSLError, ValueError):
    pass


CertificateError = SSLCertVerificationError


def _unavailable() -> NoReturn:
    raise SSLError(_WHY)


class _Unavailable:
    """A class importers name (in ``isinstance`` checks, say) but that cannot be made here."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Unavailable:
        _unavailable()


class SSLContext(_Unavailable):
    pass


class SSLObject(_Unavailable):
    pass


class SSLSocket(_Unavailable):
    pass


class MemoryBIO(_Unavailable):
    pass


def create_default_context(*args: Any, **kwargs: Any) -> SSLContext:
    _unavailable()
