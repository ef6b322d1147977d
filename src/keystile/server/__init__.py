"""The HTTP server (SPEC H): management API, verification fast path, OpenAPI document and docs page."""

from __future__ import annotations

from keystile.server.app import KeystileApp, app_from_env, create_app

__all__ = ["KeystileApp", "app_from_env", "create_app"]
