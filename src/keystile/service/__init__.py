"""The services behind every interface: HTTP, CLI and dashboard are thin shells over :class:`Keystile`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from keystile.config import DEFAULT_CACHE_TTL_MS, DEFAULT_ISSUER_URL, NOTIFIED_CACHE_TTL_MS, Settings
from keystile.core.clock import Clock, SystemClock
from keystile.core.ports import ChangeBus, LocalChangeBus, Spender, Storage
from keystile.core.verify import Verifier
from keystile.core.webhooks import Backoff
from keystile.events import Events, WriterProcess
from keystile.limits.local import LocalSpender
from keystile.service.analytics import AnalyticsService
from keystile.service.apis import ApiService
from keystile.service.audit import AuditService
from keystile.service.authz import CLI_ACTOR, Actor, Principal
from keystile.service.context import Context
from keystile.service.credits_watch import CreditsWatch
from keystile.service.deliverer import Deliverer
from keystile.service.identities import IdentityService
from keystile.service.imports import ImportService
from keystile.service.keys import KeyService
from keystile.service.leaks import LeakService
from keystile.service.portal import PortalService
from keystile.service.ratelimits import RatelimitService
from keystile.service.rootkeys import RootKeyService
from keystile.service.scheduler import Scheduler
from keystile.service.tokens import TokenService
from keystile.service.vault import MasterKeys, Vault
from keystile.service.verification import VerificationService
from keystile.service.webhooks import WebhookOptions, WebhookService
from keystile.service.websessions import WebSessions


class Keystile:
    """One deployment's services, wired to one storage, clock, change bus and verification cache."""

    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        bus: ChangeBus,
        verifier: Verifier,
        events: Events | None = None,
        masters: MasterKeys | None = None,
        token_issuer: str = DEFAULT_ISSUER_URL,
        webhooks: WebhookOptions | None = None,
    ) -> None:
        self.ctx = Context(storage, clock, bus, verifier)
        self.events = events if events is not None else Events(storage, clock)
        """Verification events (SPEC O1): recorded by :attr:`verification`, written by ``events.writer``."""
        self._closers: list[Callable[[], Awaitable[None]]] = []
        bus.subscribe(verifier.apply_changes)
        self.apis = ApiService(self.ctx)
        self.vault = Vault(self.ctx, masters if masters is not None else MasterKeys(None))
        """The master and data keys of recoverable keys (SPEC K3)."""
        self.keys = KeyService(self.ctx, self.apis, self.vault)
        self.imports = ImportService(self.ctx, self.apis, self.keys, self.vault)
        self.root_keys = RootKeyService(self.ctx, self.keys)
        self.verification = VerificationService(self.ctx, self.events.recorder)
        self.audit = AuditService(self.ctx)
        self.identities = IdentityService(self.ctx)
        self.ratelimits = RatelimitService(self.ctx)
        self.analytics = AnalyticsService(self.ctx)
        self.leaks = LeakService(self.ctx, self.keys)
        self.tokens = TokenService(self.ctx, self.vault, self.verification, token_issuer)
        """API tokens (SPEC T1, T2): issued from keys, signed with keys sealed in the vault."""
        self.sessions = WebSessions(self.ctx)
        """The dashboard's and the portal's browser sessions, in storage (SPEC D1, D2)."""
        self.portal = PortalService(self.ctx, self.apis, self.keys, self.analytics, self.sessions)
        """The customer portal's sign-in links and its owner-bound key actions (SPEC D2)."""
        self.webhooks = WebhookService(self.ctx, self.vault, webhooks or WebhookOptions())
        """Webhook endpoints and their deliveries (SPEC R5); :meth:`start_webhooks` delivers them."""
        self._webhook_worker: Deliverer | None = None

    def start_webhooks(self) -> Deliverer:
        """Deliver webhooks and run their scheduler in the background (servers do; :meth:`close` stops it)."""
        if self._webhook_worker is None:
            self._webhook_worker = worker = Deliverer(self.ctx, self.webhooks)
            scheduler = Scheduler(self.ctx, self.webhooks.options.scan_ms)
            watch = self.verification.credits_watch = CreditsWatch(self.ctx)
            worker.background += [watch.flush, scheduler.run_due]
            worker.start()
        return self._webhook_worker

    @property
    def storage(self) -> Storage:
        return self.ctx.storage

    @classmethod
    def create(
        cls,
        storage: Storage,
        settings: Settings,
        clock: Clock | None = None,
        *,
        bus: ChangeBus | None = None,
        spender: Spender | None = None,
        events_process: bool = False,
    ) -> Keystile:
        """Wire the services around an opened storage as ``settings`` say: by default with in-process limits,
        database credits and a change bus for this process only (:meth:`open` wires Redis or PostgreSQL). With
        ``events_process`` and ``settings.events_writer == "process"``, a child process writes the events (servers;
        never for ``memory://``)."""
        clock = clock or SystemClock()
        bus = bus or LocalChangeBus()
        ttl_ms = settings.cache_ttl_ms
        if ttl_ms is None:
            # Pushed changes reach this cache within a second, so entries may live longer (SPEC V6).
            ttl_ms = NOTIFIED_CACHE_TTL_MS if bus.notifying else DEFAULT_CACHE_TTL_MS
        verifier = Verifier(
            storage,
            clock,
            ttl_s=ttl_ms / 1000,
            # While the notification channel is lost, changes no longer reach the cache (SPEC V6).
            fallback_ttl_s=DEFAULT_CACHE_TTL_MS / 1000,
            size=settings.cache_size,
            spender=spender or LocalSpender(storage),
        )
        events = Events(
            storage,
            clock,
            enabled=settings.events,
            capacity=settings.events_buffer,
            interval_s=settings.events_flush_ms / 1000,
            raw_days=settings.events_retention_days,
            rollup_days=settings.rollups_retention_days,
            process=_writer_process(settings) if events_process else None,
        )
        webhooks = WebhookOptions(
            allow_private=settings.webhooks_allow_private,
            backoff=Backoff(
                settings.webhooks_retry_base_ms, settings.webhooks_retry_max_ms, settings.webhooks_retry_window_ms
            ),
            timeout_ms=settings.webhooks_timeout_ms,
            poll_ms=settings.webhooks_poll_ms,
            scan_ms=settings.webhooks_scan_ms,
            enabled=settings.webhooks,
        )
        masters = MasterKeys.from_settings(settings)
        return cls(storage, clock, bus, verifier, events, masters, settings.issuer, webhooks)

    @classmethod
    async def open(
        cls, settings: Settings, clock: Clock | None = None, *, retention: bool = True, server: bool = False
    ) -> Keystile:
        """Open the configured storage (without migrating it), the limits backend and the change bus, wire the
        services and start the event writer (and, with ``retention``, the hourly event retention: servers run
        it, one-shot commands need not); :meth:`close` stops them. A ``server`` may write events from a child
        process (``KEYSTILE_EVENTS_WRITER``). Raises StorageError when the database cannot
        be reached (an unreachable Redis is not an error: Keystile works without it until it is back)."""
        from keystile.service.backends import open_backends
        from keystile.storage import open_storage

        clock = clock or SystemClock()
        storage = await open_storage(settings.database_url, clock, timeout_s=settings.database_timeout_ms / 1000)
        try:
            backends = await open_backends(settings, storage, clock)
        except BaseException:
            await storage.close()
            raise
        ks = cls.create(storage, settings, clock, bus=backends.bus, spender=backends.spender, events_process=server)
        ks._closers = [backends.close]
        ks.events.start(retention=retention)
        return ks

    async def close(self) -> None:
        """Stop background work (flushing what it holds: buffered events, credits), then close the storage."""
        try:
            if self._webhook_worker is not None:
                await self._webhook_worker.close()
                self._webhook_worker = None
            await self.events.close()
        finally:
            if self._closers:
                for close in self._closers:
                    await close()
                self._closers = []
            else:
                await self.ctx.bus.close()
            await self.ctx.storage.close()


def _writer_process(settings: Settings) -> WriterProcess | None:
    """Where a child process writes the events, when the settings want one and the database is not in memory."""
    if settings.events_writer != "process" or urlsplit(settings.database_url).scheme.lower() == "memory":
        return None
    return WriterProcess(settings.database_url, settings.database_timeout_ms / 1000, settings.log_level)


__all__ = ["CLI_ACTOR", "Actor", "Keystile", "Principal"]
