"""GitHub's secret scanning partner program: the signature of the reports GitHub sends to ``POST /v1/leaks``
(the report and the answer GitHub reads back are wire schemas: ``LeakReport`` and ``LeakLabel`` in
:mod:`keystile.schemas`).

GitHub signs the raw body with ECDSA (NIST P-256, SHA-256; a base64 DER signature in
``Github-Public-Key-Signature``) under one of the public keys that it publishes at
``https://api.github.com/meta/public_keys/secret_scanning``, named by ``Github-Public-Key-Identifier``.
Keystile reads those public keys from the file ``KEYSTILE_LEAKS_PUBLIC_KEYS``: either that endpoint's JSON
(``{"public_keys": [{"key_identifier", "key", "is_current"}]}``, or just the list), or PEM public keys, each
named by the hex SHA-256 of its DER ``SubjectPublicKeyInfo``. The file is read at every report, so replacing it
takes effect without a restart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from keystile.core import keys as keyformat
from keystile.errors import Forbidden, NotFound, StorageError

KEY_ID_HEADER = b"github-public-key-identifier"
SIGNATURE_HEADER = b"github-public-key-signature"
_MAX_SIGNATURE = 512  # a DER ECDSA P-256 signature is at most 72 bytes; its base64, 96 characters

PublicKeys = dict[str, ec.EllipticCurvePublicKey]


def key_identifier(key: ec.EllipticCurvePublicKey) -> str:
    """How Keystile names a public key given as PEM: the hex SHA-256 of its DER SubjectPublicKeyInfo."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _ec_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an ECDSA P-256 public key")
    return key


def parse_public_keys(data: bytes) -> PublicKeys:
    """The public keys of a key file (GitHub's JSON or PEM); raises ValueError when it holds none."""
    text = data.decode("utf-8", errors="replace").strip()
    keys: PublicKeys = {}
    if text.startswith(("{", "[")):
        document = json.loads(text)
        entries = document.get("public_keys", []) if isinstance(document, dict) else document
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
                raise ValueError("each public key needs key_identifier and key (PEM)")
            key = _ec_key(entry["key"].encode())
            keys[str(entry.get("key_identifier") or key_identifier(key))] = key
    else:
        end = "-----END PUBLIC KEY-----"
        for block in text.split(end):
            if block.strip():
                key = _ec_key((block.strip() + "\n" + end + "\n").encode())
                keys[key_identifier(key)] = key
    if not keys:
        raise ValueError("no public key in it")
    return keys


def load_public_keys(path: Path | None) -> PublicKeys:
    """The public keys GitHub signs with, from the configured file.

    Raises :class:`NotFound` (``leaks_not_configured``) without a file, and :class:`StorageError`
    (``leaks_keys_unreadable``, 503) when it cannot be read or holds no usable key: GitHub retries later.
    """
    if path is None:
        raise NotFound(
            "leak reports are not configured here: set KEYSTILE_LEAKS_PUBLIC_KEYS", code="leaks_not_configured"
        )
    try:
        return parse_public_keys(path.read_bytes())
    except (OSError, ValueError, UnsupportedAlgorithm) as exc:
        raise StorageError(
            f"the public keys of leak reports cannot be read from {path}: {exc}", code="leaks_keys_unreadable"
        ) from None


def check_signature(keys: PublicKeys, key_id: bytes | None, signature: bytes | None, body: bytes) -> None:
    """Raise :class:`Forbidden` unless ``signature`` (base64 DER ECDSA) signs ``body`` under the key ``key_id``."""
    if not key_id or not signature:
        raise Forbidden(
            "a leak report needs the headers Github-Public-Key-Identifier and Github-Public-Key-Signature",
            code="missing_signature",
        )
    key = keys.get(key_id.decode("latin-1").strip())
    if key is None:
        raise Forbidden("the report is signed with a key that is not configured", code="unknown_signing_key")
    try:
        if len(signature) > _MAX_SIGNATURE:
            raise ValueError
        der = base64.b64decode(signature.strip(), validate=True)
        key.verify(der, body, ec.ECDSA(hashes.SHA256()))
    except (ValueError, binascii.Error, InvalidSignature):
        raise Forbidden("the report's signature does not match its body", code="invalid_signature") from None


def token_hash(token: str) -> str:
    """The SHA-256 of a reported token in hex: how GitHub's feedback names it without repeating it."""
    return keyformat.digest(token).hex()
