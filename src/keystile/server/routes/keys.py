"""Keys (SPEC K3, K4, R1-R4, L3): create (single and bulk), import, list, show, update, revoke, delete, reroll,
credits, read a recoverable key back.

``POST /v1/keys/verify`` is served by :mod:`keystile.server.fastpath`; it is declared here for the router and
the OpenAPI document.
"""

from __future__ import annotations

from starlette.responses import Response

from keystile.core.models import KeyFilter
from keystile.operations import (
    CHANGE_CREDITS,
    CREATE_KEY,
    CREATE_KEYS_BULK,
    DELETE_KEY,
    GET_KEY,
    GET_KEY_PLAINTEXT,
    IMPORT_KEYS,
    LIST_KEYS,
    REROLL_KEY,
    REVOKE_KEY,
    UPDATE_KEY,
    VERIFY_KEY,
)
from keystile.schemas import (
    BulkKeyCreate,
    BulkKeysCreated,
    CreditsChange,
    KeyCreate,
    KeyImport,
    KeyPlaintext,
    Page,
    RerollSpec,
    import_result_out,
    imported_keys,
    key_created,
    key_update,
    key_view_out,
    new_key,
)
from keystile.server.routing import Call, Operation


async def create_key(call: Call) -> Response:
    spec = await call.body(KeyCreate)
    key, plain = await call.ks.keys.create(call.actor, call.path("api_id"), new_key(spec))
    return call.json(key_created(key, plain), 201)


async def create_keys_bulk(call: Call) -> Response:
    spec = await call.body(BulkKeyCreate)
    created = await call.ks.keys.create_many(call.actor, call.path("api_id"), [new_key(key) for key in spec.keys])
    return call.json(BulkKeysCreated([key_created(key, plain) for key, plain in created]), 201)


async def import_keys(call: Call) -> Response:
    body = await call.body(KeyImport)
    result = await call.ks.imports.import_keys(call.actor, call.path("api_id"), imported_keys(body))
    return call.json(import_result_out(result))


async def list_keys(call: Call) -> Response:
    params = call.params
    where = KeyFilter(
        owner_id=params.get("owner_id"),
        enabled=params.get("enabled"),
        expired=params.get("expired"),
        revoked=params.get("revoked"),
        search=params.get("q"),
    )
    page = await call.ks.keys.list(
        call.actor.principal,
        call.path("api_id"),
        where,
        stale=params.get("stale"),
        cursor=params.get("cursor"),
        limit=params.get("limit"),
    )
    return call.json(Page([key_view_out(view) for view in await call.ks.keys.views(page.items)], page.next_cursor))


async def get_key(call: Call) -> Response:
    key = await call.ks.keys.get(call.actor.principal, call.path("key_id"))
    return call.json(key_view_out(await call.ks.keys.view(key)))


async def update_key(call: Call) -> Response:
    patch = await call.merge_patch()
    key = await call.ks.keys.update(call.actor, call.path("key_id"), key_update(patch))
    return call.json(key_view_out(await call.ks.keys.view(key)))


async def revoke_key(call: Call) -> Response:
    key = await call.ks.keys.revoke(call.actor, call.path("key_id"))
    return call.json(key_view_out(await call.ks.keys.view(key)))


async def reroll_key(call: Call) -> Response:
    spec = await call.body(RerollSpec)
    key, plain = await call.ks.keys.reroll(
        call.actor, call.path("key_id"), grace_period_ms=spec.grace_period_ms, expires_at=spec.expires_at
    )
    return call.json(key_created(key, plain), 201)


async def change_credits(call: Call) -> Response:
    change = await call.body(CreditsChange)
    key = await call.ks.keys.change_credits(call.actor, call.path("key_id"), change.op, change.amount)
    return call.json(key_view_out(await call.ks.keys.view(key)))


async def get_key_plaintext(call: Call) -> Response:
    key, plain = await call.ks.keys.reveal(call.actor, call.path("key_id"))
    return call.json(KeyPlaintext(key_id=key.id, key=plain))


async def delete_key(call: Call) -> Response:
    await call.ks.keys.delete(call.actor, call.path("key_id"))
    return call.no_content()


async def verify_key(call: Call) -> Response:  # pragma: no cover - the fast path answers before routing
    raise AssertionError("POST /v1/keys/verify is served by keystile.server.fastpath")


