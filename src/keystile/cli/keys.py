"""``keystile keys create|list|show|update|revoke|delete`` (SPEC K4, R1); ``verify``, ``reroll`` and ``credits``
live in their own modules.

Bodies are built from the flags and validated by the HTTP API's schemas, so the CLI accepts exactly what the
API accepts. The plain-text key is printed by ``create`` only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from keystile.cli._keyview import show_key, status
from keystile.cli._output import emit_json, json_option, next_page, table, when
from keystile.cli._parse import expiry, refill, to_duration, to_json_object, to_ratelimits
from keystile.cli._runtime import run
from keystile.cli.keyimport import import_keys
from keystile.cli.keyops import credits, plaintext, reroll
from keystile.cli.verify import verify

if TYPE_CHECKING:
    from keystile.schemas import KeyCreated, KeyOut, Page
    from keystile.service import Keystile

F = TypeVar("F", bound=Callable[..., Any])

CLEARABLE = {
    "name": "name",
    "owner-id": "owner_id",
    "meta": "meta",
    "permissions": "permissions",
    "roles": "roles",
    "ratelimits": "ratelimits",
    "ip": "ip_allowlist",
}


def key_options(fn: F) -> F:
    """The flags ``create`` and ``update`` share: what a key holds."""
    decorators = [
        click.option("--name", help="A name for people, e.g. 'alice laptop'."),
        click.option("--owner-id", help="External id of the user or application holding the key."),
        click.option(
            "--meta", callback=to_json_object, metavar="JSON", help="JSON object kept with the key (16 KiB at most)."
        ),
        click.option("--permission", "permissions", multiple=True, metavar="P", help="e.g. docs.read (repeatable)."),
        click.option("--role", "roles", multiple=True, metavar="R", help="A role of the API (repeatable)."),
        click.option("--expires-at", metavar="RFC3339", help="e.g. 2030-01-01T00:00:00Z."),
        click.option("--expires-in", callback=to_duration, metavar="DURATION", help="e.g. 30d, 12h or 15m from now."),
        click.option("--credits", type=int, help="Number of uses left (default: unlimited)."),
        click.option("--refill-amount", type=int, help="Refill the credits to this amount..."),
        click.option("--refill-interval", type=click.Choice(["daily", "monthly"]), help="...every day or month..."),
        click.option("--refill-day", type=int, help="...on this day of the month (monthly refills)."),
        click.option(
            "--ratelimit",
            "ratelimits",
            multiple=True,
            callback=to_ratelimits,
            metavar="NAME=LIMIT/DURATION",
            help="e.g. api=100/1m (repeatable).",
        ),
        click.option("--ip", "ips", multiple=True, metavar="CIDR", help="Accept the key only from here (repeatable)."),
    ]
    for decorate in reversed(decorators):
        fn = decorate(fn)
    return fn


def _common_body(given: dict[str, Any]) -> dict[str, Any]:
    """The body fields of :func:`key_options` that were given (lists only when non-empty)."""
    body: dict[str, Any] = {}
    for name in ("name", "owner_id", "meta"):
        if given[name] is not None:
            body[name] = given[name]
    for name, field in (("permissions", "permissions"), ("roles", "roles"), ("ratelimits", "ratelimits")):
        if given[name]:
            body[field] = list(given[name])
    if given["ips"]:
        body["ip_allowlist"] = list(given["ips"])
    expires_at = expiry(given["expires_at"], given["expires_in"])
    if expires_at is not None:
        body["expires_at"] = expires_at
    return body


@click.group()
def keys() -> None:
    """Create, list, update, revoke and verify keys."""


@keys.command("create")
@click.argument("api_id")
@key_options
@click.option("--disabled", is_flag=True, help="Create the key disabled (it verifies as DISABLED).")
@click.option(
    "--recoverable/--not-recoverable",
    default=None,
    help="Keep the key encrypted so that it can be read back (keys plaintext) [default: as its API says].",
)
@json_option
def create(api_id: str, disabled: bool, recoverable: bool | None, as_json: bool, **given: Any) -> None:
    """Create a key in API_ID and print it once.

    Keystile keeps only its hash: the key cannot be shown again.
    """
    from keystile.schemas import KeyCreate, convert, key_created, new_key
    from keystile.service import CLI_ACTOR

    body = _common_body(given)
    refill_body = refill(given["refill_amount"], given["refill_interval"], given["refill_day"])
    if given["credits"] is not None:
        body["credits"] = {"remaining": given["credits"]}
        if refill_body is not None:
            body["credits"]["refill"] = refill_body
    elif refill_body is not None:
        raise click.UsageError("a refill needs --credits (the starting number of uses)")
    if disabled:
        body["enabled"] = False
    if recoverable is not None:
        body["recoverable"] = recoverable
    spec = new_key(convert(body, KeyCreate))

    async def work(ks: Keystile) -> KeyCreated:
        key, plain = await ks.keys.create(CLI_ACTOR, api_id, spec)
        return key_created(key, plain)

    out = run(work)
    if as_json:
        emit_json(out)
        return
    show_key(out)
    click.echo("\nThe key, shown this once (Keystile keeps only its hash):\n")
    click.echo(out.key)


@keys.command("list")
@click.argument("api_id")
@click.option("--owner-id", help="Only keys of this owner.")
@click.option("--enabled/--disabled", default=None, help="Only enabled, or only disabled, keys.")
@click.option("--expired/--not-expired", default=None, help="Only expired, or only unexpired, keys.")
@click.option("--revoked/--not-revoked", default=None, help="Only revoked, or only unrevoked, keys.")
@click.option("--stale/--not-stale", default=None, help="Only keys older (or younger) than the API's max key age.")
@click.option("--search", metavar="Q", help="Keys whose name or start contains Q.")
@click.option("--limit", type=int, help="Keys per page (default 50, at most 1000).")
@click.option("--cursor", help="The next_cursor of the previous page.")
@json_option
def list_(
    api_id: str,
    owner_id: str | None,
    enabled: bool | None,
    expired: bool | None,
    revoked: bool | None,
    stale: bool | None,
    search: str | None,
    limit: int | None,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List the keys of API_ID, newest first."""
    from keystile.core.models import KeyFilter
    from keystile.schemas import Page, key_view_out
    from keystile.service import CLI_ACTOR

    where = KeyFilter(owner_id=owner_id, enabled=enabled, expired=expired, revoked=revoked, search=search)

    async def work(ks: Keystile) -> Page[KeyOut]:
        page = await ks.keys.list(CLI_ACTOR.principal, api_id, where, stale=stale, cursor=cursor, limit=limit)
        return Page([key_view_out(view) for view in await ks.keys.views(page.items)], page.next_cursor)

    page = run(work)
    if as_json:
        emit_json(page)
        return
    now = int(time.time() * 1000)
    rows = [
        [
            out.id,
            out.start,
            out.name or "-",
            out.owner_id or "-",
            status(out, now),
            when(out.created_at),
            "yes" if out.stale else "no",
            when(out.expires_at),
        ]
        for out in page.items
    ]
    table(["ID", "START", "NAME", "OWNER", "STATUS", "CREATED", "STALE", "EXPIRES"], rows, empty="No keys.")
    next_page(page.next_cursor)


