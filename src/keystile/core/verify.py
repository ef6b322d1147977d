"""Verification (SPEC V1, V2, V6): is this key good for this request, and what do we know about it?

A verification hashes the key and looks the digest up in an in-process LRU cache of compiled entries; only a
miss or an entry older than the TTL reaches storage. A key that storage does not know is remembered briefly in a
second, smaller cache, so that a flood of random keys can neither reach the database nor evict real keys.
Writes invalidate entries through :meth:`Verifier.apply_changes` (wired to the change bus).

A change that names a key drops its entry. A change that cannot say what changed (``all``: the notification
channel is back after missing messages; ``lost``: it is gone) keeps every entry, but only as a fallback: each is
asked of storage again before it is trusted, and served unchecked only while storage cannot be reached (counted in
``stale_served``). While the channel is lost, entries live the short fallback TTL, since no change would reach
them. So losing the channel, or the database with it, costs cached keys nothing (SPEC V6).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import math
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, TypeVar

from keystile.core import keys as keyformat
from keystile.core.clock import Clock
from keystile.core.models import ROOT_API_ID, Credits, Key, KeyBundle, RateLimit, Refill
from keystile.core.netaddr import Network, allowed, compile_allowlist, parse_ip
from keystile.core.permissions import Grants, evaluate, parse_query
from keystile.core.ports import Change, Outcome, Spend, Spender, Storage
from keystile.core.ratelimit import Bucket
from keystile.errors import InvalidInput, StorageError

log = logging.getLogger("keystile.verify")

_sha256 = hashlib.sha256
T = TypeVar("T")
_MEMO_LIMIT = 64
# Entries loaded within this many seconds of each other share their expiry (the later ones expire that much early).
_SHARED_UNTIL_S = 0.01
# Serving stale entries is logged at most this often (with the count since), not once a request.
_STALE_LOG_EVERY_S = 10.0


class Code:
    """Verification codes in the order they are checked (SPEC V2)."""

    NOT_FOUND = "NOT_FOUND"
    REVOKED = "REVOKED"
    DISABLED = "DISABLED"
    EXPIRED = "EXPIRED"
    FORBIDDEN = "FORBIDDEN"
    INSUFFICIENT_PERMISSIONS = "INSUFFICIENT_PERMISSIONS"
    RATE_LIMITED = "RATE_LIMITED"
    USAGE_EXCEEDED = "USAGE_EXCEEDED"
    VALID = "VALID"


ALL_CODES = (
    Code.NOT_FOUND,
    Code.REVOKED,
    Code.DISABLED,
    Code.EXPIRED,
    Code.FORBIDDEN,
    Code.INSUFFICIENT_PERMISSIONS,
    Code.RATE_LIMITED,
    Code.USAGE_EXCEEDED,
    Code.VALID,
)


# -- the compact parts of a cache entry ---------------------------------------------------------------------------


class _MemoGrants(Grants):
    """Grants with the answers to the permission queries asked of them so far (bounded by ``_MEMO_LIMIT``)."""

    __slots__ = ("memo",)

    def __init__(self, grants: frozenset[str]) -> None:
        super().__init__(grants)
        self.memo: dict[str, bool] = {}


_SHARED_LIMIT = 65_536
# Values many entries hold alike (role tuples, compiled allowlists), and grant sets with their memo: one object
# each, shared by every entry that has it. Bounded: when full it starts over (entries keep what they hold; only
# later ones share less).
_shared: dict[object, object] = {}
_grant_sets: dict[frozenset[str], _MemoGrants] = {}
_NO_LIMITS: dict[str, tuple[RateLimit, str]] = {}
# A packed key record's fields from ``revoked_at`` on, when unset: left out at its end (see _pack).
_PACKED_TAIL: tuple[Any, ...] = (None, None, None, [], [], None, None)
_DEFAULTS: tuple[Any, ...] = (None, [])
"""The limits of every key without any (shared: never mutated)."""
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


def _share(value: T) -> T:
    found = _shared.get(value)
    if found is None:
        if len(_shared) >= _SHARED_LIMIT:
            _shared.clear()
        _shared[value] = found = value
    return found  # type: ignore[return-value]


def _networks(allowlist: tuple[str, ...]) -> tuple[Network, ...] | None:
    if not allowlist:
        return None
    return _share(compile_allowlist(allowlist)) or None


def _grants(granted: frozenset[str]) -> _MemoGrants:
    """The grant set and its memo of query answers, shared by every key granted the same permissions (an answer
    depends on nothing else)."""
    found = _grant_sets.get(granted)
    if found is None:
        if len(_grant_sets) >= _SHARED_LIMIT:
            _grant_sets.clear()
        found = _grant_sets[granted] = _MemoGrants(granted)
    return found


def _pack(key: Key) -> bytes:
    """What an entry keeps of its key record beyond the slots the checks read, as compact JSON."""
    credits = key.credits
    packed = [
        key.start,
        key.name,
        key.meta or None,
        list(key.permissions),
        list(key.roles),
        key.created_at,
        None if key.updated_at == key.created_at else key.updated_at,
        key.expires_at,
        key.enabled,
        key.revoked_at,
        key.last_used_at,
        None if credits is None else _pack_credits(credits),
        [[rl.name, rl.limit, rl.duration_ms, rl.auto_apply] for rl in key.ratelimits],
        list(key.ip_allowlist),
        key.rotated_from,
        key.rotated_to,
    ]
    while packed[-1] in _DEFAULTS:  # what most keys have at the end, left out (~30 bytes an entry)
        packed.pop()
    return _json(packed).encode("utf-8", "surrogatepass")


def _padded(packed: list[Any]) -> list[Any]:
    packed.extend(_PACKED_TAIL[len(packed) - 16 + len(_PACKED_TAIL) :])
    return packed


def _pack_credits(credits: Credits) -> list[object]:
    refill = credits.refill
    packed_refill = None if refill is None else [refill.amount, refill.interval, refill.day]
    return [credits.id, credits.remaining, packed_refill, credits.refilled_at]


def _unpack(record: bytes, key_id: str, api_id: str, owner_id: str | None, digest: bytes) -> Key:
    (
        start, name, meta, permissions, roles, created_at, updated_at, expires_at, enabled, revoked_at,
        last_used_at, credits, ratelimits, ip_allowlist, rotated_from, rotated_to,
    ) = _padded(json.loads(record.decode("utf-8", "surrogatepass")))  # fmt: skip
    return Key(
        id=key_id,
        api_id=api_id,
        digest=digest,
        start=start,
        created_at=created_at,
        updated_at=created_at if updated_at is None else updated_at,
        name=name,
        owner_id=owner_id,
        meta=meta or {},
        permissions=tuple(permissions),
        roles=tuple(roles),
        expires_at=expires_at,
        enabled=enabled,
        revoked_at=revoked_at,
        last_used_at=last_used_at,
        credits=None if credits is None else _unpack_credits(credits),
        ratelimits=tuple(RateLimit(*rl) for rl in ratelimits),
        ip_allowlist=tuple(ip_allowlist),
        rotated_from=rotated_from,
        rotated_to=rotated_to,
    )


def _unpack_credits(packed: list[Any]) -> Credits:
    credit_id, remaining, refill, refilled_at = packed
    return Credits(credit_id, remaining, None if refill is None else Refill(*refill), refilled_at)


def _untracked_by_gc() -> Any:
    """``PyObject_GC_UnTrack`` where the interpreter is CPython, else a no-op."""
    if sys.implementation.name != "cpython":
        return lambda obj: None
    untrack = ctypes.pythonapi.PyObject_GC_UnTrack
    untrack.argtypes = (ctypes.py_object,)
    untrack.restype = None
    return untrack


_gc_untrack = _untracked_by_gc()


class CachedKey:
    """A key compiled for fast checks: allowlists as integer masks, roles expanded into one grant set.

    Compact, since a server caches up to a million of these (SPEC P7: at most 1 KiB each): what the checks read
    is held in slots, what several keys have alike (their API id, grant set and its memo, allowlists, roles, an
    empty limits table) is one object shared between them, and the rest of the key record, read only to answer
    (its meta above all), is kept as one compact JSON ``bytes`` that :attr:`key` decodes on demand.
    """

    __slots__ = (
        "_record",
        "api_id",
        "api_networks",
        "credits",
        "default_spend",
        "digest",
        "enabled",
        "encoded",
        "expires_at",
        "fresh_until",
        "grants",
        "key_id",
        "key_networks",
        "limits",
        "owner_id",
        "revoked",
        "role_names",
    )

    def __init__(self, bundle: KeyBundle, fresh_until: float, digest: bytes | None = None) -> None:
        key = bundle.key
        self.digest = key.digest if digest is None else digest
        self.key_id = key.id
        self.api_id = sys.intern(key.api_id)
        self.owner_id = key.owner_id
        self.revoked = key.revoked_at is not None
        self.enabled = key.enabled
        stale_expiry = bundle.api.stale_expiry(key.created_at)
        self.expires_at = key.expires_at if stale_expiry is None else min(key.expires_at or stale_expiry, stale_expiry)
        self.key_networks: tuple[Network, ...] | None = _networks(key.ip_allowlist)
        self.api_networks: tuple[Network, ...] | None = _networks(bundle.api.ip_allowlist)
        role_names = [name for name in key.roles if name in bundle.role_permissions]
        granted = list(key.permissions)
        for name in role_names:
            granted.extend(bundle.role_permissions[name])
        self.role_names: tuple[str, ...] = _share(tuple(role_names))
        self.grants: Grants = _grants(frozenset(granted))
        self.fresh_until = fresh_until
        # What the HTTP edge encodes about this key once rather than per request (answer bodies, header values),
        # by names of its choosing. Dropped with the entry, so it never outlives a change to the key; the edge
        # keeps it for a bounded number of entries (see keystile.http.verify), not for every cached key.
        self.encoded: dict[str, bytes] | None = None
        self._record = _pack(key)
        self._compile_limits(bundle)

    @property
    def key(self) -> Key:
        """The key record this entry was compiled from (decoded from its compact form: not for the hot path)."""
        return _unpack(self._record, self.key_id, self.api_id, self.owner_id, self.digest)

    def _compile_limits(self, bundle: KeyBundle) -> None:
        key, identity = bundle.key, bundle.identity
        if not bundle.api.default_ratelimits and not key.ratelimits and (identity is None or not identity.ratelimits):
            self.limits: dict[str, tuple[RateLimit, str]] = _NO_LIMITS
        else:
            # By name: the API's defaults (per key), replaced by the identity's (shared by all of its keys),
            # replaced by the key's own (SPEC L1: "a key's limit replaces an identity limit of the same name").
            limits: dict[str, tuple[RateLimit, str]] = {
                rl.name: (rl, f"k:{key.id}:{rl.name}") for rl in bundle.api.default_ratelimits
            }
            if identity is not None:
                limits.update({rl.name: (rl, f"i:{identity.id}:{rl.name}") for rl in identity.ratelimits})
            limits.update({rl.name: (rl, f"k:{key.id}:{rl.name}") for rl in key.ratelimits})
            self.limits = limits
        self.credits: Credits | None = key.credits or (identity.credits if identity is not None else None)
        auto = tuple(
            Bucket(ref, rl.name, rl.limit, rl.duration_ms) for rl, ref in self.limits.values() if rl.auto_apply
        )
        self.default_spend = Spend(auto, self.credits, 1) if auto or self.credits is not None else None

    def spend_for(self, cost: int | None, requested: Sequence[tuple[str, int]] | None) -> Spend | None:
        """What a verification of this key spends: the named limits at their costs plus every auto-applied one
        at cost 1, and ``cost`` credits (default 1). ``None`` when there is nothing to spend.

        Raises :class:`InvalidInput` (``unknown_ratelimit``) for a limit name the key does not have.
        """
        if not requested:
            if cost is None or self.default_spend is None:
                return self.default_spend
            return Spend(self.default_spend.buckets, self.credits, cost)
        named: dict[str, int] = {}
        for name, named_cost in requested:
            if name not in self.limits:
                raise InvalidInput(
                    f"the key has no rate limit named {name[:64]!r}", code="unknown_ratelimit", field="/ratelimits"
                )
            named[name] = named.get(name, 0) + named_cost
        buckets = tuple(
            Bucket(ref, rl.name, rl.limit, rl.duration_ms, named.get(rl.name, 1))
            for rl, ref in self.limits.values()
            if rl.name in named or rl.auto_apply
        )
        return Spend(buckets, self.credits, 1 if cost is None else cost)

    @property
    def memo(self) -> dict[str, bool]:
        """The answers to permission queries asked so far, shared by the keys with the same grants."""
        return self.grants.memo  # type: ignore[attr-defined,no-any-return]

    def permitted(self, query: str) -> bool:
        """Whether the key's grants satisfy a (valid) permission query; memoised per query string."""
        grants = self.grants
        memo: dict[str, bool] = grants.memo  # type: ignore[attr-defined]
        result = memo.get(query)
        if result is None:
            if len(memo) >= _MEMO_LIMIT:
                memo.clear()
            result = memo[query] = evaluate(parse_query(query), grants)
        return result


