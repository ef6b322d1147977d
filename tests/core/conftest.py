"""Fixtures of the core tests that need storage: a record maker, and a verifier over counted storage."""

from __future__ import annotations

import pytest

from keystile.core.clock import ManualClock
from keystile.storage import SqlStorage

from .world import CountingStorage, World


@pytest.fixture
def world(storage: SqlStorage, clock: ManualClock) -> World:
    """Makes records in the real storage of each backend."""
    return World(storage, clock)


@pytest.fixture
def counting(storage: SqlStorage) -> CountingStorage:
    """The real storage of each backend, counting every call made through it."""
    return CountingStorage(storage)
