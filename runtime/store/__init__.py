"""Store devices: durable key/value and SQL on SQLite.

``open_sqlite_store`` is the host (and image) store: one WAL file, writes
group-committed by one writer thread and fsynced before they return.
``MemoryStore`` has the same rules in memory, for tests.  Both raise
``StoreError`` when the file or its surroundings are at fault, and the
``sqlite3`` exception when the caller's SQL is.
"""

from .errors import StoreError
from .memory import MemoryStore
from .sqlite import DEFAULT_BUSY_TIMEOUT, DEFAULT_MAX_PENDING, SqliteStore, open_sqlite_store
from .stats import StoreStats

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "DEFAULT_MAX_PENDING",
    "MemoryStore",
    "SqliteStore",
    "StoreError",
    "StoreStats",
    "open_sqlite_store",
]
