"""Flask's ``@require_key`` and KeystileWSGIMiddleware, verifying locally against a SQLite file on the blocking
runner's own event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import Client as WerkzeugClient

from keystile.config import Settings
from keystile.core.clock import SystemClock
from keystile.core.commands import NewApi, NewKey
from keystile.integrations import BlockingVerifier, KeystileWSGIMiddleware, LocalVerifier
from keystile.integrations.flask import current_key, init_app, require_key
from keystile.service import Keystile
from keystile.storage import open_storage


async def _deploy(url: str) -> dict[str, str]:
    storage = await open_storage(url, SystemClock())
    await storage.migrate()
    ks = Keystile.create(storage, Settings(database_url=url))
    try:
        from keystile.service import CLI_ACTOR

        api = await ks.apis.create(CLI_ACTOR, NewApi(name="notes"))
        keys = {}
        for name, permissions in (("reader", ["notes.read"]), ("nobody", [])):
            key, plain = await ks.keys.create(CLI_ACTOR, api.id, NewKey(owner_id=name, permissions=permissions))
            keys[name], keys[f"{name}_id"] = plain, key.id
        return keys
    finally:
        await ks.close()


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[tuple[BlockingVerifier, dict[str, str]]]:
    url = f"sqlite:///{tmp_path / 'keystile.db'}"
    keys = asyncio.run(_deploy(url))
    blocking = BlockingVerifier(LocalVerifier(Settings(database_url=url)))
    yield blocking, keys
    blocking.close()


def _flask(blocking: BlockingVerifier) -> Flask:
    app = Flask(__name__)
    app.extensions["keystile"] = blocking

    @app.get("/notes")
    @require_key("notes.read")
    def notes() -> dict[str, Any]:
        return {"owner_id": current_key().owner_id}

    return app


def test_the_flask_decorator_lets_good_keys_in_and_answers_the_others(
    deployed: tuple[BlockingVerifier, dict[str, str]],
) -> None:
    blocking, keys = deployed
    client = _flask(blocking).test_client()

    assert client.get("/notes", headers={"Authorization": f"Bearer {keys['reader']}"}).json == {"owner_id": "reader"}
    missing = client.get("/notes")
    assert (missing.status_code, missing.headers["WWW-Authenticate"]) == (401, "Bearer")
    assert missing.content_type == "application/problem+json"
    assert missing.get_json(force=True)["code"] == "missing_key"
    denied = client.get("/notes", headers={"X-API-Key": keys["nobody"]})
    assert (denied.status_code, denied.get_json(force=True)["code"]) == (403, "insufficient_permissions")


def test_init_app_registers_the_verifier(tmp_path: Path) -> None:
    app = Flask(__name__)
    blocking = init_app(app, LocalVerifier(Settings(database_url=f"sqlite:///{tmp_path / 'k.db'}")))
    assert app.extensions["keystile"] is blocking


def test_the_wsgi_middleware_guards_any_wsgi_app(deployed: tuple[BlockingVerifier, dict[str, str]]) -> None:
    blocking, keys = deployed
    seen: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(environ.get("keystile.key"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    client = WerkzeugClient(KeystileWSGIMiddleware(app, blocking, permissions="notes.read", exclude=["/open/"]))

    assert client.get("/notes", query_string={"api_key": keys["reader"]}).status_code == 200
    assert seen[-1].key_id == keys["reader_id"]
    refused = client.get("/notes", headers={"Authorization": "Bearer ks_nope"})
    assert refused.status_code == 401
    assert refused.headers["X-Request-Id"].startswith("req_")
    assert client.get("/open/anything").status_code == 200
    assert seen[-1] is None


def test_a_refusal_never_echoes_the_requests_key_as_its_request_id(
    deployed: tuple[BlockingVerifier, dict[str, str]],
) -> None:
    blocking, _ = deployed
    client = WerkzeugClient(KeystileWSGIMiddleware(lambda environ, start_response: [], blocking))
    imported = "sk_live_" + "a1B2" * 6  # not Keystile's shape: only the request's own key tells
    by_header = client.get("/notes", headers={"X-Request-Id": imported, "X-API-Key": imported})
    by_query = client.get("/notes", headers={"X-Request-Id": imported}, query_string={"api_key": imported})
    for refused in (by_header, by_query):
        assert refused.status_code == 401
        assert refused.headers["X-Request-Id"].startswith("req_")
        assert imported not in refused.get_data(as_text=True)


async def _token(url: str, key: str) -> str:
    from keystile.core.verify import KeyCheck

    storage = await open_storage(url, SystemClock())
    ks = Keystile.create(storage, Settings(database_url=url, master_key="11" * 32))
    try:
        issued = await ks.tokens.issue(KeyCheck(key), ttl_s=60)
        assert issued.token is not None
        return issued.token.token
    finally:
        await ks.close()


def test_the_flask_decorator_and_the_wsgi_middleware_take_api_tokens(
    deployed: tuple[BlockingVerifier, dict[str, str]], tmp_path: Path
) -> None:
    blocking, keys = deployed
    url = f"sqlite:///{tmp_path / 'keystile.db'}"
    reader, nobody = asyncio.run(_token(url, keys["reader"])), asyncio.run(_token(url, keys["nobody"]))
    client = _flask(blocking).test_client()
    assert client.get("/notes", headers={"Authorization": f"Bearer {reader}"}).json == {"owner_id": "reader"}
    denied = client.get("/notes", headers={"Authorization": f"Bearer {nobody}"})
    assert (denied.status_code, denied.get_json(force=True)["code"]) == (403, "insufficient_permissions")
    forged = client.get("/notes", headers={"Authorization": f"Bearer {reader[:-4]}AAAA"})
    assert (forged.status_code, forged.get_json(force=True)["code"]) == (401, "invalid_key")

    seen: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(environ.get("keystile.key"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    wsgi = WerkzeugClient(KeystileWSGIMiddleware(app, blocking, permissions="notes.read"))
    assert wsgi.get("/notes", headers={"X-API-Key": reader}).status_code == 200
    assert (seen[-1].key_id, seen[-1].token) == (keys["reader_id"], True)
