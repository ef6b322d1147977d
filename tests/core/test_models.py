"""Records: expiry, and the one canonical serialisation of audit entries that A2's hash chain will cover."""

from __future__ import annotations

import json

from keystile.core.models import AuditEntry, Key


def test_a_key_expires_at_its_expiry_instant() -> None:
    key = Key("key_1", "api_1", b"\0" * 32, "ks_abcd", 0, 0, expires_at=1000)
    assert not key.is_expired(999)
    assert key.is_expired(1000)
    assert not Key("key_2", "api_1", b"\1" * 32, "ks_abcd", 0, 0).is_expired(10**15)


def entry(**changes: object) -> AuditEntry:
    return AuditEntry("aud_1", 1_800_000_000_000, "rk_1", "key.create", "key_1", "127.0.0.1", None, changes, 7)


def test_the_canonical_form_is_compact_json_with_sorted_keys() -> None:
    text = entry(b=1, a="x").canonical()

    assert text == (
        b'{"action":"key.create","actor":"rk_1","changes":{"a":"x","b":1},"id":"aud_1","ip":"127.0.0.1",'
        b'"seq":7,"target":"key_1","ts":1800000000000,"user_agent":null}'
    )


def test_the_canonical_form_does_not_depend_on_the_order_of_changes() -> None:
    assert entry(a=1, b={"y": 2, "x": 1}).canonical() == entry(b={"x": 1, "y": 2}, a=1).canonical()


def test_the_canonical_form_is_utf8_without_escapes() -> None:
    text = entry(name="Zoë 🔑").canonical()
    assert "Zoë 🔑".encode() in text
    assert json.loads(text)["changes"] == {"name": "Zoë 🔑"}