class KeyCheck:
    """One request to verify a key: every way into verification (the API, forward auth, the proxy, the
    integrations, the CLI) builds one of these and hands it to the same service.

    ``cost`` is the credits to spend (default 1); ``ratelimits`` the ``(name, cost)`` of named limits to apply
    besides the auto-applied ones; ``ip`` the client's address (checked against allowlists); ``tags`` are recorded
    with the event.
    """

    __slots__ = ("api_id", "cost", "ip", "key", "permissions", "ratelimits", "tags")

    def __init__(
        self,
        key: str,
        *,
        api_id: str | None = None,
        permissions: str | None = None,
        ip: str | None = None,
        cost: int | None = None,
        ratelimits: Sequence[tuple[str, int]] | None = None,
        tags: Sequence[str] = (),
    ) -> None:
        self.key = key
        self.api_id = api_id
        self.permissions = permissions
        self.ip = ip
        self.cost = cost
        self.ratelimits = ratelimits
        self.tags = tags

    def __repr__(self) -> str:  # never the key
        return f"KeyCheck(api_id={self.api_id!r}, permissions={self.permissions!r}, ip={self.ip!r})"


class VerifyResult:
    """The outcome of one verification; ``entry`` is ``None`` for ``NOT_FOUND`` (nothing is revealed).

    ``spent`` is set when the verification spent (or was refused) rate-limit capacity or credits: it carries the
    limits' states and the credits left after this very request.
    """

    __slots__ = ("code", "entry", "spent")

    def __init__(self, code: str, entry: CachedKey | None, spent: Outcome | None = None) -> None:
        self.code = code
        self.entry = entry
        self.spent = spent

    @property
    def valid(self) -> bool:
        return self.code == Code.VALID

    def __repr__(self) -> str:
        return f"VerifyResult({self.code}, key_id={self.entry.key_id if self.entry else None})"


