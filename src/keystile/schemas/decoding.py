"""Decoding JSON into wire structs (HTTP bodies, the CLI's options), with errors that point at the offending field.

msgspec's messages name the place as ``$.keys[3].name``; :class:`~keystile.errors.InvalidInput` carries it as a JSON
pointer (``/keys/3/name``) in ``field``, and bulk bodies also say which key is wrong in ``index``.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from keystile.core.jsonvalues import too_deep
from keystile.errors import InvalidInput

T = TypeVar("T")
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
        raise too_deep("") from None
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
            raise InvalidInput("the body is not valid JSON", code="invalid_json") from None
        raise _invalid(exc) from None


def convert(value: Any, schema: type[T]) -> T:
    """Validate already-decoded values (the CLI's options, a merge patch) against a schema; raises
    :class:`InvalidInput` naming the field that is wrong."""
    try:
        return msgspec.convert(value, type=schema)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None
