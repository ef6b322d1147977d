"""Turning untrusted input into validated values, with errors that point at the offending field.

Decoding JSON into wire structs is the edges' work (:mod:`keystile.schemas.decoding`); what is checked here is
what the services are given, whichever edge it came through.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from keystile.core.jsonvalues import MAX_DEPTH, check_json
from keystile.core.timefmt import from_datetime
from keystile.errors import InvalidInput

__all__ = ["MAX_DEPTH", "check_json", "json_size", "merge_patch", "to_ms"]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON Merge Patch: objects merge member by member, ``null`` removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


def json_size(value: Any) -> int:
    return len(msgspec.json.encode(value))


def to_ms(moment: datetime, field: str) -> int:
    """An aware datetime (as decoded from an RFC 3339 time) in integer milliseconds since the epoch.

    Raises :class:`InvalidInput` naming ``field`` (a JSON pointer) for an instant that cannot be written back as
    an RFC 3339 UTC time with a four-digit year (``9999-12-31T23:59:59-01:00`` is in year 10000).
    """
    try:
        return from_datetime(moment)
    except ValueError as exc:
        raise InvalidInput(f"{exc} at {field}", code="invalid_request", field=field) from None
