"""The webhooks' deliverer (SPEC R5): posts the outbox's due deliveries, signed, and records every attempt.

Runs inside ``keystile serve``, in every server: each pass leases a batch of due deliveries (another server never
gets the same ones while the lease lasts; a server killed mid-post leaves them due again when it ends), posts
them concurrently (one per key and endpoint at a time, so that a key's events arrive in order), and records each
attempt: a 2xx answer delivers, anything else (a redirect included: none is followed) is tried again after an
exponential backoff with jitter, until the retry window (3 days) is over and the delivery is ``failed``. The
address is checked again, after DNS resolution, before every post (SSRF). Attempts older than 30 days are pruned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from keystile.core.ids import new_id
from keystile.core.webhooks import Attempt, Due, headers
from keystile.errors import KeystileError, StorageError
from keystile.service.context import Context
from keystile.service.webhooks import WebhookService, check_reachable

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("keystile.webhooks")

BATCH = 50
EXCERPT_BYTES = 512
KEEP_ATTEMPTS_MS = 30 * 86_400_000
PRUNE_EVERY_MS = 3_600_000
LEASE_MARGIN_MS = 5_000


class Deliverer:
    """Delivers the outbox: :meth:`run_once` for one pass, or in the background once :meth:`start` ed."""

    def __init__(self, ctx: Context, webhooks: WebhookService) -> None:
        self._ctx = ctx
        self._webhooks = webhooks
        self._options = webhooks.options
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._pruned_at = 0
        self.background: list[Callable[[], Awaitable[object]]] = []
        """More periodic work run on each pass (the scheduler, the credits watcher)."""
        self.stats = {"attempts": 0, "delivered": 0, "failed": 0, "retrying": 0}
        """Attempts made by this process, and how they ended."""

    def _http(self) -> httpx.AsyncClient:
        import httpx  # only servers deliver: commands that load the services need not import it

        if self._client is None:
            timeout = self._options.timeout_ms / 1000
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False, http2=False
            )
        return self._client

    async def run_once(self) -> int:
        """Lease and post the due deliveries (one batch); returns how many were attempted. Raises StorageError."""
        now = self._ctx.now()
        if not await self._ctx.storage.webhooks_due(now):
            return 0  # a read: no write transaction (nor SQLite's write lock) while the outbox is idle
        lease_until = now + self._options.timeout_ms + LEASE_MARGIN_MS
        async with self._ctx.storage.transaction() as tx:
            due = await tx.lease_webhook_deliveries(now, lease_until, BATCH)
        if not due:
            return 0
        results = await asyncio.gather(*(self._post(item) for item in due))
        async with self._ctx.storage.transaction() as tx:
            for item, attempt in zip(due, results, strict=True):
                state, next_at = self._next(item, attempt)
                await tx.record_webhook_attempt(attempt, state, next_at)
                self.stats[state if state != "pending" else "retrying"] += 1
        self.stats["attempts"] += len(due)
        return len(due)

    def _next(self, item: Due, attempt: Attempt) -> tuple[str, int | None]:
        if attempt.status is not None and 200 <= attempt.status < 300:
            return "delivered", None
        next_at = self._options.backoff.next_at(item.attempts + 1, attempt.at, item.created_at)
        return ("failed", None) if next_at is None else ("pending", next_at)

    async def _post(self, item: Due) -> Attempt:
        import httpx

        started = time.perf_counter()
        now = self._ctx.now()
        status: int | None = None
        excerpt, error = "", None
        try:
            await check_reachable(item.url, self._options.allow_private)
            secrets = await self._webhooks.signing_secrets(item, now)
            sent = headers(secrets, item.message_id, now // 1000, item.body)
            async with self._http().stream("POST", item.url, content=item.body, headers=sent) as response:
                status = response.status_code
                data = b""
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) >= EXCERPT_BYTES:
                        break
                excerpt = data[:EXCERPT_BYTES].decode("utf-8", "replace")
        except KeystileError as exc:
            error = exc.detail
        except httpx.TimeoutException:
            error = "timed out"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
        except Exception as exc:  # an attempt that breaks (a URL httpx refuses...) is recorded, not raised
            error = f"{type(exc).__name__}: {exc}"[:200]
            log.warning("webhook post failed: %s", error)
        latency = int((time.perf_counter() - started) * 1000)
        return Attempt(new_id("att", now), item.delivery_id, now, status, latency, excerpt, error)

    async def prune(self) -> int:
        """Delete attempts (and ended messages) older than 30 days; returns the messages deleted."""
        return await self._ctx.storage.prune_webhooks(self._ctx.now() - KEEP_ATTEMPTS_MS)

    # -- in the background ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Deliver in the background until :meth:`close`. Needs a running loop."""
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="keystile-webhooks")

    async def close(self) -> None:
        """Stop after the pass under way (its attempts are recorded), then close the HTTP client."""
        if self._task is not None:
            self._stop.set()
            self._wake.set()
            await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _pass(self) -> int:
        for work in self.background:
            await work()
        attempted = await self.run_once()
        now = self._ctx.now()
        if now - self._pruned_at >= PRUNE_EVERY_MS:
            self._pruned_at = now
            await self.prune()
        return attempted

    async def _run(self) -> None:
        while not self._stop.is_set():
            attempted = 0
            try:
                attempted = await self._pass()
            except StorageError as exc:
                log.warning("webhook delivery paused: %s", exc)
            except Exception:  # a bug must not stop deliveries for good
                log.exception("webhook delivery failed")
            if attempted:
                continue  # more may be due at once
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._options.poll_ms / 1000)
