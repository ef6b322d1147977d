"""Change payloads (SPEC V6): under PostgreSQL's 8000-byte NOTIFY limit, own messages skipped, junk ignored."""

from __future__ import annotations

from collections.abc import Sequence

from keystile.core.ports import Change
from keystile.notify._bus import MAX_PAYLOAD, NotifyingBus, decode, encode


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Change] = []

    def __call__(self, changes: Sequence[Change]) -> None:
        self.seen.extend(changes)


def test_a_big_batch_is_split_into_payloads_under_the_notify_limit() -> None:
    changes = [Change("key", f"{i:064x}") for i in range(1000)] + [Change("owner", "ü" * 50), Change("all")]
    payloads = encode("origin1", changes)
    assert len(payloads) > 1
    assert all(len(p.encode()) <= MAX_PAYLOAD < 8000 for p in payloads)
    decoded = [change for p in payloads for change in decode(p)[1]]
    assert decoded == changes
    assert {decode(p)[0] for p in payloads} == {"origin1"}


def test_a_change_too_big_for_one_payload_becomes_all() -> None:
    [payload] = encode("o", [Change("owner", "x" * 9000)])
    assert decode(payload)[1] == [Change("all")]


def test_a_bus_skips_its_own_messages_and_junk_but_applies_others() -> None:
    bus, other = NotifyingBus(), NotifyingBus()
    seen = Recorder()
    bus.subscribe(seen)
    [own] = encode(bus.origin, [Change("key", "aa")])
    [theirs] = encode(other.origin, [Change("api", "api_1"), Change("credits", "cr_1")])
    for payload in (own, theirs, "not json", '{"o": "x", "c": [["drop", "tables"]]}', b'{"o": 1}'):
        bus.received_payload(payload)
    assert seen.seen == [Change("api", "api_1"), Change("credits", "cr_1")]
    assert bus.received == 1
