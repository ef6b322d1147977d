"""``keystile root-keys create|list|revoke`` (SPEC K6), and showing a new root key once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from keystile.cli._output import emit_json, fields, json_option, next_page, say, table, when
from keystile.cli._runtime import run
from keystile.cli._secrets import SecretFile

if TYPE_CHECKING:
    from keystile.core.models import Key
    from keystile.schemas import RootKeyOut
    from keystile.service import Keystile

ROOT_KEY_FILE_HELP = "Write the new root key to this new file (mode 0600) instead of printing it."


def deliver_root_key(key: Key, plain: str, sink: SecretFile | None, *, as_json: bool) -> dict[str, Any]:
    """Show a new root key once: on stdout, or only in ``sink`` (a new 0600 file) whose path is printed.

    Returns its JSON shape (``RootKeyCreated``, or ``RootKeyOut`` plus ``root_key_file`` when written to a file).
    """
    from keystile.schemas import root_key_created, root_key_out, to_builtins

    if sink is not None:
        sink.write(plain + "\n")
        doc: dict[str, Any] = {**to_builtins(root_key_out(key)), "root_key_file": str(sink.path)}
        say(f"Root key {key.id} ({listed_permissions(key)}) written to {sink.path} (mode 0600).", as_json=as_json)
        return doc
    if not as_json:
        click.echo(f"Root key {key.id} created with permissions: {listed_permissions(key)}")
        click.echo("Store it now (in a password manager or secret store): it is shown this once, and Keystile")
        click.echo("keeps only its hash.\n")
        click.echo(plain)
        click.echo()
    result: dict[str, Any] = to_builtins(root_key_created(key, plain))
    return result


def listed_permissions(key: Key) -> str:
    return ", ".join(key.permissions)


def _status(out: RootKeyOut) -> str:
    return "revoked" if out.revoked_at else "active"


@click.group("root-keys")
def root_keys() -> None:
    """Manage root keys (the management API's keys)."""


@root_keys.command("create")
@click.option(
    "--permission",
    "permissions",
    multiple=True,
    required=True,
    metavar="P",
    help="A permission such as keys.write, api.<api_id>.keys.*, or * (repeatable).",
)
@click.option("--name", help="A name to recognise the root key by.")
@click.option("--expires-at", metavar="RFC3339", help="When the root key stops working, e.g. 2030-01-01T00:00:00Z.")
@click.option("--root-key-file", type=click.Path(path_type=Path, dir_okay=False), help=ROOT_KEY_FILE_HELP)
@json_option
def create(
    permissions: tuple[str, ...], name: str | None, expires_at: str | None, root_key_file: Path | None, as_json: bool
) -> None:
    """Create a root key and show it once."""
    from keystile.schemas import RootKeyCreate, convert, new_root_key
    from keystile.service import CLI_ACTOR

    body: dict[str, Any] = {"permissions": list(permissions)}
    if name is not None:
        body["name"] = name
    if expires_at is not None:
        body["expires_at"] = expires_at
    spec = new_root_key(convert(body, RootKeyCreate))
    sink = SecretFile(root_key_file) if root_key_file is not None else None

    async def work(ks: Keystile) -> tuple[Key, str]:
        return await ks.root_keys.create(CLI_ACTOR, spec)

    try:
        key, plain = run(work)
    except BaseException:
        if sink is not None:
            sink.discard()
        raise
    doc = deliver_root_key(key, plain, sink, as_json=as_json)
    if as_json:
        emit_json(doc)


@root_keys.command("list")
@click.option("--limit", type=int, help="Root keys per page (default 50, at most 1000).")
@click.option("--cursor", help="The next_cursor of the previous page.")
@json_option
def list_(limit: int | None, cursor: str | None, as_json: bool) -> None:
    """List root keys, newest first (revoked ones included)."""
    from keystile.schemas import Page, root_key_out
    from keystile.service import CLI_ACTOR

    async def work(ks: Keystile) -> Page[RootKeyOut]:
        page = await ks.root_keys.list(CLI_ACTOR.principal, cursor=cursor, limit=limit)
        return Page([root_key_out(key) for key in page.items], page.next_cursor)

    page = run(work)
    if as_json:
        emit_json(page)
        return
    rows = [
        [out.id, out.start, out.name or "-", ", ".join(out.permissions), when(out.created_at), _status(out)]
        for out in page.items
    ]
    table(["ID", "START", "NAME", "PERMISSIONS", "CREATED", "STATUS"], rows, empty="No root keys.")
    next_page(page.next_cursor)


@root_keys.command("revoke")
@click.argument("root_key_id")
@json_option
def revoke(root_key_id: str, as_json: bool) -> None:
    """Revoke a root key (revoking again changes nothing)."""
    from keystile.schemas import root_key_out
    from keystile.service import CLI_ACTOR

    async def work(ks: Keystile) -> RootKeyOut:
        return root_key_out(await ks.root_keys.revoke(CLI_ACTOR, root_key_id))

    out = run(work)
    if as_json:
        emit_json(out)
        return
    fields(
        [
            ("id", out.id),
            ("start", out.start),
            ("name", out.name),
            ("permissions", out.permissions),
            ("revoked_at", when(out.revoked_at)),
        ]
    )
