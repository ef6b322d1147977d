"""The audit hash chain's format and its checks (SPEC A2), on plain entries."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest

from keystile.core.auditchain import GENESIS, Anchor, ChainCheck, chain_hash, check_anchor, check_head
from keystile.core.models import AuditEntry


def _chain(n: int) -> list[AuditEntry]:
    entries = []
    prev = GENESIS
    for seq in range(1, n + 1):
        entry = AuditEntry(f"aud_{seq}", 1_800_000_000_000 + seq, "cli", "api.create", f"api_{seq}", seq=seq)
        entry = replace(entry, prev_hash=prev, hash=chain_hash(prev, entry))
        entries.append(entry)
        prev = entry.hash or ""
    return entries


def test_the_first_hash_is_sha256_of_32_zero_bytes_and_the_canonical_entry() -> None:
    entry = AuditEntry("aud_1", 1_800_000_000_000, "cli", "api.create", "api_1", None, None, {"name": "Zoë"}, 1)
    canonical = (
        '{"action":"api.create","actor":"cli","changes":{"name":"Zoë"},"id":"aud_1","ip":null,"seq":1,'
        '"target":"api_1","ts":1800000000000,"user_agent":null}'
    ).encode()

    assert chain_hash(GENESIS, entry) == hashlib.sha256(b"\0" * 32 + canonical).hexdigest()


def test_each_hash_covers_the_one_before() -> None:
    first, second = _chain(2)
    assert second.hash == hashlib.sha256(bytes.fromhex(first.hash or "") + second.canonical()).hexdigest()


def test_a_sound_chain_passes_entry_by_entry() -> None:
    check = ChainCheck()
    assert [check.feed(entry) for entry in _chain(5)] == [None] * 5
    assert (check.checked, check.expected) == (5, 6)


@pytest.mark.parametrize(
    ("tamper", "kind", "seq"),
    [
        (lambda c: [c[0], replace(c[1], target="api_x"), *c[2:]], "changed", 2),
        (lambda c: [c[0], replace(c[1], prev_hash="zz"), *c[2:]], "changed", 2),
        (lambda c: [c[0], *c[2:]], "gap", 3),
        (lambda c: c[1:], "gap", 2),
        (lambda c: [c[0], replace(c[2], seq=2), replace(c[1], seq=3), c[3]], "changed", 2),
    ],
)
def test_the_first_break_is_named(tamper: object, kind: str, seq: int) -> None:
    check = ChainCheck()
    found = None
    for entry in tamper(_chain(4)):  # type: ignore[operator]
        found = check.feed(entry)
        if found:
            break
    assert found is not None
    assert (found.kind, found.seq) == (kind, seq)


def test_a_link_to_another_entry_is_a_broken_link() -> None:
    chain = _chain(3)
    other = replace(chain[1], target="api_other")
    other = replace(other, hash=chain_hash(other.prev_hash or "", other))
    check = ChainCheck()
    assert check.feed(chain[0]) is None
    assert check.feed(other) is None
    found = check.feed(chain[2])
    assert found is not None
    assert (found.kind, found.seq, found.id) == ("broken_link", 3, "aud_3")


def test_a_walk_from_later_trusts_the_first_link() -> None:
    check = ChainCheck(start=3)
    assert [check.feed(entry) for entry in _chain(5)[2:]] == [None] * 3


def test_the_head_and_anchors() -> None:
    chain = _chain(3)
    assert check_head((3, chain[2].hash or ""), chain[2], 1) is None
    assert check_head((0, GENESIS), None, 1) is None
    cut = check_head((3, chain[2].hash or ""), chain[1], 1)
    assert cut is not None
    assert (cut.kind, cut.seq) == ("truncated", 3)
    replaced = check_head((3, "ab" * 32), chain[2], 1)
    assert replaced is not None
    assert replaced.kind == "head_differs"
    assert check_anchor(Anchor(3, chain[2].hash or ""), chain[2], 3) is None
    missing = check_anchor(Anchor(4, GENESIS), None, 3)
    assert missing is not None
    assert missing.kind == "head_missing"


def test_anchors_parse_from_what_the_head_command_prints() -> None:
    digest = "AB" * 32
    assert Anchor.parse(f"12:{digest}") == Anchor(12, digest.lower())
    assert str(Anchor(12, "ab" * 32)) == f"12:{'ab' * 32}"
    for text in ("12", f"0:{digest}", f"x:{digest}", "12:abc", f"١٢:{digest}", f"12:{'g' * 64}"):
        with pytest.raises(ValueError, match="SEQ:HASH"):
            Anchor.parse(text)


def test_the_text_around_seq_is_the_canonical_entry_cut_at_its_digits() -> None:
    # What the database completes with seq when it appends; "seq" and "target" inside changes or strings must not
    # confuse where the cut is.
    entry = AuditEntry(
        "aud_1", 1, "cli", "key.update", ',"seq":1,"target":"x"', "::1", "ua \u2028 ✓",
        {"seq": 0, "target": {"seq": None}, "z": ',"seq":'}, 4_000_000_000,
    )  # fmt: skip
    before, after = entry.canonical_around_seq()

    assert f"{before}4000000000{after}".encode() == entry.canonical()
    assert json.loads(f"{before}4000000000{after}")["seq"] == 4_000_000_000
