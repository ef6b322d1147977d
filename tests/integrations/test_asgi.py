"""KeystileMiddleware and the FastAPI dependency in process: every answer of SPEC I2, and a key verified once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from keystile.core.clock import ManualClock
from keystile.http.asgi import Message
from keystile.integrations import KeystileMiddleware, KeyVerifier, LocalVerifier, VerifiedKey, key_of
from keystile.integrations.fastapi import require_key, setup
from keystile.service import Actor, Keystile

from .conftest import MakeKey


async def _whoami(request: Request) -> JSONResponse:
    key = key_of(request.scope)
    assert key is not None
    return JSONResponse({"key_id": key.key_id, "owner_id": key.owner_id, "credits": key.credits_remaining})


async def _open(request: Request) -> JSONResponse:
    return JSONResponse({"verified": key_of(request.scope) is not None})


def _guarded(verifier: KeyVerifier, permissions: str | None = None) -> KeystileMiddleware:
    app = Starlette(routes=[Route("/whoami", _whoami), Route("/open", _open)])
    return KeystileMiddleware(app, verifier, permissions=permissions, exclude=["/open"])


@pytest.fixture
async def http(local: LocalVerifier) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_guarded(local, "notes.read"))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        yield client


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _problem(answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == code
    assert answer.json()["request_id"] == answer.headers["x-request-id"]


async def test_a_good_key_reaches_the_app_with_its_identity(http: httpx.AsyncClient, make_key: MakeKey) -> None:
    key_id, plain = await make_key(owner_id="alice", permissions=["notes.*"])

    answer = await http.get("/whoami", headers=_bearer(plain))

    assert answer.status_code == 200
    assert answer.json() == {"key_id": key_id, "owner_id": "alice", "credits": None}


async def test_a_refusal_never_echoes_the_requests_key_as_its_request_id(http: httpx.AsyncClient) -> None:
    imported = "sk_live_" + "a1B2" * 6  # not Keystile's shape: only the request's own key tells
    for url, headers in (
        ("/whoami", {"X-API-Key": imported}),
        ("/whoami", _bearer(imported)),
        (f"/whoami?api_key={imported}", {}),
    ):
        answer = await http.get(url, headers={**headers, "X-Request-Id": imported})
        _problem(answer, 401, "invalid_key")
        assert answer.headers["x-request-id"].startswith("req_")
        assert imported not in answer.text
    kept = await http.get("/whoami", headers={"X-API-Key": imported, "X-Request-Id": "trace-9"})
    assert kept.headers["x-request-id"] == "trace-9"


async def test_keys_that_do_not_verify_get_problem_answers(
    http: httpx.AsyncClient, make_key: MakeKey, ks: Keystile, root: tuple[Actor, str]
) -> None:
    missing = await http.get("/whoami")
    _problem(missing, 401, "missing_key")
    assert missing.headers["www-authenticate"] == "Bearer"

    revoked_id, revoked = await make_key(permissions=["notes.read"])
    await ks.keys.revoke(root[0], revoked_id)
    _, disabled = await make_key(permissions=["notes.read"], enabled=False)
    for key in (revoked, disabled, "ks_unknown", "not even a key"):
        answer = await http.get("/whoami", headers=_bearer(key))
        _problem(answer, 401, "invalid_key")
        assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'

    _, reader_elsewhere = await make_key(permissions=["other.read"])
    _problem(await http.get("/whoami", headers=_bearer(reader_elsewhere)), 403, "insufficient_permissions")
    _, fenced = await make_key(permissions=["notes.read"], ip_allowlist=["10.0.0.0/8"])
    _problem(await http.get("/whoami", headers=_bearer(fenced)), 403, "ip_not_allowed")

    assert (await http.get("/open")).json() == {"verified": False}  # excluded: reaches the app unverified


async def test_a_rate_limited_key_gets_429_with_retry_after(
    http: httpx.AsyncClient, make_key: MakeKey, clock: ManualClock
) -> None:
    limit = {"name": "requests", "limit": 3, "duration_ms": 30_000}
    _, plain = await make_key(permissions=["notes.read"], ratelimits=[limit])

    for _ in range(3):
        assert (await http.get("/whoami", headers=_bearer(plain))).status_code == 200
    refused = await http.get("/whoami", headers=_bearer(plain))

    _problem(refused, 429, "rate_limited")
    # One request's worth comes back in 10 s (3 per 30 s), as forward auth and the proxy say; not the 30 s
    # until the bucket is full again.
    assert refused.headers["retry-after"] == "10"
    clock.advance(10)
    assert (await http.get("/whoami", headers=_bearer(plain))).status_code == 200


async def test_a_key_out_of_credits_gets_429_usage_exceeded(http: httpx.AsyncClient, make_key: MakeKey) -> None:
    _, plain = await make_key(permissions=["notes.read"], credits={"remaining": 1})

    first = await http.get("/whoami", headers=_bearer(plain))
    assert first.json()["credits"] == 0
    _problem(await http.get("/whoami", headers=_bearer(plain)), 429, "usage_exceeded")


async def test_without_an_answer_from_keystile_requests_are_refused_with_503(make_key: MakeKey) -> None:
    from keystile.integrations import RemoteVerifier
    from tests.e2e.server import free_port

    _, plain = await make_key(permissions=["notes.read"])
    verifier = RemoteVerifier(f"http://127.0.0.1:{free_port()}", "ks_root_x")
    transport = httpx.ASGITransport(app=_guarded(verifier))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        _problem(await client.get("/whoami", headers=_bearer(plain)), 503, "verification_unavailable")
        # A string too long to be a key is refused here, without asking (or blaming) Keystile.
        _problem(await client.get("/whoami", headers=_bearer("k" * 5000)), 401, "invalid_key")
    await verifier.aclose()


def _fastapi(verifier: KeyVerifier, *, middleware: bool) -> FastAPI:
    app = FastAPI()
    setup(app, verifier)

    @app.get("/read")
    async def read(key: VerifiedKey = Depends(require_key("notes.read"))) -> dict[str, object]:  # noqa: B008
        return {"key_id": key.key_id, "credits": key.credits_remaining}

    @app.get("/write")
    async def write(key: VerifiedKey = Depends(require_key("notes.write"))) -> dict[str, object]:  # noqa: B008
        return {"key_id": key.key_id}

    return app if not middleware else KeystileMiddleware(app, verifier)  # type: ignore[return-value]


@pytest.mark.parametrize("middleware", [False, True], ids=["dependency", "dependency-under-middleware"])
async def test_the_fastapi_dependency_checks_per_route_and_spends_once(
    local: LocalVerifier, make_key: MakeKey, middleware: bool
) -> None:
    key_id, plain = await make_key(permissions=["notes.read"], credits={"remaining": 10})
    transport = httpx.ASGITransport(app=_fastapi(local, middleware=middleware))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        answer = await client.get("/read", headers=_bearer(plain))
        assert answer.status_code == 200
        assert answer.json() == {"key_id": key_id, "credits": 9}  # one request, one credit

        refused = await client.get("/write", headers=_bearer(plain))
        _problem(refused, 403, "insufficient_permissions")
        missing = await client.get("/read")
        _problem(missing, 401, "missing_key")
        assert missing.headers["www-authenticate"] == "Bearer"


async def test_a_websocket_without_a_good_key_is_closed_with_policy_violation(local: LocalVerifier) -> None:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/whoami", "headers": [], "query_string": b"", "client": ("10.0.0.1", 1)}
    await _guarded(local)(scope, receive, send)

    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "missing_key"}]


@pytest.mark.parametrize("kind", ["middleware", "fastapi"])
async def test_the_verifier_is_closed_when_the_application_shuts_down(kind: str) -> None:
    from keystile.integrations import RemoteVerifier

    verifier = RemoteVerifier("http://127.0.0.1:1", "ks_root_x")
    app = _guarded(verifier) if kind == "middleware" else _fastapi(verifier, middleware=False)
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[str] = []

    async def receive() -> Message:
        return next(messages)

    async def send(message: Message) -> None:
        sent.append(str(message["type"]))

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)

    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert verifier._client._http.is_closed


async def test_an_api_token_passes_where_its_key_does_until_it_expires(
    ks: Keystile, local: LocalVerifier, make_key: MakeKey, clock: ManualClock, root: tuple[Actor, str]
) -> None:
    """A token goes where a key goes: its scope feeds the same permission queries, the handler learns it came
    with a token, and it stops at its exp or when its key is revoked (the local verifier sees the database)."""
    from keystile.core.verify import KeyCheck

    key_id, plain = await make_key(owner_id="alice", permissions=["notes.read", "notes.write"])
    issued = await ks.tokens.issue(KeyCheck(plain), ttl_s=60, permissions=["notes.read"])
    assert issued.token is not None
    token = issued.token.token
    app = FastAPI()
    setup(app, local)

    @app.get("/read")
    async def read(key: VerifiedKey = Depends(require_key("notes.read"))) -> dict[str, object]:  # noqa: B008
        return {"key_id": key.key_id, "owner_id": key.owner_id, "token": key.token, "permissions": key.permissions}

    @app.get("/write")
    async def write(key: VerifiedKey = Depends(require_key("notes.read AND notes.write"))) -> dict[str, str]:  # noqa: B008
        return {"key_id": key.key_id}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        answer = await client.get("/read", headers=_bearer(token))
        assert answer.json() == {"key_id": key_id, "owner_id": "alice", "token": True, "permissions": ["notes.read"]}
        _problem(await client.get("/write", headers=_bearer(token)), 403, "insufficient_permissions")
        assert (await client.get("/write", headers=_bearer(plain))).status_code == 200
        guarded = httpx.ASGITransport(app=_guarded(local, "notes.read"))
        async with httpx.AsyncClient(transport=guarded, base_url="http://app") as middleware:
            assert (await middleware.get("/whoami", headers={"X-API-Key": token})).json()["key_id"] == key_id

        clock.advance(60)
        _problem(await client.get("/read", headers=_bearer(token)), 401, "invalid_key")
        fresh = await ks.tokens.issue(KeyCheck(plain), ttl_s=60)
        assert fresh.token is not None
        assert (await client.get("/read", headers=_bearer(fresh.token.token))).status_code == 200
        await ks.keys.revoke(root[0], key_id)
        _problem(await client.get("/read", headers=_bearer(fresh.token.token)), 401, "invalid_key")
