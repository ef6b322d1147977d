"""Assertions and small builders shared by the HTTP tests."""

from __future__ import annotations

from typing import Any, NamedTuple

import httpx

from keystile.http.asgi import ASGIApp, Message

Headers = dict[str, str]


def bearer(key: str) -> Headers:
    return {"Authorization": f"Bearer {key}"}


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert that ``response`` is an RFC 9457 problem with ``status`` and ``code``; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    assert body["type"] == f"https://keystile.dev/problems/{code}"
    assert body["title"]
    assert body["detail"]
    assert body["request_id"]
    return body


class RawAnswer(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes


async def asgi_call(
    app: ASGIApp,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    messages: list[Message],
    query: bytes = b"",
) -> RawAnswer:
    """Call ``app`` with exactly the request messages given (then ``http.disconnect``, as a server hands over a
    body that ended badly), where httpx would correct what is sent: a Content-Length that is not a number, a
    body cut short. Answers what the app sent; status 0 when it sent nothing."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("test", 80),
    }
    pending = list(messages)
    sent: list[Message] = []

    async def receive() -> Message:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    starts = [m for m in sent if m["type"] == "http.response.start"]
    if not starts:
        return RawAnswer(0, {}, b"")
    answer_headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in starts[0]["headers"]}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return RawAnswer(starts[0]["status"], answer_headers, body)
