"""The one answer to a request refused for its key (SPEC V4, V5, S2, S4), for the shells that answer an API's
callers with problem+json: ``keystile proxy`` and the integrations (ASGI middleware, FastAPI, Flask/WSGI).
Forward auth answers its proxy with the status alone, from the same table (:data:`keystile.http.answers.STATUS`).

=======================================  ======  ==========================  =================================
refused for                              status  ``code``                    headers
=======================================  ======  ==========================  =================================
no key                                   401     ``missing_key``             ``WWW-Authenticate: Bearer``
two different keys                       401     ``ambiguous_credentials``   ``WWW-Authenticate`` (invalid)
``NOT_FOUND``, ``REVOKED``, ``DISABLED``,  401     ``invalid_key``             ``WWW-Authenticate`` (invalid)
``EXPIRED``
``FORBIDDEN``                            403     ``ip_not_allowed``
``INSUFFICIENT_PERMISSIONS``             403     ``insufficient_permissions``
``RATE_LIMITED``                         429     ``rate_limited``            ``Retry-After``
``USAGE_EXCEEDED``                       429     ``usage_exceeded``          ``Retry-After`` when known
=======================================  ======  ==========================  =================================

Every 401 for a key says the same ``invalid_key``: an unknown key, a revoked one and another API's look alike to
the caller (S2). Details say what to do, never anything about the key itself.
"""

from __future__ import annotations

from keystile.core.verify import Code
from keystile.errors import Forbidden, KeystileError, RateLimited, Unauthenticated

MISSING_KEY = "this API needs a key: send it as Authorization: Bearer <key> (or X-API-Key: <key>)"
INVALID_KEY = "the API key is not valid"
AMBIGUOUS = "the request carries two different keys; send one"


def refusal(code: str, retry_after: int | None = None) -> KeystileError:
    """The error refusing a request for ``code``: a verification code other than ``VALID``, ``missing_key`` or
    ``ambiguous_credentials``. ``retry_after`` (whole seconds) goes with a 429. A code this version does not know
    (a newer server's) is still a refusal: ``invalid_key``."""
    if code == Code.FORBIDDEN:
        return Forbidden("this key may not be used from this address", code="ip_not_allowed")
    if code == Code.INSUFFICIENT_PERMISSIONS:
        return Forbidden("this key lacks a permission this route needs", code="insufficient_permissions")
    if code == Code.RATE_LIMITED:
        return RateLimited("too many requests with this key; retry later", retry_after=retry_after)
    if code == Code.USAGE_EXCEEDED:
        return RateLimited("this key has no credits left", code="usage_exceeded", retry_after=retry_after)
    if code == "missing_key":
        return Unauthenticated(MISSING_KEY, code="missing_key")
    if code == "ambiguous_credentials":
        return Unauthenticated(AMBIGUOUS, code="ambiguous_credentials")
    return Unauthenticated(INVALID_KEY, code="invalid_key")
