"""Verification as a service (SPEC V1): the verifier, behind a root key's ``keys.verify`` scope.

Every verification that answers is recorded as an event (SPEC O1) by appending to the events' bounded buffer:
its latency is measured here, and nothing else is done on the hot path (no id, no I/O; see
:mod:`keystile.events`). A verification that raises (bad input, no permission, storage down) answers nothing
and records nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from time import perf_counter_ns

from keystile.core.models import ROOT_API_ID
from keystile.core.verify import NOT_FOUND, VerifyResult
from keystile.events import EventRecorder
from keystile.schemas import VerifyRequest
from keystile.service.authz import Principal
from keystile.service.context import Context


class VerificationService:
    def __init__(self, ctx: Context, events: EventRecorder | None = None) -> None:
        self._verifier = ctx.verifier
        self._events = events

    def verify_cached(
        self, principal: Principal, request: VerifyRequest, request_id: str | None = None
    ) -> VerifyResult | None:
        """Answer from the cache alone, or ``None`` when storage must be asked (then await :meth:`verify`).

        ``request_id`` is the caller's (``X-Request-Id``), recorded with the event. Raises ``Forbidden`` when the
        root key may verify keys of no API, ``InvalidInput`` for a bad ``ip`` or permission query.
        """
        events = self._events
        started = perf_counter_ns() if events is not None else 0
        principal.require_any("keys.verify")
        if request.api_id == ROOT_API_ID:
            result: VerifyResult | None = NOT_FOUND
        else:
            result = self._verifier.verify_cached(
                request.key,
                api_id=request.api_id,
                permissions=request.permissions,
                ip=request.ip,
                apis=principal.scope("keys.verify"),
                cost=request.credits.cost if request.credits is not None else None,
                ratelimits=_named(request),
            )
        if result is not None and events is not None:
            events.record(started, result, request.api_id, request.ip, request.tags, request_id)
        return result

    async def verify(self, principal: Principal, request: VerifyRequest, request_id: str | None = None) -> VerifyResult:
        """Verify a key for a root key with ``keys.verify`` (keys of APIs out of its scope are ``NOT_FOUND``).

        Raises as :meth:`verify_cached` does, and ``StorageError`` when storage is needed and unreachable.
        """
        events = self._events
        started = perf_counter_ns() if events is not None else 0
        principal.require_any("keys.verify")
        if request.api_id == ROOT_API_ID:
            result = NOT_FOUND
        else:
            # Not through verify_cached first: Verifier.verify answers from the cache as cheaply.
            result = await self._verifier.verify(
                request.key,
                api_id=request.api_id,
                permissions=request.permissions,
                ip=request.ip,
                apis=principal.scope("keys.verify"),
                cost=request.credits.cost if request.credits is not None else None,
                ratelimits=_named(request),
            )
        if events is not None:
            events.record(started, result, request.api_id, request.ip, request.tags, request_id)
        return result

    def forward_cached(
        self, key: str, api_id: str, permissions: str | None, ip: str | None, cost: int | None, tags: Sequence[str]
    ) -> VerifyResult | None:
        """Forward auth (SPEC V5): verify a key for a request to the API ``api_id`` from the cache alone, or
        ``None`` when storage must be asked (then await :meth:`forward`). No root key: the proxy that asks is
        trusted by the network, and ``api_id`` confines the answer to one API (root keys are never verified).

        Raises ``InvalidInput`` for a bad ``ip`` or permission query.
        """
        events = self._events
        started = perf_counter_ns() if events is not None else 0
        if api_id == ROOT_API_ID:
            result: VerifyResult | None = NOT_FOUND
        else:
            result = self._verifier.verify_cached(key, api_id=api_id, permissions=permissions, ip=ip, cost=cost)
        if result is not None and events is not None:
            events.record(started, result, api_id, ip, tags, None)
        return result

    async def forward(
        self, key: str, api_id: str, permissions: str | None, ip: str | None, cost: int | None, tags: Sequence[str]
    ) -> VerifyResult:
        """:meth:`forward_cached`, asking storage when needed; raises as it does, and ``StorageError`` when
        storage is needed and unreachable."""
        events = self._events
        started = perf_counter_ns() if events is not None else 0
        if api_id == ROOT_API_ID:
            result = NOT_FOUND
        else:
            result = await self._verifier.verify(key, api_id=api_id, permissions=permissions, ip=ip, cost=cost)
        if events is not None:
            events.record(started, result, api_id, ip, tags, None)
        return result


def _named(request: VerifyRequest) -> list[tuple[str, int]] | None:
    if not request.ratelimits:
        return None
    return [(limit.name, limit.cost) for limit in request.ratelimits]
