"""CSRF tokens: a form's token against the one expected (the browser sessions themselves live in storage,
:mod:`keystile.service.websessions`)."""

from __future__ import annotations

import hmac


def same_token(given: str | None, expected: str | None) -> bool:
    """Whether a form's CSRF token is the one expected (in constant time; never true for a missing one)."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