@keys.command("show")
@click.argument("key_id")
@json_option
def show(key_id: str, as_json: bool) -> None:
    """Show one key (never the key itself).

    Keystile keeps only the key's hash and its start, such as ks_3Fx9.
    """
    from keystile.schemas import key_view_out
    from keystile.service import CLI_ACTOR

    async def work(ks: Keystile) -> KeyOut:
        return key_view_out(await ks.keys.view(await ks.keys.get(CLI_ACTOR.principal, key_id)))

    out = run(work)
    if as_json:
        emit_json(out)
    else:
        show_key(out)


@keys.command("update")
@click.argument("key_id")
@key_options
@click.option("--enable/--disable", "enabled", default=None, help="Enable or disable the key.")
@click.option("--no-expiry", is_flag=True, help="Remove the expiry.")
@click.option("--unlimited-credits", is_flag=True, help="Remove the credits (unlimited uses).")
@click.option("--no-refill", is_flag=True, help="Stop refilling the credits.")
@click.option(
    "--clear",
    "clear",
    multiple=True,
    type=click.Choice(sorted(CLEARABLE)),
    help="Remove a field (repeatable); lists become empty.",
)
@json_option
def update(
    key_id: str,
    enabled: bool | None,
    no_expiry: bool,
    unlimited_credits: bool,
    no_refill: bool,
    clear: tuple[str, ...],
    as_json: bool,
    **given: Any,
) -> None:
    """Change some fields of a key.

    Only the given fields change (a JSON merge patch; --meta merges member by member). --permission, --role,
    --ratelimit and --ip replace the key's whole list.
    """
    from keystile.schemas import key_update, key_view_out
    from keystile.service import CLI_ACTOR

    patch = _common_body(given)
    if given["expires_at"] is not None or given["expires_in"] is not None:
        if no_expiry:
            raise click.UsageError("give --no-expiry or a new expiry, not both")
    elif no_expiry:
        patch["expires_at"] = None
    for choice in clear:
        field = CLEARABLE[choice]
        if field in patch:
            raise click.UsageError(f"--clear {choice} and a new value for it cannot be given together")
        patch[field] = None
    credits = credits_patch(given, unlimited_credits, no_refill)
    if credits is not ...:
        patch["credits"] = credits
    if enabled is not None:
        patch["enabled"] = enabled
    if not patch:
        raise click.UsageError("nothing to change: give at least one option (see keystile keys update --help)")

    async def work(ks: Keystile) -> KeyOut:
        return key_view_out(await ks.keys.view(await ks.keys.update(CLI_ACTOR, key_id, key_update(patch))))

    out = run(work)
    if as_json:
        emit_json(out)
    else:
        show_key(out)


