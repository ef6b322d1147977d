"""What every command shares: settings from the environment and flags, and the services opened on them.

The services, storage drivers and schemas are imported inside the functions that use them, so that
``keystile --help`` imports click and little else (SPEC C1).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click

from keystile.config import Settings
from keystile.errors import MigrationError

if TYPE_CHECKING:
    from keystile.service import Keystile

T = TypeVar("T")

NEEDS_INIT = "run keystile init (or keystile migrate)"


@dataclass(slots=True)
class Options:
    """The group's global options, kept on the click context for the commands below it."""

    overrides: dict[str, Any] = field(default_factory=dict)
    debug: bool = False

    def settings(self, **flags: Any) -> Settings:
        """Settings from ``KEYSTILE_*`` variables, the global flags and ``flags`` (later ones win).

        Raises InvalidInput for a setting that does not parse.
        """
        given = {name: value for name, value in self.overrides.items() if value is not None}
        given.update((name, value) for name, value in flags.items() if value is not None)
        return Settings.from_env(os.environ, **given)


def options() -> Options:
    """The global options of the running ``keystile`` invocation."""
    found = click.get_current_context().find_object(Options)
    return found if found is not None else Options()


def run(work: Callable[[Keystile], Awaitable[T]], *, settings: Settings | None = None, ready: bool = True) -> T:
    """Open the services on the configured database, await ``work`` with them, and close them.

    With ``ready`` (every command but ``init``, ``migrate`` and ``serve``) a database that does not exist yet
    or has migrations pending is refused with :class:`MigrationError`, rather than created or half-used.
    Raises whatever ``work`` raises, and StorageError when the database cannot be reached.
    """
    return asyncio.run(_run(work, settings or options().settings(), ready))


async def _run(work: Callable[[Keystile], Awaitable[T]], settings: Settings, ready: bool) -> T:
    from keystile.core.clock import SystemClock
    from keystile.service import Keystile
    from keystile.storage import sqlite_path

    if ready and settings.database_url.startswith("sqlite:"):
        path = sqlite_path(settings.database_url)
        if not path.exists():
            # Opening would create an empty file; say what to do instead.
            raise MigrationError(f"there is no database at {path}; {NEEDS_INIT}", code="not_initialised")
    clock = SystemClock()
    # open, not create: a change made here must reach running servers through the change bus (SPEC V6).
    ks = await Keystile.open(settings, clock, retention=False)  # servers run retention; a command need not
    try:
        if ready:
            pending = await ks.storage.pending_migrations()
            if pending:
                versions = ", ".join(str(v) for v in pending)
                raise MigrationError(f"the database has migrations pending ({versions}); {NEEDS_INIT}")
        return await work(ks)
    finally:
        await ks.close()
