"""``keystile init`` and ``keystile migrate``, and the first-run setup that ``keystile serve`` shares (SPEC K6, X2).

Setting up is idempotent: the data directory and master key are created only when missing, migrations only
when pending, and a root key only when no active one exists (``init``) or the database has never had one
(``serve``), so running it again never prints a second key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from keystile.cli._output import emit_json, json_option, say, warn
from keystile.cli._runtime import options, run
from keystile.cli._secrets import SecretFile, ensure_master_key, ensure_private_dir, loosely_guarded
from keystile.cli.rootkeys import ROOT_KEY_FILE_HELP, deliver_root_key

if TYPE_CHECKING:
    from keystile.config import Settings
    from keystile.core.models import Key
    from keystile.service import Keystile

ANOTHER_ROOT_KEY = "keystile root-keys create --permission '*'"


@dataclass(slots=True)
class SetupReport:
    applied: list[int]
    master_key_created: bool
    root_key: tuple[Key, str] | None
    """The root key created now, with its plain text (to be delivered once)."""
    active_root_key: bool
    """Whether an active root key exists (after setup)."""


def set_up(
    settings: Settings, *, root_key_file: Path | None, only_on_first_run: bool
) -> tuple[SetupReport, SecretFile | None]:
    """Create what is missing: data directory, schema, master key, first root key.

    ``only_on_first_run`` (``serve``) makes a root key only when the database has never had one; otherwise
    (``init``) one is made whenever no active root key exists. Returns the report and the sink the new root key
    is to be written to (``None`` to print it). Raises StorageError/MigrationError, or CliError for the file.
    """
    from keystile.service import CLI_ACTOR

    ensure_private_dir(settings.data_dir)
    sink = SecretFile(root_key_file) if root_key_file is not None else None

    async def work(ks: Keystile) -> SetupReport:
        applied = await ks.storage.migrate()
        assert settings.master_key_file is not None
        # A master key file is made only where none is given and no data key exists yet: a new one beside stored
        # data keys would open none of them (the server says so; see docs/recoverable-keys.md).
        created_master = False
        if not settings.master_key and not await ks.storage.count_data_keys():
            created_master = ensure_master_key(settings.master_key_file)
        created: tuple[Key, str] | None = None
        if only_on_first_run:
            ever = await ks.root_keys.list(CLI_ACTOR.principal, cursor=None, limit=1)
            if not ever.items:
                created = await ks.root_keys.bootstrap()
        else:
            created = await ks.root_keys.bootstrap()
        active = created is not None or await ks.root_keys.any_active()
        return SetupReport(applied, created_master, created, active)

    try:
        report = run(work, settings=settings, ready=False)
    except BaseException:
        if sink is not None:
            sink.discard()
        raise
    if report.root_key is None and sink is not None:
        sink.discard()
        sink = None
    return report, sink


def show_setup(
    report: SetupReport, settings: Settings, sink: SecretFile | None, *, as_json: bool, first_run: bool
) -> None:
    """Say what setup did, and deliver a new root key once (stdout, or the ``--root-key-file``)."""
    public = settings.public()
    assert settings.master_key_file is not None
    if report.applied:
        say(f"Database {public['database_url']}: applied migrations {_versions(report.applied)}.", as_json=as_json)
    elif not first_run:
        say(f"Database {public['database_url']}: schema up to date.", as_json=as_json)
    if report.master_key_created:
        say(f"Master key created at {settings.master_key_file} (mode 0600).", as_json=as_json)
    elif not settings.master_key and loosely_guarded(settings.master_key_file):
        warn(f"{settings.master_key_file} can be read by other users; chmod 600 it.")
    _warn_about_loose_files(settings)
    root: dict[str, Any] | None = None
    if report.root_key is not None:
        key, plain = report.root_key
        root = deliver_root_key(key, plain, sink, as_json=as_json)
    elif report.active_root_key:
        # SPEC K6: later runs (serve's included) say that a root key exists and how to make another.
        say(f"An active root key exists already. To make another: {ANOTHER_ROOT_KEY}", as_json=as_json)
    else:
        warn(f"no active root key: the management API cannot be used. Make one with: {ANOTHER_ROOT_KEY}")
    if as_json:
        emit_json(
            {
                "database_url": public["database_url"],
                "migrations_applied": report.applied,
                "master_key_file": str(settings.master_key_file),
                "master_key_created": report.master_key_created,
                "root_key": root,
                "active_root_key": report.active_root_key,
            }
        )


def _warn_about_loose_files(settings: Settings) -> None:
    """Warn about a data directory or SQLite database that other users can get at. Keystile makes them private;
    one that existed before (the user's directory, or an older Keystile's database) is left as it is."""
    from keystile.storage import sqlite_path

    if loosely_guarded(settings.data_dir):
        warn(f"{settings.data_dir} can be entered by other users; chmod 700 it.")
    if settings.database_url.startswith("sqlite:"):
        database = sqlite_path(settings.database_url)
        for path in (database, *(database.with_name(database.name + end) for end in ("-wal", "-shm"))):
            if loosely_guarded(path):
                warn(f"{path} can be read by other users; chmod 600 it.")


def _versions(versions: list[int]) -> str:
    return ", ".join(f"{v:04d}" for v in versions)


@click.command()
@click.option("--root-key-file", type=click.Path(path_type=Path, dir_okay=False), help=ROOT_KEY_FILE_HELP)
@json_option
def init(root_key_file: Path | None, as_json: bool) -> None:
    """Set up: schema, master key, first root key.

    Creates the data directory, applies the migrations, creates the master key and the first root key. The root
    key is printed once, on stdout (or written to --root-key-file). Running init again changes
    nothing that exists and prints no key; it says how to make another root key instead.
    """
    settings = options().settings()
    report, sink = set_up(settings, root_key_file=root_key_file, only_on_first_run=False)
    show_setup(report, settings, sink, as_json=as_json, first_run=False)


@click.command()
@json_option
def migrate(as_json: bool) -> None:
    """Apply pending schema migrations.

    Safe while servers run; concurrent runs wait for each other.
    """

    async def work(ks: Keystile) -> list[int]:
        return await ks.storage.migrate()

    applied = run(work, ready=False)
    if as_json:
        emit_json({"applied": applied})
    elif applied:
        click.echo(f"Applied migrations {_versions(applied)}.")
    else:
        click.echo("The schema is up to date.")
