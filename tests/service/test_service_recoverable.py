"""Recoverable keys through the services (SPEC K3), on every backend: sealed with the key, read back equal,
audited, refused with clear errors, and still readable after a master key rotation that leaves the old master
key opening nothing."""

from __future__ import annotations

import hashlib
import logging
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from tests.conftest import MASTER_KEY

from keystile.config import Settings
from keystile.core.clock import ManualClock
from keystile.core.commands import ImportedKey, KeyHash, NewApi, NewKey
from keystile.core.models import AuditFilter
from keystile.core.verify import KeyCheck
from keystile.errors import Conflict, Forbidden, InvalidInput, MasterKeyUnavailable, NotFound
from keystile.service import CLI_ACTOR, Keystile, sealing
from keystile.service.vault import MasterKeys
from keystile.storage import SqlStorage

if TYPE_CHECKING:
    from tests.service.conftest import Admin


def services(storage: SqlStorage, clock: ManualClock, *masters: bytes) -> Keystile:
    """Another process's services on the same database, holding ``masters`` (the first current)."""
    settings = Settings(database_url="memory://")
    ks = Keystile.create(storage, settings, clock)
    ks.vault.masters = MasterKeys.of(*masters)
    return ks


async def recoverable_api(admin: Admin) -> str:
    return (await admin.api(NewApi(name="vault", recoverable=True))).id


async def test_keys_of_a_recoverable_api_read_back_as_created_single_bulk_and_rerolled(
    ks: Keystile, admin: Admin
) -> None:
    api_id = await recoverable_api(admin)
    one = await ks.keys.create(admin.actor, api_id, NewKey(name="one"))
    many = await ks.keys.create_many(admin.actor, api_id, [NewKey(), NewKey(name="two")])
    rerolled = await ks.keys.reroll(admin.actor, one[0].id)

    for key, plain in [one, *many, rerolled]:
        shown, read = await ks.keys.reveal(admin.actor, key.id)
        assert (shown.id, read) == (key.id, plain)


async def test_reading_a_key_back_is_audited_without_the_key(ks: Keystile, admin: Admin) -> None:
    api_id = await recoverable_api(admin)
    key, plain = await ks.keys.create(admin.actor, api_id, NewKey())

    await ks.keys.reveal(admin.actor, key.id)

    [entry] = await admin.audit(AuditFilter(action="key.decrypt"))
    assert (entry.actor, entry.target, entry.changes) == (admin.actor.id, key.id, {"start": key.start})
    [created] = await admin.audit(AuditFilter(action="key.create"))
    assert created.changes["recoverable"] is True
    assert plain not in repr(await admin.audit())


async def test_a_key_may_opt_out_but_not_in(ks: Keystile, admin: Admin) -> None:
    vault = await recoverable_api(admin)
    plain_api = (await admin.api()).id
    opted_out, _ = await ks.keys.create(admin.actor, vault, NewKey(recoverable=False))
    opted_in, plain = await ks.keys.create(admin.actor, vault, NewKey(recoverable=True))

    with pytest.raises(Conflict) as refused:
        await ks.keys.reveal(admin.actor, opted_out.id)
    assert refused.value.code == "not_recoverable"
    assert (await ks.keys.reveal(admin.actor, opted_in.id))[1] == plain
    with pytest.raises(InvalidInput) as bad:
        await ks.keys.create(admin.actor, plain_api, NewKey(recoverable=True))
    assert (bad.value.code, bad.value.extra["field"]) == ("api_not_recoverable", "/recoverable")
    with pytest.raises(InvalidInput) as bad_bulk:
        await ks.keys.create_many(admin.actor, plain_api, [NewKey(), NewKey(recoverable=True)])
    assert bad_bulk.value.extra == {"field": "/keys/1/recoverable", "index": 1}
    assert await ks.storage.count_keys(plain_api) == 0


async def test_keys_imported_in_plain_text_into_a_recoverable_api_read_back_and_digests_cannot(
    ks: Keystile, admin: Admin
) -> None:
    api_id = await recoverable_api(admin)
    kong, digested = "kong-" + secrets.token_hex(16), "legacy-" + secrets.token_hex(16)
    entries = [ImportedKey(key=kong), ImportedKey(hash=KeyHash(hashlib.sha256(digested.encode()).hexdigest()))]

    result = await ks.imports.import_keys(admin.actor, api_id, entries)

    plain_id, digest_id = (item.id for item in result.items)
    assert (await ks.keys.reveal(admin.actor, plain_id))[1] == kong
    with pytest.raises(Conflict) as refused:
        await ks.keys.reveal(admin.actor, digest_id)
    assert refused.value.code == "not_recoverable"
    [entry] = await admin.audit(AuditFilter(action="key.import"))
    assert entry.changes["recoverable"] == 1
    assert kong not in repr(await admin.audit())


