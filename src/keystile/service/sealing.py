"""The cryptography of recoverable keys (SPEC K3): envelope encryption with AES-256-GCM.

::

    master key (32 bytes, outside the database)
      └── wraps  data key (32 random bytes; stored wrapped, with the id of the master key that wrapped it)
            └── seals  a recoverable key's plain text (stored as nonce + ciphertext beside the key)

Every encryption takes a fresh random 96-bit nonce and associated data that names what the ciphertext belongs
to: a data key's own id, or a key's id and API id. A ciphertext moved to another row therefore fails its
authentication instead of opening as something else. Functions here are pure (no storage, no settings).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keystile.errors import InvalidInput

KEY_BYTES = 32
NONCE_BYTES = 12
_DATA_KEY_AAD = b"keystile data key v1\x00"
_KEY_AAD = b"keystile key v1\x00"


class Unopenable(Exception):
    """A ciphertext that does not authenticate under the key and associated data it was opened with."""


def parse_master_key(text: str, source: str) -> bytes:
    """A master key from its text form: 32 bytes as base64 (what ``keystile init`` writes, 44 characters) or as
    64 hex digits. ``source`` names where it came from, for the error. Raises InvalidInput (never quoting it)."""
    value = text.strip()
    raw: bytes | None = None
    if len(value) == 2 * KEY_BYTES and all(c in "0123456789abcdefABCDEF" for c in value):
        raw = bytes.fromhex(value)
    else:
        try:
            raw = base64.b64decode(value.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or len(raw) != KEY_BYTES:
        raise InvalidInput(
            f"{source} must hold a master key: 32 bytes as base64 (44 characters) or as 64 hex digits",
            code="invalid_master_key",
        )
    return raw


def new_master_key_text() -> str:
    """A new random master key in the text form ``keystile init`` writes (base64)."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def master_key_id(master: bytes) -> str:
    """The public id (fingerprint) of a master key: ``mk_`` and 16 hex digits of an HMAC under it. Stored with
    each data key, so that a rotation knows which master key wrapped it; it reveals nothing of the key."""
    return "mk_" + hmac.new(master, b"keystile master key id", hashlib.sha256).hexdigest()[:16]


def _seal(key: bytes, plain: bytes, aad: bytes) -> tuple[bytes, bytes]:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce, AESGCM(key).encrypt(nonce, plain, aad)


def _open(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, aad)
    except (InvalidTag, ValueError):
        raise Unopenable("the ciphertext does not authenticate") from None


def new_data_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def wrap_data_key(master: bytes, data_key_id: str, data_key: bytes) -> bytes:
    """``data_key`` encrypted under ``master`` (nonce first), bound to its id."""
    nonce, ciphertext = _seal(master, data_key, _DATA_KEY_AAD + data_key_id.encode())
    return nonce + ciphertext


def unwrap_data_key(master: bytes, data_key_id: str, wrapped: bytes) -> bytes:
    """The data key in ``wrapped``; raises :class:`Unopenable` under another master key or for another id."""
    data_key = _open(master, wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _DATA_KEY_AAD + data_key_id.encode())
    if len(data_key) != KEY_BYTES:
        raise Unopenable("not a data key")
    return data_key


def _key_aad(key_id: str, api_id: str) -> bytes:
    return _KEY_AAD + key_id.encode() + b"\x00" + api_id.encode()


def seal_key(data_key: bytes, key_id: str, api_id: str, plain: str) -> tuple[bytes, bytes]:
    """A key's plain text sealed under ``data_key``, bound to the key and its API: ``(nonce, ciphertext)``."""
    return _seal(data_key, plain.encode(), _key_aad(key_id, api_id))


def open_key(data_key: bytes, key_id: str, api_id: str, nonce: bytes, ciphertext: bytes) -> str:
    """The plain text :func:`seal_key` sealed; raises :class:`Unopenable` for any other key, API or data key."""
    return _open(data_key, nonce, ciphertext, _key_aad(key_id, api_id)).decode()


_SIGNING_AAD = b"keystile signing key v1\x00"


def seal_signing_key(data_key: bytes, kid: str, private: bytes) -> tuple[bytes, bytes]:
    """A token signing key's private bytes sealed under ``data_key``, bound to its ``kid``: ``(nonce, ciphertext)``."""
    return _seal(data_key, private, _SIGNING_AAD + kid.encode())


def open_signing_key(data_key: bytes, kid: str, nonce: bytes, ciphertext: bytes) -> bytes:
    """The private bytes :func:`seal_signing_key` sealed; raises :class:`Unopenable` for any other kid or data key."""
    return _open(data_key, nonce, ciphertext, _SIGNING_AAD + kid.encode())


_WEBHOOK_AAD = b"keystile webhook secret v1\x00"


def seal_webhook_secret(data_key: bytes, endpoint_id: str, secret: str) -> tuple[bytes, bytes]:
    """A webhook endpoint's signing secret sealed under ``data_key``, bound to the endpoint: ``(nonce, ciphertext)``."""
    return _seal(data_key, secret.encode(), _WEBHOOK_AAD + endpoint_id.encode())


def open_webhook_secret(data_key: bytes, endpoint_id: str, nonce: bytes, ciphertext: bytes) -> str:
    """The secret :func:`seal_webhook_secret` sealed; raises :class:`Unopenable` for another endpoint or data key."""
    return _open(data_key, nonce, ciphertext, _WEBHOOK_AAD + endpoint_id.encode()).decode()
