"""Test-wide settings: every async test runs on uvloop (the runtime's default
loop); the device conformance suites run on the stock asyncio loop too."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop

#: test modules whose async tests run once per loop implementation
BOTH_LOOPS = {"test_net", "test_runtime_appliance", "test_store"}


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    module = getattr(item, "module", None)
    name = getattr(module, "__name__", "").rpartition(".")[2]
    if name in BOTH_LOOPS:
        return {"uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}
    return {"uvloop": uvloop.new_event_loop}