TAG = "Keys"
OPERATIONS = [
    Operation(
        CREATE_KEY, create_key, "Create a key; the answer holds the key in plain text, this once", TAG, "keys.write"
    ),
    Operation(
        CREATE_KEYS_BULK,
        create_keys_bulk,
        "Create up to 1,000 keys, all or nothing (a 400 names the failing `index`)",
        TAG,
        "keys.write",
        errors=(400, 401, 403, 404, 409),
    ),
    Operation(
        IMPORT_KEYS,
        import_keys,
        "Import up to 1,000 existing keys (plain text of any format, or SHA-256 digests), all or nothing; keys "
        "this API holds already are skipped, a key of another API is a 409",
        TAG,
        "keys.write",
        errors=(400, 401, 403, 404, 409),
    ),
    Operation(LIST_KEYS, list_keys, "List an API's keys, newest first, with filters", TAG, "keys.read"),
    Operation(
        VERIFY_KEY,
        verify_key,
        "Verify a key (always 200 with a code, except for a bad request or root key)",
        "Verification",
        "keys.verify",
        errors=(400, 401, 403),
        description=(
            "Codes are checked in the order NOT_FOUND, REVOKED, DISABLED, EXPIRED, FORBIDDEN, "
            "INSUFFICIENT_PERMISSIONS, RATE_LIMITED, USAGE_EXCEEDED; the first failure wins, and a refused request "
            "spends neither rate-limit capacity nor credits. A NOT_FOUND answer carries `valid` and `code` only. "
            "A permission query that does not parse is a 400 with its `position`; a rate limit the key does not "
            "have is a 400 `unknown_ratelimit` (field `/ratelimits`)."
        ),
    ),
    Operation(GET_KEY, get_key, "Show a key", TAG, "keys.read"),
    Operation(
        UPDATE_KEY,
        update_key,
        "Update a key with a JSON Merge Patch (`null` removes; `meta` and `credits` merge)",
        TAG,
        "keys.write",
        errors=(400, 401, 403, 404, 415),
    ),
    Operation(DELETE_KEY, delete_key, "Delete a key permanently", TAG, "keys.write", errors=(401, 403, 404)),
    Operation(
        REVOKE_KEY,
        revoke_key,
        "Revoke a key (it then verifies as REVOKED); revoking again changes nothing",
        TAG,
        "keys.write",
        errors=(401, 403, 404),
    ),
    Operation(
        REROLL_KEY,
        reroll_key,
        "Replace a key with a new one of the same settings; the old one works until the grace period ends",
        TAG,
        "keys.write",
        errors=(400, 401, 403, 404, 409),
        description=(
            "The new key has the old one's name, owner, meta, permissions, roles, rate limits and allowlist, and "
            "links to the old key's balance: credits move, they are not copied, so during the grace period both "
            "keys draw on one balance. The old key expires at min(its own expiry, now + `grace_period_ms`) and then "
            "verifies as EXPIRED; `rotated_to` and `rotated_from` link the two. The new key's expiry is the body's "
            "`expires_at` (default none). A revoked key, or one rerolled already, is a 409 (`key_revoked`, "
            "`key_rotated`). The answer holds the new key in plain text, this once."
        ),
    ),
    Operation(
        CHANGE_CREDITS,
        change_credits,
        "Set, add or subtract a key's credits",
        TAG,
        "keys.write",
        errors=(400, 401, 403, 404, 409),
        description=(
            "Atomic in the database. `set` with `amount: null` makes the credits unlimited; `set` on unlimited "
            "credits creates a balance; `add` or `subtract` on unlimited credits is a 409 `credits_unlimited`. "
            "Subtracting stops at 0, adding at 2^53. Keys that share the balance (a rerolled pair) see the change "
            "together."
        ),
    ),
    Operation(
        GET_KEY_PLAINTEXT,
        get_key_plaintext,
        "Read a recoverable key back in plain text (audited as `key.decrypt`)",
        TAG,
        "keys.decrypt",
        errors=(401, 403, 404, 409, 503),
        description=(
            "Only keys stored recoverable can be read back: keys created in an API with `recoverable: true` "
            "(unless the key opted out with `recoverable: false`), and the keys that reroll them. Any other key is a "
            "409 `not_recoverable`; a stored secret that does not open as this key (changed, or copied from another "
            "key) is a 409 `key_secret_unreadable`. Without the master key that wraps its data key (none "
            "configured, a wrong one, or a rotation this server has not picked up) the answer is a 503 "
            "`master_key_unavailable`; verification is not affected. Every read writes an audit entry "
            "`key.decrypt` (which never holds the key)."
        ),
    ),
]