NOT_FOUND = VerifyResult(Code.NOT_FOUND, None)


class _Hit(VerifyResult):
    """An entry's ``VALID`` answer as the cache holds it, with the entry's ``fresh_until`` beside it (read on every
    lookup: one attribute away, not two)."""

    __slots__ = ("fresh_until",)

    def __init__(self, entry: CachedKey) -> None:
        super().__init__(Code.VALID, entry)
        self.fresh_until = entry.fresh_until


def _hit(entry: CachedKey) -> _Hit:
    """An entry as the cache holds it: as its ``VALID`` answer, which depends on nothing but the entry (built once,
    not on every verification), and leads to it.

    The cache holds the answer and the answer the entry, never the other way round: no entry is part of a
    reference cycle, so each is freed by reference counting the moment the cache drops it (no garbage collection
    needed). Neither is tracked by the garbage collector either: with nothing in them that could lead back to
    them, there is nothing for it to find, and a full collection takes as long with a million cached keys as with
    none (it visits every tracked object, and would hold the event loop for a second there). Nor are the
    verifier's tables of entries: a collection would visit every entry through them (a million reads of memory
    scattered over a gigabyte), and they refer to nothing that could lead back to them either.
    """
    hit = _Hit(entry)
    _gc_untrack(entry)
    _gc_untrack(hit)
    return hit


