"""Conformance suites for the ambient ``Clock`` and ``Random`` devices."""

from __future__ import annotations

import asyncio

from ...devices import Clock, Random

__all__ = ["ClockConformance", "RandomConformance"]


class ClockConformance:
    """Needs fixtures ``clock`` and ``advance`` (a function moving the clock
    forward by some seconds: real sleeping for a real clock)."""

    async def test_monotonic_does_not_go_back(self, clock: Clock) -> None:
        readings = [clock.monotonic() for _ in range(1000)]
        assert readings == sorted(readings)

    async def test_now_is_epoch_seconds(self, clock: Clock) -> None:
        # Any time after 2020-01-01 and before 2100 is plausible for both real and manual clocks.
        assert 1_577_836_800 < clock.now() < 4_102_444_800

    async def test_sleep_waits_for_the_clock(self, clock: Clock, advance) -> None:  # type: ignore[no-untyped-def]
        start = clock.monotonic()
        sleeper = asyncio.ensure_future(clock.sleep(0.05))
        await asyncio.sleep(0)
        assert not sleeper.done()
        await advance(0.06)
        await asyncio.wait_for(sleeper, 10)
        assert clock.monotonic() - start >= 0.05


class RandomConformance:
    """Needs a fixture ``random``."""

    def test_bytes(self, random: Random) -> None:
        assert len(random.bytes(0)) == 0
        chunks = {random.bytes(16) for _ in range(100)}
        assert len(chunks) == 100 and all(len(c) == 16 for c in chunks)

    def test_below_is_in_range_and_spread(self, random: Random) -> None:
        seen = [random.below(10) for _ in range(2000)]
        assert min(seen) == 0 and max(seen) == 9
        assert all(seen.count(i) > 100 for i in range(10))

    def test_token_is_url_safe(self, random: Random) -> None:
        token = random.token(24)
        assert len(token) == 32
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
