"""What audit entries record of a record (SPEC A1) is the record as the API shows it: the snapshots the services
build from domain records (keystile.service.snapshots) equal the wire shapes, member for member and in the same
order, so entries written before and after the services stopped using the wire structs read (and hash) alike."""

from __future__ import annotations

import json
from typing import Any

import pytest

from keystile.core.models import Api, Credits, Identity, Key, RateLimit, Refill
from keystile.schemas import (
    ApiCreate,
    KeyCreate,
    api_out,
    identity_out,
    key_out,
    root_key_out,
    to_builtins,
)
from keystile.service.snapshots import api_snapshot, identity_snapshot, key_snapshot, root_key_snapshot

T0 = 1_800_000_000_123
LIMITS = (RateLimit("burst", 10, 1000), RateLimit("daily", 5000, 86_400_000, auto_apply=False))
BALANCES = [
    None,
    Credits("cr_1", 0),
    Credits("cr_2", 100, Refill(100, "daily")),
    Credits("cr_3", 7, Refill(50, "monthly", 31), refilled_at=T0),
]


# ``recoverable`` says how a new key is stored (SPEC K3), not a setting that its record shows.
KEY_SETTINGS = tuple(name for name in KeyCreate.__struct_fields__ if name != "recoverable")


def wire(value: Any, fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = to_builtins(value)
    return doc if fields is None else {name: doc[name] for name in fields}


def same(snapshot: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal, and equal as JSON text: the same members in the same order."""
    assert snapshot == expected
    assert json.dumps(snapshot) == json.dumps(expected)


@pytest.mark.parametrize("credits", BALANCES)
@pytest.mark.parametrize("expires_at", [None, T0 + 1, 253_402_300_799_999])
def test_a_key_snapshot_is_its_settings_as_the_api_shows_them(credits: Credits | None, expires_at: int | None) -> None:
    key = Key(
        id="key_1",
        api_id="api_1",
        digest=b"\x00" * 32,
        start="ks_3Fx9",
        created_at=T0,
        updated_at=T0 + 5,
        name="billing worker",
        owner_id="user_1",
        meta={"plan": "pro", "limits": {"seats": 5, "regions": ["eu", "us"]}, "city": "Zürich"},
        permissions=("docs.read", "docs.write"),
        roles=("reader",),
        expires_at=expires_at,
        enabled=False,
        revoked_at=T0 + 9,
        credits=credits,
        ratelimits=LIMITS,
        ip_allowlist=("10.0.0.0/8", "2001:db8::/32"),
        rotated_from="key_0",
    )

    same(key_snapshot(key), wire(key_out(key), KEY_SETTINGS))


def test_a_bare_key_snapshot_is_its_settings_as_the_api_shows_them() -> None:
    key = Key("key_2", "api_1", b"\x01" * 32, "ks_abcd", T0, T0)

    same(key_snapshot(key), wire(key_out(key), KEY_SETTINGS))


@pytest.mark.parametrize("policy", [(None, None), (90, None), (90, 7)])
def test_an_api_snapshot_is_its_settings_as_the_api_shows_them(policy: tuple[int | None, int | None]) -> None:
    api = Api(
        id="api_1",
        name="weather",
        prefix="wx_live",
        created_at=T0,
        updated_at=T0,
        default_ratelimits=LIMITS,
        max_key_age_days=policy[0],
        ip_allowlist=("10.0.0.0/8",),
        expire_stale_after_days=policy[1],
    )

    same(api_snapshot(api), wire(api_out(api), ApiCreate.__struct_fields__))


@pytest.mark.parametrize("credits", BALANCES)
def test_an_identity_snapshot_is_its_settings_as_the_api_shows_them(credits: Credits | None) -> None:
    identity = Identity(
        "idn_1", "acme", T0, T0, meta={"seats": 5, "tier": ["gold"]}, credits=credits, ratelimits=LIMITS
    )

    same(identity_snapshot(identity), wire(identity_out(identity), ("meta", "ratelimits", "credits")))


@pytest.mark.parametrize("times", [(None, None, None), (T0 + 1, T0 + 2, T0 + 3)])
def test_a_root_key_snapshot_is_the_root_key_as_the_api_lists_it(times: tuple[int | None, ...]) -> None:
    expires_at, revoked_at, last_used_at = times
    key = Key(
        id="rk_1",
        api_id="api_root",
        digest=b"\x02" * 32,
        start="ks_root_3Fx9",
        created_at=T0,
        updated_at=T0,
        name="deploy",
        permissions=("keys.write", "api.api_1.keys.read"),
        expires_at=expires_at,
        revoked_at=revoked_at,
        last_used_at=last_used_at,
    )

    same(root_key_snapshot(key), wire(root_key_out(key)))
