"""Data, clock and random conformance against every implementation, plus
host-directory specifics (symlinks, refresh)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import pytest

from runtime.ambient import ManualClock, SeededRandom, SystemClock, SystemRandom
from runtime.devices import Data
from runtime.kv import DirectoryData, MemoryData
from runtime.testing.conformance.ambient import ClockConformance, RandomConformance
from runtime.testing.conformance.data import DataConformance


def write_tree(root: Path, files: Mapping[str, bytes]) -> None:
    for key, content in files.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


class TestDirectoryData(DataConformance):
    @pytest.fixture
    def make_data(self, tmp_path: Path) -> Callable[[Mapping[str, bytes]], Data]:
        def make(files: Mapping[str, bytes]) -> Data:
            root = tmp_path / "root"
            write_tree(root, files)
            return DirectoryData(root)

        return make


class TestMemoryData(DataConformance):
    @pytest.fixture
    def make_data(self) -> Callable[[Mapping[str, bytes]], Data]:
        return lambda files: MemoryData(files)


def test_directory_symlinks_inside_followed_outside_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_tree(root, {"real.txt": b"inside", "sub/a.txt": b"a"})
    (tmp_path / "secret.txt").write_bytes(b"outside")
    os.symlink(tmp_path / "secret.txt", root / "leak.txt")
    os.symlink(root / "real.txt", root / "alias.txt")
    os.symlink(tmp_path, root / "up")  # a directory link out of the root
    data = DirectoryData(root)
    assert data.keys() == ["alias.txt", "real.txt", "sub/a.txt"]
    assert data.read("alias.txt") == b"inside"
    for key in ("leak.txt", "up/secret.txt"):
        with pytest.raises(KeyError):
            data.read(key)


def test_directory_refresh_sees_changes_and_rehashes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_tree(root, {"a.txt": b"one"})
    data = DirectoryData(root)
    first = data.stat("a.txt").sha256
    (root / "a.txt").write_bytes(b"two, longer")
    (root / "b.txt").write_bytes(b"new")
    assert data.keys() == ["a.txt"]  # nothing read until refresh
    data.refresh()
    assert data.keys() == ["a.txt", "b.txt"]
    assert data.stat("a.txt").sha256 != first and data.stat("a.txt").size == 11


class TestSystemClock(ClockConformance):
    @pytest.fixture
    def clock(self) -> SystemClock:
        return SystemClock()

    @pytest.fixture
    def advance(self) -> Callable[[float], Awaitable[None]]:
        return asyncio.sleep


class TestManualClock(ClockConformance):
    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    def advance(self, clock: ManualClock) -> Callable[[float], Awaitable[None]]:
        async def advance(seconds: float) -> None:
            clock.advance(seconds)
            await asyncio.sleep(0)

        return advance


class TestSystemRandom(RandomConformance):
    @pytest.fixture
    def random(self) -> SystemRandom:
        return SystemRandom()


class TestSeededRandom(RandomConformance):
    @pytest.fixture
    def random(self) -> SeededRandom:
        return SeededRandom(7)


def test_seeded_random_repeats() -> None:
    assert SeededRandom(1).bytes(8) == SeededRandom(1).bytes(8)
