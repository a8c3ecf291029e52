"""The host store: one SQLite file in WAL mode per appliance instance.

Writes go to one writer thread that group-commits (see ``writer``); each returns
once its transaction committed with the WAL fsynced.  Reads run synchronously on
a second connection in the loop thread: WAL readers never wait for the writer,
and since a write is acknowledged only after its commit, a read that follows it
sees it.  Several processes (workers, a CLI tool adding a user) may open the same
file at once; SQLite's locks and the busy timeout arbitrate their writers.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, cast

from ..devices import Log
from .checks import check_changes, check_key, check_migration, check_sql, check_statements, check_value
from .errors import StoreError
from .files import Opened, open_reader, open_writer
from .guard import ReadGuard
from .ops import Outcome, WriteOp, delete_op, execute_op, migrate_op, put_op, transaction_op, write_op
from .reads import read_get, read_items, read_keys, read_query
from .stats import StatsCounter, StoreStats
from .writer import Job, Writer

__all__ = ["DEFAULT_BUSY_TIMEOUT", "DEFAULT_MAX_PENDING", "SqliteStore", "open_sqlite_store"]

#: How long a write (or the open) waits for another connection's lock before it
#: fails with StoreError.  5 s is the default of Python's ``sqlite3.connect``; a
#: CLI tool's write holds the lock for milliseconds.
DEFAULT_BUSY_TIMEOUT = 5.0

#: Writes queued or in flight before ``put`` and friends wait (back-pressure).
#: Measured here, one group of 10,000 puts commits in 40-50 ms (100-byte values;
#: 80-90 ms with 1 KB values), so a full queue stays under 0.1 s of latency and
#: 10 MB of values in memory, while 100 writers at once (bench/store.py) never
#: come near it.
DEFAULT_MAX_PENDING = 10_000


class _Ledger:
    """Loop-side bookkeeping of submitted writes: the queue bound, the counts,
    and handing each group's outcomes to its callers."""

    def __init__(self, where: str, max_pending: int, log: Log | None) -> None:
        self.where = where
        self.log = log
        self.slots = asyncio.Semaphore(max_pending)
        self.stats = StatsCounter()

    def deliver(self, jobs: list[Job], result: list[Outcome] | StoreError) -> None:
        stats = self.stats
        stats.writes += len(jobs)
        stats.pending -= len(jobs)
        if isinstance(result, StoreError):
            if self.log is not None:
                self.log.error("store write failed", path=self.where, writes=len(jobs), error=str(result))
            outcomes = [Outcome(error=_copy(result)) for _ in jobs]
        else:
            stats.commits += 1
            stats.committed_writes += len(jobs)
            outcomes = result
        for job, outcome in zip(jobs, outcomes, strict=True):
            self.slots.release()
            if outcome.error is not None:
                stats.failures += 1
            if job.future.done():  # the caller was cancelled; its write may still have landed
                continue
            if outcome.error is None:
                job.future.set_result(outcome.value)
            else:
                job.future.set_exception(outcome.error)


def _copy(error: StoreError) -> StoreError:
    """One exception object per caller: each raise extends the traceback it carries."""
    copy = StoreError(str(error))
    copy.__cause__ = error.__cause__
    return copy


