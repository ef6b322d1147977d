"""The server's app factory moves what starting made out of the garbage collector's sight (issue 14): a full
collection, which holds the event loop, then visits only what serving made since."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from keystile.server.app import app_from_env


def test_the_app_factory_freezes_what_starting_made(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KEYSTILE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KEYSTILE_DATABASE_URL", f"sqlite:///{tmp_path / 'keystile.db'}")
    gc.unfreeze()
    try:
        app = app_from_env()
        assert gc.get_freeze_count() > 1_000  # modules, routes, the API reference, ... (tens of thousands)
        # The app itself among them: tracked, yet in none of the generations a collection visits.
        assert gc.is_tracked(app)
        assert not any(obj is app for obj in gc.get_objects())
    finally:
        gc.unfreeze()  # the rest of the tests' objects are no server's
