"""The one answer to a refused request (issue 9: one answer for each refusal), for the proxy and the
integrations alike; forward auth takes the statuses from the same table."""

from __future__ import annotations

import pytest

from keystile.core.verify import ALL_CODES, Code
from keystile.http.answers import STATUS
from keystile.http.problems import problem_of
from keystile.http.refusals import refusal

REFUSED = [code for code in ALL_CODES if code != Code.VALID]


@pytest.mark.parametrize("code", REFUSED)
def test_every_refused_code_has_forward_auths_status(code: str) -> None:
    status, _, _ = problem_of(refusal(code, retry_after=3), "req_1")
    assert status == STATUS[code]


def test_keys_that_do_not_pass_look_alike_whatever_the_reason() -> None:
    # Unknown, another API's, revoked, disabled and expired keys get one answer (SPEC S2).
    answers = {
        code: problem_of(refusal(code), "req_1") for code in (Code.NOT_FOUND, Code.REVOKED, Code.DISABLED, Code.EXPIRED)
    }
    assert {
        (status, problem.code, problem.detail, tuple(headers)) for status, problem, headers in answers.values()
    } == {(401, "invalid_key", "the API key is not valid", ((b"www-authenticate", b'Bearer error="invalid_token"'),))}


def test_a_request_without_a_key_is_challenged_without_an_error_and_two_keys_are_refused() -> None:
    status, problem, headers = problem_of(refusal("missing_key"), None)
    assert (status, problem.code, headers) == (401, "missing_key", [(b"www-authenticate", b"Bearer")])
    status, problem, _ = problem_of(refusal("ambiguous_credentials"), None)
    assert (status, problem.code) == (401, "ambiguous_credentials")


@pytest.mark.parametrize(
    ("code", "problem_code", "retry_after"),
    [
        (Code.FORBIDDEN, "ip_not_allowed", None),
        (Code.INSUFFICIENT_PERMISSIONS, "insufficient_permissions", None),
        (Code.RATE_LIMITED, "rate_limited", b"7"),
        (Code.USAGE_EXCEEDED, "usage_exceeded", b"7"),
    ],
)
def test_other_refusals_say_why_and_when_to_retry(code: str, problem_code: str, retry_after: bytes | None) -> None:
    _, problem, headers = problem_of(refusal(code, retry_after=7), None)
    assert problem.code == problem_code
    assert dict(headers).get(b"retry-after") == retry_after


def test_a_code_this_version_does_not_know_is_still_a_refusal() -> None:
    status, problem, _ = problem_of(refusal("SOMETHING_NEW"), None)
    assert (status, problem.code) == (401, "invalid_key")
