"""How the proxy refuses a request: the statuses of SPEC V5, with RFC 9457 problem bodies (SPEC S4), since the
client of a proxied API is an API caller, not nginx.

- 401 with ``WWW-Authenticate: Bearer``: no key, two different keys, or ``NOT_FOUND`` / ``REVOKED`` /
  ``DISABLED`` / ``EXPIRED``;
- 403: ``FORBIDDEN`` (client IP outside an allowlist), ``INSUFFICIENT_PERMISSIONS``;
- 429 with ``Retry-After``: ``RATE_LIMITED``, ``USAGE_EXCEEDED``;
- 502 when the upstream cannot be reached or answers garbage, 504 when it is too slow; 503 when Keystile's own
  storage is unreachable.

The problem's ``code`` is the verification code in lower case (``revoked``), and ``X-Keystile-Code`` carries it
as forward auth spells it (``REVOKED``), so one log search finds both.
"""

from __future__ import annotations

from keystile.core.verify import Code
from keystile.schemas import Problem
from keystile.server.answers import STATUS
from keystile.server.http import PROBLEM_JSON, Send, send_bytes
from keystile.server.problems import TYPE_BASE, encode_problem

HeaderList = list[tuple[bytes, bytes]]

_TITLES = {401: "Unauthorized", 403: "Forbidden", 429: "Too many requests"}
# SPEC V2 code -> detail; the status is forward auth's (keystile.server.answers). Details say what to do, never
# anything about the key itself.
_DETAILS = {
    Code.NOT_FOUND: "the API key is not valid here",
    Code.REVOKED: "the API key has been revoked",
    Code.DISABLED: "the API key is disabled",
    Code.EXPIRED: "the API key has expired",
    Code.FORBIDDEN: "the API key may not be used from this address",
    Code.INSUFFICIENT_PERMISSIONS: "the API key lacks a permission this API requires",
    Code.RATE_LIMITED: "the API key's rate limit is reached; retry later",
    Code.USAGE_EXCEEDED: "the API key has no credits left",
}
_VERIFICATION = {code: (STATUS[code], _TITLES[STATUS[code]], detail) for code, detail in _DETAILS.items()}
_OTHER: dict[str, tuple[int, str, str]] = {
    "missing_key": (
        401,
        "Unauthorized",
        "send an API key as Authorization: Bearer <key> (or X-API-Key: <key>)",
    ),
    "ambiguous_credentials": (401, "Unauthorized", "the request carries two different keys; send one"),
    "upstream_unavailable": (502, "Bad gateway", "the upstream service could not be reached or failed"),
    "upstream_timeout": (504, "Gateway timeout", "the upstream service did not answer in time"),
}
_CHALLENGE = (b"www-authenticate", b"Bearer")
_INVALID_TOKEN = (b"www-authenticate", b'Bearer error="invalid_token"')


def refusal(code: str, request_id: str, extra: HeaderList | None = None) -> tuple[int, bytes, HeaderList]:
    """The status, problem body and headers refusing a request for ``code`` (a SPEC V2 code other than
    ``VALID``, or one of the proxy's own: ``missing_key``, ``ambiguous_credentials``, ``upstream_*``)."""
    found = _VERIFICATION.get(code)
    wire_code = code.lower()
    if found is None:
        found = _OTHER[code]
    status, title, detail = found
    problem = Problem(
        type=TYPE_BASE + wire_code,
        title=title,
        status=status,
        detail=detail,
        code=wire_code,
        request_id=request_id,
    )
    headers: HeaderList = [(b"x-keystile-code", code.encode()), (b"x-request-id", request_id.encode())]
    if status == 401:
        # RFC 6750 3.1: no error attribute when the request carried no credentials at all.
        headers.append(_CHALLENGE if code == "missing_key" else _INVALID_TOKEN)
    if extra:
        headers.extend(extra)
    return status, encode_problem(problem), headers


async def send_refusal(send: Send, code: str, request_id: str, extra: HeaderList | None = None) -> None:
    """Answer with :func:`refusal`."""
    status, body, headers = refusal(code, request_id, extra)
    await send_bytes(send, status, PROBLEM_JSON, body, headers)
