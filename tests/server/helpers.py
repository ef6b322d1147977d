"""Assertions and small builders shared by the HTTP tests."""

from __future__ import annotations

from typing import Any

import httpx

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
