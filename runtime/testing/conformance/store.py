"""Conformance suite for the ``Store`` device.

Subclass ``StoreConformance`` and provide an ``open_store`` fixture: an async
callable returning a new, open, empty store.  The suite's ``store`` fixture opens
one per test and closes it afterwards.  Everything here holds for every
implementation; what only a file can show (kill -9, locks, corruption, group
commit statistics) is tested beside the implementation.

Errors are part of the contract: a bad argument raises ``TypeError`` or
``ValueError`` at the call; the caller's SQL failing raises the ``sqlite3``
exception (``IntegrityError``, ``OperationalError``...), and a statement the
store refuses raises ``sqlite3.ProgrammingError``; ``StoreError`` means the
store itself (its file, or its being closed) is at fault.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import pytest_asyncio

from ...devices import Store
from ...store import StoreError

__all__ = ["OpenStore", "StoreConformance"]

#: what a subclass's ``open_store`` fixture returns
OpenStore = Callable[[], Awaitable[Store]]

_TABLE = ["CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, n INTEGER NOT NULL DEFAULT 0);"]

_REFUSED_READS = [
    "INSERT INTO t(name) VALUES('x')",
    "UPDATE t SET n = 1",
    "DELETE FROM t",
    "DROP TABLE t",
    "CREATE TABLE u(x)",
    "ALTER TABLE t ADD COLUMN z",
    "CREATE INDEX i ON t(n)",
    "REPLACE INTO t(name) VALUES('y')",
    "PRAGMA synchronous=OFF",
    "BEGIN",
    "ATTACH DATABASE ':memory:' AS other",
]

_REFUSED_WRITES = [
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT mine",
    "RELEASE mine",
    "PRAGMA synchronous=OFF",
    "PRAGMA journal_mode=DELETE",
    "ATTACH DATABASE ':memory:' AS other",
    "INSERT INTO store_kv(key, value) VALUES('k', x'00')",
    "DELETE FROM store_migrations",
    "DROP TABLE store_kv",
    "CREATE TRIGGER sneaky AFTER INSERT ON store_kv BEGIN SELECT 1; END",
]


def _names(store: Store) -> list[str]:
    return [name for (name,) in store.query("SELECT name FROM t ORDER BY id")]


def _tables(store: Store) -> set[str]:
    return {name for (name,) in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")}


class StoreConformance:
    """Tests every ``Store`` must pass.  Subclasses provide ``open_store``."""

    @pytest_asyncio.fixture
    async def store(self, open_store: OpenStore) -> AsyncIterator[Store]:
        store = await open_store()
        try:
            yield store
        finally:
            await store.aclose()

    # ------------------------------------------------------------ key/value

    async def test_is_a_store(self, store: Store) -> None:
        assert isinstance(store, Store)

    async def test_get_missing_gives_default(self, store: Store) -> None:
        assert store.get("missing") is None
        assert store.get("missing", b"d") == b"d"

    async def test_put_then_get(self, store: Store) -> None:
        await store.put("a", b"1")
        assert store.get("a") == b"1"
        await store.put("a", b"2")
        assert store.get("a") == b"2"

    async def test_empty_value_is_a_value(self, store: Store) -> None:
        await store.put("empty", b"")
        assert store.get("empty", b"default") == b""
        assert store.keys() == ["empty"]

    async def test_bytes_like_values_come_back_as_bytes(self, store: Store) -> None:
        await store.put("ba", bytearray(b"xy"))  # type: ignore[arg-type]
        await store.put("mv", memoryview(b"\x00\xff"))  # type: ignore[arg-type]
        assert store.get("ba") == b"xy" and type(store.get("ba")) is bytes
        assert store.get("mv") == b"\x00\xff"

    async def test_bad_arguments_raise_at_the_call(self, store: Store) -> None:
        with pytest.raises(TypeError, match="must be bytes"):
            await store.put("k", "text")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="must be str"):
            await store.put(b"k", b"v")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="must be str"):
            store.get(1)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="surrogate"):
            await store.put("\ud800", b"v")
        assert store.keys() == []

    async def test_delete(self, store: Store) -> None:
        await store.put("a", b"1")
        await store.put("b", b"2")
        await store.delete("a")
        assert store.get("a") is None
        assert store.keys() == ["b"]
        await store.delete("never-there")  # deleting a missing key is quiet
        assert store.keys() == ["b"]

    async def test_keys_and_items_by_prefix_sorted(self, store: Store) -> None:
        for key in ["b", "a/2", "ab", "a/1", "a", "é", "z/\U0010ffff", "z/\U0010ffffx"]:
            await store.put(key, key.encode())
        assert store.keys() == ["a", "a/1", "a/2", "ab", "b", "z/\U0010ffff", "z/\U0010ffffx", "é"]
        assert store.keys("a/") == ["a/1", "a/2"]
        assert store.keys("a") == ["a", "a/1", "a/2", "ab"]
        assert store.keys("z/\U0010ffff") == ["z/\U0010ffff", "z/\U0010ffffx"]
        assert store.keys("é") == ["é"]
        assert store.keys("nothing") == []
        assert store.items("a/") == [("a/1", b"a/1"), ("a/2", b"a/2")]
        assert [k for k, _ in store.items()] == store.keys()

    async def test_prefix_is_not_a_pattern(self, store: Store) -> None:
        for key in ["a%b", "a_b", "axb", "A_b"]:
            await store.put(key, b"")
        assert store.keys("a%") == ["a%b"]
        assert store.keys("a_") == ["a_b"]

    async def test_write_applies_puts_and_deletes_together(self, store: Store) -> None:
        await store.put("old", b"0")
        await store.write([("x", b"1"), ("y", b"2"), ("old", None)])
        assert store.items() == [("x", b"1"), ("y", b"2")]

    async def test_write_applies_changes_to_one_key_in_order(self, store: Store) -> None:
        await store.write([("k", b"1"), ("k", None), ("k", b"3"), ("j", b"1"), ("j", None)])
        assert store.items() == [("k", b"3")]

    async def test_write_of_nothing_is_quiet(self, store: Store) -> None:
        await store.write([])
        assert store.keys() == []

    async def test_failing_write_leaves_nothing(self, store: Store) -> None:
        await store.put("keep", b"0")
        with pytest.raises(TypeError):
            await store.write([("a", b"1"), ("keep", None), ("b", "not bytes")])  # type: ignore[list-item]

        def changes() -> Iterator[tuple[str, bytes | None]]:
            yield ("c", b"1")
            yield ("keep", None)
            raise RuntimeError("the caller's iterator broke")

        with pytest.raises(RuntimeError, match="iterator broke"):
            await store.write(changes())
        assert store.items() == [("keep", b"0")]

    async def test_reads_see_every_acknowledged_write(self, store: Store) -> None:
        await store.migrate("t", _TABLE)
        for i in range(50):
            await store.put(f"k{i}", b"%d" % i)
            assert store.get(f"k{i}") == b"%d" % i
            await store.execute("INSERT INTO t(name) VALUES(?)", (f"n{i}",))
            assert store.query("SELECT count(*) FROM t") == [(i + 1,)]
        await store.delete("k0")
        assert store.get("k0") is None
        await store.write([("k1", None), ("k2", b"new")])
        assert (store.get("k1"), store.get("k2")) == (None, b"new")

    # ------------------------------------------------------------ SQL

    async def test_execute_and_query(self, store: Store) -> None:
        await store.migrate("t", _TABLE)
        assert await store.execute("INSERT INTO t(name, n) VALUES(?, ?)", ("a", 1)) == 1
        assert await store.execute("INSERT INTO t(name, n) VALUES(?, ?)", ("b", 2)) == 1
        assert await store.execute("UPDATE t SET n = n * 10") == 2
        assert await store.execute("DELETE FROM t WHERE name = ?", ["nobody"]) == 0
        assert store.query("SELECT name, n FROM t ORDER BY name") == [("a", 10), ("b", 20)]
        assert store.query("SELECT n FROM t WHERE name = ?", ("b",)) == [(20,)]
        assert store.query(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3) SELECT sum(x) FROM c"
        ) == [(6,)]

    async def test_statement_errors_are_the_callers(self, store: Store) -> None:
        await store.migrate("t", _TABLE)
        await store.execute("INSERT INTO t(name) VALUES('a')")
        with pytest.raises(sqlite3.IntegrityError):
            await store.execute("INSERT INTO t(name) VALUES('a')")
        with pytest.raises(sqlite3.OperationalError):
            await store.execute("INSERT INTO nowhere VALUES(1)")
        with pytest.raises(sqlite3.OperationalError):
            store.query("SELEC 1")
        with pytest.raises(sqlite3.ProgrammingError):
            await store.execute("INSERT INTO t(name) VALUES('b'); INSERT INTO t(name) VALUES('c')")
        with pytest.raises(TypeError):
            await store.execute("SELECT ?", "x")
        assert _names(store) == ["a"]
        await store.put("still", b"works")
        assert store.get("still") == b"works"

    async def test_transaction_applies_all(self, store: Store) -> None:
        await store.migrate("t", _TABLE)
        await store.transaction(
            [("INSERT INTO t(name) VALUES(?)", ("a",)), ("UPDATE t SET n = 5 WHERE name = ?", ("a",))]
        )
        assert store.query("SELECT name, n FROM t") == [("a", 5)]
        await store.transaction([])

    async def test_transaction_rolls_back_on_error(self, store: Store) -> None:
        await store.migrate("t", _TABLE)
        await store.execute("INSERT INTO t(name) VALUES('a')")
        with pytest.raises(sqlite3.IntegrityError):
            await store.transaction(
                [
                    ("INSERT INTO t(name) VALUES(?)", ("b",)),
                    ("UPDATE t SET n = 9", ()),
                    ("INSERT INTO t(name) VALUES(?)", ("a",)),
                ]
            )
        assert store.query("SELECT name, n FROM t") == [("a", 0)]

    async def test_migrate_applies_steps_in_order_once(self, store: Store) -> None:
        steps = [
            "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL);",
            "ALTER TABLE users ADD COLUMN email TEXT;",
            "INSERT INTO users(name, email) VALUES('admin', 'admin@example.org');",
        ]
        await store.migrate("users", steps)
        await store.migrate("users", steps)  # applied steps are not run again
        assert store.query("SELECT name, email FROM users") == [("admin", "admin@example.org")]
        await store.migrate("users", [*steps, "UPDATE users SET name = upper(name);"])
        await store.migrate("users", [*steps, "UPDATE users SET name = upper(name);"])
        assert store.query("SELECT name FROM users") == [("ADMIN",)]

    async def test_migrate_names_are_independent(self, store: Store) -> None:
        await store.migrate("a", ["CREATE TABLE a(x);"])
        await store.migrate("b", ["CREATE TABLE b(x);"])
        await store.migrate("a", ["CREATE TABLE a(x);", "CREATE TABLE a2(x);"])
        assert {"a", "a2", "b"} <= _tables(store)

    async def test_migrate_step_with_several_statements(self, store: Store) -> None:
        step = """
            CREATE TABLE log(id INTEGER PRIMARY KEY, line TEXT);  -- a comment; with a semicolon
            CREATE TABLE counts(n INTEGER);
            INSERT INTO counts VALUES(0);
            CREATE TRIGGER count_lines AFTER INSERT ON log BEGIN
                UPDATE counts SET n = n + 1;
            END;
            INSERT INTO log(line) VALUES('a;b');
            INSERT INTO log(line) VALUES('no semicolon at the end')
        """
        await store.migrate("log", [step])
        assert store.query("SELECT line FROM log ORDER BY id") == [("a;b",), ("no semicolon at the end",)]
        assert store.query("SELECT n FROM counts") == [(2,)]

    async def test_failing_migration_applies_no_step(self, store: Store) -> None:
        good = ["CREATE TABLE m1(x);", "CREATE TABLE m2(x);"]
        with pytest.raises(sqlite3.OperationalError):
            await store.migrate("m", [*good, "CREATE TABLE m3(x); CREATE TABLES broken;"])
        assert not {"m1", "m2", "m3"} & _tables(store)
        await store.migrate("m", good)
        assert {"m1", "m2"} <= _tables(store)

    async def test_migrate_refuses_a_changed_or_unknown_history(self, store: Store) -> None:
        await store.migrate("h", ["CREATE TABLE h(x);", "CREATE TABLE h2(x);"])
        with pytest.raises(StoreError, match="step 2 differs"):
            await store.migrate("h", ["CREATE TABLE h(x);", "CREATE TABLE h2(x, y);"])
        with pytest.raises(StoreError, match="2 steps applied but the code knows only 1"):
            await store.migrate("h", ["CREATE TABLE h(x);"])

    async def test_migrate_refuses_bad_steps_at_the_call(self, store: Store) -> None:
        with pytest.raises(ValueError, match="incomplete"):
            await store.migrate("x", ["CREATE TRIGGER t AFTER INSERT ON y BEGIN SELECT 1;"])
        with pytest.raises(ValueError, match="no SQL"):
            await store.migrate("x", ["  ;  "])
        with pytest.raises(TypeError):
            await store.migrate("x", "CREATE TABLE x(y);")
        with pytest.raises(ValueError):
            await store.migrate("", ["CREATE TABLE x(y);"])

    @pytest.mark.parametrize("sql", _REFUSED_READS)
    async def test_query_refuses_writing(self, store: Store, sql: str) -> None:
        await store.migrate("t", _TABLE)
        await store.execute("INSERT INTO t(name) VALUES('a')")
        with pytest.raises(sqlite3.ProgrammingError, match="only reads"):
            store.query(sql)
        assert _names(store) == ["a"]
        assert _tables(store) >= {"t"}
        assert "u" not in _tables(store)

    async def test_query_refuses_a_write_the_store_ran_before(self, store: Store) -> None:
        # SQLite authorizes when it prepares; a statement cached by execute()
        # must still be refused by query().
        await store.migrate("t", _TABLE)
        sql = "INSERT INTO t(name) VALUES('cached')"
        await store.execute(sql)
        with pytest.raises(sqlite3.ProgrammingError, match="only reads"):
            store.query(sql)
        assert _names(store) == ["cached"]

    @pytest.mark.parametrize("sql", _REFUSED_WRITES)
    async def test_writes_refuse_what_belongs_to_the_store(self, store: Store, sql: str) -> None:
        await store.put("k", b"v")
        await store.migrate("t", _TABLE)
        with pytest.raises(sqlite3.ProgrammingError, match="refused"):
            await store.execute(sql)
        with pytest.raises(sqlite3.ProgrammingError, match="refused"):
            await store.transaction([("INSERT INTO t(name) VALUES('a')", ()), (sql, ())])
        with pytest.raises(sqlite3.ProgrammingError, match="refused"):
            await store.migrate("evil", ["CREATE TABLE e(x);", sql])
        assert store.items() == [("k", b"v")]
        assert _names(store) == []
        assert "e" not in _tables(store)
        await store.execute("INSERT INTO t(name) VALUES('after')")
        assert _names(store) == ["after"]

    # ------------------------------------------------------------ concurrency

    async def test_concurrent_puts_all_land(self, store: Store) -> None:
        async def writer(w: int) -> None:
            for i in range(10):
                await store.put(f"w{w:03d}/{i}", b"%d:%d" % (w, i))

        async with asyncio.TaskGroup() as tg:
            for w in range(100):
                tg.create_task(writer(w))
        items = store.items("w")
        assert len(items) == 1000
        assert all(value == b"%d:%d" % (int(key[1:4]), int(key[5:])) for key, value in items)

    async def test_a_failing_caller_does_not_fail_the_others(self, store: Store) -> None:
        await store.migrate("t", _TABLE)
        await store.execute("INSERT INTO t(name) VALUES('taken')")
        bad = [("INSERT INTO t(name) VALUES('partial')", ()), ("INSERT INTO t(name) VALUES('taken')", ())]
        calls: list[Awaitable[object]] = []
        for i in range(300):
            if i % 100 == 50:
                calls.append(store.transaction(bad))
            elif i % 3 == 0:
                calls.append(store.execute("INSERT INTO t(name) VALUES(?)", (f"n{i}",)))
            else:
                calls.append(store.put(f"k{i}", b"v"))
        results = await asyncio.gather(*calls, return_exceptions=True)
        failed = [i for i, result in enumerate(results) if isinstance(result, BaseException)]
        assert failed == [50, 150, 250]
        assert all(isinstance(results[i], sqlite3.IntegrityError) for i in failed)
        assert "partial" not in _names(store)
        assert len(_names(store)) == 1 + len([i for i in range(300) if i % 3 == 0 and i % 100 != 50])
        assert len(store.keys("k")) == len([i for i in range(300) if i % 3 and i % 100 != 50])

    # ------------------------------------------------------------ closing

    async def test_aclose_is_idempotent_and_final(self, store: Store) -> None:
        await store.put("k", b"v")
        await store.aclose()
        await store.aclose()
        with pytest.raises(StoreError, match="after aclose"):
            await store.put("k", b"v")
        with pytest.raises(StoreError, match="after aclose"):
            store.get("k")
