"""What a test does when a service or tool it needs is not on this machine: skip locally, fail under ``CI=true``
(a missing PostgreSQL, Redis, nginx, promtool or Chromium must never pass silently there)."""

from __future__ import annotations

import os
import shutil

import pytest


def missing(what: str) -> None:
    """Skip locally, but fail under ``CI=true``."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is required when CI=true", pytrace=False)
    pytest.skip(f"{what} is not available")


def require_tool(name: str) -> None:
    """Skip without ``name`` on PATH locally; under ``CI=true`` its absence fails the run."""
    if shutil.which(name) is None:
        missing(name)


CHROMIUM = "/usr/bin/chromium"
"""Debian's Chromium, which the browser tests drive through Playwright (``make chromium`` installs it; Playwright
never downloads a browser of its own here)."""


def require_chromium() -> str:
    """The path of Debian's Chromium; skips without it locally, fails under ``CI=true``."""
    if not os.access(CHROMIUM, os.X_OK):
        missing("chromium (Debian package chromium)")
    return CHROMIUM
