"""XEP-0077 in-band registration.

* Before authentication, over TLS only, and only with ``--register``: the
  stream feature, the form (``username``, ``password``) and account creation.
  Each client address may create ``--register-limit`` accounts per hour;
  more get ``resource-constraint`` (type wait).  An existing account is a
  ``conflict``, a bad or missing field ``not-acceptable`` (§3.1).
* From a bound session, always: the form shows the account as registered;
  ``<username/><password/>`` changes the password (§3.3: the account's other
  sessions are closed with ``reset``); ``<remove/>`` deletes the account and
  everything it stored (§3.2: the result, then every session of the account
  ends with ``not-authorized``).

Passwords are only ever turned into salted SCRAM keys (``Storage``).
"""

from __future__ import annotations

from collections.abc import Callable

from runtime import Random

from .c2s import NS_REGISTER
from .jid import JID, JIDError
from .stanzas import error_reply, iq_result
from .storage import Storage
from .xmlstream import Element, serialize

__all__ = ["MAX_PASSWORD", "NS_REGISTER", "RateLimit", "Registration", "form"]

MAX_PASSWORD = 1024
HOUR = 3600.0


class RateLimit:
    """At most ``limit`` events per client address in a sliding ``window``."""

    def __init__(self, limit: int, window: float = HOUR, max_entries: int = 65536) -> None:
        self.limit = limit
        self.window = window
        self.max_entries = max_entries
        self._events: dict[str, list[float]] = {}

    def allow(self, host: str, now: float) -> bool:
        """Count an event for ``host`` if it is allowed; False when over the limit."""
        recent = [t for t in self._events.get(host, []) if now - t < self.window]
        if len(recent) >= self.limit:
            self._events[host] = recent
            return False
        if host not in self._events and len(self._events) >= self.max_entries:
            self._events.pop(next(iter(self._events)))
        recent.append(now)
        self._events[host] = recent
        return True


def form(instructions: str, *, username: str = "") -> Element:
    query = Element("query", NS_REGISTER)
    if username:
        query.add(Element("registered", NS_REGISTER))
        query.add(Element("username", NS_REGISTER, {}, [username]))
    else:
        query.add(Element("instructions", NS_REGISTER, {}, [instructions]))
        query.add(Element("username", NS_REGISTER))
    query.add(Element("password", NS_REGISTER))
    return query


class Registration:
    def __init__(
        self,
        domain: str,
        storage: Storage,
        *,
        random: Random,
        now: Callable[[], float],
        limit: int,
    ) -> None:
        self.domain = domain
        self.storage = storage
        self.random = random
        self.now = now
        self.limit = RateLimit(limit)

    async def before_auth(self, iq: Element, peer_host: str) -> bytes:
        """The answer to a registration iq on a secure, unauthenticated stream."""
        query = iq.first()
        kind = iq.get("type")
        if query is None or query.ns != NS_REGISTER or query.name != "query":
            return _error(iq, "service-unavailable")
        if kind == "get":
            text = f"Choose a user name and a password for an account at {self.domain}."
            return serialize(iq_result(iq, form(text)))
        if kind != "set":
            return _error(iq, "bad-request")
        if query.find("remove") is not None:
            return _error(iq, "not-authorized")  # §3.2: cancelling needs a session
        fields = _fields(query, self.domain)
        if isinstance(fields, str):
            return _error(iq, "not-acceptable", fields)
        jid, password = fields
        if self.storage.has_account(jid):
            return _error(iq, "conflict", "that user name is taken")
        if not self.limit.allow(peer_host, self.now()):
            return _error(iq, "resource-constraint", "too many accounts from this address; try later")
        if not await self.storage.create_account(jid, password, self.random, self.now()):
            return _error(iq, "conflict", "that user name is taken")
        return serialize(iq_result(iq))

    async def from_session(self, iq: Element, bare: str) -> tuple[bytes, str | None]:
        """The answer to a registration iq of a bound session, and what
        happened to the account: "password", "deleted" or None."""
        query = iq.first()
        assert query is not None
        kind = iq.get("type")
        local = bare.partition("@")[0]
        if kind == "get":
            return serialize(iq_result(iq, form("", username=local))), None
        if kind != "set":
            return _error(iq, "bad-request"), None
        if query.find("remove") is not None:
            if not await self.storage.delete_account(bare):
                return _error(iq, "item-not-found"), None
            return serialize(iq_result(iq)), "deleted"
        fields = _fields(query, self.domain)
        if isinstance(fields, str):
            return _error(iq, "not-acceptable", fields), None
        jid, password = fields
        if jid != bare:
            return _error(iq, "not-allowed", "a session changes only its own account's password"), None
        if not await self.storage.set_password(bare, password, self.random):
            return _error(iq, "item-not-found"), None
        return serialize(iq_result(iq)), "password"


def _fields(query: Element, domain: str) -> tuple[str, str] | str:
    """(bare JID, password) from the form, or what is wrong with it."""
    username = query.find("username")
    password = query.find("password")
    if username is None or password is None or not username.text or not password.text:
        return "a username and a password are required"
    if len(password.text) > MAX_PASSWORD:
        return f"the password is longer than {MAX_PASSWORD} characters"
    try:
        jid = JID.parse(f"{username.text}@{domain}")
    except JIDError as exc:
        return f"not a valid user name: {exc}"
    if jid.resource or not jid.local:
        return "not a valid user name"
    return str(jid), password.text


def _error(iq: Element, condition: str, text: str = "") -> bytes:
    return serialize(error_reply(iq, condition, text))
