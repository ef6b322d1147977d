"""``keystile master-key create|fingerprint|rotate``: the master key that wraps recoverable keys' data keys
(SPEC K3). See docs/recoverable-keys.md for the rotation procedure."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from keystile.cli._errors import BadInput, Unavailable
from keystile.cli._output import emit_json, json_option, say
from keystile.cli._runtime import options, run
from keystile.cli._secrets import SecretFile

if TYPE_CHECKING:
    from keystile.service import Keystile
    from keystile.service.vault import Rotation

_FILE = click.Path(path_type=Path, dir_okay=False)


@click.group("master-key")
def master_key() -> None:
    """Create, identify and rotate the master key of recoverable keys."""


@master_key.command("create")
@click.argument("path", type=_FILE)
@json_option
def create(path: Path, as_json: bool) -> None:
    """Write a new random master key to PATH, a new file of mode 0600 (an existing file is refused)."""
    from keystile.service.sealing import master_key_id, new_master_key_text, parse_master_key

    sink = SecretFile(path)
    text = new_master_key_text()
    sink.write(text + "\n")
    key_id = master_key_id(parse_master_key(text, str(path)))
    if as_json:
        emit_json({"master_key_id": key_id, "file": str(path)})
    else:
        say(f"Master key {key_id} written to {path} (mode 0600).")


@master_key.command("fingerprint")
@click.argument("path", type=_FILE, required=False)
@json_option
def fingerprint(path: Path | None, as_json: bool) -> None:
    """Print the id of the master key in PATH, or of the configured one (KEYSTILE_MASTER_KEY or
    KEYSTILE_MASTER_KEY_FILE). Data keys record this id; it reveals nothing of the key."""
    from keystile.service.sealing import master_key_id
    from keystile.service.vault import MasterKeys, read_master_key_file

    if path is not None:
        key_id = master_key_id(read_master_key_file(path))
    else:
        masters = MasterKeys.from_settings(options().settings())
        if masters.current_id is None:
            raise BadInput(f"no master key: {masters.problem}", code="invalid_master_key")
        key_id = masters.current_id
    if as_json:
        emit_json({"master_key_id": key_id})
    else:
        click.echo(key_id)


@master_key.command("rotate")
@click.option(
    "--new-key-file",
    type=_FILE,
    help="Re-wrap under the master key in this file (make one with keystile master-key create) "
    "[default: the configured master key, re-wrapping what the previous one wrapped].",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help="Data keys re-wrapped per transaction.",
)
@json_option
def rotate(new_key_file: Path | None, batch_size: int, as_json: bool) -> None:
    """Re-wrap every data key under a new master key, in batches, while servers run.

    The data keys are opened with the configured master key (and KEYSTILE_MASTER_KEY_PREVIOUS or
    KEYSTILE_MASTER_KEY_PREVIOUS_FILE); recoverable keys themselves are not touched. Afterwards the old master
    key opens no data key. Audited as master_key.rotate. Exits 5 when some data key could not be opened.
    """
    from keystile.service import CLI_ACTOR
    from keystile.service.vault import MasterKeys, read_master_key_file

    settings = options().settings()
    if new_key_file is not None:
        new = read_master_key_file(new_key_file)
    else:
        masters = MasterKeys.from_settings(settings)
        if masters.current_id is None:
            raise BadInput(f"no master key to rotate to: {masters.problem}", code="invalid_master_key")
        _, new = masters.current()

    async def work(ks: Keystile) -> Rotation:
        return await ks.vault.rotate(CLI_ACTOR, new, batch=batch_size)

    done = run(work, settings=settings)
    if as_json:
        emit_json(
            {
                "master_key_id": done.master_id,
                "rewrapped": done.rewrapped,
                "already_rewrapped": done.already,
                "unopened_master_key_ids": list(done.unopened),
            }
        )
    else:
        say(f"Re-wrapped {done.rewrapped} data keys under master key {done.master_id} ({done.already} already were).")
    if done.unopened:
        raise Unavailable(
            f"some data keys are wrapped under master keys not at hand ({', '.join(done.unopened)}) and were left "
            "as they were: run again with that key as KEYSTILE_MASTER_KEY_PREVIOUS_FILE",
            code="master_key_unavailable",
        )
    if new_key_file is not None and not as_json:
        say(
            f"Next: make {new_key_file} the master key of every server and command (KEYSTILE_MASTER_KEY_FILE, or "
            f"move it over {settings.master_key_file}); a server reads its key file again when it changes. Keep "
            "the old key with the backups made before now: they need it."
        )
