"""Webhook endpoints and their deliveries (SPEC R5): what creates and patches an endpoint, and how endpoints,
deliveries and attempts are shown. The secret is in :class:`WebhookCreated` only (creation and rotation)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from keystile.core.jsonvalues import check_json
from keystile.core.timefmt import to_rfc3339
from keystile.core.webhooks import EVENT_TYPES, Attempt, Delivery, Endpoint, NewWebhook, WebhookUpdate
from keystile.schemas.common import NO_NUL, TimeOut, _In, utc
from keystile.schemas.decoding import convert

EventType = Annotated[
    str, Meta(extra_json_schema={"enum": list(EVENT_TYPES)}, description="An event type, such as `key.created`.")
]
WebhookUrl = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=2048,
        extra_json_schema=NO_NUL,
        description="Where events are posted: an http(s) URL that does not resolve to a loopback, link-local or "
        "private address (unless the server allows it).",
    ),
]
Events = Annotated[list[EventType], Meta(min_length=1, description="The event types this endpoint receives.")]
ApiIds = Annotated[
    list[Annotated[str, Meta(pattern=r"^api_[0-9A-Za-z]{1,40}$")]],
    Meta(description="Only events about keys of these APIs; absent or null: every API."),
]
Description = Annotated[str, Meta(max_length=1024, extra_json_schema=NO_NUL)]
LowPercent = Annotated[
    int,
    Meta(
        ge=0,
        le=100,
        description="`credits.low` fires when a balance falls to this percentage of its last set or refilled amount.",
    ),
]


class WebhookCreate(_In):
    url: WebhookUrl
    events: Events
    api_ids: ApiIds | None = None
    enabled: bool = True
    description: Description | None = None
    credits_low_percent: LowPercent = 10


class WebhookPatch(_In):
    """A JSON Merge Patch (RFC 7396) of an endpoint: absent fields stay; ``null`` api_ids means every API."""

    url: WebhookUrl | UnsetType = UNSET
    events: Events | UnsetType = UNSET
    api_ids: ApiIds | UnsetType | None = UNSET
    enabled: bool | UnsetType = UNSET
    description: Description | UnsetType | None = UNSET
    credits_low_percent: LowPercent | UnsetType = UNSET


class SecretRotation(_In):
    grace_period_ms: Annotated[
        int,
        Meta(ge=0, le=30 * 86_400_000, description="How long the old secret keeps signing too (default 24 hours)."),
    ] = 86_400_000


class WebhookOut(Struct):
    id: str
    url: str
    events: list[str]
    api_ids: list[str] | None
    enabled: bool
    description: str | None
    credits_low_percent: int
    created_at: TimeOut
    updated_at: TimeOut
    previous_secret_valid_until: TimeOut | None


class WebhookCreated(WebhookOut):
    secret: Annotated[str, Meta(description="The signing secret (`whsec_…`, Standard Webhooks). Shown this once.")]


class AttemptOut(Struct):
    id: str
    at: TimeOut
    status: int | None
    latency_ms: int
    response: str
    error: str | None


class DeliveryOut(Struct):
    id: str
    message_id: Annotated[str, Meta(description="The event's `webhook-id`.")]
    type: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: TimeOut | None
    last_status: int | None
    created_at: TimeOut
    updated_at: TimeOut
    attempt_log: list[AttemptOut]


def _fields(ep: Endpoint) -> dict[str, Any]:
    return {
        "id": ep.id,
        "url": ep.url,
        "events": list(ep.events),
        "api_ids": None if ep.api_ids is None else list(ep.api_ids),
        "enabled": ep.enabled,
        "description": ep.description,
        "credits_low_percent": ep.credits_low_percent,
        "created_at": utc(ep.created_at),
        "updated_at": utc(ep.updated_at),
        "previous_secret_valid_until": to_rfc3339(ep.previous_until) if ep.previous_secret else None,
    }


def webhook_out(ep: Endpoint) -> WebhookOut:
    return WebhookOut(**_fields(ep))


def webhook_created(ep: Endpoint, secret: str) -> WebhookCreated:
    return WebhookCreated(**_fields(ep), secret=secret)


def attempt_out(attempt: Attempt) -> AttemptOut:
    return AttemptOut(
        id=attempt.id,
        at=utc(attempt.at),
        status=attempt.status,
        latency_ms=attempt.latency_ms,
        response=attempt.excerpt,
        error=attempt.error,
    )


def delivery_out(delivery: Delivery, attempts: tuple[Attempt, ...] = ()) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        message_id=delivery.message_id,
        type=delivery.type,
        state=delivery.state,
        attempts=delivery.attempts,
        next_attempt_at=to_rfc3339(delivery.next_at),
        last_status=delivery.last_status,
        created_at=utc(delivery.created_at),
        updated_at=utc(delivery.updated_at),
        attempt_log=[attempt_out(a) for a in attempts],
    )


def new_webhook(spec: WebhookCreate) -> NewWebhook:
    """The command a decoded ``WebhookCreate`` asks for."""
    return NewWebhook(
        url=spec.url,
        events=spec.events,
        api_ids=spec.api_ids,
        enabled=spec.enabled,
        description=spec.description,
        credits_low_percent=spec.credits_low_percent,
    )


def webhook_update(patch: dict[str, Any]) -> WebhookUpdate:
    """The change a JSON Merge Patch of an endpoint asks for; raises InvalidInput naming the wrong member."""
    check_json(patch, "")
    given = convert(patch, WebhookPatch)
    return WebhookUpdate(
        url=None if isinstance(given.url, UnsetType) else given.url,
        events=None if isinstance(given.events, UnsetType) else given.events,
        api_ids=None if isinstance(given.api_ids, UnsetType) else given.api_ids,
        set_api_ids=not isinstance(given.api_ids, UnsetType),
        enabled=None if isinstance(given.enabled, UnsetType) else given.enabled,
        description=None if isinstance(given.description, UnsetType) else given.description,
        set_description=not isinstance(given.description, UnsetType),
        credits_low_percent=None if isinstance(given.credits_low_percent, UnsetType) else given.credits_low_percent,
    )
