"""Checks of the appliance's options (run when options are parsed: one clear line)."""

from __future__ import annotations

from .component import parse_component
from .jid import JID, JIDError

__all__ = ["check_component", "check_domain"]


def check_domain(value: str) -> str | None:
    try:
        jid = JID.parse(value)
    except JIDError as exc:
        return f"not a domain name: {exc}"
    if jid.local or jid.resource or " " in value:
        return "expected a bare domain such as example.org"
    return None


def check_component(values: list[str]) -> str | None:
    seen: set[str] = set()
    for value in values:
        try:
            domain, _ = parse_component(value)
        except ValueError as exc:
            return str(exc)
        if domain in seen:
            return f"{domain} is given twice"
        seen.add(domain)
    return None