class SqliteStore:
    """A ``Store`` on an SQLite file.  Made ready by ``open_sqlite_store``."""

    def __init__(
        self,
        where: str,
        writer: Writer[Opened],
        ledger: _Ledger,
        reader: sqlite3.Connection,
        guard: ReadGuard,
        *,
        busy_timeout: float,
    ) -> None:
        self._where = where
        self._writer = writer
        self._ledger = ledger
        self._reader = reader
        self._guard = guard
        self._busy_timeout = busy_timeout
        self._closing = False
        self._reader_open = True

    @property
    def path(self) -> str:
        return self._where

    # ------------------------------------------------------------ reads

    def _readable(self) -> sqlite3.Connection:
        if not self._reader_open:
            raise StoreError(f"store {self._where}: used after aclose()")
        return self._reader

    def get(self, key: str, default: bytes | None = None) -> bytes | None:
        value = read_get(self._readable(), self._where, key, self._busy_timeout)
        return default if value is None else value

    def keys(self, prefix: str = "") -> list[str]:
        return read_keys(self._readable(), self._where, prefix, self._busy_timeout)

    def items(self, prefix: str = "") -> list[tuple[str, bytes]]:
        return read_items(self._readable(), self._where, prefix, self._busy_timeout)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return read_query(self._readable(), self._where, self._guard, sql, params, self._busy_timeout)

    # ------------------------------------------------------------ writes

    async def _submit(self, op: WriteOp) -> object:
        if self._closing:
            raise StoreError(f"store {self._where}: used after aclose()")
        ledger = self._ledger
        await ledger.slots.acquire()
        if self._closing:  # closed while this write waited for room
            ledger.slots.release()
            raise StoreError(f"store {self._where}: used after aclose()")
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        ledger.stats.pending += 1
        self._writer.submit(Job(op, future))
        return await future

    async def put(self, key: str, value: bytes) -> None:
        key = check_key(key)
        await self._submit(put_op(key, check_value(key, value)))

    async def delete(self, key: str) -> None:
        await self._submit(delete_op(check_key(key)))

    async def write(self, changes: Iterable[tuple[str, bytes | None]]) -> None:
        checked = check_changes(changes)
        if checked:
            await self._submit(write_op(checked))

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        check_sql(sql, params)
        return cast(int, await self._submit(execute_op(sql, params)))

    async def transaction(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> None:
        checked = check_statements(statements)
        if checked:
            await self._submit(transaction_op(checked))

    async def migrate(self, name: str, steps: Sequence[str]) -> None:
        split = check_migration(name, steps)
        applied = await self._submit(migrate_op(self._where, name, split))
        if applied and self._ledger.log is not None:
            self._ledger.log.info("store migrated", path=self._where, migration=name, steps=applied)

    # ------------------------------------------------------------ life

    def statistics(self) -> StoreStats:
        return self._ledger.stats.snapshot()

    async def aclose(self) -> None:
        """Finish the writes already submitted, stop and join the writer thread,
        close both connections.  Writes submitted afterwards raise StoreError."""
        self._closing = True
        try:
            await self._writer.stop()
        finally:
            if self._reader_open:
                self._reader_open = False
                self._reader.close()
                log = self._ledger.log
                if log is not None:
                    stats = self.statistics()
                    log.debug(
                        "store closed",
                        path=self._where,
                        commits=stats.commits,
                        writes=stats.writes,
                        failures=stats.failures,
                    )

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


async def open_sqlite_store(
    path: str | os.PathLike[str],
    *,
    log: Log | None = None,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    max_pending: int = DEFAULT_MAX_PENDING,
    check: bool = True,
) -> SqliteStore:
    """Open (creating it and its directory if needed) the store at ``path``.

    Waits in a thread for the file: ``PRAGMA quick_check`` when ``check`` (it
    reads the whole file), WAL mode, and the write lock, which another connection
    may hold for up to ``busy_timeout`` seconds.  Raises ``StoreError`` naming
    the file when it is not a database, corrupt, locked, or its directory is not
    writable.
    """
    if busy_timeout < 0 or max_pending < 1:
        raise ValueError(f"busy_timeout must be >= 0 and max_pending >= 1, not {busy_timeout}, {max_pending}")
    # abspath only reads the working directory (getcwd), it does not touch the disk.
    where = os.path.abspath(os.fspath(path))  # noqa: ASYNC240
    ledger = _Ledger(where, max_pending, log)
    connect = functools.partial(open_writer, where, busy_timeout=busy_timeout, check=check)
    writer = Writer(where, connect, ledger.deliver, busy_timeout=busy_timeout)
    opened = await writer.start()
    try:
        reader, guard = open_reader(where, busy_timeout=busy_timeout)
    except BaseException:
        await writer.stop()
        raise
    if log is not None:
        # Debug: the appliance's own "ready" line is the first thing an
        # operator reads at start.
        log.debug(
            "store open",
            path=where,
            created=opened.created,
            bytes=opened.size,
            check_seconds=round(opened.check_seconds, 3),
        )
    return SqliteStore(where, writer, ledger, reader, guard, busy_timeout=busy_timeout)
