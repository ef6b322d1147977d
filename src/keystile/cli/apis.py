"""``keystile apis create|list|show|delete`` (SPEC K1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from keystile.cli._errors import name_fields
from keystile.cli._output import emit_json, fields, json_option, next_page, ratelimits, table, when
from keystile.cli._runtime import run

if TYPE_CHECKING:
    from keystile.schemas import ApiOut, Page
    from keystile.service import Keystile


def show_api(out: ApiOut) -> None:
    fields(
        [
            ("id", out.id),
            ("name", out.name),
            ("prefix", out.prefix),
            ("created_at", when(out.created_at)),
            ("updated_at", when(out.updated_at)),
            ("max_key_age_days", out.max_key_age_days),
            ("expire_stale_after_days", out.expire_stale_after_days),
            ("recoverable", out.recoverable),
            ("ip_allowlist", out.ip_allowlist),
            ("default_ratelimits", ratelimits(out.default_ratelimits)),
        ]
    )


@click.group()
def apis() -> None:
    """Manage APIs (one keyspace per application)."""


@apis.command("create")
@click.argument("name")
@click.option("--prefix", help="Prefix of the API's keys, e.g. acme or acme_live [default: ks].")
@click.option("--max-key-age-days", type=int, help="Rotation policy: keys older than this are stale.")
@click.option(
    "--expire-stale-after-days", type=int, help="With --max-key-age-days: stale keys expire this many days later."
)
@click.option("--ip", "ips", multiple=True, metavar="CIDR", help="Allow keys of this API only from here (repeatable).")
@click.option(
    "--recoverable",
    is_flag=True,
    help="Not available yet (refused): keep keys encrypted so that they can be shown again later.",
)
@json_option
def create(
    name: str,
    prefix: str | None,
    max_key_age_days: int | None,
    expire_stale_after_days: int | None,
    ips: tuple[str, ...],
    recoverable: bool,
    as_json: bool,
) -> None:
    """Create an API called NAME."""
    from keystile.schemas import ApiCreate, api_out, convert, new_api
    from keystile.service import CLI_ACTOR

    name_fields(name="NAME")
    body: dict[str, Any] = {"name": name, "recoverable": recoverable, "ip_allowlist": list(ips)}
    if prefix is not None:
        body["prefix"] = prefix
    if max_key_age_days is not None:
        body["max_key_age_days"] = max_key_age_days
    if expire_stale_after_days is not None:
        body["expire_stale_after_days"] = expire_stale_after_days
    spec = new_api(convert(body, ApiCreate))

    async def work(ks: Keystile) -> ApiOut:
        return api_out(await ks.apis.create(CLI_ACTOR, spec))

    out = run(work)
    if as_json:
        emit_json(out)
    else:
        show_api(out)


@apis.command("list")
@click.option("--limit", type=int, help="APIs per page (default 50, at most 1000).")
@click.option("--cursor", help="The next_cursor of the previous page.")
@json_option
def list_(limit: int | None, cursor: str | None, as_json: bool) -> None:
    """List APIs, newest first."""
    from keystile.schemas import Page, api_out
    from keystile.service import CLI_ACTOR

    async def work(ks: Keystile) -> Page[ApiOut]:
        page = await ks.apis.list(CLI_ACTOR.principal, cursor=cursor, limit=limit)
        return Page([api_out(api) for api in page.items], page.next_cursor)

    page = run(work)
    if as_json:
        emit_json(page)
        return
    rows = [[out.id, out.name, out.prefix, when(out.created_at)] for out in page.items]
    table(["ID", "NAME", "PREFIX", "CREATED"], rows, empty="No APIs yet. Create one with: keystile apis create NAME")
    next_page(page.next_cursor)


@apis.command("show")
@click.argument("api_id")
@json_option
def show(api_id: str, as_json: bool) -> None:
    """Show one API."""
    from keystile.schemas import api_out
    from keystile.service import CLI_ACTOR

    async def work(ks: Keystile) -> ApiOut:
        return api_out(await ks.apis.get(CLI_ACTOR.principal, api_id))

    out = run(work)
    if as_json:
        emit_json(out)
    else:
        show_api(out)


@apis.command("delete")
@click.argument("api_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def delete(api_id: str, yes: bool) -> None:
    """Delete an API with all its keys and roles, permanently."""
    from keystile.service import CLI_ACTOR

    async def find(ks: Keystile) -> tuple[str, int]:
        api = await ks.apis.get(CLI_ACTOR.principal, api_id)
        return api.name, await ks.storage.count_keys(api_id)

    async def work(ks: Keystile) -> None:
        await ks.apis.delete(CLI_ACTOR, api_id)

    if not yes:
        name, count = run(find)
        click.confirm(f"Delete API {api_id} ({name}) and its {count} key(s) for good?", abort=True)
    run(work)
    click.echo(f"Deleted API {api_id}.")
