"""How commands print: JSON for scripts (the HTTP API's wire shapes), tables and aligned fields for people.

Data goes to stdout; with ``--json`` stdout carries nothing but the JSON document, and any message for people
goes to stderr. Tables use rich, imported only when one is printed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def json_option(fn: F) -> F:
    """The ``--json`` flag of every command that prints data."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (the HTTP API's shapes) instead of text.")(
        fn
    )


def emit_json(value: Any) -> None:
    """Print a wire struct (or plain JSON values) as an indented JSON document on stdout."""
    from keystile.schemas import to_builtins

    click.echo(json.dumps(to_builtins(value), indent=2, ensure_ascii=False))


def say(message: str, *, as_json: bool = False) -> None:
    """A message for people: stdout normally, stderr when stdout is reserved for JSON."""
    click.echo(message, err=as_json)


def warn(message: str) -> None:
    click.secho(f"Warning: {message}", err=True, fg="yellow")


def when(text: str | None) -> str:
    """An RFC 3339 time from a wire struct, to the second, for tables (``-`` for none)."""
    if not text:
        return "-"
    return f"{text[:10]} {text[11:19]}Z"


def listed(values: Iterable[Any]) -> str:
    text = ", ".join(str(v) for v in values)
    return text or "-"


def shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False) if value else "-"
    if isinstance(value, list | tuple):
        return listed(value)
    return str(value)


def fields(pairs: Sequence[tuple[str, Any]]) -> None:
    """Print ``name  value`` lines with the values aligned."""
    width = max(len(name) for name, _ in pairs)
    for name, value in pairs:
        click.echo(f"{name:<{width}}  {shown(value)}")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, empty: str = "Nothing to show.") -> None:
    """Print rows as a table (rich); cell text is printed literally, never read as rich markup."""
    if not rows:
        click.echo(empty)
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    if not console.is_terminal:
        # Piped output is not wrapped to 80 columns: ids stay whole for grep and cut.
        console = Console(highlight=False, width=10_000)
    grid = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for index, header in enumerate(headers):
        grid.add_column(header, no_wrap=index == 0, overflow="fold")
    for row in rows:
        grid.add_row(*(Text(cell) for cell in row))
    with console.capture() as captured:
        console.print(grid)
    for line in captured.get().splitlines():
        click.echo(line.rstrip())


def ratelimits(limits: Iterable[Any]) -> list[str]:
    """Rate limits as the ``--ratelimit`` flag takes them: ``api=100/1m``."""
    from keystile.cli._parse import format_duration

    return [f"{r.name}={r.limit}/{format_duration(r.duration_ms)}" for r in limits]


def next_page(cursor: str | None, *, as_json: bool = False) -> None:
    if cursor and not as_json:
        click.echo(f"More: repeat with --cursor {cursor}")
