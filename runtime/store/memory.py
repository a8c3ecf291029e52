"""An in-memory store for tests: the same SQL engine, rules and errors as the
host store, without a file or a thread.

One ``:memory:`` connection in the loop thread does everything.  A write runs
through the same group transaction as the host store's writer, as a group of
one, and is done when the call returns (the methods stay ``async`` to keep the
``Store`` signatures).  Nothing survives ``aclose()``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, cast

from .checks import check_changes, check_key, check_migration, check_sql, check_statements, check_value
from .errors import StoreError
from .guard import ReadGuard, installed
from .ops import (
    SCHEMA,
    WriteOp,
    apply_group,
    delete_op,
    execute_op,
    migrate_op,
    put_op,
    transaction_op,
    write_op,
)
from .reads import read_get, read_items, read_keys, read_query
from .stats import StatsCounter, StoreStats

__all__ = ["MemoryStore"]

# A memory store has no other connection to wait for; the value only labels errors.
_NO_WAIT = 0.0


class MemoryStore:
    """A ``Store`` held in memory.  ``name`` labels its error messages."""

    def __init__(self, *, name: str = ":memory:") -> None:
        self._where = name
        self._conn: sqlite3.Connection | None = sqlite3.connect(":memory:", isolation_level=None)
        for statement in SCHEMA:
            self._conn.execute(statement)
        self._stats = StatsCounter()

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"store {self._where}: used after aclose()")
        return self._conn

    # ------------------------------------------------------------ reads

    def get(self, key: str, default: bytes | None = None) -> bytes | None:
        value = read_get(self._open(), self._where, key, _NO_WAIT)
        return default if value is None else value

    def keys(self, prefix: str = "") -> list[str]:
        return read_keys(self._open(), self._where, prefix, _NO_WAIT)

    def items(self, prefix: str = "") -> list[tuple[str, bytes]]:
        return read_items(self._open(), self._where, prefix, _NO_WAIT)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn = self._open()
        guard = ReadGuard()
        # The one connection also writes, so the read guard is installed per
        # query (which re-prepares cached statements under it).
        with installed(conn, guard):
            return read_query(conn, self._where, guard, sql, params, _NO_WAIT)

    # ------------------------------------------------------------ writes

    def _apply(self, op: WriteOp) -> object:
        conn = self._open()
        stats = self._stats
        stats.writes += 1
        try:
            (outcome,) = apply_group(conn, [op], self._where)
        except StoreError:
            stats.failures += 1
            raise
        stats.commits += 1
        stats.committed_writes += 1
        if outcome.error is not None:
            stats.failures += 1
            raise outcome.error
        return outcome.value

    async def put(self, key: str, value: bytes) -> None:
        key = check_key(key)
        self._apply(put_op(key, check_value(key, value)))

    async def delete(self, key: str) -> None:
        self._apply(delete_op(check_key(key)))

    async def write(self, changes: Iterable[tuple[str, bytes | None]]) -> None:
        checked = check_changes(changes)
        if checked:
            self._apply(write_op(checked))

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        check_sql(sql, params)
        return cast(int, self._apply(execute_op(sql, params)))

    async def transaction(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> None:
        checked = check_statements(statements)
        if checked:
            self._apply(transaction_op(checked))

    async def migrate(self, name: str, steps: Sequence[str]) -> None:
        split = check_migration(name, steps)
        self._apply(migrate_op(self._where, name, split))

    # ------------------------------------------------------------ life

    def statistics(self) -> StoreStats:
        return self._stats.snapshot()

    async def aclose(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def __aenter__(self) -> MemoryStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
