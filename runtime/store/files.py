"""Opening the host store's file: directory, permissions, integrity, WAL, schema.

Runs in the writer thread (it can wait on another process's lock for the busy
timeout, and the integrity check reads the whole file), except ``open_reader``,
which only opens a connection.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass

from .errors import StoreError, is_busy, store_error
from .guard import ReadGuard
from .ops import SCHEMA

__all__ = ["Opened", "open_reader", "open_writer"]

#: After a checkpoint SQLite reuses the WAL file from its start but never shrinks
#: it, so one burst would leave a huge file for good.  64 MiB is 16 times the WAL
#: that the default autocheckpoint (1,000 pages of 4 KiB) lets grow.
_WAL_SIZE_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Opened:
    """What opening found, for the opener's log line."""

    created: bool
    size: int
    check_seconds: float


def _fail(path: str, what: str, exc: OSError | None = None) -> StoreError:
    reason = f" ({exc.strerror or exc})" if exc is not None else ""
    return StoreError(f"store {path}: {what}{reason}")


def _prepare_file(path: str) -> bool:
    """Make the directory and the file (mode 0600: stores hold secrets such as
    password hashes; SQLite gives the -wal and -shm files the same mode).
    Returns whether the file was created."""
    parent = os.path.dirname(path)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise _fail(path, f"cannot create directory {parent}", exc) from exc
    if os.path.isdir(path):
        raise _fail(path, "is a directory, not a file")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        created = False
    except OSError as exc:
        raise _fail(path, "cannot create the file", exc) from exc
    else:
        os.close(fd)
        created = True
    if not os.access(parent, os.W_OK):
        name = os.path.basename(path)
        raise _fail(path, f"directory {parent} is not writable (WAL keeps {name}-wal and {name}-shm there)")
    return created


def _sync_directory(path: str) -> None:
    """fsync the directory so that a new file's name survives a power cut."""
    fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: read size for warming the page cache before the check
_WARM_CHUNK = 1024 * 1024


def _warm(path: str) -> None:
    """Read the file once, in order, before quick_check walks it page by page.

    quick_check reads every page in b-tree order, one small read at a time: on a
    100 MB store not in the page cache that took 1.2 s here (a VM disk), and 50 ms
    once cached.  Reading the file in order first took 85-150 ms, after which the
    check took its cached 50 ms: a cold open costs about one sequential read.
    """
    with open(path, "rb", buffering=0) as file:
        while file.read(_WARM_CHUNK):
            pass


def _check(conn: sqlite3.Connection, path: str) -> None:
    # quick_check verifies every b-tree page but not index contents against their
    # tables (integrity_check does, about twice as slow).  Garbage that is not a
    # database at all fails earlier, on the header, with SQLITE_NOTADB.
    _warm(path)
    rows = conn.execute("PRAGMA quick_check").fetchall()
    if rows != [("ok",)]:
        first = " ".join(str(rows[0][0]).split()) if rows else "no answer"
        raise StoreError(f"store {path}: corrupt, PRAGMA quick_check found {len(rows)} problem(s): {first}")


def open_writer(path: str, *, busy_timeout: float, check: bool) -> tuple[sqlite3.Connection, Opened]:
    """The writing connection: file checked, WAL on, synchronous=FULL, schema made."""
    created = _prepare_file(path)
    try:
        conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    except sqlite3.Error as exc:
        raise store_error(path, exc, busy_timeout=busy_timeout) from exc
    try:
        started = time.monotonic()
        if check:
            _check(conn, path)
        seconds = time.monotonic() - started
        mode = _switch_to_wal(conn, time.monotonic() + busy_timeout)
        if str(mode).lower() != "wal":
            raise StoreError(f"store {path}: cannot switch to WAL (journal mode stays {mode!r})")
        # FULL: in WAL mode this fsyncs the WAL at every commit, so a commit that
        # returned survives a power cut, not only a killed process.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
        # Taking the write lock now makes a file locked by someone else fail the
        # open (after the busy timeout), not the first write.
        conn.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA:
            conn.execute(statement)
        conn.execute("COMMIT")
        if created:
            _sync_directory(path)
    except sqlite3.Error as exc:
        conn.close()
        raise store_error(path, exc, busy_timeout=busy_timeout) from exc
    except OSError as exc:  # reading the file to warm the cache, or syncing its directory
        conn.close()
        raise _fail(path, "I/O error", exc) from exc
    except BaseException:
        conn.close()
        raise
    return conn, Opened(created, os.path.getsize(path), seconds)


def _switch_to_wal(conn: sqlite3.Connection, deadline: float) -> str:
    """``PRAGMA journal_mode=WAL``, tried again until ``deadline`` while busy.

    Two processes opening a new file at once (workers) can both hold a read
    lock and want the exclusive one to switch; SQLite then answers one of them
    SQLITE_BUSY at once instead of calling the busy handler (it would be a
    deadlock), so the busy timeout does not cover this case."""
    while True:
        try:
            (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            return str(mode)
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(0.005)


def open_reader(path: str, *, busy_timeout: float) -> tuple[sqlite3.Connection, ReadGuard]:
    """The reading connection for the loop thread.  In WAL mode its reads never
    wait for the writer; ``query_only`` and the read guard refuse every write."""
    try:
        conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    except sqlite3.Error as exc:
        raise store_error(path, exc, busy_timeout=busy_timeout) from exc
    try:
        conn.execute("PRAGMA query_only=ON")
    except sqlite3.Error as exc:
        conn.close()
        raise store_error(path, exc, busy_timeout=busy_timeout) from exc
    guard = ReadGuard()
    conn.set_authorizer(guard)
    return conn, guard
