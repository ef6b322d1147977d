"""``keystile keys import FILE`` (SPEC R4): stream a JSON-lines or CSV file of existing keys into an API.

The file is read a line at a time and imported in batches (1,000 entries by default), each all or nothing through
the same service as ``POST /v1/apis/{api_id}/keys/import``, so a file of any size needs memory for one batch only.
A progress bar goes to stderr; the summary to stdout. The first bad entry stops the import: the summary names its
line and the line to resume from (``--start-line``); since an import skips the keys the API holds already,
resuming earlier than needed is harmless.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import click

from keystile.cli._errors import from_keystile
from keystile.cli._output import emit_json
from keystile.cli._runtime import run
from keystile.errors import InvalidInput, KeystileError

if TYPE_CHECKING:
    from keystile.core.commands import ImportedKey
    from keystile.service import Keystile

LIST_SPLIT = re.compile(r"[;\s]+")
CSV_COLUMNS = frozenset(
    {
        "key",
        "hash",
        "hash_variant",
        "name",
        "owner_id",
        "external_id",
        "meta",
        "permissions",
        "roles",
        "expires_at",
        "credits",
        "ratelimits",
        "enabled",
    }
)
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}
_INDEXED = re.compile(r"^keys\[\d+\](?:\.(\w+))?: ")


class LineError(Exception):
    """An entry of the file that cannot be read, with its line."""

    def __init__(self, line: int, error: KeystileError) -> None:
        super().__init__(error.detail)
        self.line = line
        self.error = error


@dataclass(slots=True)
class Summary:
    imported: int = 0
    skipped: int = 0
    failed: int = 0
    dry_run: bool = False
    line: int | None = None
    """The line of the entry that failed."""
    resume_line: int | None = None
    """Where to start again (``--start-line``) once that line is fixed."""
    error: KeystileError | None = field(default=None, repr=False)
    seconds: float = 0.0


def _csv_entry(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row as the JSON entry it stands for: empty cells are absent; lists are split on ``;`` or spaces;
    ``meta`` and ``ratelimits`` hold JSON; ``credits`` is the number of uses left."""
    entry: dict[str, Any] = {}
    for name, raw in row.items():
        value = (raw or "").strip()
        if not value or name == "hash_variant":
            continue
        if name in ("permissions", "roles"):
            entry[name] = [part for part in LIST_SPLIT.split(value) if part]
        elif name in ("meta", "ratelimits"):
            try:
                entry[name] = json.loads(value)
            except ValueError:
                raise InvalidInput(f"{name} is not valid JSON", code="invalid_json", field=f"/{name}") from None
        elif name == "credits":
            if not value.isdigit():
                raise InvalidInput("credits is a whole number of uses", code="invalid_request", field="/credits")
            entry[name] = {"remaining": int(value)}
        elif name == "enabled":
            if value.lower() not in _TRUE | _FALSE:
                raise InvalidInput("enabled is true or false", code="invalid_request", field="/enabled")
            entry[name] = value.lower() in _TRUE
        else:
            entry[name] = raw if name == "key" else value  # a key is taken exactly as written
    variant = (row.get("hash_variant") or "").strip()
    if variant and "hash" in entry:
        entry["hash"] = {"value": entry["hash"], "variant": variant}
    return entry


def _jsonl(stream: IO[bytes], start_line: int) -> Generator[tuple[int, Any], None, None]:
    from keystile.schemas import KeyImportEntry, decode

    for number, raw in enumerate(stream, 1):
        if number < start_line or not raw.strip():
            continue
        try:
            yield number, decode(raw, KeyImportEntry)
        except InvalidInput as exc:
            raise LineError(number, exc) from None


def _csv(stream: IO[bytes], start_line: int) -> Generator[tuple[int, Any], None, None]:

    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        yield from _csv_rows(text, start_line)
    finally:
        text.detach()  # the caller closes the file


def _csv_rows(text: IO[str], start_line: int) -> Iterator[tuple[int, Any]]:
    from keystile.schemas import KeyImportEntry, convert

    reader = csv.DictReader(text)
    unknown = sorted(set(reader.fieldnames or ()) - CSV_COLUMNS)
    if unknown or not reader.fieldnames:
        names = ", ".join(unknown) if unknown else "none"
        detail = f"unknown CSV columns: {names}; the header names columns among {', '.join(sorted(CSV_COLUMNS))}"
        raise LineError(1, InvalidInput(detail, code="invalid_csv"))
    for row in reader:
        number = reader.line_num
        if number < start_line or not any((cell or "").strip() for cell in row.values()):
            continue
        if None in row:
            raise LineError(number, InvalidInput("the row has more cells than the header", code="invalid_csv"))
        try:
            yield number, convert(_csv_entry(row), KeyImportEntry)
        except InvalidInput as exc:
            raise LineError(number, exc) from None


