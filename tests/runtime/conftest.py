"""Fixtures shared by the console tests: a key set and a console appliance."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from console_helpers import ConsoleApp, Keys, make_keys


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path / "keys")


@pytest.fixture
def console(keys: Keys, tmp_path: Path) -> Iterator[ConsoleApp]:
    app = ConsoleApp(keys, tmp_path / "state")
    try:
        yield app
    finally:
        app.stop()
