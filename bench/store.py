"""Durable puts per second on the host store, one writer against many.

    python3 bench/store.py [--puts 2000] [--writers 100] [--value-bytes 100] [--dir DIR]

Each put returns only once committed with the WAL fsynced.  Printed, side by
side on one temp file each (in ``--dir``, default the system temp dir; use a
directory on the disk you care about: tmpfs makes fsync free):

- sqlite3:   plain sqlite3, WAL + synchronous=FULL, one commit per put (the peer);
- 1 writer:  ``await store.put`` in a loop: one commit per put, through the writer thread;
- N writers: N tasks putting at once: the writer group-commits what queued up.

Ratios are against the plain sqlite3 loop.  No thresholds: numbers to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.store import StoreStats, open_sqlite_store


def plain_sqlite(path: Path, puts: int, value: bytes) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE kv(key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
        started = time.perf_counter()
        for i in range(puts):
            conn.execute("INSERT OR REPLACE INTO kv VALUES(?, ?)", (f"k{i}", value))
        return time.perf_counter() - started
    finally:
        conn.close()


async def store_puts(path: Path, puts: int, writers: int, value: bytes) -> tuple[float, StoreStats]:
    async with await open_sqlite_store(path) as store:
        each = puts // writers

        async def writer(w: int) -> None:
            for i in range(each):
                await store.put(f"w{w}/{i}", value)

        started = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for w in range(writers):
                tg.create_task(writer(w))
        seconds = time.perf_counter() - started
        stats = store.statistics()
        if len(store.keys()) != each * writers:
            raise SystemExit("bench: puts went missing")
        return seconds, stats


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--puts", type=int, default=2000)
    parser.add_argument("--writers", type=int, default=100)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    value = os.urandom(args.value_bytes)
    puts = args.puts - args.puts % args.writers
    print(f"{puts} puts of {args.value_bytes} bytes, uvloop, sqlite {sqlite3.sqlite_version}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        print(f"files in {tmp}")
        base = plain_sqlite(Path(tmp) / "plain.sqlite3", puts, value)
        rows: list[tuple[str, float, StoreStats | None]] = [("sqlite3, 1 commit/put", base, None)]
        for writers in (1, args.writers):
            path = Path(tmp) / f"store-{writers}.sqlite3"
            seconds, stats = uvloop.run(store_puts(path, puts, writers, value))
            rows.append((f"store, {writers} writer{'s' if writers > 1 else ''}", seconds, stats))
    print(f"{'':24} {'puts/s':>10} {'ratio':>7} {'commits':>8} {'avg batch':>10}")
    for name, seconds, row_stats in rows:
        # The plain loop commits once per put.
        commits = row_stats.commits if row_stats else puts
        batch = row_stats.average_batch if row_stats else 1.0
        print(f"{name:24} {puts / seconds:10.0f} {base / seconds:6.2f}x {commits:8d} {batch:10.1f}")


if __name__ == "__main__":
    main()
