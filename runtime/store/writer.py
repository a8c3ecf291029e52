"""The writer thread of a host store: it owns the writing connection and
group-commits.

The thread sleeps on a queue.  When work arrives it drains everything queued,
runs it as one transaction (``apply_group``: each caller in its own savepoint),
commits once with ``synchronous=FULL`` (the WAL is fsynced), and hands the whole
group back to the event loop in one ``call_soon_threadsafe``.  The fsync never
runs on the loop, and N callers waiting together pay for one fsync.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import StoreError
from .ops import Outcome, WriteOp, apply_group

__all__ = ["IDLE_POLL", "Deliver", "Job", "Writer"]

#: An idle writer wakes this often to see whether its store was abandoned without
#: ``aclose()``: its event loop closed, or stopped while the interpreter exits.
#: Then it stops by itself, so a forgotten store delays interpreter exit (which
#: joins non-daemon threads) by at most this long instead of forever.
IDLE_POLL = 1.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Job:
    op: WriteOp
    future: asyncio.Future[object]


#: called in the loop thread once per group with the jobs and either their
#: outcomes (the group committed) or the error that failed the whole group
Deliver = Callable[[list[Job], list[Outcome] | StoreError], None]


class Writer(Generic[T]):
    """One writing connection on one thread.  ``connect`` runs first in that
    thread and returns the connection and a report for the opener."""

    def __init__(
        self,
        where: str,
        connect: Callable[[], tuple[sqlite3.Connection, T]],
        deliver: Deliver,
        *,
        busy_timeout: float,
    ) -> None:
        self._where = where
        self._connect = connect
        self._deliver = deliver
        self._busy_timeout = busy_timeout
        self._loop = asyncio.get_running_loop()
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._ready: asyncio.Future[T] = self._loop.create_future()
        self._stopped: asyncio.Future[None] = self._loop.create_future()
        self._stop_requested = False
        self._thread = threading.Thread(target=self._run, name=f"store-writer {where}", daemon=False)

    # ------------------------------------------------------------ loop side

    async def start(self) -> T:
        """Start the thread and wait until the file is open, checked and ready."""
        self._thread.start()
        try:
            return await self._ready
        except BaseException:
            await self.stop()
            raise

    def submit(self, job: Job) -> None:
        self._queue.put(job)

    async def stop(self) -> None:
        """Let the thread finish what is queued, close its connection and end.

        Bounded by the work queued: at most the store's queue bound of writes,
        each group waiting at most the busy timeout for the file lock.
        """
        if not self._stop_requested:
            self._stop_requested = True
            self._queue.put(None)
        await asyncio.shield(self._stopped)
        self._thread.join()  # returns at once: reporting the stop is the thread's last act

    # ------------------------------------------------------------ thread side

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more

    def _run(self) -> None:
        try:
            conn, report = self._connect()
        except BaseException as exc:
            self._post(_settle, self._ready, None, exc)
            self._post(_settle, self._stopped, None, None)
            return
        self._post(_settle, self._ready, report, None)
        try:
            self._serve(conn)
        finally:
            conn.close()
            self._post(_settle, self._stopped, None, None)

    def _serve(self, conn: sqlite3.Connection) -> None:
        while True:
            try:
                first = self._queue.get(timeout=IDLE_POLL)
            except queue.Empty:
                if self._abandoned():
                    return
                continue
            jobs: list[Job] = []
            stop = False
            item: Job | None = first
            while True:
                if item is None:
                    stop = True
                else:
                    jobs.append(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if jobs:
                self._commit(conn, jobs)
            if stop:
                return

    def _abandoned(self) -> bool:
        loop = self._loop
        if loop.is_closed():
            return True
        # The main thread ends before the interpreter joins the other threads.
        return not loop.is_running() and not threading.main_thread().is_alive()

    def _commit(self, conn: sqlite3.Connection, jobs: list[Job]) -> None:
        try:
            ops = [job.op for job in jobs]
            outcomes = apply_group(conn, ops, self._where, busy_timeout=self._busy_timeout)
        except StoreError as exc:
            self._post(self._deliver, jobs, exc)
        except Exception as exc:
            # A bug of ours: fail the group loudly rather than leave its callers waiting.
            failure = StoreError(f"store {self._where}: writer failed: {exc!r}")
            failure.__cause__ = exc
            self._post(self._deliver, jobs, failure)
        else:
            self._post(self._deliver, jobs, outcomes)


def _settle(future: asyncio.Future[Any], value: object, error: BaseException | None) -> None:
    if future.done():  # the waiter was cancelled
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)
