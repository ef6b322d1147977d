"""Finding Keystile keys in text (SPEC S3): by their shape and their checksum, so random strings are not reported.

A key is ``{prefix}_{random}{check}`` (SPEC K2). The scanner looks for 38 base62 characters after an underscore
and not followed by another one, then tries every prefix that could end at that underscore (``s``, ``ks``,
``e``, ``ve``... ``ks_live``): the longest whose CRC32 matches makes the key. Trying them all finds
``API_KEY=ks_...``, ``my_ks_...`` and ``Bearerks_...`` alike; a random string of the same shape matches one of
its at most 25 candidates with a chance of about 25 in 2**32.

A :class:`Match` holds what may be shown of a key (its ``start``) and its SHA-256 digest, under which Keystile
stores it; the key itself is only ever a local variable here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from keystile.core import keys as keyformat

# 38 base62 characters after "_", not part of a longer run of them.
_BODY_RE = re.compile(rf"_([0-9A-Za-z]{{{keyformat.BODY_LENGTH}}})(?![0-9A-Za-z])")
# The longest prefix: two parts of 12 characters joined by "_".
_MAX_PREFIX = 25


@dataclass(frozen=True, slots=True)
class Match:
    """A key found in text: where (1-based line and column of its first character), what may be shown of it,
    and its digest (SHA-256, hex): never the key."""

    line: int
    column: int
    start: str
    digest: str
    length: int


def _prefix_before(line: str, underscore: int, head: str, check: str) -> str | None:
    """The prefix ending at ``line[underscore]`` whose checksum over ``{prefix}_{head}`` is ``check``."""
    found = None
    for begin in range(underscore - 1, max(underscore - _MAX_PREFIX, 0) - 1, -1):
        prefix = line[begin:underscore]
        if keyformat.PREFIX_RE.fullmatch(prefix) and keyformat.checksum(f"{prefix}_{head}") == check:
            found = prefix  # keep going: the longest matching prefix is the key's
    return found


def find_in_line(line: str, number: int = 1) -> Iterator[Match]:
    """The keys in one line of text, in order; ``number`` is the line's number for the matches."""
    if "_" not in line:
        return
    for body in _BODY_RE.finditer(line):
        underscore = body.start()
        random, check = body[1][: keyformat.RANDOM_LENGTH], body[1][keyformat.RANDOM_LENGTH :]
        prefix = _prefix_before(line, underscore, random, check)
        if prefix is None:
            continue
        key = f"{prefix}_{body[1]}"
        yield Match(
            line=number,
            column=underscore - len(prefix) + 1,
            start=keyformat.start_of(key),
            digest=keyformat.digest(key).hex(),
            length=len(key),
        )


def find_keys(text: str) -> Iterator[Match]:
    """The keys in ``text``, in order, with 1-based line and column numbers (lines split at ``\\n``)."""
    for index, line in enumerate(text.split("\n")):
        yield from find_in_line(line, index + 1)
