"""Fixtures of the client tests: ``AsyncClient`` over the app in process (httpx's ASGITransport), on memory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from keystile import AsyncClient
from keystile.config import Settings
from keystile.http.asgi import ASGIApp
from keystile.server import create_app
from keystile.service import Actor, Keystile

BASE_URL = "http://keystile.test"
Connect = Callable[..., AsyncClient]


@pytest.fixture
def database_url() -> str:
    return "memory://"


@pytest.fixture
def app(ks: Keystile, settings: Settings) -> ASGIApp:
    return create_app(settings, keystile=ks)


@pytest.fixture
async def client(app: ASGIApp, root: tuple[Actor, str]) -> AsyncIterator[AsyncClient]:
    """A client holding the first root key (permission ``*``)."""
    async with AsyncClient(BASE_URL, root[1], transport=httpx.ASGITransport(app=app), backoff=0) as keystile:
        yield keystile


@pytest.fixture
def connect(app: ASGIApp) -> Connect:
    """``connect(root_key)``: another client of the same app."""

    def make(root_key: str | None = None) -> AsyncClient:
        return AsyncClient(BASE_URL, root_key, transport=httpx.ASGITransport(app=app), backoff=0)

    return make
