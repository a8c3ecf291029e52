"""SASL for the server (sans-IO): SCRAM-SHA-1, SCRAM-SHA-256 and their -PLUS
variants (RFC 5802, RFC 7677), and PLAIN (RFC 4616) checked against the same
stored keys.

Only salted keys are stored (RFC 5802 §3): ``StoredKey = H(HMAC(SaltedPassword,
"Client Key"))`` and ``ServerKey = HMAC(SaltedPassword, "Server Key")`` with the
salt and iteration count; never the password.

An unknown user is answered with a salt and iteration count derived from a
server secret, so that the exchange looks the same as for a real account and
ends in the same ``not-authorized`` (RFC 5802 §9: do not disclose which
accounts exist).

Channel binding (RFC 5802 §6, RFC 5929 §4): ``tls-server-end-point`` only, whose
data is the hash of our own certificate; the -PLUS mechanisms are offered only
when that data is known.  A client saying ``y`` (it supports binding but thinks
the server does not) while we offered -PLUS is a downgrade: refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "DEFAULT_ITERATIONS",
    "HASHES",
    "Credential",
    "SaslFailure",
    "ScramServer",
    "check_plain",
    "derive",
    "fake_credential",
    "saslprep",
]

#: RFC 7677 §4 recommends at least 4096 iterations (the minimum for SCRAM-SHA-256)
DEFAULT_ITERATIONS = 4096
#: mechanism name prefix -> hashlib name
HASHES = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}
_MAX_MESSAGE = 4096


class SaslFailure(Exception):
    """An RFC 6120 §6.5 SASL failure condition (``not-authorized``, ``malformed-request``...)."""

    def __init__(self, condition: str, text: str = "") -> None:
        super().__init__(condition)
        self.condition = condition
        self.text = text


@dataclass(frozen=True, slots=True)
class Credential:
    """One hash's SCRAM keys for an account."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


def saslprep(text: str) -> str:
    """RFC 4013 SASLprep, the mapping and normalisation steps: non-ASCII spaces to
    a space, "commonly mapped to nothing" characters removed, NFKC.  Prohibited
    characters (controls) are refused with ValueError."""
    mapped = []
    for char in text:
        if char in "\u00ad\u034f\u1806\u180b\u180c\u180d\u200b\u200c\u200d\u2060\ufe00\ufeff":
            continue
        if char != " " and unicodedata.category(char) == "Zs":
            char = " "
        mapped.append(char)
    result = unicodedata.normalize("NFKC", "".join(mapped))
    for char in result:
        if unicodedata.category(char) in ("Cc", "Cs", "Co", "Cn") or char in "\ufffe\uffff":
            raise ValueError("prohibited character")
    return result