def credits_patch(given: dict[str, Any], unlimited: bool, no_refill: bool) -> Any:
    """The ``credits`` member of a merge patch, or ``...`` when the credits stay as they are."""
    refill_body = refill(given["refill_amount"], given["refill_interval"], given["refill_day"])
    wanted = given["credits"] is not None or refill_body is not None or no_refill
    if unlimited:
        if wanted:
            raise click.UsageError("--unlimited-credits removes the credits; give no other credit option")
        return None
    if not wanted:
        return ...
    if refill_body is not None and no_refill:
        raise click.UsageError("give --no-refill or a new refill, not both")
    patch: dict[str, Any] = {}
    if given["credits"] is not None:
        patch["remaining"] = given["credits"]
    if refill_body is not None:
        patch["refill"] = refill_body
    if no_refill:
        patch["refill"] = None
    return patch


@keys.command("revoke")
@click.argument("key_id")
@json_option
def revoke(key_id: str, as_json: bool) -> None:
    """Revoke a key: it then verifies as REVOKED.

    Revoking is permanent; revoking again changes nothing.
    """
    from keystile.schemas import key_view_out
    from keystile.service import CLI_ACTOR

    async def work(ks: Keystile) -> KeyOut:
        return key_view_out(await ks.keys.view(await ks.keys.revoke(CLI_ACTOR, key_id)))

    out = run(work)
    if as_json:
        emit_json(out)
    else:
        click.echo(f"Revoked key {out.id} ({out.start}) at {when(out.revoked_at)}.")


@keys.command("delete")
@click.argument("key_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def delete(key_id: str, yes: bool) -> None:
    """Delete a key permanently.

    Revoking keeps the record (the key then verifies as REVOKED); deleting removes it.
    """
    from keystile.core.models import Key
    from keystile.service import CLI_ACTOR

    async def find(ks: Keystile) -> Key:
        return await ks.keys.get(CLI_ACTOR.principal, key_id)

    async def work(ks: Keystile) -> None:
        await ks.keys.delete(CLI_ACTOR, key_id)

    if not yes:
        key = run(find)
        label = f"{key.start}, {key.name}" if key.name else key.start
        click.confirm(f"Delete key {key_id} ({label}) for good?", abort=True)
    run(work)
    click.echo(f"Deleted key {key_id}.")


keys.add_command(verify)
keys.add_command(reroll)
keys.add_command(credits)
keys.add_command(plaintext)
keys.add_command(import_keys)