def _detail(error: KeystileError, line: int | None) -> str:
    """The error's detail, naming the file's line rather than the entry's place in its batch."""
    if line is None:
        return error.detail
    member = None
    field_ = error.extra.get("field")
    if isinstance(field_, str) and field_.startswith("/"):
        parts = field_.split("/")
        member = parts[3] if len(parts) > 3 and parts[1] == "keys" else parts[1] or None
    match = _INDEXED.match(error.detail)
    detail = error.detail[match.end() :] if match else error.detail
    if match and match[1]:
        member = match[1]
    return f"line {line}{f' ({member})' if member else ''}: {detail}"


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--api-id", required=True, help="The API to import the keys into.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv"]),
    help="The file's format [default: csv for a .csv file, else jsonl].",
)
@click.option("--dry-run", is_flag=True, help="Check every entry (against the database too) and write nothing.")
@click.option("--batch-size", type=click.IntRange(1, 1000), default=1000, show_default=True, help="Entries per batch.")
@click.option(
    "--start-line", type=click.IntRange(1), default=1, show_default=True, help="Skip the lines before this one."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def import_keys(
    file: str, api_id: str, fmt: str | None, dry_run: bool, batch_size: int, start_line: int, as_json: bool
) -> None:
    """Import existing keys from FILE (JSON lines or CSV; - reads stdin) into an API.

    Each entry has the plain-text key ("key", in any format) or its SHA-256 digest ("hash": hex, or
    {"value", "variant": "sha256_base64"}), and optionally name, owner_id, meta, permissions, roles,
    expires_at, credits, ratelimits and enabled. Only digests are stored. Keys the API holds already are
    skipped, so an import can be run again, or resumed with --start-line.
    """
    fmt = fmt or ("csv" if file.lower().endswith(".csv") else "jsonl")
    try:
        stream: IO[bytes] = sys.stdin.buffer if file == "-" else open(file, "rb")  # noqa: SIM115
    except OSError as exc:
        raise click.BadParameter(f"cannot read {file}: {exc.strerror}", param_hint="FILE") from None
    summary = Summary(dry_run=dry_run)
    try:
        with stream:
            total = None if file == "-" else _size(stream)
            entries = _csv(stream, start_line) if fmt == "csv" else _jsonl(stream, start_line)
            started = time.perf_counter()
            try:
                run(lambda ks: _import(ks, api_id, entries, stream, total, batch_size, summary))
            finally:
                summary.seconds = time.perf_counter() - started
                entries.close()
    except KeystileError as exc:  # a failed batch (summary.resume_line says where), or the API or database before any
        summary.error = exc
    if summary.error is None or summary.resume_line is not None:
        _report(summary, as_json)
    if summary.error is not None:
        error = summary.error
        kind = type(from_keystile(error))
        raise kind(_detail(error, summary.line), code=error.code)


def _size(stream: IO[bytes]) -> int | None:
    try:
        return int(stream.seek(0, io.SEEK_END)) or None
    finally:
        stream.seek(0)


async def _import(
    ks: Keystile,
    api_id: str,
    entries: Iterator[tuple[int, Any]],
    stream: IO[bytes],
    total: int | None,
    batch_size: int,
    summary: Summary,
) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    from keystile.schemas import imported_key
    from keystile.service import CLI_ACTOR

    await ks.apis.get(CLI_ACTOR.principal, api_id, "keys.write")  # an unknown API fails before reading
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("importing", total=total)

        async def send(batch: list[tuple[int, ImportedKey]]) -> None:
            try:
                result = await ks.imports.import_keys(
                    CLI_ACTOR, api_id, [entry for _, entry in batch], dry_run=summary.dry_run
                )
            except KeystileError as exc:
                index = exc.extra.get("index")
                summary.line = batch[index][0] if isinstance(index, int) and 0 <= index < len(batch) else None
                summary.resume_line = batch[0][0]
                summary.failed = 1
                summary.error = exc
                raise
            summary.imported += result.imported
            summary.skipped += result.skipped
            done = f"{'would import' if summary.dry_run else 'imported'} {summary.imported:,}"
            progress.update(task, completed=_position(stream), description=f"{done}, skipped {summary.skipped:,}")

        batch: list[tuple[int, ImportedKey]] = []
        try:
            for number, entry in entries:
                try:
                    batch.append((number, imported_key(entry, len(batch))))
                except InvalidInput as exc:
                    raise LineError(number, exc) from None
                if len(batch) >= batch_size:
                    await send(batch)
                    batch = []
            if batch:
                await send(batch)
        except LineError as exc:
            summary.line = exc.line
            summary.resume_line = batch[0][0] if batch else exc.line
            summary.failed = 1
            summary.error = exc.error
        except KeystileError:
            if summary.error is None:
                raise


def _position(stream: IO[bytes]) -> int:
    try:
        return int(stream.tell())
    except (OSError, ValueError):
        return 0


def _report(summary: Summary, as_json: bool) -> None:
    rate = (summary.imported + summary.skipped) / summary.seconds if summary.seconds > 0 else 0.0
    if as_json:
        emit_json(
            {
                "imported": summary.imported,
                "skipped": summary.skipped,
                "failed": summary.failed,
                "dry_run": summary.dry_run,
                "line": summary.line,
                "resume_line": summary.resume_line,
                "seconds": round(summary.seconds, 3),
            }
        )
        return
    verb = "Would import" if summary.dry_run else "Imported"
    click.echo(
        f"{verb} {summary.imported:,} keys, skipped {summary.skipped:,} (already in the API), failed "
        f"{summary.failed:,}, in {summary.seconds:.1f} s ({rate:,.0f} keys/s)."
    )
    if summary.dry_run and summary.error is None:
        click.echo("Dry run: nothing was written.")
    if summary.resume_line is not None:
        where = f"line {summary.line}" if summary.line is not None else "the batch"
        click.echo(
            f"Stopped at {where}: nothing from line {summary.resume_line} on was imported. "
            f"Fix it, then resume with --start-line {summary.resume_line}."
        )
