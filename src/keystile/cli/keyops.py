"""``keystile keys reroll`` (SPEC R2), ``keystile keys credits`` (SPEC L3) and ``keystile keys plaintext`` (SPEC K3)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from keystile.cli._keyview import show_key
from keystile.cli._output import emit_json, json_option, when
from keystile.cli._parse import duration_ms, expiry, to_duration
from keystile.cli._runtime import run

if TYPE_CHECKING:
    from keystile.schemas import KeyCreated, KeyOut
    from keystile.service import Keystile


def to_grace(ctx: click.Context, param: click.Parameter, value: str | None) -> int:
    """Option callback: a grace period such as ``1h``, ``30m`` or ``0s`` (none), as milliseconds."""
    if value is None:
        return 0
    ms = duration_ms(value)
    if ms is None:
        raise click.BadParameter(f"{value!r} is not a duration such as 1h, 30m or 0s", ctx, param)
    return ms


@click.command("reroll")
@click.argument("key_id")
@click.option(
    "--grace", callback=to_grace, metavar="DURATION", help="How long the old key keeps working, e.g. 1h [default: 0s]."
)
@click.option("--expires-at", metavar="RFC3339", help="When the new key expires, e.g. 2030-01-01T00:00:00Z.")
@click.option("--expires-in", callback=to_duration, metavar="DURATION", help="...or in how long, e.g. 90d.")
@json_option
def reroll(key_id: str, grace: int, expires_at: str | None, expires_in: int | None, as_json: bool) -> None:
    """Replace KEY_ID with a new key of the same settings and print the new key once.

    The new key shares the old key's credits (they move, they are not copied). The old key keeps working for the
    grace period, then verifies as EXPIRED. A revoked key, or one rerolled already, cannot be rerolled (exit 4).
    """
    from keystile.schemas import RerollSpec, convert, key_created, key_view_out
    from keystile.service import CLI_ACTOR

    body: dict[str, Any] = {"grace_period_ms": grace}
    new_expiry = expiry(expires_at, expires_in)
    if new_expiry is not None:
        body["expires_at"] = new_expiry
    spec = convert(body, RerollSpec)

    async def work(ks: Keystile) -> tuple[KeyCreated, KeyOut]:
        key, plain = await ks.keys.reroll(
            CLI_ACTOR, key_id, grace_period_ms=spec.grace_period_ms, expires_at=spec.expires_at
        )
        old = key_view_out(await ks.keys.view(await ks.keys.get(CLI_ACTOR.principal, key_id)))
        return key_created(key, plain), old

    out, old = run(work)
    if as_json:
        emit_json(out)
        return
    show_key(out)
    click.echo(f"\nThe old key {old.id} ({old.start}) stops working at {when(old.expires_at)}.")
    click.echo("The new key, shown this once (Keystile keeps only its hash):\n")
    click.echo(out.key)


@click.command("credits")
@click.argument("key_id")
@click.option("--set", "set_", type=int, metavar="N", help="Set the credits to N.")
@click.option("--add", type=int, metavar="N", help="Add N credits.")
@click.option("--subtract", type=int, metavar="N", help="Take N credits away (stops at 0).")
@click.option("--unlimited", is_flag=True, help="Make the credits unlimited.")
@json_option
def credits(
    key_id: str, set_: int | None, add: int | None, subtract: int | None, unlimited: bool, as_json: bool
) -> None:
    """Set, add or subtract the credits of KEY_ID (give exactly one option).

    Keys that share the balance (a rerolled pair) see the change together. Adding to or subtracting from
    unlimited credits is a conflict (exit 4): --set a number first.
    """
    from keystile.cli._errors import name_fields
    from keystile.schemas import CreditsChange, convert, key_view_out
    from keystile.service import CLI_ACTOR

    given: list[tuple[str, int | None]] = [
        (op, amount) for op, amount in (("set", set_), ("add", add), ("subtract", subtract)) if amount is not None
    ]
    if unlimited:
        given.append(("set", None))
    if len(given) != 1:
        raise click.UsageError("give exactly one of --set, --add, --subtract or --unlimited")
    [(op, amount)] = given
    name_fields(amount=f"--{op}")
    change = convert({"op": op, "amount": amount}, CreditsChange)

    async def work(ks: Keystile) -> KeyOut:
        return key_view_out(
            await ks.keys.view(await ks.keys.change_credits(CLI_ACTOR, key_id, change.op, change.amount))
        )

    out = run(work)
    if as_json:
        emit_json(out)
        return
    left = "unlimited" if out.credits is None else f"{out.credits.remaining} left"
    click.echo(f"Credits of key {out.id} ({out.start}): {left}.")


@click.command("plaintext")
@click.argument("key_id")
@json_option
def plaintext(key_id: str, as_json: bool) -> None:
    """Print a recoverable key in plain text (audited as key.decrypt).

    Only keys stored recoverable can be read back (exit 4 for others); without the master key that wraps them,
    exit 5.
    """
    from keystile.schemas import KeyPlaintext
    from keystile.service import CLI_ACTOR

    async def work(ks: Keystile) -> KeyPlaintext:
        key, plain = await ks.keys.reveal(CLI_ACTOR, key_id)
        return KeyPlaintext(key_id=key.id, key=plain)

    out = run(work)
    if as_json:
        emit_json(out)
    else:
        click.echo(out.key)
