"""Webhook endpoints and their deliveries (SPEC R5)."""

from __future__ import annotations

from starlette.responses import Response

from keystile.operations import (
    CREATE_WEBHOOK,
    DELETE_WEBHOOK,
    GET_WEBHOOK,
    LIST_WEBHOOK_DELIVERIES,
    LIST_WEBHOOKS,
    RETRY_WEBHOOK_DELIVERY,
    ROTATE_WEBHOOK_SECRET,
    UPDATE_WEBHOOK,
)
from keystile.schemas import (
    Page,
    SecretRotation,
    WebhookCreate,
    delivery_out,
    new_webhook,
    webhook_created,
    webhook_out,
    webhook_update,
)
from keystile.server.routing import Call, Operation


async def create_webhook(call: Call) -> Response:
    spec = await call.body(WebhookCreate)
    endpoint, secret = await call.ks.webhooks.create(call.actor, new_webhook(spec))
    return call.json(webhook_created(endpoint, secret), 201)


async def list_webhooks(call: Call) -> Response:
    page = await call.ks.webhooks.list(
        call.actor.principal, cursor=call.params.get("cursor"), limit=call.params.get("limit")
    )
    return call.json(Page([webhook_out(ep) for ep in page.items], page.next_cursor))


async def get_webhook(call: Call) -> Response:
    return call.json(webhook_out(await call.ks.webhooks.get(call.actor.principal, call.path("webhook_id"))))


async def update_webhook(call: Call) -> Response:
    patch = await call.merge_patch()
    endpoint = await call.ks.webhooks.update(call.actor, call.path("webhook_id"), webhook_update(patch))
    return call.json(webhook_out(endpoint))


async def delete_webhook(call: Call) -> Response:
    await call.ks.webhooks.delete(call.actor, call.path("webhook_id"))
    return call.no_content()


async def rotate_webhook_secret(call: Call) -> Response:
    spec = await call.body(SecretRotation)
    endpoint, secret = await call.ks.webhooks.rotate_secret(call.actor, call.path("webhook_id"), spec.grace_period_ms)
    return call.json(webhook_created(endpoint, secret))


async def list_webhook_deliveries(call: Call) -> Response:
    page = await call.ks.webhooks.deliveries(
        call.actor.principal,
        call.path("webhook_id"),
        state=call.params.get("state"),
        cursor=call.params.get("cursor"),
        limit=call.params.get("limit"),
    )
    return call.json(Page([delivery_out(v.delivery, v.attempts) for v in page.items], page.next_cursor))


async def retry_webhook_delivery(call: Call) -> Response:
    delivery = await call.ks.webhooks.retry(call.actor, call.path("webhook_id"), call.path("delivery_id"))
    return call.json(delivery_out(delivery))


TAG = "Webhooks"
_SEALED = (
    " The secret is stored encrypted under the master key: without one configured the answer is a 503"
    " (`master_key_unavailable`)."
)
OPERATIONS = [
    Operation(
        CREATE_WEBHOOK,
        create_webhook,
        "Create a webhook endpoint; the answer holds its signing secret (`whsec_…`), this once",
        TAG,
        "webhooks.write",
        errors=(400, 401, 403, 503),
        description="The URL may not resolve to a loopback, link-local or private address unless the server "
        "allows it (`webhook_url_forbidden`)." + _SEALED,
    ),
    Operation(LIST_WEBHOOKS, list_webhooks, "List webhook endpoints, newest first", TAG, "webhooks.read"),
    Operation(GET_WEBHOOK, get_webhook, "Show a webhook endpoint", TAG, "webhooks.read"),
    Operation(
        UPDATE_WEBHOOK,
        update_webhook,
        "Update a webhook endpoint with a JSON Merge Patch",
        TAG,
        "webhooks.write",
        errors=(400, 401, 403, 404, 415),
    ),
    Operation(
        DELETE_WEBHOOK,
        delete_webhook,
        "Delete a webhook endpoint and its deliveries",
        TAG,
        "webhooks.write",
        errors=(401, 403, 404),
    ),
    Operation(
        ROTATE_WEBHOOK_SECRET,
        rotate_webhook_secret,
        "Give a webhook endpoint a new signing secret (shown this once); the old one keeps signing beside it "
        "for the grace period",
        TAG,
        "webhooks.write",
        errors=(400, 401, 403, 404, 503),
        description="During the grace period every delivery carries both signatures in `webhook-signature`." + _SEALED,
    ),
    Operation(
        LIST_WEBHOOK_DELIVERIES,
        list_webhook_deliveries,
        "List a webhook endpoint's deliveries, newest first, with their attempts (kept 30 days)",
        TAG,
        "webhooks.read",
    ),
    Operation(
        RETRY_WEBHOOK_DELIVERY,
        retry_webhook_delivery,
        "Send a delivery again now (a failed one becomes pending)",
        TAG,
        "webhooks.write",
        errors=(401, 403, 404),
    ),
]
