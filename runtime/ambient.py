"""The ambient devices: clock and randomness (log and metrics have their own
modules).  Tests inject ``ManualClock`` and ``SeededRandom``."""

from __future__ import annotations

import asyncio
import base64
import heapq
import itertools
import os
import random as _random
import secrets
import time

__all__ = ["ManualClock", "SeededRandom", "SystemClock", "SystemRandom"]


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ManualClock:
    """Time moves only when the test calls ``advance``; sleepers wake in order."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._wall = start
        self._mono = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._wall + self._mono

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + seconds, next(self._seq), future))
        await future

    def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper whose deadline passed.  The
        woken coroutines run at the loop's next turn (``await asyncio.sleep(0)``)."""
        if seconds < 0:
            raise ValueError("time does not go backwards")
        self._mono += seconds
        while self._sleepers and self._sleepers[0][0] <= self._mono:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())


class SystemRandom:
    """The OS's CSPRNG (getrandom(2))."""

    def bytes(self, n: int) -> bytes:
        return os.urandom(n)

    def below(self, n: int) -> int:
        return secrets.randbelow(n)

    def token(self, n: int = 16) -> str:
        return secrets.token_urlsafe(n)


class SeededRandom:
    """Deterministic randomness for tests.  Never use it to serve."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = _random.Random(seed)

    def bytes(self, n: int) -> bytes:
        return self._rng.randbytes(n)

    def below(self, n: int) -> int:
        return self._rng.randrange(n)

    def token(self, n: int = 16) -> str:
        return base64.urlsafe_b64encode(self.bytes(n)).rstrip(b"=").decode("ascii")
