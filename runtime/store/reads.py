"""Reads on a connection, shared by both stores.

Every read fetches all its rows at once: an unfinished statement would keep its
read transaction (its WAL snapshot) open, and later reads on the connection would
not see newer commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from .checks import check_key, check_sql
from .errors import is_environment_error, store_error
from .guard import ReadGuard, refusals

__all__ = ["prefix_bounds", "read_get", "read_items", "read_keys", "read_query"]


def prefix_bounds(prefix: str) -> tuple[str, str | None]:
    """``[low, high)`` holding exactly the strings that start with ``prefix``.

    SQLite compares TEXT as UTF-8 bytes, whose order is code point order, so the
    upper bound is the prefix with its last code point incremented (skipping the
    surrogates, which UTF-8 cannot encode).  Lets the primary key serve the scan.
    """
    for i in range(len(prefix) - 1, -1, -1):
        point = ord(prefix[i])
        if point < 0x10FFFF:
            point += 1
            if 0xD800 <= point <= 0xDFFF:
                point = 0xE000
            return prefix, prefix[:i] + chr(point)
    return prefix, None


def _rows(
    conn: sqlite3.Connection, where: str, sql: str, params: Sequence[Any], busy_timeout: float
) -> list[tuple[Any, ...]]:
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.Error as exc:
        if is_environment_error(exc):
            raise store_error(where, exc, busy_timeout=busy_timeout) from exc
        raise


def read_get(conn: sqlite3.Connection, where: str, key: str, busy_timeout: float) -> bytes | None:
    rows = _rows(conn, where, "SELECT value FROM store_kv WHERE key = ?", (check_key(key),), busy_timeout)
    return bytes(rows[0][0]) if rows else None


def _range(prefix: str, columns: str) -> tuple[str, tuple[str, ...]]:
    low, high = prefix_bounds(check_key(prefix))
    if high is None:
        return f"SELECT {columns} FROM store_kv WHERE key >= ? ORDER BY key", (low,)
    return f"SELECT {columns} FROM store_kv WHERE key >= ? AND key < ? ORDER BY key", (low, high)


def read_keys(conn: sqlite3.Connection, where: str, prefix: str, busy_timeout: float) -> list[str]:
    sql, params = _range(prefix, "key")
    return [key for (key,) in _rows(conn, where, sql, params, busy_timeout)]


def read_items(
    conn: sqlite3.Connection, where: str, prefix: str, busy_timeout: float
) -> list[tuple[str, bytes]]:
    sql, params = _range(prefix, "key, value")
    return [(key, bytes(value)) for key, value in _rows(conn, where, sql, params, busy_timeout)]


def read_query(
    conn: sqlite3.Connection,
    where: str,
    guard: ReadGuard,
    sql: str,
    params: Sequence[Any],
    busy_timeout: float,
) -> list[tuple[Any, ...]]:
    """Run one statement under ``guard`` (already installed on ``conn``)."""
    check_sql(sql, params)
    with refusals(guard):
        return _rows(conn, where, sql, params, busy_timeout)
