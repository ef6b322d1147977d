"""A small notes API behind Keystile, with FastAPI and the ``require_key`` dependency.

Configure verification with environment variables, then run it with any ASGI server::

    # through a Keystile server (a root key with keys.verify):
    KEYSTILE_URL=http://127.0.0.1:8787 KEYSTILE_ROOT_KEY=ks_root_... \\
        granian --interface asgi --factory examples.fastapi_app:create_app
    # or straight against Keystile's database (no network hop):
    KEYSTILE_DATABASE_URL=sqlite:///keystile-data/keystile.db \\
        granian --interface asgi --factory examples.fastapi_app:create_app

``GET /notes`` needs a key with ``notes.read``, ``POST /notes`` one with ``notes.write``; ``GET /healthz`` is open.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic import BaseModel

from keystile.integrations import KeyVerifier, VerifiedKey, verifier_from_env
from keystile.integrations.fastapi import require_key, setup

Reader = Annotated[VerifiedKey, Depends(require_key("notes.read"))]
Writer = Annotated[VerifiedKey, Depends(require_key("notes.write"))]


class Note(BaseModel):
    text: str


def create_app(verifier: KeyVerifier | None = None) -> FastAPI:
    """The application, verifying with ``verifier`` (default: as the environment says)."""
    app = FastAPI(title="Notes")
    setup(app, verifier or verifier_from_env())
    notes: dict[str, list[str]] = {}

    @app.get("/healthz")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/notes")
    async def list_notes(key: Reader) -> dict[str, object]:
        owner = key.owner_id or key.key_id
        return {"owner_id": key.owner_id, "key_id": key.key_id, "notes": notes.get(owner, [])}

    @app.post("/notes", status_code=201)
    async def add_note(note: Note, key: Writer) -> dict[str, object]:
        owner = key.owner_id or key.key_id
        notes.setdefault(owner, []).append(note.text)
        return {"owner_id": key.owner_id, "notes": notes[owner]}

    return app
