"""SQLite authorizers that keep appliance SQL inside the store's rules.

``query()`` may only read; appliance writes (``execute``, ``transaction``,
``migrate``) may not take over transaction control, pragmas, attached files or
the store's own tables, because the store commits them in a group with other
callers' writes and must keep ``synchronous=FULL`` on.  A refused statement
raises ``sqlite3.ProgrammingError`` (misuse by the caller) naming what was
refused.

SQLite asks the authorizer when it *prepares* a statement.  A connection that
changes authorizers therefore installs the new one with ``set_authorizer``,
which expires every prepared statement, so a statement cached under a laxer
authorizer is prepared (and asked about) again.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["INTERNAL_TABLES", "Guard", "ReadGuard", "WriteGuard", "installed", "refusals"]

#: tables the store owns; appliance SQL may read them but not change them
INTERNAL_TABLES = frozenset({"store_kv", "store_migrations"})

# Authorizer action codes (https://www.sqlite.org/c3ref/c_alter_table.html).
_ACTIONS = {
    getattr(sqlite3, "SQLITE_" + name): name
    for name in (
        "CREATE_INDEX CREATE_TABLE CREATE_TEMP_INDEX CREATE_TEMP_TABLE CREATE_TEMP_TRIGGER "
        "CREATE_TEMP_VIEW CREATE_TRIGGER CREATE_VIEW DELETE DROP_INDEX DROP_TABLE DROP_TEMP_INDEX "
        "DROP_TEMP_TABLE DROP_TEMP_TRIGGER DROP_TEMP_VIEW DROP_TRIGGER DROP_VIEW INSERT PRAGMA READ "
        "SELECT TRANSACTION UPDATE ATTACH DETACH ALTER_TABLE REINDEX ANALYZE CREATE_VTABLE DROP_VTABLE "
        "FUNCTION SAVEPOINT RECURSIVE"
    ).split()
}
_READING = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
_CONTROL = {sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT}
_FILES = {sqlite3.SQLITE_PRAGMA, sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH}


def _describe(action: int, arg1: str | None, arg2: str | None) -> str:
    name = _ACTIONS.get(action, f"action {action}").replace("_", " ")
    subject = " ".join(a for a in (arg1, arg2) if a)
    return f"{name} {subject}".strip()


class Guard(ABC):
    """An authorizer that remembers why it last refused (for the error message)."""

    def __init__(self) -> None:
        self.refused: str | None = None

    @abstractmethod
    def verdict(self, action: int, arg1: str | None, arg2: str | None) -> str | None:
        """Why ``action`` is refused, or None to allow it."""

    def __call__(
        self, action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None
    ) -> int:
        why = self.verdict(action, arg1, arg2)
        if why is None:
            return sqlite3.SQLITE_OK
        self.refused = why
        return sqlite3.SQLITE_DENY


class ReadGuard(Guard):
    """For ``query()``: reading only."""

    def verdict(self, action: int, arg1: str | None, arg2: str | None) -> str | None:
        if action in _READING:
            return None
        return f"query() only reads; {_describe(action, arg1, arg2)} is refused (writes go through execute())"


class WriteGuard(Guard):
    """For appliance writes: no transaction control, pragmas, attached files, or
    changes to the store's own tables."""

    def verdict(self, action: int, arg1: str | None, arg2: str | None) -> str | None:
        what = _describe(action, arg1, arg2)
        if action in _CONTROL:
            return f"{what} is refused: the store runs transactions (use transaction() to group statements)"
        if action in _FILES:
            return f"{what} is refused: pragmas and attached files are the store's settings"
        if action not in _READING and INTERNAL_TABLES & {(arg1 or "").lower(), (arg2 or "").lower()}:
            return f"{what} is refused: the store owns that table (use put/delete/write/migrate)"
        return None


@contextmanager
def installed(conn: sqlite3.Connection, guard: Guard) -> Iterator[None]:
    """Run the block under ``guard`` on a connection that otherwise has none."""
    conn.set_authorizer(guard)
    try:
        yield
    finally:
        conn.set_authorizer(None)


@contextmanager
def refusals(guard: Guard) -> Iterator[None]:
    """Turn SQLite's bare "not authorized" into ``sqlite3.ProgrammingError`` saying why."""
    guard.refused = None
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if guard.refused is None:
            raise
        raise sqlite3.ProgrammingError(guard.refused) from exc
