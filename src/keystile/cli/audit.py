"""``keystile audit``: verify the audit log's hash chain, and print its head for anchoring elsewhere (SPEC A2).

``verify`` exits 0 when every entry checked holds, 1 naming the first entry that was changed, inserted, removed
or reordered, and 2 for a usage error. ``head`` prints one line (or one JSON object) meant to be appended to a log
kept outside the database; ``verify --expect-head`` then proves that the log still holds that entry.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from keystile.cli._errors import NO
from keystile.cli._runtime import run

if TYPE_CHECKING:
    from keystile.core.auditchain import Anchor, ChainReport
    from keystile.core.models import AuditEntry
    from keystile.service import Keystile


@click.group("audit")
def audit() -> None:
    """Verify the audit log's hash chain and print its head."""


def _anchor(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[Anchor]:
    from keystile.core.auditchain import Anchor

    try:
        return [Anchor.parse(value) for value in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


@audit.command("verify")
@click.option(
    "--from",
    "start",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="SEQ",
    help="Start at this entry, trusting its link to the one before (a part of the log checked before).",
)
@click.option(
    "--expect-head",
    "anchors",
    multiple=True,
    callback=_anchor,
    metavar="SEQ:HASH",
    help="A head printed by keystile audit head and kept outside the database: fail unless the log still holds "
    "that entry unchanged (catches entries removed from the end, or a chain recomputed). Repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def verify(start: int, anchors: list[Anchor], as_json: bool) -> None:
    """Check that no audit entry was changed, inserted, removed or reordered.

    Reads the log oldest first, a page at a time. Exits 0 and says how many entries it checked, or exits 1 and
    names the first entry that does not hold and how.
    """

    async def work(ks: Keystile) -> ChainReport:
        from keystile.service import CLI_ACTOR

        return await ks.audit.verify(CLI_ACTOR.principal, start=start, anchors=anchors)

    report = run(work)
    if as_json:
        click.echo(json.dumps(_report_json(report), ensure_ascii=False))
    elif report.problem is None:
        click.echo(_ok_text(report))
    else:
        click.echo(f"Audit log tampered with: {report.problem.detail}.", err=True)
        click.echo(f"{report.checked} entries before it verified.", err=True)
    if report.problem is not None:
        click.get_current_context().exit(NO)


def _ok_text(report: ChainReport) -> str:
    last = report.last
    if last is None:
        return "OK: no audit entries to check."
    anchors = f"; matches {len(report.anchors)} anchored head(s)" if report.anchors else ""
    span = f"seq {report.start} to {last.seq}"
    return f"OK: {report.checked} audit entries checked ({span}), head {last.seq}:{last.hash}{anchors}"


def _report_json(report: ChainReport) -> dict[str, Any]:
    last = report.last
    problem = report.problem
    return {
        "ok": problem is None,
        "checked": report.checked,
        "from": report.start,
        "last_checked": _head_json(last) if last is not None else None,
        "problem": None
        if problem is None
        else {"kind": problem.kind, "seq": problem.seq, "id": problem.id, "detail": problem.detail},
    }


def _head_json(entry: AuditEntry) -> dict[str, Any]:
    from keystile.core.timefmt import to_rfc3339

    return {"seq": entry.seq, "hash": entry.hash, "ts": to_rfc3339(entry.ts)}


@audit.command("head")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object {seq, hash, ts}.")
def head(as_json: bool) -> None:
    """Print the newest entry's seq:hash and time, one line, to keep outside the database.

    Appended daily to a log on another system, each line lets keystile audit verify --expect-head SEQ:HASH
    prove later that the log up to that entry is the one seen then.
    """

    async def work(ks: Keystile) -> AuditEntry | None:
        from keystile.service import CLI_ACTOR

        return await ks.audit.head(CLI_ACTOR.principal)

    entry = run(work)
    if as_json:
        click.echo(json.dumps(_head_json(entry) if entry is not None else None))
    elif entry is None:
        click.echo("No audit entries yet.", err=True)
    else:
        click.echo(f"{entry.seq}:{entry.hash} {_head_json(entry)['ts']}")
