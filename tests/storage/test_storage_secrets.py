"""Contract: recoverable keys' sealed secrets and the wrapped data keys (SPEC K3), on every backend. The storage
holds bytes it cannot read; these tests check that it keeps them, ties them to their key and re-wraps safely."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from keystile.core.models import DataKey, KeySecret
from keystile.errors import KeystileError
from keystile.storage import SqlStorage

if TYPE_CHECKING:
    from tests.storage.conftest import Records


async def _data_key(storage: SqlStorage, data_key_id: str, master_id: str = "mk_a", at: int = 1) -> DataKey:
    data_key = DataKey(data_key_id, master_id, b"\x00wrapped" + data_key_id.encode(), at, at)
    async with storage.transaction() as tx:
        await tx.insert_data_key(data_key)
    return data_key


async def test_a_secret_round_trips_and_goes_with_its_key(storage: SqlStorage, records: Records) -> None:
    api = await records.insert_api()
    key, other = records.key(api.id), records.key(api.id)
    await records.insert_keys(key, other)
    await _data_key(storage, "dk_1")
    secret = KeySecret(key.id, "dk_1", b"\x01" * 12, b"\x00\xffciphertext")

    async with storage.transaction() as tx:
        await tx.insert_key_secrets([secret])

    assert await storage.get_key_secret(key.id) == secret
    assert await storage.get_key_secret(other.id) is None
    async with storage.transaction() as tx:
        assert await tx.delete_key(key.id)
    assert await storage.get_key_secret(key.id) is None


async def test_deleting_an_api_deletes_its_keys_secrets(storage: SqlStorage, records: Records) -> None:
    api = await records.insert_api()
    key = await records.insert_key(api.id)
    await _data_key(storage, "dk_1")
    async with storage.transaction() as tx:
        await tx.insert_key_secrets([KeySecret(key.id, "dk_1", b"n" * 12, b"c")])
        await tx.delete_api(api.id)

    assert await records.rows("key_secrets") == []
    assert len(await records.rows("data_keys")) == 1


async def test_a_secret_needs_its_key_and_data_key(storage: SqlStorage, records: Records) -> None:
    api = await records.insert_api()
    key = await records.insert_key(api.id)

    with pytest.raises(KeystileError):
        async with storage.transaction() as tx:
            await tx.insert_key_secrets([KeySecret(key.id, "dk_missing", b"n" * 12, b"c")])
    assert await storage.get_key_secret(key.id) is None


async def test_data_keys_are_counted_by_master_and_the_newest_is_found(storage: SqlStorage) -> None:
    assert await storage.count_data_keys() == {}
    await _data_key(storage, "dk_1", "mk_a")
    await _data_key(storage, "dk_2", "mk_b")
    newest = await _data_key(storage, "dk_3", "mk_a")

    assert await storage.count_data_keys() == {"mk_a": 2, "mk_b": 1}
    assert await storage.newest_data_key("mk_a") == newest
    assert await storage.newest_data_key("mk_c") is None
    assert await storage.get_data_key("dk_2") == DataKey("dk_2", "mk_b", b"\x00wrappeddk_2", 1, 1)


async def test_rewrapping_pages_through_what_is_not_yet_under_the_new_master_and_is_conditional(
    storage: SqlStorage,
) -> None:
    for n, master in enumerate(["mk_a", "mk_new", "mk_a", "mk_b"]):
        await _data_key(storage, f"dk_{n}", master)

    async with storage.transaction() as tx:
        first = await tx.data_keys_to_rewrap("mk_new", after="", limit=2)
        rest = await tx.data_keys_to_rewrap("mk_new", after=first[-1].id, limit=2)
    assert [row.id for row in first + rest] == ["dk_0", "dk_2", "dk_3"]

    new = DataKey("dk_0", "mk_new", b"rewrapped", 1, 5)
    async with storage.transaction() as tx:
        assert await tx.rewrap_data_key("dk_0", "mk_a", new)
        assert not await tx.rewrap_data_key("dk_3", "mk_a", DataKey("dk_3", "mk_new", b"x", 1, 5))
    assert await storage.get_data_key("dk_0") == new
    assert (await storage.get_data_key("dk_3")) == DataKey("dk_3", "mk_b", b"\x00wrappeddk_3", 1, 1)
    assert await storage.count_data_keys() == {"mk_a": 1, "mk_b": 1, "mk_new": 2}