def _unlimited(entry: CachedKey) -> VerifyResult:
    """Without a spender (tests of the cache alone), limits are reported but nothing is spent."""
    return VerifyResult(Code.VALID, entry, Outcome(Code.VALID, (), entry.credits.remaining if entry.credits else None))


def _bad_ip(ip: str) -> InvalidInput:
    return InvalidInput(f"{ip[:64]!r} is not an IP address", code="invalid_ip", field="/ip")


class Verifier:
    """Verifies keys against storage through a bounded, TTL-limited in-process cache."""

    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        *,
        ttl_s: float = 5.0,
        fallback_ttl_s: float | None = None,
        size: int = 100_000,
        negative_ttl_s: float = 1.0,
        negative_size: int = 10_000,
        spender: Spender | None = None,
    ) -> None:
        """``ttl_s``: how long an entry is trusted; ``fallback_ttl_s`` (default ``ttl_s``): how long while the
        notification channel is lost (a ``lost`` change until the next ``all``)."""
        self._storage = storage
        self.spender: Spender | None = spender
        self._clock = clock
        self._monotonic = clock.monotonic  # one attribute away on the hot path, not two
        self._live_ttl = ttl_s
        self._fallback_ttl = min(ttl_s, fallback_ttl_s) if fallback_ttl_s is not None else ttl_s
        self._ttl = ttl_s
        self._size = size
        self._negative_ttl = negative_ttl_s
        self._negative_size = negative_size
        # Each entry as its VALID answer (see _hit).
        self._cache: OrderedDict[bytes, _Hit] = OrderedDict()
        # Entries to be asked of storage again before use: kept to be served while storage is unreachable.
        self._stale: OrderedDict[bytes, _Hit] = OrderedDict()
        self._unknown: OrderedDict[bytes, float] = OrderedDict()
        # Bumped by every change; a storage read that a change overtook is not cached (see _load).
        self._generation = 0
        self.channel_lost = False
        """Whether the notification channel is down (entries then live the fallback TTL)."""
        # The last key loaded: compiled again, and dropped, when storage does not know a digest (see _load).
        self._decoy: KeyBundle | None = None
        # Prefixes of APIs with keys imported by digest (see _digest_prefixes), and until when they are trusted.
        self._prefixes: frozenset[str] = frozenset()
        self._prefixes_until = -math.inf
        self._stale_logged_at = -math.inf
        self._stale_unlogged = 0
        self._until = -math.inf
        self.hits = self.misses = self.negative_hits = self.stale_served = 0

    @property
    def stats(self) -> dict[str, int]:
        """Counters since start: cache hits, misses, negative-cache hits, stale entries served."""
        return {
            "hits": self.hits,
            "misses": self.misses,
            "negative_hits": self.negative_hits,
            "stale_served": self.stale_served,
        }

    # -- the hot path ---------------------------------------------------------------------------------------

    def verify_cached(
        self,
        key: str,
        *,
        api_id: str | None = None,
        permissions: str | None = None,
        ip: str | None = None,
        apis: frozenset[str] | None = None,
        cost: int | None = None,
        ratelimits: Sequence[tuple[str, int]] | None = None,
    ) -> VerifyResult | None:
        """Verify from the cache alone; ``None`` when storage (or a limits backend) must be asked: then await
        :meth:`verify`. Returning ``None`` has spent nothing.

        ``apis``, when given, is the set of API ids the caller may verify keys of (a scoped root key); keys of
        other APIs answer ``NOT_FOUND``. ``cost`` is the credits to spend (default 1) and ``ratelimits`` the
        ``(name, cost)`` of limits to apply besides the auto-applied ones. Raises :class:`InvalidInput` for a bad
        ``ip``, permission query or rate-limit name.
        """
        address, hit, unknown = self._lookup(key, ip, permissions)
        if hit is None:
            return NOT_FOUND if unknown else None
        decided = self._decide(hit, address, api_id, apis, permissions, cost, ratelimits)
        return None if type(decided) is tuple else decided  # type: ignore[return-value]

    async def verify(
        self,
        key: str,
        *,
        api_id: str | None = None,
        permissions: str | None = None,
        ip: str | None = None,
        apis: frozenset[str] | None = None,
        cost: int | None = None,
        ratelimits: Sequence[tuple[str, int]] | None = None,
    ) -> VerifyResult:
        """Verify a key (SPEC V2 order), spending rate-limit capacity and credits when every earlier check
        passed. Raises :class:`InvalidInput` for a bad ``ip``, query or rate-limit name, and
        :class:`StorageError` when a key is not cached and storage cannot be reached."""
        # Not verify_cached then the rest: a cached key that must spend asynchronously (Redis limits, database
        # credits) comes here on every verification, and would be hashed, looked up and checked twice.
        address, hit, unknown = self._lookup(key, ip, permissions)
        if hit is None:
            if unknown:
                return NOT_FOUND
            hit = await self._load(key)
            if hit is None:
                return NOT_FOUND
        decided = self._decide(hit, address, api_id, apis, permissions, cost, ratelimits)
        if isinstance(decided, VerifyResult):
            return decided
        assert self.spender is not None, "only a spender leaves something to spend"
        spend, now_ms = decided
        outcome = await self.spender.spend(spend, now_ms)
        return VerifyResult(outcome.code, hit.entry, outcome)

    def _decide(
        self,
        hit: _Hit,
        address: tuple[int, int] | None,
        api_id: str | None,
        apis: frozenset[str] | None,
        permissions: str | None,
        cost: int | None,
        ratelimits: Sequence[tuple[str, int]] | None,
    ) -> VerifyResult | tuple[Spend, float]:
        """The checks of SPEC V2 in order, then the spend when it can be made without waiting: the result, or
        what is left to spend asynchronously (and the moment it is spent at). One method, not two: on the hot
        path a call costs as much as a check. ``hit`` is the entry as the cache holds it (see _hit)."""
        entry: CachedKey = hit.entry  # type: ignore[assignment]
        owner = entry.api_id
        if api_id is not None:
            if owner != api_id:
                return NOT_FOUND
        elif owner == ROOT_API_ID:
            return NOT_FOUND  # root keys answer only where asked for by name
        if apis is not None and owner not in apis:
            # NOT_FOUND, not a permission error: that would tell a caller that a key exists in another API.
            return NOT_FOUND
        if entry.revoked:
            return VerifyResult(Code.REVOKED, entry)
        if not entry.enabled:
            return VerifyResult(Code.DISABLED, entry)
        if entry.expires_at is not None and self._clock.now() * 1000 >= entry.expires_at:
            return VerifyResult(Code.EXPIRED, entry)
        if entry.key_networks is not None or entry.api_networks is not None:
            if address is None:
                return VerifyResult(Code.FORBIDDEN, entry)
            if entry.key_networks is not None and not allowed(entry.key_networks, address):
                return VerifyResult(Code.FORBIDDEN, entry)
            if entry.api_networks is not None and not allowed(entry.api_networks, address):
                return VerifyResult(Code.FORBIDDEN, entry)
        if permissions is not None:
            # The memo's answer without a call (entry.permitted asks it the same way, and fills it).
            permitted = entry.grants.memo.get(permissions)  # type: ignore[attr-defined]
            if not (permitted if permitted is not None else entry.permitted(permissions)):
                return VerifyResult(Code.INSUFFICIENT_PERMISSIONS, entry)
        # What a key without limits or credits spends (nothing) without a call, unless the request names some.
        spend = entry.default_spend if cost is None and not ratelimits else entry.spend_for(cost, ratelimits)
        if spend is None:
            return hit
        if self.spender is None:
            return _unlimited(entry)
        now_ms = self._clock.now() * 1000
        outcome = self.spender.spend_now(spend, now_ms)
        if outcome is None:
            return spend, now_ms
        return VerifyResult(outcome.code, entry, outcome)

    def _lookup(
        self, key: str, ip: str | None, permissions: str | None
    ) -> tuple[tuple[int, int] | None, _Hit | None, bool]:
        """Validate the request's ``ip`` and query, and find the key in the cache: ``(address, fresh entry (as
        its VALID answer, see _hit) or None, whether the key is remembered as unknown)``."""
        address = None
        if ip is not None and (address := parse_ip(ip)) is None:
            raise _bad_ip(ip)
        if permissions is not None:
            parse_query(permissions)  # memoised; raises on a syntax error whatever the key
        digest = _sha256(key.encode()).digest()
        hit = self._cache.get(digest)
        if hit is not None and hit.fresh_until > self._monotonic():
            self.hits += 1
            self._cache.move_to_end(digest)
            return address, hit, False
        until = self._unknown.get(digest)
        if until is not None and until > self._clock.monotonic():
            self.negative_hits += 1
            return address, None, True
        return address, None, False

    # -- misses -----------------------------------------------------------------------------------------------

    async def _load(self, key: str) -> _Hit | None:
        """The key's entry from storage (as its VALID answer, see _hit), cached; ``None`` when there is none."""
        if not key or len(key) > keyformat.MAX_KEY_LENGTH:
            return None  # cannot be a key, whatever its format: no storage call
        parsed = keyformat.parse(key)
        # A typo or a made-up key: no key lookup. Unless keys were imported by digest into an API of this prefix:
        # those may have any format, this one included (K2).
        if (
            parsed is not None
            and not keyformat.has_valid_checksum(parsed)
            and parsed.prefix not in await self._digest_prefixes()
        ):
            return None
        digest = _sha256(key.encode()).digest()
        stale = self._cache.get(digest) or self._stale.get(digest)
        self.misses += 1
        generation = self._generation
        try:
            bundle = await self._storage.load_for_verify(digest)
        except StorageError:
            if stale is None or (self._cache.get(digest) is not stale and self._stale.get(digest) is not stale):
                raise  # nothing cached, or a change dropped the entry while storage was failing
            # Serving a stale entry beats failing every request while the database is away; counted and logged.
            self._served_stale(stale.entry)  # type: ignore[arg-type]
            return stale
        if generation != self._generation:
            # A change arrived while storage was answering, so the answer may predate it: use it for this
            # request, but caching it would hide the change (a revocation, say) for a whole TTL.
            self._cache.pop(digest, None)
            self._stale.pop(digest, None)
            return _hit(CachedKey(bundle, 0.0)) if bundle is not None else None
        self._stale.pop(digest, None)
        if bundle is None:
            self._cache.pop(digest, None)
            self._remember_unknown(digest)
            if self._decoy is not None:
                # The work a key that exists costs, thrown away: existence must not show in timing (SPEC S2).
                _hit(CachedKey(self._decoy, 0.0))
            return None
        self._decoy = bundle
        entry = _hit(CachedKey(bundle, self._fresh_until(), digest))
        self._cache[digest] = entry
        _gc_untrack(self._cache)  # tracked again by the insertion (see _hit)
        self._cache.move_to_end(digest)
        if len(self._cache) + len(self._stale) > self._size:
            (self._stale or self._cache).popitem(last=False)
        self._unknown.pop(digest, None)
        return entry

    def _fresh_until(self) -> float:
        """Until when an entry loaded now is trusted: the same float as the previous entry's when that one expires
        at most ``_SHARED_UNTIL_S`` earlier (one object for the entries loaded together, not one each)."""
        until = self._clock.monotonic() + self._ttl
        if 0.0 <= until - self._until < _SHARED_UNTIL_S:
            return self._until
        self._until = until
        return until

    async def _digest_prefixes(self) -> frozenset[str]:
        """The prefixes of the APIs holding keys imported by digest, asked of storage at most once a TTL (or
        after an API changed): the only storage call a string with a bad checksum can cause."""
        now = self._clock.monotonic()
        if self._prefixes_until > now:
            return self._prefixes
        generation = self._generation
        try:
            prefixes = await self._storage.digest_import_prefixes()
        except StorageError:
            # Keep what was known: refusing a string that fails its checksum is the answer without storage.
            self._prefixes_until = now + self._negative_ttl
            return self._prefixes
        self._prefixes = prefixes
        if generation == self._generation:  # else a change overtook the answer: ask again next time
            self._prefixes_until = now + self._ttl
        return prefixes

    def _served_stale(self, entry: CachedKey) -> None:
        self.stale_served += 1
        self._stale_unlogged += 1
        now = self._clock.monotonic()
        if now - self._stale_logged_at >= _STALE_LOG_EVERY_S:
            log.warning(
                "storage unreachable; served %d verification(s) from cache entries past their TTL",
                self._stale_unlogged,
                extra={"key_id": entry.key_id},
            )
            self._stale_logged_at = now
            self._stale_unlogged = 0

    def _remember_unknown(self, digest: bytes) -> None:
        self._unknown[digest] = self._clock.monotonic() + self._negative_ttl
        self._unknown.move_to_end(digest)
        if len(self._unknown) > self._negative_size:
            self._unknown.popitem(last=False)

    # -- invalidation ---------------------------------------------------------------------------------------

    def apply_changes(self, changes: Sequence[Change]) -> None:
        """Drop what ``changes`` make stale (a change-bus listener); ``all`` and ``lost`` keep entries as
        fallbacks to revalidate (see the module docstring)."""
        self._generation += 1
        for change in changes:
            kind = change.kind
            if kind != "key" and kind != "credits":
                self._prefixes_until = -math.inf  # an API changed (its prefix, or keys imported by digest)
            if kind == "key":
                digest = bytes.fromhex(change.ref)
                self._cache.pop(digest, None)
                self._stale.pop(digest, None)
                self._unknown.pop(digest, None)
            elif kind == "all":
                self.channel_lost = False
                self._ttl = self._live_ttl
                self._revalidate_all()
            elif kind == "lost":
                if not self.channel_lost:  # said again at every failed reconnection: once is enough
                    self.channel_lost = True
                    self._ttl = self._fallback_ttl
                    self._revalidate_all()
            elif kind == "credits":
                continue  # a balance's counters live with the spender; the keys sharing it come as "key" changes
            else:
                field = "api_id" if kind == "api" else "owner_id"
                for entries in (self._cache, self._stale):
                    for digest in [d for d, hit in entries.items() if getattr(hit.entry, field) == change.ref]:
                        del entries[digest]

    def _revalidate_all(self) -> None:
        # Messages may have been missed: trust no entry without asking storage again, but keep them all for when
        # storage cannot answer. O(1) but for an earlier batch of fallbacks not yet revalidated.
        if self._stale:
            self._stale.update(self._cache)
            _gc_untrack(self._stale)
        else:
            self._stale = self._cache
        self._cache = OrderedDict()
        self._unknown.clear()

    def clear(self) -> None:
        """Forget everything cached."""
        self._generation += 1
        self._prefixes_until = -math.inf
        self._cache.clear()
        self._stale.clear()
        self._unknown.clear()

    def __len__(self) -> int:
        """Entries held, fallbacks to revalidate included (what the cache's size bounds)."""
        return len(self._cache) + len(self._stale)


# -- what the HTTP edge keeps per entry ------------------------------------------------------------------------------

ENCODED_KEPT = 8_192
"""How many entries keep what the HTTP edge encoded about them (answers, header values): the most recently
encoded ones. Kept for every cached key, those bytes would cost more memory than the entry itself (SPEC P7)."""
_encoded: dict[CachedKey, None] = {}  # oldest first
_encoded_lock = threading.Lock()  # the integrations verify from many threads under WSGI


def encoded_of(entry: CachedKey) -> dict[str, bytes]:
    """The dict in which the HTTP edge keeps what it encoded about ``entry`` once rather than per request, by
    names of its choosing; made on first use, and dropped again (as the oldest) after :data:`ENCODED_KEPT` other
    entries have had one. Read ``entry.encoded`` first: that is the hot path."""
    encoded = entry.encoded
    if encoded is None:
        encoded = {}
        with _encoded_lock:
            if entry.encoded is not None:
                return entry.encoded
            if len(_encoded) >= ENCODED_KEPT:
                oldest = next(iter(_encoded))
                del _encoded[oldest]
                oldest.encoded = None
            _encoded[entry] = None
            entry.encoded = encoded
    return encoded
