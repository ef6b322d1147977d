"""Base62 with the alphabet ``0-9A-Za-z`` (ASCII order, so fixed-width strings sort like their numbers)."""

from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
CHARSET = frozenset(ALPHABET)
_PAIRS = tuple(a + b for a in ALPHABET for b in ALPHABET)
"""Every two-digit string, by value: encoding takes two digits per division (half the big-integer divisions)."""


def encode(number: int, width: int = 0) -> str:
    """Encode a non-negative integer, left-padded with ``0`` to ``width`` characters."""
    if number < 0:
        raise ValueError("base62 encodes non-negative integers only")
    digits: list[str] = []
    while number >= 3844:
        number, rest = divmod(number, 3844)
        digits.append(_PAIRS[rest])
    digits.append(_PAIRS[number] if number >= 62 else ALPHABET[number])
    digits.reverse()
    return "".join(digits).rjust(width, "0")


def decode(text: str) -> int:
    """Decode base62 text; raises ``ValueError`` on a character outside the alphabet."""
    number = 0
    for char in text:
        try:
            number = number * 62 + _INDEX[char]
        except KeyError:
            raise ValueError(f"not a base62 character: {char!r}") from None
    return number
