"""Webhook endpoints (SPEC R5): create, read, list, update, delete, rotate the signing secret; the deliveries of
an endpoint and sending one again.

An endpoint's secret (``whsec_…``) is in the answer that creates it (or rotates it) and nowhere else: it is
stored sealed under a data key of the vault (:mod:`keystile.service.sealing`), since signing needs it back, and
the audit log records that it changed, never what it is. Needs ``webhooks.read`` or ``webhooks.write``
(deployment-wide permissions).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from keystile.core.ids import looks_like_id, new_id
from keystile.core.models import Page
from keystile.core.webhooks import (
    EVENT_TYPES,
    Attempt,
    Backoff,
    Delivery,
    Due,
    Endpoint,
    NewWebhook,
    SealedSecret,
    WebhookUpdate,
    forbidden_address,
    new_secret,
)
from keystile.errors import Conflict, InvalidInput
from keystile.service import sealing
from keystile.service.authz import Actor, Principal
from keystile.service.context import Context, not_found, page_limit, paged
from keystile.service.snapshots import time_text
from keystile.service.validate import check_json
from keystile.service.vault import Vault

DEFAULT_GRACE_MS = 24 * 3_600_000
MAX_URL = 2048
MAX_DESCRIPTION = 1024
RESOLVE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class WebhookOptions:
    """How webhooks are delivered (``KEYSTILE_WEBHOOKS_*``): whether endpoints may be private addresses, the
    retry schedule, each post's timeout and how often the outbox is polled."""

    allow_private: bool = False
    backoff: Backoff = field(default_factory=Backoff)
    timeout_ms: int = 10_000
    poll_ms: int = 1_000
    scan_ms: int = 60_000
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class DeliveryView:
    """A delivery with its attempts, oldest first."""

    delivery: Delivery
    attempts: tuple[Attempt, ...]


def snapshot(ep: Endpoint) -> dict[str, Any]:
    """An endpoint's settings as the audit log records them (never its secret)."""
    return {
        "url": ep.url,
        "events": list(ep.events),
        "api_ids": None if ep.api_ids is None else list(ep.api_ids),
        "enabled": ep.enabled,
        "description": ep.description,
        "credits_low_percent": ep.credits_low_percent,
    }


def _host(url: str) -> tuple[str, int]:
    """The host and port of an endpoint URL; raises InvalidInput for anything but an absolute http(s) URL."""
    if len(url) > MAX_URL:
        raise InvalidInput(f"url is longer than {MAX_URL} characters", code="invalid_webhook_url", field="/url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("url must be an absolute http:// or https:// URL", code="invalid_webhook_url", field="/url")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("url must not hold credentials", code="invalid_webhook_url", field="/url")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def resolve(url: str) -> list[str]:
    """The addresses an endpoint URL's host resolves to; raises InvalidInput when it does not resolve."""
    host, port = _host(url)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [host]
    try:
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
        )
    except (OSError, TimeoutError, UnicodeError):
        raise InvalidInput("the url's host does not resolve", code="invalid_webhook_url", field="/url") from None
    return sorted({str(info[4][0]) for info in infos})


async def check_reachable(url: str, allow_private: bool, *, unresolved_ok: bool = False) -> None:
    """Refuse (InvalidInput ``webhook_url_forbidden``) a URL whose host resolves to a loopback, link-local or
    private address, unless ``allow_private`` (SSRF). A host that does not resolve is refused too, unless
    ``unresolved_ok`` (an endpoint may be saved before its name is published: each post checks again)."""
    try:
        addresses = await resolve(url)
    except InvalidInput as exc:
        if unresolved_ok and exc.code == "invalid_webhook_url" and "resolve" in exc.detail:
            return
        raise
    if not allow_private and any(forbidden_address(a) for a in addresses):
        raise InvalidInput(
            "url points to a loopback, link-local or private address; set KEYSTILE_WEBHOOKS_ALLOW_PRIVATE=true to"
            " allow it",
            code="webhook_url_forbidden",
            field="/url",
        )


