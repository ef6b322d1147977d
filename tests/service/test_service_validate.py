"""Untrusted input turned into values (service.validate): malformed input is InvalidInput, never a crash."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from keystile.core.commands import NewApi, NewKey
from keystile.core.timefmt import MAX_MS, MIN_MS
from keystile.errors import InvalidInput
from keystile.schemas import BulkKeyCreate, KeyCreate, api_update, decode, key_update
from keystile.service import Keystile
from keystile.service.validate import MAX_DEPTH, check_json, merge_patch, to_ms

if TYPE_CHECKING:
    from tests.service.conftest import Admin


def nested(depth: int) -> Any:
    """``{"a": {"a": ... "leaf"}}`` with ``depth`` objects."""
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_a_body_nested_deeper_than_the_parser_goes_is_invalid_input(depth: int) -> None:
    body = b'{"meta": ' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"

    with pytest.raises(InvalidInput) as caught:
        decode(body, KeyCreate)
    assert caught.value.code == "too_deeply_nested"


def test_check_json_points_at_the_member_that_nests_too_deep() -> None:
    check_json({"meta": nested(MAX_DEPTH - 1)}, "")

    with pytest.raises(InvalidInput) as caught:
        check_json({"meta": {"ok": [1, 2], "deep": nested(MAX_DEPTH)}}, "")

    assert caught.value.code == "too_deeply_nested"
    assert caught.value.extra["field"] == "/meta/deep" + "/a" * (MAX_DEPTH - 2)


def test_merge_patch_follows_rfc_7396() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}, "list": [1, 2]}
    patch = {"a": "z", "c": {"f": None}, "list": [3], "new": {"x": None, "y": 1}}

    assert merge_patch(target, patch) == {"a": "z", "c": {"d": "e"}, "list": [3], "new": {"y": 1}}
    assert merge_patch(target, {}) == target
    assert merge_patch({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}
    assert merge_patch({"a": {"b": 2}}, {"a": [1]}) == {"a": [1]}
    assert target == {"a": "b", "c": {"d": "e", "f": "g"}, "list": [1, 2]}, "the target is left alone"


async def test_a_key_whose_meta_nests_too_deep_is_refused(ks: Keystile, admin: Admin) -> None:
    api = await admin.api(NewApi(name="deep"))

    with pytest.raises(InvalidInput) as caught:
        await ks.keys.create(admin.actor, api.id, NewKey(meta=nested(MAX_DEPTH + 1)))
    assert (caught.value.code, caught.value.extra["field"]) == ("too_deeply_nested", "/meta" + "/a" * MAX_DEPTH)

    key, _ = await ks.keys.create(admin.actor, api.id, NewKey(meta=nested(MAX_DEPTH - 1)))
    assert (await ks.keys.get(admin.actor.principal, key.id)).meta == nested(MAX_DEPTH - 1)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 900])
async def test_a_patch_that_nests_too_deep_is_refused_before_it_is_merged(
    ks: Keystile, admin: Admin, depth: int
) -> None:
    # 900 levels is within what the JSON parser accepts, and beyond what a recursive merge survives.
    api = await admin.api(NewApi(name="deep"))
    key, _ = await ks.keys.create(admin.actor, api.id, NewKey(meta={"kept": True}))

    with pytest.raises(InvalidInput) as caught:
        await ks.keys.update(admin.actor, key.id, key_update({"meta": nested(depth)}))
    assert caught.value.code == "too_deeply_nested"
    with pytest.raises(InvalidInput) as caught:
        await ks.apis.update(admin.actor, api.id, api_update({"name": nested(depth)}))
    assert caught.value.code == "too_deeply_nested"

    assert (await ks.keys.get(admin.actor.principal, key.id)).meta == {"kept": True}


@given(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
    st.text(alphabet="0123456789", max_size=9),
)
@example(datetime(9999, 12, 31, 23, 59, 59), -60, "")
@example(datetime(1, 1, 1), 60, "")
@example(datetime(9999, 12, 31, 23, 59, 59), 0, "9999999")  # rounds up into year 10000
def test_a_body_time_is_kept_or_refused_as_invalid_input_naming_its_field(
    local: datetime, offset_minutes: int, digits: str
) -> None:
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    text = f"{local.year:04d}-{local:%m-%dT%H:%M:%S}{'.' + digits if digits else ''}{sign}{hours:02d}:{minutes:02d}"
    body = b'{"keys": [{}, {"expires_at": "%s"}]}' % text.encode()
    # The instant by integer arithmetic; msgspec rounds the fraction to microseconds, so it may be 1 ms later.
    whole = (local.replace(microsecond=0) - datetime(1, 1, 1)) // timedelta(milliseconds=1) + MIN_MS
    expected = whole - offset_minutes * 60_000 + (int(digits[:3].ljust(3, "0")) if digits else 0)
    try:
        spec = decode(body, BulkKeyCreate).keys[1]
        assert spec.expires_at is not None
        ms = to_ms(spec.expires_at, "/keys/1/expires_at")
    except InvalidInput as exc:
        # What the routes answer as a 400 problem naming the field.
        refused = exc
    else:
        assert MIN_MS <= ms <= MAX_MS
        assert ms - expected in (0, 1)
        return
    assert not MIN_MS <= expected <= MAX_MS - 1
    assert (refused.code, refused.extra["field"]) == ("invalid_request", "/keys/1/expires_at")
