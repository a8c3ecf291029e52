"""Argument checks done in the caller's thread, before anything is queued.

A bad argument is the caller's bug: it raises ``TypeError``/``ValueError`` at the
call, and a batch with one bad change is refused whole, before it reaches the
writer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "Change",
    "check_changes",
    "check_key",
    "check_migration",
    "check_sql",
    "check_statements",
    "check_value",
    "split_step",
]

#: one change of ``write()``: a value to put, or None to delete
Change = tuple[str, bytes | None]


def check_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"store key must be str, not {type(key).__name__}")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"store key {key!r} is not valid Unicode text (lone surrogate)") from None
    return key


def check_value(key: str, value: object) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"store value for {key!r} must be bytes, not {type(value).__name__}")
    return bytes(value)


def check_changes(changes: Iterable[tuple[str, bytes | None]]) -> list[Change]:
    out: list[Change] = []
    for change in changes:
        if not isinstance(change, tuple) or len(change) != 2:
            raise TypeError(f"write() takes (key, value-or-None) pairs, not {change!r:.60}")
        key = check_key(change[0])
        out.append((key, None if change[1] is None else check_value(key, change[1])))
    return out


def check_sql(sql: object, params: object) -> None:
    if not isinstance(sql, str):
        raise TypeError(f"SQL must be str, not {type(sql).__name__}")
    if isinstance(params, (str, bytes)):
        # A string is a sequence, and sqlite3 would bind it character by character.
        raise TypeError(f"SQL parameters must be a sequence of values, not {type(params).__name__}")


def check_statements(statements: Iterable[tuple[str, Sequence[Any]]]) -> list[tuple[str, Sequence[Any]]]:
    out: list[tuple[str, Sequence[Any]]] = []
    for statement in statements:
        if not isinstance(statement, tuple) or len(statement) != 2:
            raise TypeError(f"transaction() takes (sql, params) pairs, not {statement!r:.60}")
        check_sql(*statement)
        out.append(statement)
    return out


def split_step(name: str, number: int, step: object) -> list[str]:
    """The statements of one migration step, split where SQLite says one ends.

    ``sqlite3.complete_statement`` understands string literals, comments and
    trigger bodies, so a ``;`` inside those does not split.  ``executescript``
    cannot be used: it commits first, and a migration runs inside the group
    transaction.
    """
    if not isinstance(step, str):
        raise TypeError(f"migration {name!r} step {number} must be str, not {type(step).__name__}")
    statements: list[str] = []
    start = 0
    for end, char in enumerate(step):
        if char == ";" and sqlite3.complete_statement(step[start : end + 1]):
            statements.append(step[start : end + 1])
            start = end + 1
    tail = step[start:]
    if tail.strip():
        # A newline first, so that a trailing "-- comment" cannot swallow the ";".
        if not sqlite3.complete_statement(tail + "\n;"):
            raise ValueError(
                f"migration {name!r} step {number} ends in an incomplete statement: {tail.strip()!r:.60}"
            )
        statements.append(tail)
    statements = [s.strip() for s in statements if s.strip().rstrip(";").strip()]
    if not statements:
        raise ValueError(f"migration {name!r} step {number} has no SQL statement")
    return statements


def check_migration(name: object, steps: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Each step's text (its hash is recorded) with its statements."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"migration name must be a non-empty str, not {name!r}")
    if isinstance(steps, (str, bytes)):
        kind = type(steps).__name__
        raise TypeError(f"migration {name!r} steps must be a sequence of SQL texts, not one {kind}")
    return [(step, split_step(name, number, step)) for number, step in enumerate(steps, start=1)]