async def test_a_key_of_an_api_that_is_not_recoverable_is_a_conflict(ks: Keystile, admin: Admin) -> None:
    key, _ = await ks.keys.create(admin.actor, (await admin.api()).id, NewKey())

    with pytest.raises(Conflict) as refused:
        await ks.keys.reveal(admin.actor, key.id)
    assert refused.value.code == "not_recoverable"
    assert await admin.audit(AuditFilter(action="key.decrypt")) == []


async def test_reading_back_needs_keys_decrypt_for_the_keys_api(ks: Keystile, admin: Admin) -> None:
    api_id = await recoverable_api(admin)
    other_id = await recoverable_api(admin)
    key, plain = await ks.keys.create(admin.actor, api_id, NewKey())

    reader = await admin.actor_with("keys.read", "keys.write")
    with pytest.raises(Forbidden):
        await ks.keys.reveal(reader, key.id)
    elsewhere = await admin.actor_with(f"api.{other_id}.keys.decrypt")
    with pytest.raises(NotFound):
        await ks.keys.reveal(elsewhere, key.id)
    scoped = await admin.actor_with(f"api.{api_id}.keys.decrypt")
    assert (await ks.keys.reveal(scoped, key.id))[1] == plain


async def test_a_ciphertext_copied_to_another_keys_row_does_not_open(
    ks: Keystile, admin: Admin, storage: SqlStorage
) -> None:
    api_id = await recoverable_api(admin)
    (first, _), (second, second_plain) = await ks.keys.create_many(admin.actor, api_id, [NewKey(), NewKey()])

    await storage.driver.execute(
        """UPDATE key_secrets SET nonce = (SELECT nonce FROM key_secrets WHERE key_id = $1),
                  ciphertext = (SELECT ciphertext FROM key_secrets WHERE key_id = $1) WHERE key_id = $2""",
        first.id,
        second.id,
    )

    with pytest.raises(Conflict) as refused:
        await ks.keys.reveal(admin.actor, second.id)
    assert refused.value.code == "key_secret_unreadable"
    assert second_plain not in refused.value.detail


async def test_deleting_a_key_deletes_its_secret(ks: Keystile, admin: Admin, storage: SqlStorage) -> None:
    key, _ = await ks.keys.create(admin.actor, await recoverable_api(admin), NewKey())
    assert await storage.get_key_secret(key.id) is not None

    await ks.keys.delete(admin.actor, key.id)

    assert await storage.get_key_secret(key.id) is None


async def test_after_a_rotation_every_key_reads_back_and_the_old_master_key_opens_no_data_key(
    ks: Keystile, admin: Admin, storage: SqlStorage, clock: ManualClock
) -> None:
    api_id = await recoverable_api(admin)
    created = [await ks.keys.create(admin.actor, api_id, NewKey()) for _ in range(3)]
    # A second process makes a data key of its own (a process seals under the one it found or made).
    second = services(storage, clock, MASTER_KEY)
    second.vault._sealer = await second.vault._new_data_key(*second.vault.masters.current())
    created.append(await second.keys.create(admin.actor, api_id, NewKey()))
    new_master = secrets.token_bytes(32)

    done = await ks.vault.rotate(CLI_ACTOR, new_master, batch=1)

    assert (done.rewrapped, done.already, done.unopened) == (2, 0, ())
    rows = await storage.driver.fetchall("SELECT id, master_id, wrapped FROM data_keys")
    assert {row["master_id"] for row in rows} == {sealing.master_key_id(new_master)}
    for row in rows:
        with pytest.raises(sealing.Unopenable):
            sealing.unwrap_data_key(MASTER_KEY, row["id"], bytes(row["wrapped"]))
    after = services(storage, clock, new_master)
    for key, plain in created:
        assert (await after.keys.reveal(admin.actor, key.id))[1] == plain
    [entry] = await admin.audit(AuditFilter(action="master_key.rotate"))
    assert entry.changes == {
        "master_key_id": [sealing.master_key_id(MASTER_KEY), sealing.master_key_id(new_master)],
        "rewrapped": 2,
        "already_rewrapped": 0,
        "unopened": 0,
    }
    again = await ks.vault.rotate(CLI_ACTOR, new_master)
    assert (again.rewrapped, again.already) == (0, 2)


