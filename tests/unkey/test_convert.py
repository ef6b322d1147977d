"""The translation's own decisions, without a server: Unkey's "replace" as Keystile's merge patch, credit changes,
stable rate-limit ids, verification codes, and errors in Unkey's shape."""

from __future__ import annotations

from typing import Any

import pytest
from msgspec import UNSET

from keystile.core.commands import KEEP, CreditsUpdate, RefillUpdate
from keystile.core.verify import ALL_CODES
from keystile.errors import Conflict, Forbidden, InvalidInput, NotFound, QuerySyntaxError, StorageError, Unauthenticated
from keystile.service.validate import merge_patch
from keystile.unkey import _wire as w
from keystile.unkey._convert import CODES, credits_update, ratelimit_id, replacing_patch
from keystile.unkey._errors import error_body

Json = dict[str, Any]


@pytest.mark.parametrize(
    ("current", "new"),
    [
        ({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": 4}}),
        ({"a": 1}, {}),
        ({}, {"x": [1, 2], "y": {"z": True}}),
        ({"b": {"c": 2}}, {"b": 5}),
        ({"b": 5}, {"b": {"c": 2}}),
    ],
)
def test_a_replacing_patch_turns_the_current_object_into_the_new_one(current: Json, new: Json) -> None:
    assert merge_patch(current, replacing_patch(current, new)) == new


def test_credit_changes_keep_what_is_left_out_and_null_means_unlimited() -> None:
    assert credits_update(w.CreditsUpdateIn(remaining=None)) is None
    assert credits_update(w.CreditsUpdateIn(remaining=5)) == CreditsUpdate(remaining=5, refill=KEEP)
    assert credits_update(w.CreditsUpdateIn(refill=None)) == CreditsUpdate(remaining=KEEP, refill=None)
    refill = w.RefillIn(interval="monthly", amount=10, refill_day=3)
    assert credits_update(w.CreditsUpdateIn(remaining=UNSET, refill=refill)) == CreditsUpdate(
        remaining=KEEP, refill=RefillUpdate(10, "monthly", 3)
    )


def test_a_rate_limit_id_is_stable_and_differs_by_holder_and_name() -> None:
    assert ratelimit_id("key_a", "burst") == ratelimit_id("key_a", "burst")
    assert len({ratelimit_id("key_a", "burst"), ratelimit_id("key_b", "burst"), ratelimit_id("key_a", "x")}) == 3


def test_every_keystile_code_has_an_unkey_code() -> None:
    unkey_codes = {"VALID", "NOT_FOUND", "FORBIDDEN", "INSUFFICIENT_PERMISSIONS", "USAGE_EXCEEDED", "RATE_LIMITED"}
    unkey_codes |= {"EXPIRED", "DISABLED"}
    assert set(CODES) == set(ALL_CODES)
    assert set(CODES.values()) <= unkey_codes
    assert CODES["REVOKED"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (Unauthenticated("no root key", code="missing_root_key"), 400, "unkey/authentication/missing"),
        (Unauthenticated("bad root key", code="invalid_root_key"), 401, "unkey/authentication/key_not_found"),
        (Forbidden("no"), 403, "unkey/authorization/insufficient_permissions"),
        (NotFound("no key", code="key_not_found"), 404, "unkey/data/key_not_found"),
        (NotFound("scoped", code="not_found"), 404, "unkey/data/api_not_found"),
        (InvalidInput("no such role", code="unknown_role"), 404, "unkey/data/role_not_found"),
        (QuerySyntaxError("bad", position=3), 400, "user/bad_request/permissions_query_syntax_error"),
        (Conflict("exists", code="identity_exists"), 409, "unkey/data/identity_already_exists"),
        (Conflict("unlimited", code="credits_unlimited"), 400, "unkey/application/invalid_input"),
        (Conflict("rerolled", code="key_rotated"), 412, "unkey/application/precondition_failed"),
        (StorageError("down"), 503, "unkey/application/service_unavailable"),
        (RuntimeError("a fault"), 500, "unkey/application/unexpected_error"),
    ],
)
def test_errors_take_unkeys_status_and_type(error: Exception, status: int, kind: str) -> None:
    answered, body = error_body(error, "req_1", "unkey/data/api_not_found")
    assert answered == status
    assert body["meta"] == {"requestId": "req_1"}
    assert (body["error"]["status"], body["error"]["type"]) == (status, "https://unkey.com/docs/errors/" + kind)
    assert ("errors" in body["error"]) is (status == 400)
    if status == 500:
        assert "a fault" not in body["error"]["detail"]


def test_a_field_is_located_by_its_unkey_name() -> None:
    _, body = error_body(InvalidInput("bad", field="/keys/2/owner_id"), "req_1")
    assert body["error"]["errors"] == [{"location": "body.keys[2].externalId", "message": "bad"}]
