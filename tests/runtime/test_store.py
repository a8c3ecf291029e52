"""The store devices: the conformance suite on both, and what only a file shows
(kill -9, other processes, locks, corruption, group commit, the writer thread)."""

from __future__ import annotations

import asyncio
import functools
import os
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("runtime.testing.conformance.store")

import runtime  # noqa: E402
from runtime.devices import Store  # noqa: E402
from runtime.log import MemoryLogSink  # noqa: E402
from runtime.store import (  # noqa: E402
    MemoryStore,
    SqliteStore,
    StoreError,
    StoreStats,
    open_sqlite_store,
)
from runtime.store import writer as writer_module  # noqa: E402
from runtime.testing.conformance.store import OpenStore, StoreConformance  # noqa: E402

REPO = Path(runtime.__file__).resolve().parent.parent

#: Bound on any wait for a child process (start-up, imports, a few hundred
#: fsynced commits); generous for a loaded CI machine, never reached when healthy.
CHILD_TIMEOUT = 30.0

#: A short busy timeout, so that lock tests fail fast instead of after 5 s.
SHORT_BUSY = 0.1


class TestMemoryStore(StoreConformance):
    @pytest.fixture
    def open_store(self) -> OpenStore:
        async def open_store() -> Store:
            return MemoryStore()

        return open_store


class TestSqliteStore(StoreConformance):
    @pytest.fixture
    def open_store(self, tmp_path: Path) -> OpenStore:
        async def open_store() -> Store:
            return await open_sqlite_store(tmp_path / "state" / "store.sqlite3")

        return open_store


# --------------------------------------------------------------------- helpers


async def settle(condition: Callable[[], bool], what: str) -> None:
    """Let other tasks run until ``condition`` holds (bounded by iterations, not time)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


def writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("store-writer ")]


class Lock:
    """Another connection holding the file's write lock, as another process would."""

    def __init__(self, path: Path, mode: str = "IMMEDIATE") -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute(f"BEGIN {mode}")
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.conn.execute("ROLLBACK")
            self.conn.close()


# A child process holding a store: it prints each key once its put returned.
CHILD = """
import asyncio, sys
from runtime.store import open_sqlite_store

async def main(path, tag, count):
    async with await open_sqlite_store(path) as store:
        async def worker(w):
            i = 0
            while count < 0 or i < count:
                key = f"{tag}/{w}/{i}"
                await store.put(key, key.encode())
                sys.stdout.write(key + "\\n")
                sys.stdout.flush()
                i += 1
        async with asyncio.TaskGroup() as tg:
            for w in range(8):
                tg.create_task(worker(w))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def start_child(path: Path, tag: str, count: int) -> subprocess.Popen[bytes]:
    """The child's stderr goes to a file beside the store (a pipe nobody reads could fill up)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(path.with_name("child.err"), "ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), tag, str(count)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
        )


