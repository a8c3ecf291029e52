"""Conformance suite for the read-only ``Data`` device.

Subclass ``DataConformance`` and provide a ``make_data`` fixture: a function
taking ``{key: bytes}`` and returning a Data device holding exactly those files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

import pytest

from ...devices import Data

__all__ = ["DataConformance", "MakeData"]

MakeData = Callable[[Mapping[str, bytes]], Data]

FILES = {
    "index.html": b"<h1>hello</h1>",
    "css/site.css": b"body { color: black }",
    "css/print/a.css": b"",
    "zones/example.org.zone": b"$ORIGIN example.org.\n",
    "binary.bin": bytes(range(256)) * 64,
}


class DataConformance:
    def test_keys_sorted_and_by_prefix(self, make_data: MakeData) -> None:
        data = make_data(FILES)
        assert data.keys() == sorted(FILES)
        assert data.keys("css") == ["css/print/a.css", "css/site.css"]
        assert data.keys("css/") == ["css/print/a.css", "css/site.css"]
        assert data.keys("cs") == []  # a directory prefix, not a string prefix
        assert data.keys("nothing") == []

    def test_read_stat_open(self, make_data: MakeData) -> None:
        data = make_data(FILES)
        for key, content in FILES.items():
            assert data.read(key) == content
            entry = data.stat(key)
            assert entry.key == key
            assert entry.size == len(content)
            assert entry.sha256 == hashlib.sha256(content).hexdigest()
            assert entry.mtime >= 0
            with data.open(key) as f:
                f.seek(3)
                assert f.read(5) == content[3:8]
            assert key in data

    def test_normalised_keys(self, make_data: MakeData) -> None:
        data = make_data(FILES)
        assert data.read("./css//site.css") == FILES["css/site.css"]
        assert "/index.html" in data

    @pytest.mark.parametrize(
        "key",
        ["missing", "css", "../index.html", "css/../index.html", "index.html\x00", "css\\site.css", ""],
    )
    def test_bad_or_missing_keys(self, make_data: MakeData, key: str) -> None:
        data = make_data(FILES)
        assert key not in data
        with pytest.raises(KeyError):
            data.read(key)
        with pytest.raises(KeyError):
            data.stat(key)
        with pytest.raises(KeyError):
            data.open(key)
