"""The services behind every interface: HTTP, CLI and dashboard are thin shells over :class:`Keystile`."""

from __future__ import annotations

from keystile.config import Settings
from keystile.core.clock import Clock, SystemClock
from keystile.core.ports import ChangeBus, LocalChangeBus, Storage
from keystile.core.verify import Verifier
from keystile.limits.local import LocalSpender
from keystile.service.apis import ApiService
from keystile.service.audit import AuditService
from keystile.service.authz import CLI_ACTOR, Actor, Principal
from keystile.service.context import Context
from keystile.service.keys import KeyService
from keystile.service.rootkeys import RootKeyService
from keystile.service.verification import VerificationService


class Keystile:
    """One deployment's services, wired to one storage, clock, change bus and verification cache."""

    def __init__(self, storage: Storage, clock: Clock, bus: ChangeBus, verifier: Verifier) -> None:
        self.ctx = Context(storage, clock, bus, verifier)
        bus.subscribe(verifier.apply_changes)
        self.apis = ApiService(self.ctx)
        self.keys = KeyService(self.ctx, self.apis)
        self.root_keys = RootKeyService(self.ctx, self.keys)
        self.verification = VerificationService(self.ctx)
        self.audit = AuditService(self.ctx)

    @property
    def storage(self) -> Storage:
        return self.ctx.storage

    @classmethod
    def create(cls, storage: Storage, settings: Settings, clock: Clock | None = None) -> Keystile:
        """Wire the services around an opened storage as ``settings`` say."""
        clock = clock or SystemClock()
        verifier = Verifier(
            storage,
            clock,
            ttl_s=settings.cache_ttl_ms / 1000,
            size=settings.cache_size,
            spender=LocalSpender(storage),
        )
        return cls(storage, clock, LocalChangeBus(), verifier)

    @classmethod
    async def open(cls, settings: Settings, clock: Clock | None = None) -> Keystile:
        """Open the configured storage (without migrating it) and wire the services."""
        from keystile.storage import open_storage

        clock = clock or SystemClock()
        return cls.create(await open_storage(settings.database_url, clock), settings, clock)

    async def close(self) -> None:
        await self.ctx.bus.close()
        await self.ctx.storage.close()


__all__ = ["CLI_ACTOR", "Actor", "Keystile", "Principal"]
