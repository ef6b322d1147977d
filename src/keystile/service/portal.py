"""The customer portal (SPEC D2): an API provider's customer manages their own keys of one API, within a policy.

A portal grant names one owner of one API and a policy (the most a customer key may hold). The provider hands a
grant out as a one-time sign-in link (``POST /v1/portal/sessions``, :meth:`PortalService.create_link`), or its
own login decides the owner when the portal is mounted inside its app. Every action goes through the same key
services and permission checks as the API, as a principal that may read and write the keys of that one API only,
and a key of any other owner answers 404 exactly as one that does not exist.

Sign-in links are kept in storage by the SHA-256 of their token (never the token itself), as
:class:`~keystile.service.websessions.WebSessions`: any process of the deployment redeems a link, once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from keystile.core.commands import KeyUpdate, NewCredits, NewKey
from keystile.core.models import EventFilter, Key, KeyFilter, RateLimit, Refill
from keystile.core.permissions import Grants, validate_grant
from keystile.core.timefmt import to_datetime
from keystile.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from keystile.service.analytics import AnalyticsService, Series
from keystile.service.apis import ApiService
from keystile.service.authz import Actor, Principal
from keystile.service.context import Context
from keystile.service.keys import DAY_MS, KeyService
from keystile.service.websessions import Lifetime, WebSessions, digest

DEFAULT_LINK_TTL_S = 600
"""A sign-in link is valid 10 minutes unless the provider says otherwise."""
MAX_LINK_TTL_S = 86_400
SESSION_TTL_MS = 3_600_000
"""How long a customer stays signed in after following a link."""
MAX_GRACE_MS = 7 * DAY_MS
"""The longest grace period a customer may give a rolled key."""
MAX_PORTAL_KEYS = 1000
LINK = "portal_link"
SESSION = "portal"


@dataclass(frozen=True, slots=True)
class PortalPolicy:
    """What a customer may do: how many live keys, the permissions a key may hold at most, the rate limits and
    credits every new key gets, and the longest expiry (days) they may choose."""

    max_keys: int | None = None
    permissions: tuple[str, ...] = ()
    ratelimits: tuple[RateLimit, ...] = ()
    credits: NewCredits | None = None
    max_expires_days: int | None = None


@dataclass(frozen=True, slots=True)
class PortalGrant:
    """One owner of one API, and the policy the portal applies to them."""

    api_id: str
    owner_id: str
    policy: PortalPolicy = field(default_factory=PortalPolicy)
    return_url: str | None = None

    @property
    def principal(self) -> Principal:
        api = self.api_id
        grants = Grants([f"api.{api}.keys.read", f"api.{api}.keys.write", f"api.{api}.analytics.read"])
        return Principal(f"portal:{self.owner_id}"[:200], grants)


@dataclass(frozen=True, slots=True)
class PortalLink:
    token: str
    expires_at: int


def grant_text(grant: PortalGrant) -> str:
    """A grant as JSON, as a link or session keeps it."""
    policy = grant.policy
    credits = policy.credits
    refill = credits.refill if credits is not None else None
    return json.dumps(
        {
            "api_id": grant.api_id,
            "owner_id": grant.owner_id,
            "return_url": grant.return_url,
            "max_keys": policy.max_keys,
            "permissions": list(policy.permissions),
            "ratelimits": [[r.name, r.limit, r.duration_ms, r.auto_apply] for r in policy.ratelimits],
            "credits": None if credits is None else credits.remaining,
            "refill": None if refill is None else [refill.amount, refill.interval, refill.day],
            "max_expires_days": policy.max_expires_days,
        }
    )


def grant_of(text: str) -> PortalGrant:
    """The grant :func:`grant_text` wrote."""
    data: dict[str, Any] = json.loads(text)
    refill = data["refill"]
    credits = None
    if data["credits"] is not None:
        credits = NewCredits(data["credits"], None if refill is None else Refill(refill[0], refill[1], refill[2]))
    policy = PortalPolicy(
        max_keys=data["max_keys"],
        permissions=tuple(data["permissions"]),
        ratelimits=tuple(RateLimit(r[0], r[1], r[2], r[3]) for r in data["ratelimits"]),
        credits=credits,
        max_expires_days=data["max_expires_days"],
    )
    return PortalGrant(data["api_id"], data["owner_id"], policy, data["return_url"])


class PortalService:
    def __init__(
        self,
        ctx: Context,
        apis: ApiService,
        keys: KeyService,
        analytics: AnalyticsService,
        sessions: WebSessions,
    ) -> None:
        self._ctx = ctx
        self._apis = apis
        self._keys = keys
        self._analytics = analytics
        self._sessions = sessions

    # -- sign-in links ----------------------------------------------------------------------------------------

    async def create_link(self, actor: Actor, grant: PortalGrant, ttl_s: int | None = None) -> PortalLink:
        """A one-time sign-in link for ``grant``; needs ``keys.write`` for its API (404 for an API out of the
        caller's scope). Audited as ``portal.session.create`` (never with the token)."""
        await self._apis.get(actor.principal, grant.api_id, "keys.write")
        self.check_grant(grant)
        ttl = DEFAULT_LINK_TTL_S if ttl_s is None else ttl_s
        if not 1 <= ttl <= MAX_LINK_TTL_S:
            raise InvalidInput(f"ttl_s must be between 1 and {MAX_LINK_TTL_S}", code="invalid_request", field="/ttl_s")
        token, link = await self._sessions.start(LINK, grant_text(grant), Lifetime(ttl * 1000, ttl * 1000))
        now, expires_at = link.created_at, link.expires_at
        policy = grant.policy
        changes = {
            "owner_id": grant.owner_id,
            "expires_at": to_datetime(expires_at).isoformat(),
            "policy": {
                "max_keys": policy.max_keys,
                "permissions": list(policy.permissions),
                "max_expires_days": policy.max_expires_days,
            },
        }
        async with self._ctx.storage.transaction() as tx:
            await self._ctx.audit(tx, actor, "portal.session.create", grant.api_id, changes, now)
        return PortalLink(token, expires_at)

    async def redeem(self, token: str) -> tuple[str, PortalGrant]:
        """Use up a sign-in link: a new portal session (its id, for the browser's cookie) and its grant. Raises
        :class:`Unauthenticated` for a link that was used, has expired or never existed (one answer for all)."""
        link = await self._sessions.take(LINK, token)
        if link is None:
            raise Unauthenticated("this sign-in link was used already, has expired or is unknown", code="invalid_link")
        session_id, _ = await self._sessions.start(SESSION, link.subject, Lifetime(SESSION_TTL_MS, SESSION_TTL_MS))
        return session_id, grant_of(link.subject)

    async def link_valid(self, token: str) -> bool:
        """Whether a sign-in link may still be used (without using it up)."""
        if not token or len(token) > 256:
            return False
        found = await self._ctx.storage.get_web_session(digest(token), at_ms=self._ctx.now())
        return found is not None and found.kind == LINK

    async def session(self, session_id: str | None) -> tuple[PortalGrant, str] | None:
        """The grant and CSRF token of a live portal session."""
        found = await self._sessions.get(SESSION, session_id, Lifetime(SESSION_TTL_MS, SESSION_TTL_MS))
        return None if found is None else (grant_of(found.subject), found.csrf)

    def check_grant(self, grant: PortalGrant) -> None:
        if not grant.owner_id or len(grant.owner_id) > 256:
            raise InvalidInput("owner_id must be 1 to 256 characters", code="invalid_request", field="/owner_id")
        for permission in grant.policy.permissions:
            validate_grant(permission)
        policy = grant.policy
        if policy.max_keys is not None and not 0 <= policy.max_keys <= MAX_PORTAL_KEYS:
            raise InvalidInput(
                f"max_keys must be between 0 and {MAX_PORTAL_KEYS}", code="invalid_request", field="/policy/max_keys"
            )
        if policy.max_expires_days is not None and not 1 <= policy.max_expires_days <= 36_500:
            raise InvalidInput(
                "max_expires_days must be between 1 and 36500", code="invalid_request", field="/policy/max_expires_days"
            )

    # -- the customer's keys ----------------------------------------------------------------------------------

    async def keys(self, grant: PortalGrant) -> list[Key]:
        """The owner's keys of the API that are not revoked, newest first."""
        found: list[Key] = []
        cursor = None
        while True:
            page = await self._keys.list(
                grant.principal,
                grant.api_id,
                KeyFilter(owner_id=grant.owner_id, revoked=False),
                cursor=cursor,
                limit=200,
            )
            found.extend(page.items)
            cursor = page.next_cursor
            if cursor is None or len(found) >= MAX_PORTAL_KEYS:
                return found

    async def key(self, grant: PortalGrant, key_id: str) -> Key:
        """One of the owner's keys; any other key answers :class:`NotFound`, as an unknown one does."""
        try:
            key = await self._keys.get(grant.principal, key_id)
        except Forbidden:
            raise NotFound("no such key", code="key_not_found") from None
        if key.owner_id != grant.owner_id or key.api_id != grant.api_id:
            raise NotFound("no such key", code="key_not_found")
        return key

    async def create(
        self, grant: PortalGrant, actor: Actor, name: str | None, permissions: list[str], expires_days: int | None
    ) -> tuple[Key, str]:
        """A new key for the owner within the policy; returns it with its plain text (to be shown once)."""
        policy = grant.policy
        if policy.max_keys is not None:
            live = [key for key in await self.keys(grant) if key.rotated_to is None]
            if len(live) >= policy.max_keys:
                raise Forbidden(f"you may hold at most {policy.max_keys} keys", code="portal_max_keys")
        extra = [p for p in permissions if p not in policy.permissions]
        if extra:
            raise Forbidden(f"a key here may not hold {', '.join(extra[:5])}", code="insufficient_permissions")
        if policy.max_expires_days is not None and (expires_days is None or expires_days > policy.max_expires_days):
            expires_days = policy.max_expires_days
        if expires_days is not None and expires_days < 1:
            raise InvalidInput("a key expires in 1 day at the soonest", code="invalid_request", field="expires_days")
        expires_at = to_datetime(self._ctx.now() + expires_days * DAY_MS) if expires_days is not None else None
        spec = NewKey(
            name=(name or None),
            owner_id=grant.owner_id,
            permissions=permissions,
            expires_at=expires_at,
            credits=policy.credits,
            ratelimits=policy.ratelimits,
        )
        return await self._keys.create(self._as(grant, actor), grant.api_id, spec)

    async def rename(self, grant: PortalGrant, actor: Actor, key_id: str, name: str | None) -> Key:
        await self.key(grant, key_id)
        return await self._keys.update(self._as(grant, actor), key_id, KeyUpdate(name=name or None))

    async def roll(self, grant: PortalGrant, actor: Actor, key_id: str, grace_ms: int) -> tuple[Key, str]:
        """Replace a key by a new one; the old one keeps working for ``grace_ms`` (at most a week)."""
        old = await self.key(grant, key_id)
        if not 0 <= grace_ms <= MAX_GRACE_MS:
            raise InvalidInput("the grace period is 0 to 7 days", code="invalid_request", field="grace")
        expires = to_datetime(old.expires_at) if old.expires_at is not None else None
        return await self._keys.reroll(self._as(grant, actor), key_id, grace_period_ms=grace_ms, expires_at=expires)

    async def revoke(self, grant: PortalGrant, actor: Actor, key_id: str) -> Key:
        await self.key(grant, key_id)
        return await self._keys.revoke(self._as(grant, actor), key_id)

    async def usage(self, grant: PortalGrant, key_id: str, granularity: str) -> Series:
        await self.key(grant, key_id)
        return await self._analytics.verifications(
            grant.principal, EventFilter(api_id=grant.api_id, key_id=key_id), granularity=granularity
        )

    @staticmethod
    def _as(grant: PortalGrant, actor: Actor) -> Actor:
        return replace(actor, principal=grant.principal)


__all__ = ["DEFAULT_LINK_TTL_S", "PortalGrant", "PortalLink", "PortalPolicy", "PortalService"]