def _events(events: Sequence[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(events))
    if not chosen:
        raise InvalidInput("events must name at least one event", code="invalid_request", field="/events")
    for event in chosen:
        if event not in EVENT_TYPES:
            raise InvalidInput(
                f"{event[:60]!r} is not an event; use one of {', '.join(EVENT_TYPES)}",
                code="invalid_event_type",
                field="/events",
            )
    return chosen


def _api_ids(api_ids: Sequence[str] | None) -> tuple[str, ...] | None:
    if api_ids is None:
        return None
    for api_id in api_ids:
        if not looks_like_id(api_id, "api"):
            raise InvalidInput("api_ids must hold API ids (api_…)", code="invalid_request", field="/api_ids")
    return tuple(dict.fromkeys(api_ids))


def _percent(value: int) -> int:
    if not 0 <= value <= 100:
        raise InvalidInput(
            "credits_low_percent must be between 0 and 100", code="invalid_request", field="/credits_low_percent"
        )
    return value


def _description(value: str | None) -> str | None:
    check_json(value, "/description")
    if value is not None and len(value) > MAX_DESCRIPTION:
        raise InvalidInput("description is too long", code="invalid_request", field="/description")
    return value


class WebhookService:
    """Webhook endpoints and their deliveries."""

    def __init__(self, ctx: Context, vault: Vault, options: WebhookOptions) -> None:
        self._ctx = ctx
        self._vault = vault
        self.options = options

    async def _seal(self, endpoint_id: str, secret: str) -> SealedSecret:
        sealer = await self._vault.sealer()
        nonce, ciphertext = sealing.seal_webhook_secret(sealer.data_key, endpoint_id, secret)
        return SealedSecret(sealer.data_key_id, nonce, ciphertext)

    async def open_secret(self, endpoint_id: str, sealed: SealedSecret) -> str:
        """An endpoint's secret in plain text, to sign with; raises MasterKeyUnavailable or Conflict."""
        data_key = await self._vault.data_key(sealed.data_key_id)
        try:
            return sealing.open_webhook_secret(data_key, endpoint_id, sealed.nonce, sealed.ciphertext)
        except sealing.Unopenable:
            raise Conflict("the endpoint's stored secret does not open", code="webhook_secret_unreadable") from None

    async def signing_secrets(self, due: Due, now: int) -> list[str]:
        """The secrets a delivery is signed with: the endpoint's, and its previous one during a rotation's grace."""
        found = [await self.open_secret(due.endpoint_id, due.secret)]
        if due.previous_secret is not None and (due.previous_until or 0) > now:
            found.append(await self.open_secret(due.endpoint_id, due.previous_secret))
        return found

    # -- endpoints ------------------------------------------------------------------------------------------

    async def create(self, actor: Actor, spec: NewWebhook) -> tuple[Endpoint, str]:
        """Create an endpoint; returns it and its secret (to be shown once). Raises InvalidInput (a URL that is
        not http(s), or reaches a private address), MasterKeyUnavailable (no master key to seal the secret)."""
        actor.principal.require("webhooks.write")
        events = _events(spec.events)
        api_ids = _api_ids(spec.api_ids)
        description = _description(spec.description)
        percent = _percent(spec.credits_low_percent)
        check_json(spec.url, "/url")
        await check_reachable(spec.url, self.options.allow_private, unresolved_ok=True)
        now = self._ctx.now()
        endpoint_id = new_id("whk", now)
        secret = new_secret()
        sealed = await self._seal(endpoint_id, secret)
        endpoint = Endpoint(
            id=endpoint_id,
            url=spec.url,
            events=events,
            api_ids=api_ids,
            enabled=spec.enabled,
            description=description,
            created_at=now,
            updated_at=now,
            secret=sealed,
            credits_low_percent=percent,
        )
        async with self._ctx.storage.transaction() as tx:
            await tx.insert_webhook(endpoint)
            await self._ctx.audit(tx, actor, "webhook.create", endpoint.id, snapshot(endpoint), now)
        return endpoint, secret

    async def get(self, principal: Principal, endpoint_id: str, permission: str = "webhooks.read") -> Endpoint:
        """An endpoint; raises NotFound (Forbidden without the permission)."""
        if permission == "webhooks.read" and principal.allows("webhooks.write"):
            permission = "webhooks.write"  # who may change endpoints may read them
        principal.require(permission)
        found = await self._ctx.storage.get_webhook(endpoint_id) if looks_like_id(endpoint_id, "whk") else None
        if found is None:
            raise not_found("webhook", endpoint_id, "whk", "webhook_not_found")
        return found

    async def list(
        self, principal: Principal, *, cursor: str | None = None, limit: int | None = None
    ) -> Page[Endpoint]:
        """Endpoints newest first."""
        if not principal.allows("webhooks.write"):
            principal.require("webhooks.read")
        size = page_limit(limit)
        items = await self._ctx.storage.list_webhooks(after=cursor, limit=size + 1)
        return paged(items, size, lambda ep: ep.id)

    async def update(self, actor: Actor, endpoint_id: str, update: WebhookUpdate) -> Endpoint:
        """Change an endpoint's settings (fields not given stay)."""
        await self.get(actor.principal, endpoint_id, "webhooks.write")
        url = update.url
        if url is not None:
            check_json(url, "/url")
            await check_reachable(url, self.options.allow_private, unresolved_ok=True)
        async with self._ctx.storage.transaction() as tx:
            current = await tx.get_webhook(endpoint_id)
            if current is None:
                raise not_found("webhook", endpoint_id, "whk", "webhook_not_found")
            now = self._ctx.now()
            endpoint = replace(
                current,
                url=current.url if url is None else url,
                events=current.events if update.events is None else _events(update.events),
                api_ids=_api_ids(update.api_ids) if update.set_api_ids else current.api_ids,
                enabled=current.enabled if update.enabled is None else update.enabled,
                description=_description(update.description) if update.set_description else current.description,
                credits_low_percent=(
                    current.credits_low_percent
                    if update.credits_low_percent is None
                    else _percent(update.credits_low_percent)
                ),
                updated_at=now,
            )
            before, after = snapshot(current), snapshot(endpoint)
            changes = {name: [before[name], after[name]] for name in after if before[name] != after[name]}
            if not changes:
                return current
            await tx.update_webhook(endpoint)
            await self._ctx.audit(tx, actor, "webhook.update", endpoint.id, changes, now)
        return endpoint

    async def delete(self, actor: Actor, endpoint_id: str) -> None:
        """Delete an endpoint with its deliveries (pending ones are not sent)."""
        endpoint = await self.get(actor.principal, endpoint_id, "webhooks.write")
        async with self._ctx.storage.transaction() as tx:
            if not await tx.delete_webhook(endpoint_id):
                raise not_found("webhook", endpoint_id, "whk", "webhook_not_found")
            await self._ctx.audit(tx, actor, "webhook.delete", endpoint_id, snapshot(endpoint), self._ctx.now())

    async def rotate_secret(
        self, actor: Actor, endpoint_id: str, grace_period_ms: int = DEFAULT_GRACE_MS
    ) -> tuple[Endpoint, str]:
        """Give an endpoint a new secret (returned, to be shown once); the old one keeps signing too, beside the
        new one, for ``grace_period_ms`` (0: it stops now)."""
        await self.get(actor.principal, endpoint_id, "webhooks.write")
        if not 0 <= grace_period_ms <= 30 * 86_400_000:
            raise InvalidInput(
                "grace_period_ms must be between 0 and 30 days", code="invalid_request", field="/grace_period_ms"
            )
        secret = new_secret()
        sealed = await self._seal(endpoint_id, secret)
        async with self._ctx.storage.transaction() as tx:
            current = await tx.get_webhook(endpoint_id)
            if current is None:
                raise not_found("webhook", endpoint_id, "whk", "webhook_not_found")
            now = self._ctx.now()
            keep = grace_period_ms > 0
            endpoint = replace(
                current,
                secret=sealed,
                previous_secret=current.secret if keep else None,
                previous_until=now + grace_period_ms if keep else None,
                updated_at=now,
            )
            await tx.update_webhook(endpoint)
            changes = {"secret": "rotated", "previous_valid_until": time_text(endpoint.previous_until)}
            await self._ctx.audit(tx, actor, "webhook.rotate_secret", endpoint_id, changes, now)
        return endpoint, secret

    # -- deliveries -----------------------------------------------------------------------------------------

    async def deliveries(
        self,
        principal: Principal,
        endpoint_id: str,
        *,
        state: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Page[DeliveryView]:
        """An endpoint's deliveries newest first, each with its attempts (kept 30 days)."""
        await self.get(principal, endpoint_id)
        if state is not None and state not in ("pending", "delivered", "failed"):
            raise InvalidInput("state must be pending, delivered or failed", code="invalid_request", field="state")
        size = page_limit(limit)
        items = await self._ctx.storage.list_webhook_deliveries(endpoint_id, after=cursor, limit=size + 1, state=state)
        attempts = await self._ctx.storage.list_webhook_attempts([d.id for d in items[:size]])
        by_delivery: dict[str, list[Attempt]] = {}
        for attempt in attempts:
            by_delivery.setdefault(attempt.delivery_id, []).append(attempt)
        views = [DeliveryView(d, tuple(by_delivery.get(d.id, ()))) for d in items]
        return paged(views, size, lambda view: view.delivery.id)

    async def retry(self, actor: Actor, endpoint_id: str, delivery_id: str) -> Delivery:
        """Send a delivery again now (a ``failed`` one becomes ``pending``); audited."""
        await self.get(actor.principal, endpoint_id, "webhooks.write")
        async with self._ctx.storage.transaction() as tx:
            now = self._ctx.now()
            if not looks_like_id(delivery_id, "dlv") or not await tx.retry_webhook_delivery(
                endpoint_id, delivery_id, now
            ):
                raise not_found("delivery", delivery_id, "dlv", "delivery_not_found")
            await self._ctx.audit(tx, actor, "webhook.retry", endpoint_id, {"delivery_id": delivery_id}, now)
        found = await self._ctx.storage.get_webhook_delivery(endpoint_id, delivery_id)
        assert found is not None
        return found
