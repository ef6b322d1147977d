"""Outgoing webhooks (SPEC R5): endpoints, the outbox's messages and deliveries, Standard Webhooks signing, the
retry schedule and which addresses an endpoint may not reach.

Pure: no clock, no sockets. A message is one event (``{type, timestamp, data}`` as JSON bytes); a delivery is a
message on its way to one endpoint, attempted until it is ``delivered`` or, after the retry window, ``failed``.
Deliveries of one key to one endpoint go out in the order they were written (their ``seq``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

EVENT_TYPES = (
    "key.created",
    "key.updated",
    "key.revoked",
    "key.deleted",
    "key.rerolled",
    "key.expiring",
    "key.expired",
    "key.rotation_due",
    "key.leaked",
    "credits.low",
    "credits.exhausted",
)
SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix, not a secret)
SECRET_BYTES = 32
DeliveryState = Literal["pending", "delivered", "failed"]


@dataclass(frozen=True, slots=True)
class SealedSecret:
    """An endpoint's signing secret, sealed under a data key of the vault (never stored in plain text)."""

    data_key_id: str
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where events go: ``events`` are the types it receives, ``api_ids`` (``None``: every API) the APIs whose
    keys it hears about. ``previous_secret`` signs too until ``previous_until`` (a rotation's grace period)."""

    id: str
    url: str
    events: tuple[str, ...]
    api_ids: tuple[str, ...] | None
    enabled: bool
    description: str | None
    created_at: int
    updated_at: int
    secret: SealedSecret
    previous_secret: SealedSecret | None = None
    previous_until: int | None = None
    credits_low_percent: int = 10

    def wants(self, event_type: str, api_id: str | None) -> bool:
        """Whether an event of ``event_type`` about a key of ``api_id`` goes to this endpoint."""
        if not self.enabled or event_type not in self.events:
            return False
        return self.api_ids is None or api_id in self.api_ids


@dataclass(frozen=True, slots=True)
class Message:
    """One event, as its JSON ``body`` will be posted; ``order_key`` (a key id) orders deliveries."""

    id: str
    type: str
    api_id: str | None
    order_key: str
    body: bytes
    created_at: int


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message on its way to one endpoint."""

    id: str
    endpoint_id: str
    message_id: str
    type: str
    state: DeliveryState
    attempts: int
    next_at: int | None
    created_at: int
    updated_at: int
    last_status: int | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of a delivery: the HTTP ``status`` (``None`` when no answer came), its latency and the start of
    the answer's body, or the ``error`` that stopped it."""

    id: str
    delivery_id: str
    at: int
    status: int | None
    latency_ms: int
    excerpt: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Due:
    """A delivery leased for sending: what the deliverer needs to post it."""

    delivery_id: str
    message_id: str
    endpoint_id: str
    url: str
    body: bytes
    attempts: int
    created_at: int
    secret: SealedSecret
    previous_secret: SealedSecret | None
    previous_until: int | None


# -- Standard Webhooks signing ---------------------------------------------------------------------------------


def new_secret() -> str:
    """A new signing secret, ``whsec_`` and 32 random bytes in base64 (as Standard Webhooks libraries read it)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_bytes(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(secret: str, message_id: str, timestamp_s: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of id.timestamp.body>`` under ``secret`` (Standard Webhooks)."""
    signed = f"{message_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secrets_: Sequence[str], message_id: str, timestamp_s: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers of one post, signed with every secret in ``secrets_`` (space-separated)."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": " ".join(signature(s, message_id, timestamp_s, body) for s in secrets_),
        "content-type": "application/json",
    }


# -- retries ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: the n-th retry waits ``base_ms * 2**(n-1)`` (at most ``max_ms``), times a
    random factor in [0.8, 1.2]; no retry starts later than ``window_ms`` after the message was written."""

    base_ms: int = 5_000
    max_ms: int = 3_600_000
    window_ms: int = 3 * 86_400_000

    def next_at(self, attempts: int, now: int, created_at: int, rng: random.Random | None = None) -> int | None:
        """When to try again after ``attempts`` failed tries, or ``None``: the window is over (``failed``)."""
        delay = min(self.max_ms, self.base_ms * 2 ** max(0, min(attempts - 1, 40)))
        delay = int(delay * (rng or random).uniform(0.8, 1.2))
        at = now + delay
        return None if at - created_at > self.window_ms else at


# -- SSRF ------------------------------------------------------------------------------------------------------


def forbidden_address(address: str) -> bool:
    """Whether an endpoint may not be reached at ``address``: loopback, link-local, private, unspecified,
    multicast or reserved ranges (an IPv4-mapped IPv6 address counts as its IPv4 address)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_loopback
        or ip.is_link_local
        or ip.is_private
        or ip.is_unspecified
        or ip.is_multicast
        or ip.is_reserved
        or not ip.is_global
    )


# -- commands --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewWebhook:
    """What creating an endpoint asks for (``api_ids`` ``None``: keys of every API)."""

    url: str
    events: Sequence[str]
    api_ids: Sequence[str] | None = None
    enabled: bool = True
    description: str | None = None
    credits_low_percent: int = 10


@dataclass(frozen=True, slots=True)
class WebhookUpdate:
    """A change to an endpoint: ``None`` leaves a field as it is, except ``api_ids`` and ``description``, which
    the ``set_…`` flags say whether to change (so that ``None`` can mean "every API" / "no description")."""

    url: str | None = None
    events: Sequence[str] | None = None
    api_ids: Sequence[str] | None = None
    set_api_ids: bool = False
    enabled: bool | None = None
    description: str | None = None
    set_description: bool = False
    credits_low_percent: int | None = None
