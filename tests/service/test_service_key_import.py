"""Import of existing keys (SPEC R4, K2, K3, A1) through the service, on every backend: plain keys of any format
and digests (hex or base64) that verify, idempotent re-runs, all-or-nothing batches naming the bad index, keys of
another API refused, one audit entry with counts and no key."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import TYPE_CHECKING

import pytest

from keystile.core import keys as keyformat
from keystile.core.commands import ImportedKey, KeyHash, NewApi, NewKey
from keystile.core.models import AuditFilter
from keystile.core.verify import Code
from keystile.errors import Conflict, InvalidInput, NotFound
from keystile.service import Keystile

if TYPE_CHECKING:
    from tests.service.conftest import Admin

KONG = ["a1b2c3d4e5f60718293a4b5c6d7e8f90", "sk_live_xyz1234567890abcdef", "kong-key-0001-abcdefghijkl"]


def hex_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def b64_of(key: str) -> str:
    return base64.b64encode(hashlib.sha256(key.encode()).digest()).decode()


def plain(key: str, **fields: object) -> ImportedKey:
    return ImportedKey(spec=NewKey(**fields), key=key)  # type: ignore[arg-type]


def by_hex(key: str) -> ImportedKey:
    return ImportedKey(hash=KeyHash(hex_of(key)))


def by_b64(key: str) -> ImportedKey:
    return ImportedKey(hash=KeyHash(b64_of(key), "sha256_base64"))


async def test_plain_keys_and_digests_import_and_verify(ks: Keystile, admin: Admin) -> None:
    api = await admin.api()
    entries = [
        plain(KONG[0], name="kong one", owner_id="alice", permissions=["docs.read"]),
        by_hex(KONG[1]),
        by_b64(KONG[2]),
    ]

    result = await ks.imports.import_keys(admin.actor, api.id, entries)

    assert (result.imported, result.skipped) == (3, 0)
    assert [(item.index, item.status) for item in result.items] == [(0, "imported"), (1, "imported"), (2, "imported")]
    for key in KONG:
        verified = await ks.ctx.verifier.verify(key, api_id=api.id)
        assert verified.code == Code.VALID
    first = await ks.storage.get_key(result.items[0].id)
    assert first is not None
    assert (first.name, first.owner_id, first.permissions, first.start) == ("kong one", "alice", ("docs.read",), "a1b2")
    hashed = await ks.storage.get_key(result.items[1].id)
    assert hashed is not None
    assert hashed.start == "", "a digest shows nothing of its key"


async def test_an_import_run_again_skips_every_key_and_changes_nothing(ks: Keystile, admin: Admin) -> None:
    api = await admin.api()
    entries = [plain(KONG[0], name="original"), by_hex(KONG[1]), by_b64(KONG[2])]
    first = await ks.imports.import_keys(admin.actor, api.id, entries)

    again = await ks.imports.import_keys(admin.actor, api.id, [plain(KONG[0], name="changed"), *entries[1:]])

    assert (again.imported, again.skipped) == (0, 3)
    assert [item.id for item in again.items] == [item.id for item in first.items], "the keys that hold them"
    assert {item.status for item in again.items} == {"skipped"}
    kept = await ks.storage.get_key(first.items[0].id)
    assert kept is not None
    assert kept.name == "original", "never overwritten"
    assert await ks.storage.count_keys(api.id) == 3


async def test_hex_and_base64_digests_of_one_key_are_the_same_key(ks: Keystile, admin: Admin) -> None:
    api = await admin.api()
    urlsafe_unpadded = b64_of(KONG[1]).replace("+", "-").replace("/", "_").rstrip("=")
    entries = [
        by_hex(KONG[1]),
        by_b64(KONG[1]),
        plain(KONG[1]),
        ImportedKey(hash=KeyHash(hex_of(KONG[1]).upper())),
        ImportedKey(hash=KeyHash(urlsafe_unpadded, "sha256_base64")),
    ]

    result = await ks.imports.import_keys(admin.actor, api.id, entries)

    assert (result.imported, result.skipped) == (1, 4)
    assert {item.id for item in result.items} == {result.items[0].id}


@pytest.mark.parametrize(
    ("digest", "variant"),
    [
        ("zz" * 32, "sha256_hex"),  # not hex
        ("ab" * 31, "sha256_hex"),  # 31 bytes
        ("ab" * 33, "sha256_hex"),  # 33 bytes
        (base64.b64encode(bytes(31)).decode(), "sha256_base64"),  # wrong length
        ("not base64 at all!", "sha256_base64"),
        (hex_of("x"), "md5"),
    ],
)
async def test_a_bad_digest_fails_the_whole_batch_naming_its_index(
    ks: Keystile, admin: Admin, digest: str, variant: str
) -> None:
    api = await admin.api()
    entries = [by_hex(f"key-number-{i:04d}-abcdef") for i in range(30)]
    entries[17] = ImportedKey(hash=KeyHash(digest, variant))  # type: ignore[arg-type]

    with pytest.raises(InvalidInput) as caught:
        await ks.imports.import_keys(admin.actor, api.id, entries)

    assert caught.value.code == "invalid_hash"
    assert caught.value.extra["index"] == 17
    assert caught.value.extra["field"] == "/keys/17/hash"
    assert digest not in caught.value.detail, "the value is not repeated"
    assert await ks.storage.count_keys(api.id) == 0, "all or nothing"


async def test_an_invalid_field_or_an_entry_without_key_fails_the_batch_by_index(ks: Keystile, admin: Admin) -> None:
    api = await admin.api()
    cases: list[tuple[ImportedKey, str, str]] = [
        (plain("kong-key-bad-perm-0001", permissions=["bad slug!"]), "/keys/2", "invalid_permission"),
        (plain("kong-key-role-0000001", roles=["missing"]), "/keys/2/roles", "unknown_role"),
        (ImportedKey(), "/keys/2/key", "key_or_hash"),
        (ImportedKey(key="kong-key-both-00000001", hash=KeyHash(hex_of("x"))), "/keys/2/key", "key_or_hash"),
        (plain(" padded-key-000000001"), "/keys/2/key", "invalid_key"),
        (plain("x" * 513), "/keys/2/key", "invalid_key"),
        (plain(keyformat.generate("ks_root")), "/keys/2/key", "reserved_prefix"),
    ]
    for bad, field, code in cases:
        with pytest.raises(InvalidInput) as caught:
            await ks.imports.import_keys(admin.actor, api.id, [by_hex("one-key-00000001"), plain(KONG[0]), bad])
        assert (caught.value.extra.get("index"), caught.value.extra.get("field")) == (2, field), code
        assert caught.value.code == code
        assert "kong-key" not in caught.value.detail
        assert "padded" not in caught.value.detail
    assert await ks.storage.count_keys(api.id) == 0


async def test_a_key_held_by_another_api_is_a_conflict_and_imports_nothing(ks: Keystile, admin: Admin) -> None:
    first, second = await admin.api(), await admin.api()
    await ks.imports.import_keys(admin.actor, first.id, [plain(KONG[0])])
    _created, secret = await ks.keys.create(admin.actor, first.id, NewKey())

    for entry in (plain(KONG[0]), by_b64(KONG[0]), by_hex(secret)):
        with pytest.raises(Conflict) as caught:
            await ks.imports.import_keys(admin.actor, second.id, [by_hex(KONG[1]), entry])
        assert caught.value.code == "key_in_other_api"
        assert caught.value.extra["index"] == 1
        assert first.id not in caught.value.detail
    assert await ks.storage.count_keys(second.id) == 0
    assert (await ks.ctx.verifier.verify(secret, api_id=first.id)).code == Code.VALID


async def test_a_key_in_keystile_shape_with_a_bad_checksum_imported_by_digest_verifies(
    ks: Keystile, admin: Admin
) -> None:
    api = await admin.api(NewApi(name="migrated", prefix="acme"))
    real = keyformat.generate("acme")
    foreign = real[:-1] + ("0" if real[-1] != "0" else "1")  # the shape, not the checksum
    assert (await ks.ctx.verifier.verify(foreign)).code == Code.NOT_FOUND

    await ks.imports.import_keys(admin.actor, api.id, [by_hex(foreign)])

    assert (await ks.ctx.verifier.verify(foreign, api_id=api.id)).code == Code.VALID
    other = keyformat.generate("zzz")
    assert (await ks.ctx.verifier.verify(other[:-1] + "!")).code == Code.NOT_FOUND


async def test_a_plain_key_with_a_bad_checksum_imports_under_its_own_prefix_only(ks: Keystile, admin: Admin) -> None:
    api = await admin.api(NewApi(name="migrated", prefix="acme"))
    real = keyformat.generate("acme")
    foreign = real[:-1] + ("0" if real[-1] != "0" else "1")
    elsewhere = keyformat.generate("beta")
    elsewhere = elsewhere[:-1] + ("0" if elsewhere[-1] != "0" else "1")

    with pytest.raises(InvalidInput) as caught:
        await ks.imports.import_keys(admin.actor, api.id, [plain(elsewhere)])
    assert caught.value.code == "checksum_mismatch"

    result = await ks.imports.import_keys(admin.actor, api.id, [plain(foreign)])
    key = await ks.storage.get_key(result.items[0].id)
    assert key is not None
    assert key.start == foreign[:9]
    assert (await ks.ctx.verifier.verify(foreign)).code == Code.VALID


async def test_an_imported_key_asked_for_before_verifies_at_once(ks: Keystile, admin: Admin) -> None:
    api = await admin.api()
    assert (await ks.ctx.verifier.verify(KONG[2])).code == Code.NOT_FOUND  # now remembered as unknown
    await ks.imports.import_keys(admin.actor, api.id, [by_b64(KONG[2])])
    assert (await ks.ctx.verifier.verify(KONG[2])).code == Code.VALID


async def test_a_dry_run_checks_everything_and_writes_nothing(ks: Keystile, admin: Admin) -> None:
    first, second = await admin.api(), await admin.api()
    await ks.imports.import_keys(admin.actor, first.id, [plain(KONG[0])])
    audited = len(await admin.audit())

    result = await ks.imports.import_keys(admin.actor, first.id, [plain(KONG[0]), by_hex(KONG[1])], dry_run=True)
    assert (result.imported, result.skipped) == (1, 1)
    with pytest.raises(Conflict):
        await ks.imports.import_keys(admin.actor, second.id, [plain(KONG[0])], dry_run=True)

    assert await ks.storage.count_keys(first.id) == 1
    assert len(await admin.audit()) == audited


async def test_one_audit_entry_per_batch_with_counts_and_no_key(ks: Keystile, admin: Admin) -> None:
    api = await admin.api()
    await ks.imports.import_keys(admin.actor, api.id, [plain(KONG[0]), by_hex(KONG[1])])
    await ks.imports.import_keys(admin.actor, api.id, [plain(KONG[0]), by_b64(KONG[2])])

    entries = await admin.audit(AuditFilter(action="key.import"))

    assert [(e.target, e.actor, e.changes) for e in entries] == [
        (api.id, admin.actor.id, {"imported": 2, "skipped": 0, "by_digest": 1}),
        (api.id, admin.actor.id, {"imported": 1, "skipped": 1, "by_digest": 1}),
    ]
    text = json.dumps([e.changes for e in entries])
    for key in KONG:
        assert key not in text
        assert hex_of(key) not in text
        assert b64_of(key) not in text


async def test_a_root_key_scoped_to_another_api_does_not_find_the_api(ks: Keystile, admin: Admin) -> None:
    api, other = await admin.api(), await admin.api()
    scoped = await admin.actor_with(f"api.{other.id}.keys.write")
    with pytest.raises(NotFound):
        await ks.imports.import_keys(scoped, api.id, [plain(KONG[0])])
    result = await ks.imports.import_keys(scoped, other.id, [plain(KONG[0])])
    assert result.imported == 1


async def test_a_batch_holds_one_to_a_thousand_keys(ks: Keystile, admin: Admin) -> None:
    api = await admin.api()
    for size in (0, 1001):
        with pytest.raises(InvalidInput):
            await ks.imports.import_keys(admin.actor, api.id, [by_hex(f"k{i}") for i in range(size)])
    result = await ks.imports.import_keys(admin.actor, api.id, [by_hex(f"key-{i:06d}") for i in range(1000)])
    assert result.imported == 1000
