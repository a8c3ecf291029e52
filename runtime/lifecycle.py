"""The stop signal every device listens to.

One ``Lifecycle`` per running appliance.  ``request_stop()`` (SIGTERM, SIGINT,
the console's ``stop``, the image's power button) flips it once; listeners stop
accepting, idle streams read end-of-stream, ``wait_stopping()`` returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["Lifecycle"]


class Lifecycle:
    def __init__(self) -> None:
        self._stopping = False
        self._event: asyncio.Event | None = None
        self._callbacks: list[Callable[[], None]] = []

    @property
    def stopping(self) -> bool:
        return self._stopping

    def request_stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        if self._event is not None:
            self._event.set()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def on_stop(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` once when stopping (now, if already stopping).
        Returns a function that unsubscribes."""
        if self._stopping:
            callback()
            return lambda: None
        self._callbacks.append(callback)

        def cancel() -> None:
            try:
                self._callbacks.remove(callback)
            except ValueError:
                pass

        return cancel

    async def wait_stopping(self) -> None:
        if self._stopping:
            return
        if self._event is None:
            self._event = asyncio.Event()
        await self._event.wait()
