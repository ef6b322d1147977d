"""``keystile.AsyncClient``: the HTTP API over an asyncio httpx client."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
from typing import Self, TypeVar

import httpx

from keystile.client._call import AsyncSender, Call, retry_delay
from keystile.client._config import DEFAULT_BACKOFF_S, DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, ClientConfig, FromEnv
from keystile.client._operations import Operations

T = TypeVar("T")


class AsyncClient(FromEnv, AsyncSender, Operations):
    """An asyncio client of a Keystile server (every route is a method; see :mod:`keystile.client`).

    ``AsyncClient("http://127.0.0.1:8787", root_key)``; use it as an async context manager, or await
    :meth:`aclose`. Calls that are safe to repeat (GET, PATCH, DELETE, revoke) are retried ``retries`` times when
    the connection fails; nothing else is. Raises :class:`~keystile.client.ApiError` subclasses for problem answers and
    :class:`~keystile.client.TransportError` when no answer came.
    """

    def __init__(
        self,
        base_url: str,
        root_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF_S,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = ClientConfig(base_url, root_key, timeout, retries, backoff)
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=self.config.headers(headers), timeout=timeout, transport=transport
        )

    async def _send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    call.method, call.path, params=call.params, content=call.content, headers=call.headers()
                )
            except httpx.TransportError as exc:
                await asyncio.sleep(retry_delay(exc, call, attempt, self.config))
                attempt += 1
                continue
            return call.answer(response)

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()
