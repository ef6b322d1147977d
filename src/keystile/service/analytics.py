"""Reading verification traffic: the event log (SPEC O2) and counts over time (SPEC O3).

Both need ``analytics.read``, which a root key may hold for some APIs only: it then sees the events of those
APIs alone, and naming another API or one of its keys answers 404, as if it did not exist (SPEC K6). Events are
written elsewhere (:mod:`keystile.events`), off the verification hot path; analytics read the rollups that
the writer maintains, never raw events.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TypeVar, get_args

from keystile.core.ids import looks_like_id
from keystile.core.models import ROOT_API_ID, EventFilter, Page, VerificationEvent
from keystile.core.ports import Granularity, GroupBy, RollupCount
from keystile.core.timefmt import MAX_MS, MIN_MS, RANGE
from keystile.core.verify import ALL_CODES
from keystile.errors import InvalidInput
from keystile.service.authz import Principal
from keystile.service.context import Context, not_found, page_limit, paged
from keystile.service.validate import check_json

C = TypeVar("C", bound=str)
PERMISSION = "analytics.read"
GRANULARITIES: tuple[Granularity, ...] = get_args(Granularity)
GROUPINGS: tuple[GroupBy, ...] = get_args(GroupBy)
BUCKET_MS: dict[Granularity, int] = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
DEFAULT_BUCKETS: dict[Granularity, int] = {"minute": 60, "hour": 24, "day": 30}
"""Without ``since``, a query covers the last hour by minute, the last day by hour, the last 30 days by day."""
MAX_BUCKETS = 1500
"""Buckets per query: a day and a bit by minute, two months by hour, four years by day."""
MAX_COUNTS = 10_000
"""Counts per answer (buckets times groups): grouping a busy API by key over a long range must be narrowed."""


@dataclass(frozen=True, slots=True)
class Series:
    """Counts per bucket and group over ``[since, until)``, both bucket starts (epoch ms)."""

    granularity: Granularity
    group_by: GroupBy
    since: int
    until: int
    counts: list[RollupCount]


class AnalyticsService:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    async def logs(
        self, principal: Principal, where: EventFilter, *, cursor: str | None, limit: int | None
    ) -> Page[VerificationEvent]:
        """Verification events newest first, filtered; the cursor is the id of the last event seen.

        Raises Forbidden without ``analytics.read`` for any API, NotFound for an API or key out of the root key's
        scope, InvalidInput for a bad filter, cursor or limit.
        """
        size = page_limit(limit)
        if cursor is not None and not looks_like_id(cursor, "evt"):
            raise InvalidInput("not a cursor of this list", code="invalid_cursor", field="cursor")
        only = await self._scope(principal, _checked(where))
        items = await self._ctx.storage.list_events(where, before=cursor, limit=size + 1, only=only)
        return paged(items, size, lambda event: event.id)

    async def verifications(
        self,
        principal: Principal,
        where: EventFilter,
        *,
        granularity: str | None = None,
        group_by: str | None = None,
    ) -> Series:
        """Verifications counted per bucket of ``granularity`` (default ``hour``) and grouped by outcome (the
        default), key or owner, from the rollups alone.

        ``where.since`` is widened to the start of its bucket and ``where.until`` (default now) to the end of
        its bucket; without ``since`` the range is :data:`DEFAULT_BUCKETS` long. Raises as :meth:`logs` does,
        and InvalidInput (naming the parameter) for an unknown granularity or grouping, a range that is empty
        or longer than :data:`MAX_BUCKETS` buckets, or an answer of more than :data:`MAX_COUNTS` counts.
        """
        _checked(where)
        grain = _choice(granularity or "hour", GRANULARITIES, "granularity")
        grouping = _choice(group_by or "outcome", GROUPINGS, "group_by")
        size = BUCKET_MS[grain]
        until = _ceil(where.until if where.until is not None else self._ctx.now() + 1, size)
        since = where.since - where.since % size if where.since is not None else until - DEFAULT_BUCKETS[grain] * size
        if since >= until:
            raise InvalidInput("since must be before until", code="invalid_parameter", field="since")
        # Widened to whole buckets, the range must still be writable: the hour of 9999-12-31T23:59Z ends in 10000.
        if until > MAX_MS:
            raise InvalidInput(
                f"until, widened to the end of its {grain}, must lie within {RANGE}",
                code="invalid_parameter",
                field="until",
            )
        if since < MIN_MS:
            field = "since" if where.since is not None else "until"
            message = f"the range must start within {RANGE}; give a later {field}"
            raise InvalidInput(message, code="invalid_parameter", field=field)
        buckets = (until - since) // size
        if buckets > MAX_BUCKETS:
            raise InvalidInput(
                f"since to until spans {buckets} {grain}s; one query covers at most {MAX_BUCKETS}: "
                "narrow the range or take a coarser granularity",
                code="invalid_parameter",
                field="since",
            )
        where = replace(where, since=since, until=until)
        only = await self._scope(principal, where)
        counts = await self._ctx.storage.count_rollups(grain, grouping, where, only=only, limit=MAX_COUNTS + 1)
        if len(counts) > MAX_COUNTS:
            raise InvalidInput(
                f"the answer would hold more than {MAX_COUNTS} counts: narrow the range, take a coarser "
                "granularity, or filter by API, key or owner",
                code="too_many_counts",
            )
        return Series(grain, grouping, since, until, counts)

    async def _scope(self, principal: Principal, where: EventFilter) -> frozenset[str] | None:
        """The APIs whose events the principal may read (``None``: all), after checking the filters against
        them."""
        principal.require_any(PERMISSION)
        only = principal.scope(PERMISSION)
        if only is None:
            # Events outlive their keys and APIs (until retention drops them): no existence check here.
            return None
        if where.api_id is not None and where.api_id not in only:
            raise not_found("API", where.api_id, "api", "api_not_found")
        if where.key_id is not None:
            # 404 for a key of another API and for one that does not exist alike: a scoped root key must not
            # learn which keys exist elsewhere.
            known = looks_like_id(where.key_id, "key")
            key = await self._ctx.storage.get_key(where.key_id) if known else None
            if key is None or key.api_id == ROOT_API_ID or key.api_id not in only:
                raise not_found("key", where.key_id, "key", "key_not_found")
        return only


def _checked(where: EventFilter) -> EventFilter:
    """Refuse filters no event can match for a reason the caller should hear about."""
    for field in ("api_id", "key_id", "owner_id"):
        value = getattr(where, field)
        if value is not None:
            if not value:
                raise InvalidInput(f"{field} must not be empty", code="invalid_parameter", field=field)
            check_json(value, field)
    if where.outcome is not None and where.outcome not in ALL_CODES:
        raise InvalidInput(f"outcome must be one of {', '.join(ALL_CODES)}", code="invalid_parameter", field="outcome")
    if where.since is not None and where.until is not None and where.since >= where.until:
        raise InvalidInput("since must be before until", code="invalid_parameter", field="since")
    return where


def _choice(value: str, choices: tuple[C, ...], field: str) -> C:
    for choice in choices:
        if choice == value:
            return choice
    raise InvalidInput(f"{field} must be one of {', '.join(choices)}", code="invalid_parameter", field=field)


def _ceil(ms: int, size: int) -> int:
    return -(-ms // size) * size