async def test_the_previous_master_key_opens_what_it_wrapped_and_new_data_keys_use_the_current_one(
    ks: Keystile, admin: Admin, storage: SqlStorage, clock: ManualClock
) -> None:
    api_id = await recoverable_api(admin)
    old_key, old_plain = await ks.keys.create(admin.actor, api_id, NewKey())
    new_master = secrets.token_bytes(32)

    during = services(storage, clock, new_master, MASTER_KEY)
    assert (await during.keys.reveal(admin.actor, old_key.id))[1] == old_plain
    new_key, new_plain = await during.keys.create(admin.actor, api_id, NewKey())

    masters = {row["master_id"] for row in await storage.driver.fetchall("SELECT master_id FROM data_keys")}
    assert masters == {sealing.master_key_id(MASTER_KEY), sealing.master_key_id(new_master)}
    done = await during.vault.rotate(CLI_ACTOR, new_master)
    assert (done.rewrapped, done.already) == (1, 1)
    after = services(storage, clock, new_master)
    assert (await after.keys.reveal(admin.actor, old_key.id))[1] == old_plain
    assert (await after.keys.reveal(admin.actor, new_key.id))[1] == new_plain


async def test_data_keys_under_a_master_key_not_at_hand_are_left_and_reported(
    ks: Keystile, admin: Admin, storage: SqlStorage, clock: ManualClock
) -> None:
    await ks.keys.create(admin.actor, await recoverable_api(admin), NewKey())
    stranger = services(storage, clock, secrets.token_bytes(32))

    done = await stranger.vault.rotate(CLI_ACTOR, secrets.token_bytes(32))

    assert (done.rewrapped, done.unopened) == (0, (sealing.master_key_id(MASTER_KEY),))
    assert await storage.count_data_keys() == {sealing.master_key_id(MASTER_KEY): 1}


async def test_with_a_wrong_master_key_keys_verify_and_only_recoverable_keys_are_refused(
    ks: Keystile, admin: Admin, storage: SqlStorage, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    api_id = await recoverable_api(admin)
    key, plain = await ks.keys.create(admin.actor, api_id, NewKey())
    wrong = services(storage, clock, secrets.token_bytes(32))

    with caplog.at_level(logging.WARNING, logger="keystile.recovery"):
        assert await wrong.vault.check() is not None
        assert (await wrong.verification.verify(admin.actor.principal, KeyCheck(plain))).code == "VALID"
        for _ in range(2):
            with pytest.raises(MasterKeyUnavailable) as refused:
                await wrong.keys.reveal(admin.actor, key.id)
            assert "master key does not open" in refused.value.detail
            with pytest.raises(MasterKeyUnavailable):
                await wrong.keys.create(admin.actor, api_id, NewKey())
        plain_key, _ = await wrong.keys.create(admin.actor, api_id, NewKey(recoverable=False))

    assert len(caplog.records) == 1  # said once, with no key material
    assert MASTER_KEY.hex() not in caplog.text
    assert plain not in caplog.text
    assert await storage.count_data_keys() == {sealing.master_key_id(MASTER_KEY): 1}
    assert plain_key.api_id == api_id


async def test_without_a_master_key_recoverable_keys_are_refused_and_others_work(
    storage: SqlStorage, clock: ManualClock, tmp_path: Path, admin: Admin
) -> None:
    missing = Keystile.create(storage, Settings(database_url="memory://", master_key_file=tmp_path / "none"), clock)
    api_id = (await missing.apis.create(admin.actor, NewApi(name="vault", recoverable=True))).id

    with pytest.raises(MasterKeyUnavailable) as refused:
        await missing.keys.create(admin.actor, api_id, NewKey())
    assert f"no master key file at {tmp_path / 'none'}" in refused.value.detail
    key, _ = await missing.keys.create(admin.actor, api_id, NewKey(recoverable=False))
    assert key.api_id == api_id


async def test_a_server_reads_its_master_key_file_again_when_it_changes(
    ks: Keystile, admin: Admin, storage: SqlStorage, clock: ManualClock, tmp_path: Path
) -> None:
    api_id = await recoverable_api(admin)
    key, plain = await ks.keys.create(admin.actor, api_id, NewKey())
    path = tmp_path / "master.key"
    path.write_text(MASTER_KEY.hex())
    server = Keystile.create(storage, Settings(database_url="memory://", master_key_file=path), clock)
    new_master = secrets.token_bytes(32)
    await ks.vault.rotate(CLI_ACTOR, new_master)

    with pytest.raises(MasterKeyUnavailable):
        await server.keys.reveal(admin.actor, key.id)
    replacement = tmp_path / "new.key"
    replacement.write_text(sealing.new_master_key_text())
    replacement.write_text(new_master.hex() + "\n")
    replacement.replace(path)

    assert (await server.keys.reveal(admin.actor, key.id))[1] == plain
    assert server.vault.masters.current_id == sealing.master_key_id(new_master)
