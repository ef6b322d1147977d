"""The ``keystile`` command (SPEC C1): thin over the services, acting on the configured database directly.

Commands import the services, storage drivers, the web stack and rich only when they run, so that
``keystile --help`` stays fast. Keystile's errors become exit codes here and nowhere else
(:mod:`keystile.cli._errors`).
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import click

from keystile import __version__
from keystile.cli._errors import EXIT_CODES_HELP, CliError, from_keystile
from keystile.cli._runtime import Options
from keystile.cli.apis import apis
from keystile.cli.audit import audit
from keystile.cli.identities import identities
from keystile.cli.keys import keys
from keystile.cli.logs import logs
from keystile.cli.masterkey import master_key
from keystile.cli.proxy import proxy
from keystile.cli.rootkeys import root_keys
from keystile.cli.scan import scan
from keystile.cli.serve import serve
from keystile.cli.setup import init, migrate
from keystile.cli.tokens import tokens
from keystile.cli.webhooks import webhooks
from keystile.errors import KeystileError


class KeystileGroup(click.Group):
    """A group that turns Keystile's errors into exit codes, and unexpected ones into a message (exit 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeystileError as exc:
            if ctx.params.get("debug"):
                traceback.print_exc()
            raise from_keystile(exc, ctx) from None
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            raise CliError(
                f"unexpected {type(exc).__name__}: {exc} (run keystile --debug ... for the traceback)",
                code="internal_error",
            ) from None


@click.group(
    cls=KeystileGroup,
    epilog=EXIT_CODES_HELP,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the SQLite database and master key live (env KEYSTILE_DATA_DIR) [default: ./keystile-data].",
)
@click.option(
    "--database-url",
    help="sqlite:///path, postgresql://user:pass@host/db (env KEYSTILE_DATABASE_URL) "
    "[default: sqlite:///<data dir>/keystile.db].",
)
@click.option("--debug", is_flag=True, help="Show tracebacks of unexpected errors.")
@click.version_option(__version__, prog_name="keystile")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None, database_url: str | None, debug: bool) -> None:
    """Keystile: issue, verify and revoke API keys.

    Commands act on the configured database directly (audited as actor cli). Settings come from KEYSTILE_*
    environment variables and flags (see docs/configuration.md). Commands that print data take --json.
    """
    ctx.obj = Options({"data_dir": data_dir, "database_url": database_url}, debug)


for command in (
    init,
    migrate,
    serve,
    apis,
    keys,
    identities,
    root_keys,
    master_key,
    tokens,
    webhooks,
    logs,
    audit,
    scan,
    proxy,
):
    cli.add_command(command)


def main() -> None:
    """The console script: run the ``keystile`` group and exit with its code."""
    cli(prog_name="keystile")


__all__ = ["cli", "main"]
