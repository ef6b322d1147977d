"""``keystile scan PATH…`` (SPEC S3): find Keystile keys in files and git history, say whether each still works,
and with ``--revoke`` revoke them. Exit 0 when nothing is found and 1 when something is, like a linter."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from keystile.cli._errors import NO, BadInput
from keystile.cli._output import emit_json, say, table, warn
from keystile.cli._runtime import run
from keystile.leaks.sources import DEFAULT_MAX_BYTES

if TYPE_CHECKING:
    from keystile.leaks.reports import KeyState
    from keystile.leaks.sources import Finding, Tally
    from keystile.service import Keystile

# Locations of a key written into the audit entry of its revocation: enough to find it, not the whole list.
AUDITED_LOCATIONS = 10


def counted(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def where(finding: Finding) -> str:
    """``path:line:column``, or ``commit path:line`` for history."""
    if finding.commit:
        return f"{finding.commit[:12]} {finding.path}:{finding.line}"
    return f"{finding.path}:{finding.line}:{finding.column}"


@contextmanager
def progress_shown(tally: Tally) -> Iterator[None]:
    """While scanning, a line on stderr counting files and commits (only when stderr is a terminal)."""
    stream = sys.stderr
    if not stream.isatty():
        yield
        return
    from rich.console import Console

    shown = 0.0

    with Console(file=stream).status("Scanning...") as status:

        def update(now: Tally) -> None:
            nonlocal shown
            if time.monotonic() - shown >= 0.1:
                shown = time.monotonic()
                status.update(f"Scanning... {now.files} files, {now.commits} commits")

        tally.progress = update
        try:
            yield
        finally:
            tally.progress = None


def collect(
    paths: tuple[Path, ...], history: bool | None, max_bytes: int, tally: Tally, *, gitignore: bool = True
) -> list[Finding]:
    """Findings in the files under ``paths`` (with ``gitignore``, those git does not ignore) and, as ``history``
    says (``None``: for a PATH that is the top of a git repository), in the history of their repositories."""
    from keystile.leaks.sources import GitUnavailable, repository_of, scan_history, scan_paths

    findings = list(scan_paths(list(paths), tally, max_bytes, gitignore=gitignore))
    for path in paths:
        if history is None:
            top = repository_of(path) if path.is_dir() else None
            if top is None or top.resolve() != path.resolve():
                continue
        elif not history:
            continue
        try:
            findings.extend(scan_history(path, tally))
        except GitUnavailable as exc:
            raise BadInput(f"--git: {exc}", code="not_a_repository") from None
    return findings


def look_up(findings: list[Finding], revoke: bool) -> dict[str, KeyState]:
    """The state of every found key in the configured database; with ``revoke``, revoke those that are not yet
    (audited as actor cli, with where they were found)."""
    from keystile.leaks.reports import KeyState
    from keystile.service import CLI_ACTOR

    places: dict[str, list[str]] = {}
    for finding in findings:
        places.setdefault(finding.digest, []).append(where(finding))

    async def work(ks: Keystile) -> dict[str, KeyState]:
        states = {}
        for digest, seen in places.items():
            found = await ks.leaks.look_up(bytes.fromhex(digest))
            key = found.key
            if key is None:
                states[digest] = KeyState("not_found")
                continue
            revoked_now = False
            if revoke and found.status != "revoked":
                details = {"reported_by": "keystile scan", "locations": seen[:AUDITED_LOCATIONS]}
                await ks.leaks.report(CLI_ACTOR, key.digest, details)
                revoked_now = True
            status = "revoked" if revoked_now else found.status
            states[digest] = KeyState(status, key.id, key.api_id, revoked_now)
        return states

    return run(work)


@click.command("scan")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--git/--no-git",
    "history",
    default=None,
    help="Also scan every commit of the git history (lines any commit added) [default: for a PATH that is the top "
    "of a git repository].",
)
@click.option(
    "--gitignore/--no-gitignore",
    default=True,
    help="In a git work tree, skip the files git ignores (.gitignore, .git/info/exclude) [default: --gitignore]; "
    "--no-gitignore scans them too.",
)
@click.option("--revoke", is_flag=True, help="Revoke every found key of this deployment that is not revoked yet.")
@click.option("--offline", is_flag=True, help="Do not ask the database (every status is unknown): for pre-commit.")
@click.option(
    "--max-size",
    "max_bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_BYTES,
    metavar="BYTES",
    help=f"Skip files larger than this [default: {DEFAULT_MAX_BYTES}].",
)
@click.option("--json", "as_json", is_flag=True, help="Print findings as JSON.")
@click.option("--sarif", is_flag=True, help="Print findings as SARIF 2.1.0 (for GitHub code scanning).")
def scan(
    paths: tuple[Path, ...],
    history: bool | None,
    gitignore: bool,
    revoke: bool,
    offline: bool,
    max_bytes: int,
    as_json: bool,
    sarif: bool,
) -> None:
    """Find Keystile keys in the files under PATHS and in git history.

    A key is recognised by its prefix, shape and CRC32 checksum, so random strings are not reported. Findings show
    where the key is and its start (ks_3Fx9...), never the whole key, and whether it still works, from the
    configured database (status unknown when there is none, or with --offline). Binary files, files over --max-size
    and .git directories are skipped, and so are the files git ignores in a git work tree (unless --no-gitignore,
    or the PATH is an ignored directory itself). Exit code 0 when no key is found, 1 when one is (also after
    --revoke: the keys are still in the files), 2 for a usage error, 5 when --revoke cannot reach the database.
    """
    from keystile.errors import StorageError
    from keystile.leaks.reports import UNKNOWN, KeyState, json_document, sarif_document, summary
    from keystile.leaks.sources import Tally

    if as_json and sarif:
        raise click.UsageError("give --json or --sarif, not both")
    if revoke and offline:
        raise click.UsageError("--revoke needs the database: drop --offline")
    machine = as_json or sarif
    tally = Tally()
    with progress_shown(tally):
        findings = collect(paths, history, max_bytes, tally, gitignore=gitignore)
    states: dict[str, KeyState] = {finding.digest: KeyState() for finding in findings}
    if findings and not offline:
        try:
            states = look_up(findings, revoke)
        except StorageError as exc:
            if revoke:
                raise
            warn(f"the key statuses are unknown: {exc.detail}")
    if sarif:
        emit_json(sarif_document(findings, states))
    elif as_json:
        emit_json(json_document(findings, states, tally))
    else:
        rows = []
        for finding in findings:
            state = states[finding.digest]
            status = "revoked now" if state.revoked_now else state.status
            rows.append([where(finding), finding.start, status, state.key_id or "-"])
        if rows:
            table(["location", "key", "status", "key id"], rows)
    counts = summary(findings, states, tally)
    scanned = f"{counted(counts['files'], 'file')}, {counted(counts['commits'], 'commit')}"
    if counts["skipped"]:
        scanned += f" ({counts['skipped']} skipped: binary, too large or unreadable)"
    if not findings:
        say(f"No Keystile keys found in {scanned}.", as_json=machine)
        return
    active = "" if any(s.status == UNKNOWN for s in states.values()) else f", {counts['active']} still active"
    found = f"{counted(counts['keys'], 'key')} in {counted(counts['findings'], 'place')}"
    say(f"Found {found}{active}; scanned {scanned}.", as_json=machine)
    if revoke:
        revoked = sorted({s.key_id for s in states.values() if s.revoked_now and s.key_id})
        say(f"Revoked {counted(len(revoked), 'key')}: {', '.join(revoked) or 'none'}.", as_json=machine)
    elif counts["active"]:
        say("Revoke them with keystile scan --revoke (or keystile keys revoke KEY_ID).", as_json=machine)
    click.get_current_context().exit(NO)
