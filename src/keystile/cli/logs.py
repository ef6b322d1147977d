"""``keystile logs``: the verification log from the shell (SPEC O2, C1), with the filters of ``GET /v1/logs``,
one page at a time or followed as it grows (``--follow``).

Following polls the database every second. Events reach it in batches, and batches from several processes
(or a writer that was kept from writing for a moment) can land a little out of time order, so each poll reads
back the last :data:`LAG_MS` of the log and prints what it has not printed yet, oldest first.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import click

from keystile.cli._errors import name_fields
from keystile.cli._output import emit_json, json_option, next_page, table
from keystile.cli._runtime import run

if TYPE_CHECKING:
    from keystile.core.models import EventFilter, VerificationEvent
    from keystile.schemas import EventOut, Page
    from keystile.service import Keystile

CODES = (
    "VALID",
    "NOT_FOUND",
    "REVOKED",
    "DISABLED",
    "EXPIRED",
    "FORBIDDEN",
    "INSUFFICIENT_PERMISSIONS",
    "RATE_LIMITED",
    "USAGE_EXCEEDED",
)
HEADERS = ("TIME", "OUTCOME", "KEY", "OWNER", "API", "IP", "LATENCY", "TAGS")
FOLLOW_BACKLOG = 20
"""Events ``--follow`` prints first, unless ``--limit`` says otherwise."""
LAG_MS = 10_000
"""How late an event may reach the database and still be printed by ``--follow``."""
POLL_S = 1.0
_WIDTHS = (24, 24, 26, 16, 26, 15, 9)


def to_moment(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """Option callback: an RFC 3339 time, or a duration such as ``15m`` or ``2d`` meaning that long ago; as
    epoch milliseconds."""
    if value is None:
        return None
    from keystile.cli._parse import duration_ms
    from keystile.core.timefmt import from_rfc3339

    ago = duration_ms(value)
    if ago is not None:
        return int(time.time() * 1000) - ago
    try:
        return from_rfc3339(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither an RFC 3339 time (2030-01-01T00:00:00Z) nor a duration (15m, 2h, 7d)", ctx, param
        ) from None


def row(out: EventOut) -> list[str]:
    """An event as table cells."""
    return [
        f"{out.ts[:10]} {out.ts[11:]}",
        out.outcome,
        out.key_id or "-",
        out.owner_id or "-",
        out.api_id or "-",
        out.ip or "-",
        f"{out.latency_us} us",
        ", ".join(out.tags) or "-",
    ]


def line(out: EventOut) -> str:
    """An event as one line of aligned columns (``--follow`` prints as events come, so no table can be sized)."""
    cells = row(out)
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, _WIDTHS, strict=False)) + "  " + cells[-1]


class Follower:
    """The polling step of ``--follow``: each :meth:`poll` returns the events not returned before, oldest first.

    The first poll returns the newest ``backlog`` events. Later polls read every event of the last ``lag_ms``
    (before now, or before the newest event seen if that is earlier) and keep those not returned yet, so that an
    event written late, within ``lag_ms``, still shows. Taking the earlier of the two times keeps events in view
    when this host's clock runs ahead of the servers', and when an event carries a time in the future.
    """

    def __init__(
        self,
        ks: Keystile,
        where: EventFilter,
        *,
        backlog: int = FOLLOW_BACKLOG,
        lag_ms: int = LAG_MS,
        now_ms: Callable[[], int] | None = None,
    ) -> None:
        from keystile.service import CLI_ACTOR

        self._ks = ks
        self._principal = CLI_ACTOR.principal
        self._where = where
        self._backlog = backlog
        self._lag_ms = lag_ms
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self._seen: dict[str, int] = {}
        self._newest: int | None = None
        self._started = False
        self._last_floor: int | None = None

    async def poll(self) -> list[VerificationEvent]:
        """The events that are new since the previous poll, oldest first. Raises StorageError."""
        floor = self._floor()
        if not self._started:
            self._started = True
            # The window first: an event written between the two reads is then either in the backlog or
            # unseen, and printed by the next poll. The rest of the window has gone by: only the backlog shows.
            window = await self._all_since(floor)
            page = await self._ks.analytics.logs(self._principal, self._where, cursor=None, limit=self._backlog)
            self._remember([*window, *page.items], floor)
            return list(reversed(page.items))
        fresh = [event for event in await self._all_since(floor) if event.id not in self._seen]
        self._remember(fresh, floor)
        return sorted(fresh, key=lambda event: event.id)

    def _floor(self) -> int:
        now = self._now_ms()
        floor = min(now, self._newest if self._newest is not None else now) - self._lag_ms
        if self._where.since is not None:
            floor = max(floor, self._where.since)
        # Floors only rise: events forgotten below an earlier floor must not come back (a backlog older than the
        # window would otherwise lower the next floor to below itself).
        if self._last_floor is not None:
            floor = max(floor, self._last_floor)
        self._last_floor = floor
        return floor

    async def _all_since(self, floor: int) -> list[VerificationEvent]:
        where = replace(self._where, since=floor)
        found: list[VerificationEvent] = []
        cursor = None
        while True:
            page = await self._ks.analytics.logs(self._principal, where, cursor=cursor, limit=1000)
            found.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                return found

    def _remember(self, events: list[VerificationEvent], floor: int) -> None:
        for event in events:
            self._seen[event.id] = event.ts
            if self._newest is None or event.ts > self._newest:
                self._newest = event.ts
        # Events below this poll's floor never come back from a later poll (floors only rise): forget them, so
        # that memory stays flat however long the command runs.
        self._seen = {event_id: ts for event_id, ts in self._seen.items() if ts >= floor}


@click.command("logs")
@click.option("--api-id", help="Only verifications of this API.")
@click.option("--key-id", help="Only verifications of this key.")
@click.option("--owner-id", help="Only verifications of keys of this owner.")
@click.option(
    "--outcome",
    type=click.Choice(CODES, case_sensitive=False),
    metavar="CODE",
    help=f"Only verifications with this code: {', '.join(CODES)}.",
)
@click.option("--since", callback=to_moment, metavar="TIME", help="From this RFC 3339 time, or this long ago (15m).")
@click.option("--until", callback=to_moment, metavar="TIME", help="Before this RFC 3339 time, or this long ago.")
@click.option("--limit", type=int, help="Events per page (default 50, at most 1000; with --follow, 20 first).")
@click.option("--cursor", help="The next_cursor of the previous page.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events as they come, until Ctrl-C.")
@json_option
def logs(
    api_id: str | None,
    key_id: str | None,
    owner_id: str | None,
    outcome: str | None,
    since: int | None,
    until: int | None,
    limit: int | None,
    cursor: str | None,
    follow: bool,
    as_json: bool,
) -> None:
    """Show verifications, newest first, filtered by API, key, owner, outcome and time.

    With --follow, print the latest events oldest first, then each new one as it is written (JSON: one object
    per line), until Ctrl-C.
    """
    from keystile.core.models import EventFilter

    name_fields(
        api_id="--api-id", key_id="--key-id", owner_id="--owner-id", outcome="--outcome", since="--since",
        until="--until", cursor="--cursor", limit="--limit",
    )  # fmt: skip
    where = EventFilter(api_id, key_id, owner_id, outcome.upper() if outcome else None, since, until)
    if follow:
        if cursor is not None or until is not None:
            raise click.UsageError("--follow shows new events: it takes neither --cursor nor --until")
        _follow(where, limit or FOLLOW_BACKLOG, as_json)
        return
    page = run(lambda ks: _page(ks, where, cursor, limit))
    if as_json:
        emit_json(page)
        return
    table(HEADERS, [row(out) for out in page.items], empty="No verifications.")
    next_page(page.next_cursor)


async def _page(ks: Keystile, where: EventFilter, cursor: str | None, limit: int | None) -> Page[EventOut]:
    from keystile.schemas import Page, event_out
    from keystile.service import CLI_ACTOR

    page = await ks.analytics.logs(CLI_ACTOR.principal, where, cursor=cursor, limit=limit)
    return Page([event_out(event) for event in page.items], page.next_cursor)


def _follow(where: EventFilter, backlog: int, as_json: bool) -> None:
    from keystile.schemas import event_out, to_builtins

    def show(events: list[VerificationEvent]) -> None:
        for event in events:
            out = event_out(event)
            click.echo(json.dumps(to_builtins(out), ensure_ascii=False) if as_json else line(out))

    async def work(ks: Keystile) -> None:
        follower = Follower(ks, where, backlog=backlog)
        if not as_json:
            click.echo(line_of_headers())
        while True:
            show(await follower.poll())
            await asyncio.sleep(POLL_S)

    try:
        run(work)
    except KeyboardInterrupt:
        # Ctrl-C is how following ends: a normal exit, without click's "Aborted!".
        return


def line_of_headers() -> str:
    return "  ".join(h.ljust(w) for h, w in zip(HEADERS, _WIDTHS, strict=False)) + "  " + HEADERS[-1]
