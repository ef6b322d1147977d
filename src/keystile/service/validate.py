"""Turning untrusted input into validated values, with errors that point at the offending field."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, TypeVar

import msgspec

from keystile.core.timefmt import from_datetime
from keystile.errors import InvalidInput

T = TypeVar("T")
MAX_DEPTH = 64
"""How deep JSON input (a body, a key's meta) may nest."""
_PATH_PART = re.compile(r"\.([^.\[]+)|\[([0-9]+)\]")
_NAMED_FIELD = re.compile(r"Object (?:missing required|contains unknown) field `([^`]+)`")


def _pointer(path: str) -> str:
    """msgspec's ``$.keys[3].name`` as a JSON pointer, ``/keys/3/name``."""
    return "".join("/" + (name or index) for name, index in _PATH_PART.findall(path.removeprefix("$")))


def _invalid(exc: msgspec.ValidationError | msgspec.DecodeError) -> InvalidInput:
    message = str(exc)
    text, _, path = message.rpartition(" - at `")
    if not text:
        text, path = message, "$"
    pointer = _pointer(path.rstrip("`"))
    named = _NAMED_FIELD.match(text)
    if named:
        pointer += "/" + named[1]  # a missing or unknown member: point at the member, not its object
    if not pointer:
        return InvalidInput(message, code="invalid_request")
    extra: dict[str, Any] = {"field": pointer}
    parts = pointer.split("/")
    if len(parts) > 2 and parts[1] == "keys" and parts[2].isascii() and parts[2].isdigit():
        extra["index"] = int(parts[2])  # bulk bodies: say which key is wrong
    return InvalidInput(f"{text} at {pointer}", code="invalid_request", **extra)


def decode(body: bytes, schema: type[T]) -> T:
    """Decode and validate a JSON body; raises :class:`InvalidInput` naming the field that is wrong."""
    try:
        return msgspec.json.decode(body, type=schema)
    except RecursionError:
        raise _too_deep("") from None
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
            raise InvalidInput("the body is not valid JSON", code="invalid_json") from None
        raise _invalid(exc) from None


def convert(value: Any, schema: type[T]) -> T:
    """Validate already-decoded values (the CLI's options, a merged patch) against a schema."""
    try:
        return msgspec.convert(value, type=schema)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None


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


def _too_deep(pointer: str) -> InvalidInput:
    return InvalidInput(
        f"{pointer or 'the body'} is nested more than {MAX_DEPTH} levels deep", code="too_deeply_nested", field=pointer
    )


def check_json(value: Any, field: str) -> None:
    """Refuse JSON that no backend stores alike or that the services cannot walk; raises :class:`InvalidInput`.

    U+0000 in any string (member names included): PostgreSQL cannot store it in text or JSON while SQLite can,
    so the same request would be stored by one backend and fail with a storage error on the other. Nesting
    deeper than :data:`MAX_DEPTH`: merge patches and encoders recurse, and a body nested near the parser's limit
    would fail there with a RecursionError. ``field`` is the JSON pointer of ``value``; the error points at the
    offending member.
    """
    pending = [(field, value, 0)]  # a loop, not recursion: the input may nest deeper than Python's stack
    while pending:
        pointer, item, depth = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise InvalidInput(
                    f"{pointer or 'the value'} contains the character U+0000, which cannot be stored",
                    code="invalid_character",
                    field=pointer,
                )
        elif isinstance(item, dict | list | tuple):
            if depth >= MAX_DEPTH:
                raise _too_deep(pointer)
            if isinstance(item, dict):
                for name, member in item.items():
                    inner = f"{pointer}/{str(name).replace('~', '~0').replace('/', '~1')}"
                    pending.extend(((inner, name, depth), (inner, member, depth + 1)))
            else:
                pending.extend((f"{pointer}/{index}", member, depth + 1) for index, member in enumerate(item))
