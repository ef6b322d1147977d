"""``keystile webhooks create|list|get|update|delete|rotate-secret|deliveries|retry`` (webhook endpoints, and the
deliveries of one)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from keystile.cli._output import emit_json, fields, json_option, next_page, table, when
from keystile.cli._runtime import run

if TYPE_CHECKING:
    from keystile.core.webhooks import Endpoint
    from keystile.schemas import DeliveryOut, Page, WebhookCreated, WebhookOut
    from keystile.service import Keystile


def _show(out: WebhookOut) -> None:
    fields(
        [
            ("id", out.id),
            ("url", out.url),
            ("events", out.events),
            ("api_ids", out.api_ids if out.api_ids is not None else "all"),
            ("enabled", out.enabled),
            ("description", out.description),
            ("credits_low_percent", out.credits_low_percent),
            ("created_at", when(out.created_at)),
            ("previous_secret_valid_until", when(out.previous_secret_valid_until)),
        ]
    )


def _deliver_secret(out: WebhookCreated, as_json: bool, what: str) -> None:
    if as_json:
        emit_json(out)
        return
    click.echo(f"Webhook {out.id} {what}. Its signing secret, shown this once (Keystile keeps it encrypted):\n")
    click.echo(out.secret)
    click.echo()


@click.group("webhooks")
def webhooks() -> None:
    """Manage webhook endpoints: where Keystile posts events about keys (signed, Standard Webhooks)."""


_EVENTS_HELP = "An event type such as key.created, key.revoked, credits.exhausted (repeatable)."


@webhooks.command("create")
@click.option("--url", required=True, help="Where events are posted (http or https).")
@click.option("--event", "events", multiple=True, required=True, metavar="TYPE", help=_EVENTS_HELP)
@click.option("--api-id", "api_ids", multiple=True, help="Only events about keys of this API (repeatable).")
@click.option("--description", help="What the endpoint is for.")
@click.option("--disabled", is_flag=True, help="Create it disabled (no events are sent until enabled).")
@click.option("--credits-low-percent", type=int, help="credits.low threshold, in percent (default 10).")
@json_option
def create(
    url: str,
    events: tuple[str, ...],
    api_ids: tuple[str, ...],
    description: str | None,
    disabled: bool,
    credits_low_percent: int | None,
    as_json: bool,
) -> None:
    """Create a webhook endpoint and show its signing secret once."""
    from keystile.schemas import WebhookCreate, convert, new_webhook, webhook_created
    from keystile.service import CLI_ACTOR

    body: dict[str, Any] = {"url": url, "events": list(events), "enabled": not disabled}
    if api_ids:
        body["api_ids"] = list(api_ids)
    if description is not None:
        body["description"] = description
    if credits_low_percent is not None:
        body["credits_low_percent"] = credits_low_percent
    spec = new_webhook(convert(body, WebhookCreate))

    async def work(ks: Keystile) -> WebhookCreated:
        endpoint, secret = await ks.webhooks.create(CLI_ACTOR, spec)
        return webhook_created(endpoint, secret)

    _deliver_secret(run(work), as_json, "created")


@webhooks.command("list")
@click.option("--limit", type=int, help="Endpoints per page (default 50, at most 1000).")
@click.option("--cursor", help="The next_cursor of the previous page.")
@json_option
def list_(limit: int | None, cursor: str | None, as_json: bool) -> None:
    """List webhook endpoints, newest first."""
    from keystile.schemas import Page, webhook_out
    from keystile.service import CLI_ACTOR

    async def work(ks: Keystile) -> Page[WebhookOut]:
        page = await ks.webhooks.list(CLI_ACTOR.principal, cursor=cursor, limit=limit)
        return Page([webhook_out(ep) for ep in page.items], page.next_cursor)

    page = run(work)
    if as_json:
        emit_json(page)
        return
    rows = [
        [out.id, out.url, ", ".join(out.events), "yes" if out.enabled else "no", when(out.created_at)]
        for out in page.items
    ]
    table(["ID", "URL", "EVENTS", "ENABLED", "CREATED"], rows, empty="No webhook endpoints.")
    next_page(page.next_cursor)


@webhooks.command("get")
@click.argument("webhook_id")
@json_option
def get(webhook_id: str, as_json: bool) -> None:
    """Show a webhook endpoint."""
    from keystile.schemas import webhook_out
    from keystile.service import CLI_ACTOR

    async def work(ks: Keystile) -> Endpoint:
        return await ks.webhooks.get(CLI_ACTOR.principal, webhook_id)

    out = webhook_out(run(work))
    if as_json:
        emit_json(out)
    else:
        _show(out)


@webhooks.command("update")
@click.argument("webhook_id")
@click.option("--url", help="A new URL.")
@click.option("--event", "events", multiple=True, metavar="TYPE", help="Replace the event types (repeatable).")
@click.option("--api-id", "api_ids", multiple=True, help="Replace the APIs (repeatable).")
@click.option("--all-apis", is_flag=True, help="Events about keys of every API.")
@click.option("--description", help="A new description.")
@click.option("--enable/--disable", "enabled", default=None, help="Send events, or stop sending them.")
@click.option("--credits-low-percent", type=int, help="credits.low threshold, in percent.")
@json_option
def update(
    webhook_id: str,
    url: str | None,
    events: tuple[str, ...],
    api_ids: tuple[str, ...],
    all_apis: bool,
    description: str | None,
    enabled: bool | None,
    credits_low_percent: int | None,
    as_json: bool,
) -> None:
    """Change a webhook endpoint (options not given stay as they are)."""
    from keystile.schemas import webhook_out, webhook_update
    from keystile.service import CLI_ACTOR

    patch: dict[str, Any] = {}
    if url is not None:
        patch["url"] = url
    if events:
        patch["events"] = list(events)
    if all_apis:
        patch["api_ids"] = None
    elif api_ids:
        patch["api_ids"] = list(api_ids)
    if description is not None:
        patch["description"] = description
    if enabled is not None:
        patch["enabled"] = enabled
    if credits_low_percent is not None:
        patch["credits_low_percent"] = credits_low_percent
    change = webhook_update(patch)

    async def work(ks: Keystile) -> Endpoint:
        return await ks.webhooks.update(CLI_ACTOR, webhook_id, change)

    out = webhook_out(run(work))
    if as_json:
        emit_json(out)
    else:
        _show(out)


@webhooks.command("delete")
@click.argument("webhook_id")
def delete(webhook_id: str) -> None:
    """Delete a webhook endpoint and its deliveries."""
    from keystile.service import CLI_ACTOR

    async def work(ks: Keystile) -> None:
        await ks.webhooks.delete(CLI_ACTOR, webhook_id)

    run(work)
    click.echo(f"Deleted {webhook_id}.")


@webhooks.command("rotate-secret")
@click.argument("webhook_id")
@click.option(
    "--grace-period-ms",
    type=int,
    default=86_400_000,
    show_default=True,
    help="How long the old secret keeps signing beside the new one (0: it stops now).",
)
@json_option
def rotate_secret(webhook_id: str, grace_period_ms: int, as_json: bool) -> None:
    """Give a webhook endpoint a new signing secret and show it once."""
    from keystile.schemas import webhook_created
    from keystile.service import CLI_ACTOR

    async def work(ks: Keystile) -> WebhookCreated:
        endpoint, secret = await ks.webhooks.rotate_secret(CLI_ACTOR, webhook_id, grace_period_ms)
        return webhook_created(endpoint, secret)

    _deliver_secret(run(work), as_json, "has a new secret")


@webhooks.command("deliveries")
@click.argument("webhook_id")
@click.option("--state", type=click.Choice(["pending", "delivered", "failed"]), help="Only deliveries in this state.")
@click.option("--limit", type=int, help="Deliveries per page (default 50, at most 1000).")
@click.option("--cursor", help="The next_cursor of the previous page.")
@json_option
def deliveries(webhook_id: str, state: str | None, limit: int | None, cursor: str | None, as_json: bool) -> None:
    """List an endpoint's deliveries, newest first, with their attempts."""
    from keystile.schemas import Page, delivery_out
    from keystile.service import CLI_ACTOR

    async def work(ks: Keystile) -> Page[DeliveryOut]:
        page = await ks.webhooks.deliveries(CLI_ACTOR.principal, webhook_id, state=state, cursor=cursor, limit=limit)
        return Page([delivery_out(v.delivery, v.attempts) for v in page.items], page.next_cursor)

    page = run(work)
    if as_json:
        emit_json(page)
        return
    rows = [
        [out.id, out.type, out.state, str(out.attempts), str(out.last_status or "-"), when(out.created_at)]
        for out in page.items
    ]
    table(["ID", "EVENT", "STATE", "ATTEMPTS", "LAST STATUS", "CREATED"], rows, empty="No deliveries.")
    next_page(page.next_cursor)


@webhooks.command("retry")
@click.argument("webhook_id")
@click.argument("delivery_id")
@json_option
def retry(webhook_id: str, delivery_id: str, as_json: bool) -> None:
    """Send a delivery again (a failed one becomes pending; a running server sends it)."""
    from keystile.schemas import delivery_out
    from keystile.service import CLI_ACTOR

    async def work(ks: Keystile) -> DeliveryOut:
        return delivery_out(await ks.webhooks.retry(CLI_ACTOR, webhook_id, delivery_id))

    out = run(work)
    if as_json:
        emit_json(out)
    else:
        click.echo(f"Delivery {out.id} ({out.type}) is {out.state}: a running server sends it now.")
