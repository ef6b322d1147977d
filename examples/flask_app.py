"""A small notes API behind Keystile, with Flask and the ``@require_key`` decorator.

Configuration as in ``fastapi_app.py``; run it with any WSGI server::

    KEYSTILE_URL=... KEYSTILE_ROOT_KEY=... granian --interface wsgi --factory examples.flask_app:create_app
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request

from keystile.integrations import KeyVerifier, verifier_from_env
from keystile.integrations.flask import current_key, init_app, require_key


def create_app(verifier: KeyVerifier | None = None) -> Flask:
    """The application, verifying with ``verifier`` (default: as the environment says)."""
    app = Flask(__name__)
    init_app(app, verifier or verifier_from_env())
    notes: dict[str, list[str]] = {}

    @app.get("/healthz")
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/notes")
    @require_key("notes.read")
    def list_notes() -> dict[str, Any]:
        key = current_key()
        owner = key.owner_id or key.key_id
        return {"owner_id": key.owner_id, "key_id": key.key_id, "notes": notes.get(owner, [])}

    @app.post("/notes")
    @require_key("notes.write")
    def add_note() -> tuple[dict[str, Any], int]:
        key = current_key()
        owner = key.owner_id or key.key_id
        notes.setdefault(owner, []).append(str((request.get_json(silent=True) or {}).get("text", "")))
        return {"owner_id": key.owner_id, "notes": notes[owner]}, 201

    return app
