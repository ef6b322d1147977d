"""``python -m keystile.cli.eventwriter``: the event writer process a server starts beside itself
(``KEYSTILE_EVENTS_WRITER=process``, see :mod:`keystile.events.child` and docs/operations.md). Not a command of
``keystile``: its standard input and output are a private pipe to the server that started it."""

from __future__ import annotations

import logging.config
import os

from keystile.core.clock import SystemClock
from keystile.core.ports import Storage
from keystile.events.child import run
from keystile.observability.logs import LEVELS, logging_config
from keystile.storage import open_storage


async def _open(url: str, timeout_s: float) -> Storage:
    # This process only writes: SQLite on its own thread, without a hop to a writer thread per statement.
    return await open_storage(url, SystemClock(), timeout_s=timeout_s, writer_thread=False)


def main() -> None:
    level = os.environ.get("KEYSTILE_LOG_LEVEL", "info")
    logging.config.dictConfig(logging_config(level if level in LEVELS else "info"))
    run(_open)


if __name__ == "__main__":
    main()
