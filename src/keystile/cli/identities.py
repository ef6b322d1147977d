"""``keystile identities create|show|update|delete`` (SPEC K5): an owner's shared rate limits and credits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from keystile.cli._errors import name_fields
from keystile.cli._output import emit_json, fields, json_option, ratelimits, when
from keystile.cli._parse import refill, to_json_object, to_ratelimits
from keystile.cli._runtime import run

if TYPE_CHECKING:
    from keystile.schemas import IdentityOut
    from keystile.service import Keystile


def show_identity(out: IdentityOut) -> None:
    credits = "unlimited"
    if out.credits is not None:
        credits = str(out.credits.remaining)
        if out.credits.refill is not None:
            on_day = f" on day {out.credits.refill.day}" if out.credits.refill.day else ""
            credits += f" (refilled to {out.credits.refill.amount} {out.credits.refill.interval}{on_day})"
    fields(
        [
            ("id", out.id),
            ("owner_id", out.owner_id),
            ("meta", out.meta),
            ("credits", credits),
            ("ratelimits", ratelimits(out.ratelimits)),
            ("created_at", when(out.created_at)),
            ("updated_at", when(out.updated_at)),
        ]
    )


def _emit(out: IdentityOut, as_json: bool) -> None:
    if as_json:
        emit_json(out)
    else:
        show_identity(out)


def _credit_options(fn: Any) -> Any:
    decorators = [
        click.option("--meta", callback=to_json_object, metavar="JSON", help="JSON object kept with the identity."),
        click.option("--credits", type=int, help="Credits shared by the owner's keys (default: unlimited)."),
        click.option("--refill-amount", type=int, help="Refill the credits to this amount..."),
        click.option("--refill-interval", type=click.Choice(["daily", "monthly"]), help="...every day or month..."),
        click.option("--refill-day", type=int, help="...on this day of the month (monthly refills)."),
        click.option(
            "--ratelimit",
            "ratelimits",
            multiple=True,
            callback=to_ratelimits,
            metavar="NAME=LIMIT/DURATION",
            help="A limit shared by the owner's keys, e.g. api=100/1m (repeatable).",
        ),
    ]
    for decorate in reversed(decorators):
        fn = decorate(fn)
    return fn


@click.group()
def identities() -> None:
    """Manage identities: rate limits and credits shared by all keys of one owner."""


@identities.command("create")
@click.argument("owner_id")
@_credit_options
@json_option
def create(owner_id: str, as_json: bool, **given: Any) -> None:
    """Create the identity of OWNER_ID (the owner_id of its keys, in any API)."""
    from keystile.schemas import IdentityCreate, convert, identity_out, new_identity
    from keystile.service import CLI_ACTOR

    name_fields(owner_id="OWNER_ID")
    body: dict[str, Any] = {"owner_id": owner_id}
    if given["meta"] is not None:
        body["meta"] = given["meta"]
    if given["ratelimits"]:
        body["ratelimits"] = given["ratelimits"]
    refill_body = refill(given["refill_amount"], given["refill_interval"], given["refill_day"])
    if given["credits"] is not None:
        body["credits"] = {"remaining": given["credits"]}
        if refill_body is not None:
            body["credits"]["refill"] = refill_body
    elif refill_body is not None:
        raise click.UsageError("a refill needs --credits (the starting number of uses)")
    spec = new_identity(convert(body, IdentityCreate))

    async def work(ks: Keystile) -> IdentityOut:
        return identity_out(await ks.identities.create(CLI_ACTOR, spec))

    _emit(run(work), as_json)


@identities.command("show")
@click.argument("owner_id")
@json_option
def show(owner_id: str, as_json: bool) -> None:
    """Show the identity of OWNER_ID."""
    from keystile.schemas import identity_out
    from keystile.service import CLI_ACTOR

    async def work(ks: Keystile) -> IdentityOut:
        return identity_out(await ks.identities.get(CLI_ACTOR.principal, owner_id))

    _emit(run(work), as_json)


@identities.command("update")
@click.argument("owner_id")
@_credit_options
@click.option("--unlimited-credits", is_flag=True, help="Remove the credits (unlimited uses).")
@click.option("--no-refill", is_flag=True, help="Stop refilling the credits.")
@click.option("--clear-ratelimits", is_flag=True, help="Remove every rate limit of the identity.")
@json_option
def update(
    owner_id: str, unlimited_credits: bool, no_refill: bool, clear_ratelimits: bool, as_json: bool, **given: Any
) -> None:
    """Change some fields of the identity of OWNER_ID.

    Only the given fields change (a JSON merge patch; --meta merges member by member). --ratelimit replaces the
    whole list.
    """
    from keystile.cli.keys import credits_patch
    from keystile.schemas import identity_out, identity_update
    from keystile.service import CLI_ACTOR

    patch: dict[str, Any] = {}
    if given["meta"] is not None:
        patch["meta"] = given["meta"]
    if given["ratelimits"] and clear_ratelimits:
        raise click.UsageError("give --clear-ratelimits or --ratelimit, not both")
    if given["ratelimits"]:
        patch["ratelimits"] = given["ratelimits"]
    elif clear_ratelimits:
        patch["ratelimits"] = None
    credits = credits_patch(given, unlimited_credits, no_refill)
    if credits is not ...:
        patch["credits"] = credits
    if not patch:
        raise click.UsageError("nothing to change: give at least one option (see keystile identities update --help)")

    async def work(ks: Keystile) -> IdentityOut:
        return identity_out(await ks.identities.update(CLI_ACTOR, owner_id, identity_update(patch)))

    _emit(run(work), as_json)


@identities.command("delete")
@click.argument("owner_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def delete(owner_id: str, yes: bool) -> None:
    """Delete the identity of OWNER_ID; its keys stay, without its limits and credits."""
    from keystile.service import CLI_ACTOR

    async def work(ks: Keystile) -> None:
        await ks.identities.delete(CLI_ACTOR, owner_id)

    if not yes:
        click.confirm(f"Delete the identity of {owner_id!r}?", abort=True)
    run(work)
    click.echo(f"Deleted the identity of {owner_id!r}.")
