"""The store's one error class, and how an SQLite error is sorted into blame.

An SQLite error either blames the caller's SQL (syntax, a constraint, a type) or
the file and the machine it lives on (not a database, corrupt, locked, disk full,
I/O).  The first kind reaches the caller as the ``sqlite3`` exception it is; the
second becomes a ``StoreError`` whose one-line message names the file, because
nothing the caller changes in its statement would fix it.
"""

from __future__ import annotations

import sqlite3

__all__ = ["StoreError", "is_busy", "is_environment_error", "store_error"]


class StoreError(RuntimeError):
    """The store's file or its surroundings are at fault, not the caller's SQL:
    not an SQLite database, corrupt, locked by another connection past the busy
    timeout, directory not writable, disk full, I/O error, or the store is closed.
    The message is one line and names the file."""


# Primary result codes (https://www.sqlite.org/rescode.html) that blame the file,
# the disk or another process; every other code blames the statement.
_ENVIRONMENT = {
    5: "locked by another connection",  # SQLITE_BUSY
    6: "table locked",  # SQLITE_LOCKED
    7: "out of memory",  # SQLITE_NOMEM
    8: "read-only file",  # SQLITE_READONLY
    10: "I/O error",  # SQLITE_IOERR
    11: "corrupt",  # SQLITE_CORRUPT
    13: "disk full",  # SQLITE_FULL
    14: "cannot open the file",  # SQLITE_CANTOPEN
    15: "file locking failed",  # SQLITE_PROTOCOL
    26: "not an SQLite database",  # SQLITE_NOTADB
}
_BUSY = 5


def _primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def is_busy(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY: another connection holds the lock (or SQLite refused to
    wait for it, to avoid a deadlock between two lock upgrades)."""
    return _primary_code(exc) == _BUSY


def is_environment_error(exc: sqlite3.Error) -> bool:
    """True when ``exc`` blames the file or machine rather than the statement."""
    return _primary_code(exc) in _ENVIRONMENT


def store_error(where: str, exc: sqlite3.Error, *, busy_timeout: float | None = None) -> StoreError:
    """A ``StoreError`` for ``exc`` that names the file ``where``."""
    code = _primary_code(exc)
    what = _ENVIRONMENT.get(code, "SQLite error") if code is not None else "SQLite error"
    if code == _BUSY and busy_timeout is not None:
        what = f"locked by another connection for more than {busy_timeout:g} s"
    detail = " ".join(str(exc).split())
    return StoreError(f"store {where}: {what} ({detail})")
