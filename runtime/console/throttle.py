"""Per-source throttling of failed console logins (sans-IO: the caller passes
the time).

Rules:

1. A *failure* is a console connection that ends without authenticating:
   keys refused, a ``from=`` mismatch, a password tried, the login timeout,
   or a scanner that connects and leaves.
2. ``MAX_FAILURES`` failures from one source within ``WINDOW`` seconds block
   that source for ``BLOCK`` seconds: its new connections are closed at once,
   before any SSH byte, so a flood costs one accept and one close each.
   fail2ban's sshd jail defaults to the same count (maxretry 5); its 10-minute
   window and ban are longer, but an appliance console has a handful of
   operators with keys, not users typing passwords, so one minute of five
   failures is already not an operator, and five minutes of silence makes a
   scan from that address take hours.  A connection refused while blocked
   does not extend the block: the time is predictable for an operator who
   locked themselves out.
3. A source is an IPv4 address, or an IPv6 /64 (one host usually owns a whole
   /64, so counting addresses inside it would count nothing).
4. At most ``MAX_SOURCES`` sources are tracked; when full, the entry whose
   last failure is oldest is forgotten first (bounded memory under a flood
   from many addresses).
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass, field

__all__ = ["BLOCK", "MAX_FAILURES", "MAX_SOURCES", "WINDOW", "LoginThrottle", "source_of"]

MAX_FAILURES = 5
WINDOW = 60.0
BLOCK = 300.0
MAX_SOURCES = 4096


def source_of(host: str) -> str:
    """The throttling key of a peer address: the address, or its IPv6 /64."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            return str(mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass
class _Source:
    failures: deque[float] = field(default_factory=deque)
    blocked_until: float = 0.0
    last: float = 0.0


class LoginThrottle:
    def __init__(
        self,
        *,
        max_failures: int = MAX_FAILURES,
        window: float = WINDOW,
        block: float = BLOCK,
        max_sources: int = MAX_SOURCES,
    ) -> None:
        if max_failures < 1 or window <= 0 or block < 0 or max_sources < 1:
            raise ValueError("throttle bounds must be positive")
        self._max_failures = max_failures
        self._window = window
        self._block = block
        self._max_sources = max_sources
        self._sources: dict[str, _Source] = {}

    @property
    def block(self) -> float:
        """Seconds a source stays blocked."""
        return self._block

    def blocked(self, host: str, now: float) -> bool:
        """Whether a new connection from ``host`` is to be refused now."""
        entry = self._sources.get(source_of(host))
        return entry is not None and now < entry.blocked_until

    def failed(self, host: str, now: float) -> bool:
        """Count one failed login from ``host``; True if this failure starts a block."""
        key = source_of(host)
        entry = self._sources.get(key)
        if entry is None:
            if len(self._sources) >= self._max_sources:
                self._forget_oldest(now)
            entry = self._sources[key] = _Source()
        entry.last = now
        if now < entry.blocked_until:
            return False
        failures = entry.failures
        failures.append(now)
        while failures and failures[0] <= now - self._window:
            failures.popleft()
        if len(failures) >= self._max_failures:
            failures.clear()
            entry.blocked_until = now + self._block
            return True
        return False

    def succeeded(self, host: str) -> None:
        """A login from ``host`` worked: its earlier failures are forgiven."""
        self._sources.pop(source_of(host), None)

    def blocked_sources(self, now: float) -> list[str]:
        return sorted(key for key, entry in self._sources.items() if now < entry.blocked_until)

    def __len__(self) -> int:
        return len(self._sources)

    def _forget_oldest(self, now: float) -> None:
        # Expired blocks and stale failures go first; else the least recent source.
        stale = [
            key
            for key, entry in self._sources.items()
            if now >= entry.blocked_until and (not entry.failures or entry.failures[-1] <= now - self._window)
        ]
        for key in stale:
            del self._sources[key]
        if len(self._sources) >= self._max_sources:
            oldest = min(self._sources, key=lambda key: self._sources[key].last)
            del self._sources[oldest]
