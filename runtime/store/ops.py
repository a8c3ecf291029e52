"""The store's tables, its write operations, and the group transaction.

Both stores run writes through ``apply_group``: one transaction, each caller's
operation inside its own SAVEPOINT, one COMMIT.  A caller whose statement fails
(a constraint, bad SQL) is rolled back to its savepoint and gets its error; the
others in the group still commit.  A failure of the file itself (locked, disk
full, I/O, corrupt) fails the whole group with ``StoreError`` and nothing of it
is applied.

An operation is a plain function of the connection, built in the caller's
thread from already checked arguments and run in the writer's thread.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .checks import Change
from .errors import StoreError, is_environment_error, store_error
from .guard import WriteGuard, installed, refusals

__all__ = [
    "SCHEMA",
    "Outcome",
    "WriteOp",
    "apply_group",
    "delete_op",
    "execute_op",
    "migrate_op",
    "put_op",
    "transaction_op",
    "write_op",
]

SCHEMA = (
    # A rowid table plus the key's index, not WITHOUT ROWID: the latter keeps whole
    # rows in the key b-tree, which suits rows under ~200 bytes; with 1 KB values it
    # made a 4.5 times larger file (233 MB against 52 MB for 50,000 values) and
    # commits 2-3 times slower.  Small values cost the same either way.
    "CREATE TABLE IF NOT EXISTS store_kv(key TEXT PRIMARY KEY, value BLOB NOT NULL)",
    # One row per applied step; the hash catches a step edited after it ran.
    "CREATE TABLE IF NOT EXISTS store_migrations("
    "name TEXT NOT NULL, step INTEGER NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY(name, step)) WITHOUT ROWID",
)

_PUT = "INSERT INTO store_kv(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"
_DELETE = "DELETE FROM store_kv WHERE key = ?"

#: runs inside the caller's savepoint on the writing connection; returns the caller's result
WriteOp = Callable[[sqlite3.Connection], object]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one operation of a committed group gives its caller."""

    value: object = None
    error: BaseException | None = None


def put_op(key: str, value: bytes) -> WriteOp:
    def run(conn: sqlite3.Connection) -> None:
        conn.execute(_PUT, (key, value))

    return run


def delete_op(key: str) -> WriteOp:
    def run(conn: sqlite3.Connection) -> None:
        conn.execute(_DELETE, (key,))

    return run


def write_op(changes: list[Change]) -> WriteOp:
    puts = [(k, v) for k, v in changes if v is not None]
    deletes = [(k,) for k, v in changes if v is None]
    if len({k for k, _ in changes}) == len(changes):
        # No key twice: order does not matter, so batch by kind.
        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(_PUT, puts)
            conn.executemany(_DELETE, deletes)

        return run

    def run_in_order(conn: sqlite3.Connection) -> None:
        for key, value in changes:
            if value is None:
                conn.execute(_DELETE, (key,))
            else:
                conn.execute(_PUT, (key, value))

    return run_in_order


def _user(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> int:
    guard = WriteGuard()
    with installed(conn, guard), refusals(guard):
        return conn.execute(sql, params).rowcount


def execute_op(sql: str, params: Sequence[Any]) -> WriteOp:
    def run(conn: sqlite3.Connection) -> int:
        return _user(conn, sql, params)

    return run


def transaction_op(statements: list[tuple[str, Sequence[Any]]]) -> WriteOp:
    def run(conn: sqlite3.Connection) -> None:
        for sql, params in statements:
            _user(conn, sql, params)

    return run


def migrate_op(where: str, name: str, steps: list[tuple[str, list[str]]]) -> WriteOp:
    """``steps`` holds each step's text (for its hash) and its statements; step
    numbers start at 1.  Returns how many steps were applied."""
    hashes = [hashlib.sha256(text.encode("utf-8")).hexdigest() for text, _ in steps]

    def run(conn: sqlite3.Connection) -> int:
        applied = conn.execute(
            "SELECT step, sha256 FROM store_migrations WHERE name = ? ORDER BY step", (name,)
        ).fetchall()
        if len(applied) > len(steps):
            raise StoreError(
                f"store {where}: migration {name!r} has {len(applied)} steps applied "
                f"but the code knows only {len(steps)} (a newer version wrote this file?)"
            )
        for number, (step, digest) in enumerate(applied, start=1):
            if step != number or digest != hashes[number - 1]:
                raise StoreError(
                    f"store {where}: migration {name!r} step {number} differs from the one applied "
                    "(applied steps must not change; add a new step instead)"
                )
        for number in range(len(applied) + 1, len(steps) + 1):
            for sql in steps[number - 1][1]:
                _user(conn, sql, ())
            conn.execute(
                "INSERT INTO store_migrations(name, step, sha256) VALUES(?, ?, ?)",
                (name, number, hashes[number - 1]),
            )
        return len(steps) - len(applied)

    return run


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite may already have rolled back by itself (after SQLITE_FULL, IOERR, BUSY...).
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the connection is past saving; the next BEGIN reports the real problem


def apply_group(
    conn: sqlite3.Connection, ops: Sequence[WriteOp], where: str, *, busy_timeout: float | None = None
) -> list[Outcome]:
    """Run ``ops`` in one transaction, each in its own savepoint, and commit once.

    Returns one outcome per op.  Raises ``StoreError`` when the transaction as a
    whole failed; then none of it was applied.
    """
    outcomes: list[Outcome] = []
    try:
        conn.execute("BEGIN IMMEDIATE")
        for op in ops:
            conn.execute("SAVEPOINT op")
            try:
                value = op(conn)
            except sqlite3.Error as exc:
                if is_environment_error(exc):
                    raise
                conn.execute("ROLLBACK TO op")
                outcomes.append(Outcome(error=exc))
            except Exception as exc:
                conn.execute("ROLLBACK TO op")
                outcomes.append(Outcome(error=exc))
            else:
                outcomes.append(Outcome(value=value))
            conn.execute("RELEASE op")
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        _rollback(conn)
        raise store_error(where, exc, busy_timeout=busy_timeout) from exc
    except BaseException:
        _rollback(conn)
        raise
    return outcomes
