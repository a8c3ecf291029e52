"""JIDs (RFC 7622): ``localpart@domainpart/resourcepart``.

Preparation is the subset of PRECIS this server needs to compare addresses
safely: NFKC and case folding for the localpart (UsernameCaseMapped, §3.3),
lower-case for the domain (§3.2), NFC for the resource (OpaqueString, §3.4).
Each part is 1..1023 bytes; the localpart refuses ``"&'/:<>@`` and spaces.
"""

from __future__ import annotations

import unicodedata
from typing import NamedTuple

__all__ = ["JID", "JIDError"]

_MAX_PART = 1023
_LOCAL_FORBIDDEN = frozenset("\"&'/:<>@")


class JIDError(ValueError):
    """A malformed address: the stanza error ``jid-malformed`` (RFC 6120 §8.3.3.8)."""


def _check(part: str, what: str) -> str:
    if not part or len(part.encode("utf-8")) > _MAX_PART:
        raise JIDError(f"{what} must be 1 to {_MAX_PART} bytes")
    for char in part:
        if unicodedata.category(char) in ("Cc", "Cs", "Co", "Cn"):
            raise JIDError(f"control or unassigned character in the {what}")
    return part


class JID(NamedTuple):
    local: str
    domain: str
    resource: str

    @classmethod
    def parse(cls, text: str) -> JID:
        """Parse and prepare ``text``; raises JIDError."""
        rest, slash, resource = text.partition("/")
        local, at, domain = rest.rpartition("@")
        if not at:
            local, domain = "", rest
        elif not local:
            raise JIDError("empty localpart")
        if slash and not resource:
            raise JIDError("empty resourcepart")
        domain = _check(domain.rstrip(".").lower(), "domainpart")
        if local:
            local = _check(unicodedata.normalize("NFKC", local).casefold(), "localpart")
            if any(char in _LOCAL_FORBIDDEN or char.isspace() for char in local):
                raise JIDError("forbidden character in the localpart")
        if resource:
            resource = _check(unicodedata.normalize("NFC", resource), "resourcepart")
        return cls(local, domain, resource)

    @property
    def bare(self) -> JID:
        return JID(self.local, self.domain, "")

    @property
    def is_bare(self) -> bool:
        return not self.resource

    def with_resource(self, resource: str) -> JID:
        return JID(self.local, self.domain, resource)

    def __str__(self) -> str:
        text = f"{self.local}@{self.domain}" if self.local else self.domain
        return f"{text}/{self.resource}" if self.resource else text
