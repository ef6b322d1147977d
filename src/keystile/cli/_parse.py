"""Flag values the CLI parses itself: durations (``30d``), rate limits (``api=100/1m``), JSON objects, keys.

Each is an option callback, so a bad value is a usage error (exit 2) that names the flag. Everything else
is validated by the same schemas as the HTTP API's bodies (``keystile.schemas.convert``).
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any

import click

from keystile.cli._errors import BadInput

_DURATION = re.compile(r"([0-9]{1,15})(ms|s|m|h|d|w)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
_RATELIMIT = re.compile(r"([^=\s]+)=([0-9]{1,15})/(\S+)")


def duration_ms(text: str) -> int | None:
    """``"15m"`` -> 900000; ``None`` when the text is not a duration (units ms, s, m, h, d, w)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        return None
    return int(match[1]) * _UNIT_MS[match[2]]


def format_duration(ms: int) -> str:
    """Milliseconds in the largest unit that divides them: 60000 -> ``"1m"``."""
    for unit in ("w", "d", "h", "m", "s"):
        if ms and ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


def to_duration(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """Option callback: a duration such as ``30d``, ``12h``, ``15m``, ``90s`` or ``500ms``, as milliseconds."""
    if value is None:
        return None
    ms = duration_ms(value)
    if ms is None or ms <= 0:
        raise click.BadParameter(f"{value!r} is not a duration such as 30d, 12h, 15m or 90s", ctx, param)
    return ms


def to_ratelimits(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[dict[str, Any]]:
    """Option callback: ``name=LIMIT/DURATION`` (``api=100/1m``) values as rate limit bodies."""
    limits = []
    for value in values:
        match = _RATELIMIT.fullmatch(value.strip())
        ms = duration_ms(match[3]) if match else None
        if match is None or ms is None:
            raise click.BadParameter(f"{value!r} is not NAME=LIMIT/DURATION, such as api=100/1m", ctx, param)
        limits.append({"name": match[1], "limit": int(match[2]), "duration_ms": ms})
    return limits


def to_json_object(ctx: click.Context, param: click.Parameter, value: str | None) -> dict[str, Any] | None:
    """Option callback: a JSON object given on the command line, such as ``'{"plan": "pro"}'``."""
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc.msg} at character {exc.pos})", ctx, param) from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("""expected a JSON object, such as '{"plan": "pro"}'""", ctx, param)
    return parsed


def expiry(expires_at: str | None, expires_in: int | None) -> str | None:
    """The ``expires_at`` of a body from ``--expires-at`` (RFC 3339) or ``--expires-in`` (a duration from now)."""
    if expires_at is not None and expires_in is not None:
        raise click.UsageError("give --expires-at or --expires-in, not both")
    if expires_in is not None:
        from keystile.core.timefmt import to_rfc3339

        try:
            return to_rfc3339(int(time.time() * 1000) + expires_in)
        except ValueError:
            raise click.UsageError("--expires-in reaches past 9999-12-31T23:59:59.999Z") from None
    return expires_at


def refill(amount: int | None, interval: str | None, day: int | None) -> dict[str, Any] | None:
    """The ``refill`` of a credits body, or ``None`` when no ``--refill-*`` flag is given."""
    if amount is None and interval is None and day is None:
        return None
    if amount is None or interval is None:
        raise click.UsageError("a refill needs both --refill-amount and --refill-interval")
    body: dict[str, Any] = {"amount": amount, "interval": interval}
    if day is not None:
        body["day"] = day
    return body


def read_key(value: str) -> str:
    """The key given as an argument, or read from the first line of stdin for ``-`` (out of shell history)."""
    if value != "-":
        return value
    line = sys.stdin.readline().strip()
    if not line:
        raise BadInput("no key on stdin", code="invalid_request")
    return line