def read_acks(proc: subprocess.Popen[bytes], want: int) -> list[str]:
    """Complete lines from the child until at least ``want`` (bounded by CHILD_TIMEOUT)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + CHILD_TIMEOUT
    pending = b""
    lines: list[str] = []
    while len(lines) < want:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(lines)} acknowledgements within {CHILD_TIMEOUT} s"
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        assert chunk, f"child ended early with {proc.wait(CHILD_TIMEOUT)} after {len(lines)} lines"
        *done, pending = (pending + chunk).split(b"\n")
        lines += [line.decode() for line in done]
    return lines


def stop_child(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(CHILD_TIMEOUT)
    if proc.stdout is not None:
        proc.stdout.close()


# --------------------------------------------------------------------- durability


@pytest.mark.parametrize("acks", [1, 150, 600])
def test_kill_9_loses_no_acknowledged_write(tmp_path: Path, acks: int) -> None:
    path = tmp_path / "store.sqlite3"
    proc = start_child(path, "kill", -1)
    try:
        acknowledged = read_acks(proc, acks)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        stop_child(proc)
    assert proc.returncode == -signal.SIGKILL

    async def reopen() -> list[str]:
        # Opening runs quick_check: the killed writer left a sound file.
        async with await open_sqlite_store(path) as store:
            return [key for key in acknowledged if store.get(key) != key.encode()]

    assert asyncio.run(reopen()) == []


async def test_two_processes_write_one_file(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    async with await open_sqlite_store(path) as store:
        proc = start_child(path, "child", 25)  # 8 workers x 25 puts
        try:
            for i in range(200):
                await store.put(f"parent/{i}", b"p")
            lines = read_acks(proc, 200)
            assert proc.wait(CHILD_TIMEOUT) == 0
        finally:
            stop_child(proc)
        assert len(lines) == 200
        # The reader sees the other process's commits.
        assert len(store.keys("child/")) == 200
        assert len(store.keys("parent/")) == 200


async def test_two_stores_on_one_file(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    async with await open_sqlite_store(path) as a, await open_sqlite_store(path) as b:
        steps = ["CREATE TABLE t(x INTEGER);", "INSERT INTO t VALUES(1);"]
        await asyncio.gather(
            a.migrate("t", steps),
            b.migrate("t", steps),
            *(a.put(f"a{i}", b"a") for i in range(300)),
            *(b.put(f"b{i}", b"b") for i in range(300)),
        )
        for store in (a, b):
            assert len(store.keys()) == 600
            assert store.query("SELECT count(*) FROM t") == [(1,)]


# --------------------------------------------------------------------- bad files


async def test_garbage_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    path.write_bytes(b"this is not a database\n" * 400)
    with pytest.raises(StoreError, match=f"^store {path}: not an SQLite database"):
        await open_sqlite_store(path)
    assert writer_threads() == []


async def test_corrupt_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    async with await open_sqlite_store(path) as store:
        await store.write([(f"k{i:05d}", os.urandom(300)) for i in range(2000)])
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 20 * page
    data[10 * page : 12 * page] = b"\xa5" * (2 * page)  # two b-tree pages of the kv table
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=f"^store {path}: corrupt"):
        await open_sqlite_store(path)
    assert writer_threads() == []


async def test_directory_is_created_and_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "store.sqlite3"
    async with await open_sqlite_store(path) as store:
        await store.put("k", b"v")
        assert store.path == str(path)
    assert path.stat().st_mode & 0o777 == 0o600


async def test_unusable_paths_are_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StoreError, match="cannot create directory"):
        await open_sqlite_store(tmp_path / "file" / "store.sqlite3")
    (tmp_path / "dir").mkdir()
    with pytest.raises(StoreError, match="is a directory"):
        await open_sqlite_store(tmp_path / "dir")


def _unwritable_directory_case(base: Path) -> str:
    """Open, then refuse once the directory is read-only; returns the error text."""

    async def case() -> str:
        locked = base / "locked"
        locked.mkdir()
        async with await open_sqlite_store(locked / "store.sqlite3"):
            pass
        locked.chmod(0o500)
        try:
            await open_sqlite_store(locked / "store.sqlite3")
        except StoreError as exc:
            return str(exc)
        finally:
            locked.chmod(0o700)
        return "opened"

    return asyncio.run(case())


def test_unwritable_directory_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        assert "not writable" in _unwritable_directory_case(tmp_path)
        return
    # Root writes anywhere: drop to an unprivileged user in a forked child
    # (the interpreter is already loaded there, so it needs no file access).
    # pytest's own temporary tree is private to root, so use one under /tmp.
    base = Path(tempfile.mkdtemp(prefix="store-unwritable-"))
    base.chmod(0o777)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        try:
            os.setgid(65534)
            os.setuid(65534)
            message = _unwritable_directory_case(base)
        except BaseException as exc:
            message = f"child failed: {exc!r}"
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(pid, 0)
    shutil.rmtree(base)
    assert "not writable" in message, message


# --------------------------------------------------------------------- locks


async def test_locked_file_fails_the_open_after_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    async with await open_sqlite_store(path):
        pass
    lock = Lock(path, "EXCLUSIVE")
    try:
        with pytest.raises(
            StoreError, match=f"^store {path}: locked by another connection for more than 0.1 s"
        ):
            await open_sqlite_store(path, busy_timeout=SHORT_BUSY)
    finally:
        lock.release()
    assert writer_threads() == []


async def test_cancelled_open_leaves_no_thread(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    async with await open_sqlite_store(path):
        pass
    lock = Lock(path, "EXCLUSIVE")
    try:
        with pytest.raises(TimeoutError):
            # Cancelled at once, while the writer thread waits for the lock.
            async with asyncio.timeout(0):
                await open_sqlite_store(path, busy_timeout=SHORT_BUSY)
    finally:
        lock.release()
    assert writer_threads() == []


async def test_locked_file_fails_writes_but_not_reads(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    async with await open_sqlite_store(path, busy_timeout=SHORT_BUSY) as store:
        await store.put("before", b"1")
        lock = Lock(path, "EXCLUSIVE")
        try:
            lock.conn.execute("INSERT INTO store_kv VALUES('uncommitted', x'00')")
            with pytest.raises(StoreError, match="locked by another connection"):
                await store.put("during", b"2")
            # WAL: reads go on, and see only committed data.
            assert store.keys() == ["before"]
        finally:
            lock.release()
        await store.put("after", b"3")
        assert store.keys() == ["after", "before"]
        assert store.statistics().failures == 1


# --------------------------------------------------------------------- group commit


Call = Callable[[], Coroutine[Any, Any, object]]


async def held_writer(store: SqliteStore, path: Path, calls: list[Call]) -> list[object]:
    """Run ``calls`` while another connection holds the write lock, so that the
    writer is stuck on the first group and every other call queues behind it;
    then release the lock and collect the results."""

    async def outcome(call: Call) -> object:
        try:
            return await call()
        except Exception as exc:
            return exc

    lock = Lock(path)
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(outcome(call)) for call in calls]
            await settle(lambda: store.statistics().queue_depth == len(calls), "all calls queued")
            lock.release()
    finally:
        lock.release()
    return [task.result() for task in tasks]


async def test_group_commit_groups(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    async with await open_sqlite_store(path) as store:
        await store.migrate("t", ["CREATE TABLE t(x TEXT UNIQUE);"])
        await store.execute("INSERT INTO t VALUES('taken')")
        before = store.statistics()
        calls: list[Call] = [functools.partial(store.put, f"k{i}", b"v") for i in range(200)]
        bad = [("INSERT INTO t VALUES('new')", ()), ("INSERT INTO t VALUES('taken')", ())]
        calls.append(functools.partial(store.transaction, bad))
        results = await held_writer(store, path, calls)
        stats = store.statistics()
        # The writer took one call (or none) before it blocked; the rest made one group.
        assert stats.commits - before.commits <= 2
        assert stats.writes - before.writes == 201
        assert stats.average_batch > before.average_batch
        assert stats.queue_depth == 0
        assert results[:200] == [None] * 200
        assert isinstance(results[200], sqlite3.IntegrityError)
        assert len(store.keys("k")) == 200
        assert store.query("SELECT x FROM t") == [("taken",)]


async def test_statistics_count_each_commit(tmp_path: Path) -> None:
    async with await open_sqlite_store(tmp_path / "store.sqlite3") as store:
        assert store.statistics() == StoreStats(0, 0, 0, 0.0, 0)
        for i in range(5):
            await store.put(f"k{i}", b"v")
        with pytest.raises(sqlite3.OperationalError):
            await store.execute("INSERT INTO nowhere VALUES(1)")
        assert store.statistics() == StoreStats(6, 6, 1, 1.0, 0)


async def test_back_pressure_bounds_the_queue(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    async with await open_sqlite_store(path, max_pending=4) as store:
        lock = Lock(path)
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(store.put(f"k{i}", b"v")) for i in range(10)]
                await settle(lambda: store.statistics().queue_depth == 4, "queue full")
                for _ in range(100):
                    await asyncio.sleep(0)
                    assert store.statistics().queue_depth == 4
                assert not any(task.done() for task in tasks)
                lock.release()
        finally:
            lock.release()
        assert len(store.keys()) == 10


async def test_cancelled_write_leaves_the_store_working(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    async with await open_sqlite_store(path) as store:
        lock = Lock(path)
        try:
            task = asyncio.get_running_loop().create_task(store.put("maybe", b"v"))
            await settle(lambda: store.statistics().queue_depth == 1, "put queued")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            lock.release()
        await store.put("after", b"v")
        assert store.statistics().queue_depth == 0
        assert "after" in store.keys()  # "maybe" may or may not have landed


# --------------------------------------------------------------------- the writer thread


async def test_aclose_flushes_pending_writes_and_joins_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    store = await open_sqlite_store(path)
    try:
        assert len(writer_threads()) == 1
        async with asyncio.TaskGroup() as tg:
            for i in range(500):
                tg.create_task(store.put(f"k{i}", b"v"))
            await settle(lambda: store.statistics().queue_depth + store.statistics().writes == 500, "queued")
            await store.aclose()
        assert writer_threads() == []
        with pytest.raises(StoreError, match="after aclose"):
            await store.put("late", b"v")
    finally:
        await store.aclose()
    async with await open_sqlite_store(path) as again:
        assert len(again.keys()) == 500


def test_writer_stops_when_its_loop_closes_without_aclose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "IDLE_POLL", 0.01)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(open_sqlite_store(tmp_path / "store.sqlite3"))
    finally:
        loop.close()
    for thread in writer_threads():
        thread.join(CHILD_TIMEOUT)
    assert writer_threads() == []


async def test_log_lines(tmp_path: Path) -> None:
    sink = MemoryLogSink()
    path = tmp_path / "store.sqlite3"
    async with await open_sqlite_store(path, log=sink.logger("store"), busy_timeout=SHORT_BUSY) as store:
        await store.migrate("t", ["CREATE TABLE t(x);"])
        lock = Lock(path)
        try:
            with pytest.raises(StoreError):
                await store.put("k", b"v")
        finally:
            lock.release()
    records = [(r["level"], r["msg"], r["fields"]) for r in sink.records]
    assert [(level, msg) for level, msg, _ in records] == [
        ("debug", "store open"),
        ("info", "store migrated"),
        ("error", "store write failed"),
        ("debug", "store closed"),
    ]
    opened, migrated, failed, closed = (fields for _, _, fields in records)
    assert opened["path"] == str(path) and opened["created"] is True and "check_seconds" in opened
    assert migrated == {"path": str(path), "migration": "t", "steps": 1}
    assert "locked by another connection" in failed["error"]
    assert closed == {"path": str(path), "commits": 1, "writes": 2, "failures": 1}


def _open_together(path: str, openers: int) -> list[BaseException]:
    from runtime.store.files import open_writer

    start = threading.Barrier(openers)
    errors: list[BaseException] = []

    def opener() -> None:
        start.wait()
        try:
            conn, _ = open_writer(path, busy_timeout=5.0, check=True)
            conn.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(openers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return errors


def test_many_openers_of_a_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    """Workers open one new store together: switching it to WAL races (SQLite
    answers a lock-upgrade deadlock with SQLITE_BUSY at once, not after the busy
    timeout); every opener must still get the store."""
    for round_ in range(20):
        assert _open_together(str(tmp_path / f"store{round_}.sqlite3"), 6) == []
