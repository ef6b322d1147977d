"""Rules across fields, for the OpenAPI document: what the services enforce between the fields of a struct."""

from __future__ import annotations

from typing import Any

from keystile.schemas.apis import ApiCreate
from keystile.schemas.keys import CreditsChange
from keystile.schemas.limits import RefillPatch, RefillSpec

RULES: dict[type, dict[str, Any]] = {
    # ApiService refuses it (invalid_rotation_policy): keys turn stale at max_key_age_days, then expire.
    ApiCreate: {
        "if": {"properties": {"expire_stale_after_days": {"type": "integer"}}, "required": ["expire_stale_after_days"]},
        "then": {"properties": {"max_key_age_days": {"type": "integer"}}, "required": ["max_key_age_days"]},
    },
    # credits_from_spec refuses it (invalid_refill).
    RefillSpec: {
        "if": {"properties": {"interval": {"const": "daily"}}},
        "then": {"properties": {"day": {"type": "null"}}},
    },
    RefillPatch: {
        "if": {"properties": {"interval": {"const": "daily"}}, "required": ["interval"]},
        "then": {"properties": {"day": {"type": "null"}}},
    },
    # KeyService.change_credits refuses it: only `set` takes null (unlimited).
    CreditsChange: {
        "if": {"properties": {"op": {"enum": ["add", "subtract"]}}},
        "then": {"properties": {"amount": {"type": "integer"}}},
    },
}
"""What the OpenAPI document adds to a struct's schema: rules between its fields that the services enforce."""
