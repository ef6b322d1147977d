"""Import of existing keys (SPEC R4): plain-text keys of any format, or their SHA-256 digests, into one API.

Plain text is hashed here and forgotten: only the digest and the key's ``start`` are stored (K3). A batch is all or
nothing: every entry is checked before anything is written, and an error names the entry by ``index`` and JSON
pointer. Imports are idempotent: a digest this API holds already is skipped (never duplicated or overwritten), so
a failed or interrupted import can be run again from any earlier point. A digest held by another API is a
conflict (a key belongs to one API, K2) and fails the batch.

Keys imported by digest may have any format, Keystile's own included, which Keystile cannot check; the API is
marked so that the verifier looks such strings up instead of refusing them on their checksum (K2).

A plain-text key imported into a recoverable API is also stored sealed, as a created one is (K3), so it can be read
back; a key given by its digest cannot be.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keystile.core import keys as keyformat
from keystile.core.commands import ImportedKey, NewKey
from keystile.core.ids import new_id
from keystile.core.models import Api, ImportItem, ImportResult, Key
from keystile.core.ports import Change
from keystile.errors import Conflict, InvalidInput
from keystile.service.apis import ApiService
from keystile.service.authz import Actor
from keystile.service.context import Context, api_change, key_change
from keystile.service.credits import credits_from_spec
from keystile.service.keys import KeyService
from keystile.service.vault import Sealer, Vault

_BARE = NewKey()
MAX_IMPORT = 1000
"""Entries in one call at most, as for bulk creation (the CLI streams larger files in batches of this size)."""


def _refused(index: int, member: str, detail: str, code: str) -> InvalidInput:
    return InvalidInput(f"keys[{index}].{member}: {detail}", code=code, field=f"/keys/{index}/{member}", index=index)


def _plain_key(index: int, key: str, api: Api) -> tuple[bytes, str, bool]:
    """The digest and ``start`` of a plain-text key, and whether the API must look its checksum past (K2)."""
    if not key or len(key) > keyformat.MAX_KEY_LENGTH:
        raise _refused(index, "key", f"a key has 1 to {keyformat.MAX_KEY_LENGTH} characters", "invalid_key")
    if key != key.strip() or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
        # Such a key could not travel in a header (which is trimmed), so it could never verify.
        raise _refused(index, "key", "a key has no spaces at its ends and no control characters", "invalid_key")
    parsed = keyformat.parse(key)
    past_checksum = False
    if parsed is not None:
        if parsed.prefix in keyformat.RESERVED_PREFIXES:
            raise _refused(index, "key", "the prefix ks_root is reserved for root keys", "reserved_prefix")
        if not keyformat.has_valid_checksum(parsed):
            if parsed.prefix != api.prefix:
                # Refused at verification on its checksum: only its own API's prefix is looked past.
                raise _refused(
                    index,
                    "key",
                    f"the key has Keystile's format but its checksum does not match; keys like it can be imported "
                    f"only into an API whose prefix is {parsed.prefix!r}",
                    "checksum_mismatch",
                )
            past_checksum = True
    return keyformat.digest(key), keyformat.start_of(key), past_checksum


def _digest_of(index: int, entry: ImportedKey, api: Api) -> tuple[bytes, str, bool]:
    """``(digest, start, by digest or past its checksum)`` of one entry; raises InvalidInput naming it."""
    if (entry.key is None) == (entry.hash is None):
        raise _refused(index, "key", "give the key (plain text) or its hash, not both and not neither", "key_or_hash")
    if entry.key is not None:
        return _plain_key(index, entry.key, api)
    assert entry.hash is not None
    try:
        digest = keyformat.digest_from_export(entry.hash.value, entry.hash.variant)
    except ValueError as exc:
        raise _refused(index, "hash", str(exc), "invalid_hash") from None
    return digest, "", True


class ImportService:
    """``POST /v1/apis/{api_id}/keys/import`` and ``keystile keys import``."""

    def __init__(self, ctx: Context, apis: ApiService, keys: KeyService, vault: Vault) -> None:
        self._ctx = ctx
        self._apis = apis
        self._keys = keys
        self._vault = vault

    async def import_keys(
        self, actor: Actor, api_id: str, entries: Sequence[ImportedKey], *, dry_run: bool = False
    ) -> ImportResult:
        """Import up to :data:`MAX_IMPORT` keys into an API, all or nothing; needs ``keys.write`` for it.

        With ``dry_run`` everything is checked (against the database too) and nothing is written or audited.
        Raises :class:`InvalidInput` naming the entry (``index``, ``field``) for an invalid one, and
        :class:`Conflict` (``key_in_other_api``) for a key that another API holds already.
        """
        if not 1 <= len(entries) <= MAX_IMPORT:
            raise InvalidInput(f"an import takes 1 to {MAX_IMPORT} keys a call", code="invalid_request", field="/keys")
        sealer: Sealer | None = None
        # As for created keys, the data key is fetched before the keys' transaction begins.
        plain = not dry_run and any(entry.key is not None for entry in entries)
        if plain and (await self._apis.get(actor.principal, api_id, "keys.write")).recoverable:
            sealer = await self._vault.sealer()
        async with self._ctx.storage.transaction() as tx:
            api = await self._apis.get(actor.principal, api_id, "keys.write")
            now = self._ctx.now()
            found = [_digest_of(index, entry, api) for index, entry in enumerate(entries)]
            role_names = {name for entry in entries for name in entry.spec.roles}
            roles_known = frozenset([name for name in role_names if await tx.get_role(api_id, name) is not None])
            fields: list[dict[str, Any]] = []
            bare: dict[str, Any] | None = None
            for index, entry in enumerate(entries):
                if entry.spec == _BARE:
                    # Most entries of a large import carry nothing but the key: check that shape once.
                    bare = bare or await self._keys.checked(tx, api_id, _BARE, "", roles_known)
                    fields.append(bare)
                    continue
                try:
                    fields.append(await self._keys.checked(tx, api_id, entry.spec, f"/keys/{index}", roles_known))
                except InvalidInput as exc:
                    exc.extra["index"] = index
                    exc.extra.setdefault("field", f"/keys/{index}")
                    raise
            existing = await tx.find_digests(list({digest for digest, _, _ in found}))
            items: list[ImportItem] = []
            created: list[Key] = []
            sealed: list[tuple[Key, str]] = []
            first: dict[bytes, str] = {}
            past_checksum = False
            by_digest = 0
            for index, (entry, (digest, start, unseen), given) in enumerate(zip(entries, found, fields, strict=True)):
                by_digest += entry.hash is not None
                held = existing.get(digest)
                if held is not None and held[1] != api_id:
                    # A key belongs to one API (K2); which one is not said: the caller may not see it.
                    raise Conflict(
                        f"keys[{index}]: another API holds this key already; a key can belong to one API only",
                        code="key_in_other_api",
                        index=index,
                        field=f"/keys/{index}/{'hash' if entry.hash is not None else 'key'}",
                    )
                if held is not None or digest in first:  # in this API already, or earlier in this batch
                    items.append(ImportItem(index, held[0] if held is not None else first[digest], "skipped"))
                    continue
                key = Key(
                    id=new_id("key", now),
                    api_id=api_id,
                    digest=digest,
                    start=start,
                    created_at=now,
                    updated_at=now,
                    credits=credits_from_spec(entry.spec.credits, None, now),
                    **given,
                )
                first[digest] = key.id
                created.append(key)
                if sealer is not None and entry.key is not None:
                    sealed.append((key, entry.key))
                items.append(ImportItem(index, key.id, "imported"))
                past_checksum = past_checksum or unseen
            result = ImportResult(len(created), len(items) - len(created), tuple(items), by_digest)
            if dry_run or not created:
                return result
            await tx.import_keys(created)
            if sealer is not None and sealed:
                await tx.insert_key_secrets([sealer.seal(key, plain) for key, plain in sealed])
            newly_marked = past_checksum and await tx.mark_imported_by_digest(api_id)
            changes = {"imported": result.imported, "skipped": result.skipped, "by_digest": by_digest}
            if sealed:
                changes["recoverable"] = len(sealed)
            await self._ctx.audit(tx, actor, "key.import", api_id, changes, now)
        # As for created keys: a digest asked for before the import may be remembered as unknown.
        published: list[Change] = [key_change(key.digest) for key in created]
        if newly_marked:
            published.append(api_change(api_id))
        await self._ctx.publish(published)
        return result
