"""Fixtures of the integration tests: Keystile's services in process (memory backend, manual clock), a key
factory, and the applications under test served through httpx's ASGITransport."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from keystile.config import Settings
from keystile.core.commands import NewApi
from keystile.integrations import LocalVerifier
from keystile.schemas import KeyCreate, convert, new_key
from keystile.service import Actor, Keystile

MakeKey = Callable[..., Awaitable[tuple[str, str]]]


@pytest.fixture
def database_url() -> str:
    return "memory://"


@pytest.fixture
def local(ks: Keystile, settings: Settings) -> LocalVerifier:
    """A local verifier over the test's services."""
    return LocalVerifier(settings, keystile=ks)


@pytest.fixture
async def api_id(ks: Keystile, root: tuple[Actor, str]) -> str:
    return (await ks.apis.create(root[0], NewApi(name="notes"))).id


@pytest.fixture
def make_key(ks: Keystile, root: tuple[Actor, str], api_id: str) -> MakeKey:
    """``await make_key(permissions=[...], ...)``: (key id, plain key) of a new key of ``api_id``."""

    async def make(**fields: Any) -> tuple[str, str]:
        key, plain = await ks.keys.create(root[0], api_id, new_key(convert(fields, KeyCreate)))
        return key.id, plain

    return make
