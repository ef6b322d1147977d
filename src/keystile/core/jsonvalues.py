"""JSON values every backend stores alike: no U+0000 in any text, no nesting deeper than :data:`MAX_DEPTH`.

Both the wire decoding (:mod:`keystile.schemas`) and the services check them, so they live below both.
"""

from __future__ import annotations

from typing import Any

from keystile.errors import InvalidInput

MAX_DEPTH = 64
"""How deep JSON input (a body, a key's meta) may nest."""
MAX_META_BYTES = 16 * 1024
"""The largest ``meta`` of a key or identity, JSON-encoded."""


def too_deep(pointer: str) -> InvalidInput:
    """The error for JSON at ``pointer`` (``""``: the whole body) that nests deeper than :data:`MAX_DEPTH`."""
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
                raise too_deep(pointer)
            if isinstance(item, dict):
                for name, member in item.items():
                    inner = f"{pointer}/{str(name).replace('~', '~0').replace('/', '~1')}"
                    pending.extend(((inner, name, depth), (inner, member, depth + 1)))
            else:
                pending.extend((f"{pointer}/{index}", member, depth + 1) for index, member in enumerate(item))