def derive(password: str, salt: bytes, iterations: int, hash_name: str) -> Credential:
    """The keys for ``password`` (RFC 5802 §3: Hi is PBKDF2 with HMAC-hash)."""
    salted = hashlib.pbkdf2_hmac(hash_name, saslprep(password).encode("utf-8"), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    stored_key = hashlib.new(hash_name, client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", hash_name)
    return Credential(salt, iterations, stored_key, server_key)


def fake_credential(secret: bytes, username: str, hash_name: str) -> Credential:
    """A stable, unusable credential for an unknown user (same shape as a real one)."""
    salt = hmac.digest(secret, b"salt:" + username.encode("utf-8"), "sha256")[:16]
    key = hmac.digest(secret, b"key:" + username.encode("utf-8"), hash_name)
    return Credential(salt, DEFAULT_ITERATIONS, key, key)


def check_plain(message: bytes, lookup: Callable[[str], Credential | None]) -> tuple[str, str]:
    """RFC 4616 PLAIN: ``authzid NUL authcid NUL passwd``; returns (authcid, authzid)
    or raises SaslFailure.  ``lookup`` gives the account's SHA-256 credential."""
    parts = message.split(b"\0")
    if len(parts) != 3 or len(message) > _MAX_MESSAGE:
        raise SaslFailure("malformed-request")
    try:
        authzid, authcid, password = (part.decode("utf-8") for part in parts)
    except UnicodeDecodeError:
        raise SaslFailure("malformed-request") from None
    credential = lookup(authcid)
    if credential is None or not password:
        raise SaslFailure("not-authorized")
    try:
        check = derive(password, credential.salt, credential.iterations, "sha256")
    except ValueError:
        raise SaslFailure("not-authorized") from None
    if not hmac.compare_digest(check.stored_key, credential.stored_key):
        raise SaslFailure("not-authorized")
    return authcid, authzid


def _attributes(text: str) -> list[tuple[str, str]]:
    result = []
    for part in text.split(","):
        if len(part) < 2 or part[1] != "=" or not part[0].isalpha():
            raise SaslFailure("malformed-request", f"bad attribute {part[:20]!r}")
        result.append((part[0], part[2:]))
    return result


def _unescape_name(name: str) -> str:
    """RFC 5802 §5.1: ``=2C`` is ',' and ``=3D`` is '='; any other '=' is an error."""
    if "=" in name.replace("=2C", "").replace("=3D", ""):
        raise SaslFailure("malformed-request", "bad escape in the user name")
    return name.replace("=2C", ",").replace("=3D", "=")


class ScramServer:
    """One SCRAM exchange: ``first(client_first)`` -> server-first,
    ``final(client_final)`` -> server-final (raises SaslFailure on any fault).

    ``lookup(username, hash_name)`` gives the stored credential or None;
    ``cb_data`` is the tls-server-end-point binding data (None: no binding
    possible); ``plus_offered`` says whether any -PLUS mechanism was offered."""

    def __init__(
        self,
        mechanism: str,
        *,
        lookup: Callable[[str, str], Credential | None],
        secret: bytes,
        nonce: str,
        cb_data: bytes | None,
        plus_offered: bool,
    ) -> None:
        self.plus = mechanism.endswith("-PLUS")
        base = mechanism.removesuffix("-PLUS")
        if base not in HASHES or (self.plus and cb_data is None):
            raise SaslFailure("invalid-mechanism")
        self.hash_name = HASHES[base]
        self._lookup = lookup
        self._secret = secret
        self._server_nonce = nonce
        self._cb_data = cb_data
        self._plus_offered = plus_offered
        self.username = ""
        self.authzid = ""
        self._known = False
        self._credential: Credential | None = None
        self._gs2_header = ""
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""

    def first(self, message: bytes) -> bytes:
        if len(message) > _MAX_MESSAGE:
            raise SaslFailure("malformed-request")
        try:
            text = message.decode("utf-8")
        except UnicodeDecodeError:
            raise SaslFailure("malformed-request") from None
        # gs2-header = gs2-cbind-flag "," [authzid] ","  (RFC 5802 §7)
        flag, sep, rest = text.partition(",")
        authz, sep2, bare = rest.partition(",")
        if not sep or not sep2:
            raise SaslFailure("malformed-request")
        if flag == "p=tls-server-end-point":
            if not self.plus:
                raise SaslFailure("malformed-request", "channel binding requested with a non-PLUS mechanism")
        elif flag.startswith("p="):
            raise SaslFailure("malformed-request", "unsupported channel binding type")
        elif flag == "y":
            if self._plus_offered:
                # §6: the client thinks we cannot bind, but we offered to: a downgrade
                raise SaslFailure("not-authorized", "channel binding downgrade")
        elif flag != "n":
            raise SaslFailure("malformed-request")
        if flag in ("n", "y") and self.plus:
            raise SaslFailure("malformed-request", "a -PLUS mechanism needs channel binding")
        if authz:
            if not authz.startswith("a="):
                raise SaslFailure("malformed-request")
            self.authzid = _unescape_name(authz[2:])
        attrs = _attributes(bare)
        if len(attrs) < 2 or attrs[0][0] != "n" or attrs[1][0] != "r":
            if attrs and attrs[0][0] == "m":
                raise SaslFailure("malformed-request", "mandatory extensions are not supported")
            raise SaslFailure("malformed-request")
        try:
            self.username = saslprep(_unescape_name(attrs[0][1]))
        except ValueError:
            raise SaslFailure("malformed-request") from None
        client_nonce = attrs[1][1]
        if not client_nonce or not client_nonce.isprintable() or "," in client_nonce:
            raise SaslFailure("malformed-request")
        credential = self._lookup(self.username, self.hash_name)
        self._known = credential is not None
        if credential is None:
            credential = fake_credential(self._secret, self.username, self.hash_name)
        self._credential = credential
        self._gs2_header = f"{flag},{authz},"
        self._client_first_bare = bare
        self._nonce = client_nonce + self._server_nonce
        salt = base64.b64encode(credential.salt).decode("ascii")
        self._server_first = f"r={self._nonce},s={salt},i={credential.iterations}"
        return self._server_first.encode("ascii")

    def final(self, message: bytes) -> bytes:
        credential = self._credential
        if credential is None or len(message) > _MAX_MESSAGE:
            raise SaslFailure("malformed-request")
        try:
            text = message.decode("utf-8")
        except UnicodeDecodeError:
            raise SaslFailure("malformed-request") from None
        without_proof, sep, proof_attr = text.rpartition(",p=")
        if not sep:
            raise SaslFailure("malformed-request")
        attrs = dict(_attributes(without_proof))
        if attrs.get("r") != self._nonce:
            raise SaslFailure("not-authorized", "nonce mismatch")
        binding = self._gs2_header.encode("utf-8")
        if self.plus and self._cb_data is not None:
            binding += self._cb_data
        if attrs.get("c") != base64.b64encode(binding).decode("ascii"):
            raise SaslFailure("not-authorized", "channel binding mismatch")
        try:
            proof = base64.b64decode(proof_attr, validate=True)
        except binascii.Error:
            raise SaslFailure("malformed-request") from None
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        signature = hmac.digest(credential.stored_key, auth_message, self.hash_name)
        if len(proof) != len(signature):
            raise SaslFailure("not-authorized")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        stored = hashlib.new(self.hash_name, client_key).digest()
        if not self._known or not hmac.compare_digest(stored, credential.stored_key):
            raise SaslFailure("not-authorized")
        verifier = hmac.digest(credential.server_key, auth_message, self.hash_name)
        return b"v=" + base64.b64encode(verifier)
