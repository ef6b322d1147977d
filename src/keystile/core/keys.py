"""The key format of SPEC K2: ``{prefix}_{random}{check}``.

``random`` is 32 base62 characters drawn from :mod:`secrets` (32 * log2(62) ~ 190 bits); ``check`` is the
unsigned CRC32 of ``{prefix}_{random}`` in base62, left-padded to 6 characters. The checksum lets a client or a
leak scanner reject a mistyped or made-up string without asking the server, and lets the verifier reject it
without touching storage. Only ``SHA-256(key)`` is ever stored (K3).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import zlib
from typing import NamedTuple

from keystile.core import base62

RANDOM_LENGTH = 32
CHECK_LENGTH = 6
BODY_LENGTH = RANDOM_LENGTH + CHECK_LENGTH
DEFAULT_PREFIX = "ks"
ROOT_PREFIX = "ks_root"
RESERVED_PREFIXES = frozenset({ROOT_PREFIX})
PREFIX_RE = re.compile(r"[a-z0-9]{1,12}(?:_[a-z0-9]{1,12})?")
# A key the verifier will even look at; anything longer is refused before hashing (imported keys included).
MAX_KEY_LENGTH = 512
_BODY_RE = re.compile(rf"[0-9A-Za-z]{{{BODY_LENGTH}}}")


class ParsedKey(NamedTuple):
    prefix: str
    random: str
    check: str


def is_valid_prefix(prefix: str) -> bool:
    """Whether ``prefix`` may be used by an API (the root prefix is reserved)."""
    return PREFIX_RE.fullmatch(prefix) is not None and prefix not in RESERVED_PREFIXES


def checksum(prefixed_random: str) -> str:
    """The 6-character base62 CRC32 of ``{prefix}_{random}``."""
    return base62.encode(zlib.crc32(prefixed_random.encode()), CHECK_LENGTH)


def generate(prefix: str) -> str:
    """A new key with ``prefix``; the caller must have validated the prefix."""
    random = "".join(secrets.choice(base62.ALPHABET) for _ in range(RANDOM_LENGTH))
    head = f"{prefix}_{random}"
    return head + checksum(head)


def parse(key: str) -> ParsedKey | None:
    """Split a key in Keystile's shape into its parts, or ``None`` when it is not in that shape.

    The checksum is not checked here: see :func:`has_valid_checksum`.
    """
    prefix, sep, body = key.rpartition("_")
    if not sep or _BODY_RE.fullmatch(body) is None or PREFIX_RE.fullmatch(prefix) is None:
        return None
    return ParsedKey(prefix, body[:RANDOM_LENGTH], body[RANDOM_LENGTH:])


def has_valid_checksum(parsed: ParsedKey) -> bool:
    """Whether the check characters match the prefix and random part."""
    return checksum(f"{parsed.prefix}_{parsed.random}") == parsed.check


def digest(key: str) -> bytes:
    """The SHA-256 of a key: the only form in which Keystile stores it."""
    return hashlib.sha256(key.encode()).digest()


def start_of(key: str) -> str:
    """What is kept for display: ``{prefix}_`` and the first 4 random characters (``ks_3Fx9``).

    For an imported key of another shape: its first 4 characters, or nothing when the key is shorter than 16
    characters (showing 4 of them would give too much of it away).
    """
    parsed = parse(key)
    if parsed is not None:
        return f"{parsed.prefix}_{parsed.random[:4]}"
    return key[:4] if len(key) >= 16 else ""


DIGEST_BYTES = 32
_HEX_RE = re.compile(r"[0-9a-fA-F]{64}")


def digest_from_export(value: str, variant: str) -> bytes:
    """The SHA-256 digest another system exported, as hex (``sha256_hex``) or base64 (``sha256_base64``, as
    Unkey exports it; the URL-safe alphabet and missing padding are accepted too).

    Raises :class:`ValueError` saying what is wrong, without repeating the value.
    """
    if variant == "sha256_hex":
        if _HEX_RE.fullmatch(value) is None:
            raise ValueError(f"a hex SHA-256 digest is 64 hex digits (0-9, a-f), not {len(value)} characters")
        return bytes.fromhex(value)
    if variant == "sha256_base64":
        text = value.strip().replace("-", "+").replace("_", "/")
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a base64 SHA-256 digest has characters outside the base64 alphabet") from None
        if len(raw) != DIGEST_BYTES:
            raise ValueError(f"a SHA-256 digest is {DIGEST_BYTES} bytes; this base64 value holds {len(raw)}")
        return raw
    raise ValueError(f"unknown hash variant {variant[:32]!r}: use sha256_hex or sha256_base64")
