"""What every net device keeps of the endpoints it opened."""

from __future__ import annotations

from ..devices import Address
from .listener import StreamListenerImpl
from .udp import DatagramEndpointImpl

__all__ = ["EndpointOwner"]

Owned = StreamListenerImpl | DatagramEndpointImpl


class EndpointOwner:
    """Records each listener and endpoint a net device opens: their addresses
    for the ``ready`` line and tests, the objects for metrics and shutdown."""

    def __init__(self) -> None:
        #: ("tcp" | "udp", address) of every endpoint bound, in order
        self.bound: list[tuple[str, Address]] = []
        self._owned: list[Owned] = []

    def _own(self, item: Owned) -> None:
        kind = "tcp" if isinstance(item, StreamListenerImpl) else "udp"
        self.bound.append((kind, item.address))
        self._owned.append(item)

    @property
    def owned(self) -> tuple[Owned, ...]:
        """Every listener and endpoint opened so far (for the runtime's metrics)."""
        return tuple(self._owned)

    async def aclose(self) -> None:
        """Close every listener and endpoint this device opened (at shutdown)."""
        owned, self._owned = self._owned, []
        for item in owned:
            await item.aclose()
