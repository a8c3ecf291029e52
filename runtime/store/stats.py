"""The store's statistics record (for the metrics device)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StatsCounter", "StoreStats"]


@dataclass(frozen=True, slots=True)
class StoreStats:
    #: transactions committed (each carries a group of writes)
    commits: int
    #: write operations finished: put, delete, write, execute, transaction, migrate
    writes: int
    #: of those, the ones that raised (their own error, or their whole group's)
    failures: int
    #: writes per commit, over the store's life; 1.0 means no grouping happened
    average_batch: float
    #: writes submitted and not yet finished (queued, or in the commit under way)
    queue_depth: int


class StatsCounter:
    """The mutable counts behind ``StoreStats``; touched only in the loop thread."""

    __slots__ = ("commits", "committed_writes", "failures", "pending", "writes")

    def __init__(self) -> None:
        self.commits = 0
        self.committed_writes = 0
        self.writes = 0
        self.failures = 0
        self.pending = 0

    def snapshot(self) -> StoreStats:
        average = self.committed_writes / self.commits if self.commits else 0.0
        return StoreStats(self.commits, self.writes, self.failures, average, self.pending)
