"""Verification as a service (SPEC V1, V5, I2, I4): the one entry point every way into verification calls.

``POST /v1/keys/verify``, forward auth (``/v1/auth``), ``keystile proxy``, the integrations and the CLI all build a
:class:`~keystile.core.verify.KeyCheck` and await :meth:`VerificationService.verify`. A cached key is answered
without touching storage (the verifier looks in its cache first), so there is no second, synchronous path to keep
in step with this one.

Every verification that answers is recorded as an event (SPEC O1) by appending to the events' bounded buffer:
its latency is measured here, and nothing else is done on the hot path (no id, no I/O; see
:mod:`keystile.events`). A verification that raises (bad input, no permission, storage down) answers nothing
and records nothing.
"""

from __future__ import annotations

from time import perf_counter_ns

from keystile.core.ids import carries_key
from keystile.core.models import ROOT_API_ID
from keystile.core.verify import NOT_FOUND, Code, KeyCheck, VerifyResult
from keystile.events import EventRecorder
from keystile.service.authz import Principal
from keystile.service.context import Context
from keystile.service.credits_watch import CreditsWatch

OPERATOR = Principal("operator", None)
"""Who verifies for forward auth, the proxy and the integrations: configured by whoever runs them, trusted with
every API (their own settings narrow it, e.g. forward auth's ``api_id``)."""


class VerificationService:
    def __init__(self, ctx: Context, events: EventRecorder | None = None) -> None:
        self._verifier = ctx.verifier
        self._events = events
        self.credits_watch: CreditsWatch | None = None
        """Set by a server that delivers webhooks: told of spends that may cross a credits threshold."""

    async def verify(self, principal: Principal, check: KeyCheck, request_id: str | None = None) -> VerifyResult:
        """Verify a key for ``principal`` (a root key with ``keys.verify``: keys of APIs out of its scope are
        ``NOT_FOUND``; root keys themselves are never verified here), spending limits and credits.

        ``request_id`` is recorded with the event. Raises ``Forbidden`` when the principal may verify keys of no
        API, ``InvalidInput`` for a bad ``ip``, permission query or rate-limit name, and ``StorageError`` when the
        key is not cached (or its credits live in the database) and storage is unreachable.
        """
        events = self._events
        started = perf_counter_ns() if events is not None else 0
        principal.require_any("keys.verify")
        if check.api_id == ROOT_API_ID:
            result = NOT_FOUND
        else:
            result = await self._verifier.verify(
                check.key,
                api_id=check.api_id,
                permissions=check.permissions,
                ip=check.ip,
                apis=principal.scope("keys.verify"),
                cost=check.cost,
                ratelimits=check.ratelimits,
            )
        if events is not None:
            api_id, tags = check.api_id, check.tags
            # Stored with the event, so never a key pasted there by mistake (SPEC K3). The requested API is stored
            # only when the key was not found (else the key's own API is); a key's IP was checked as an address.
            if result.entry is None and api_id is not None and carries_key(api_id, check.key):
                api_id = None
            if tags:
                tags = tuple(tag for tag in tags if not carries_key(tag, check.key))
            events.record(started, result, api_id, check.ip, tags, request_id)
        watch = self.credits_watch
        if watch is not None and watch.active and result.code == Code.VALID:
            spent, entry = result.spent, result.entry
            if spent is not None and spent.remaining is not None and entry is not None and entry.credits is not None:
                watch.saw(entry, entry.credits, spent.remaining, 1 if check.cost is None else check.cost)
        return result
