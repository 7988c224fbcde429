"""The conformance suite: every scenario runs once per adapter driver."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator

import pytest

import tests.conformance.drivers as drivers_pkg
from bot.core import Core

DRIVERS = sorted(
    m.name for m in pkgutil.iter_modules(drivers_pkg.__path__) if m.name not in ("base", "__init__")
)


@pytest.fixture(params=DRIVERS)
async def driver(request: pytest.FixtureRequest, loaded: Core) -> AsyncIterator[object]:
    mod = importlib.import_module(f"tests.conformance.drivers.{request.param}")
    d = await mod.make(loaded)
    yield d
    await d.close()
