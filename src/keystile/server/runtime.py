"""What the HTTP layer shares: the settings, the services (opened at startup when not handed in) and the
reference of the app's routes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from keystile.config import Settings
from keystile.errors import StorageError
from keystile.http.failures import FailureLimiter
from keystile.http.forwarded import TrustedProxies
from keystile.service import Keystile

if TYPE_CHECKING:
    from keystile.server.openapi import Reference


class Runtime:
    """The settings, the reference of the routes and, once started, the :class:`Keystile` services of one app."""

    __slots__ = ("_failures", "keystile", "max_body", "max_headers", "proxies", "reference", "settings")

    def __init__(self, settings: Settings, keystile: Keystile | None, reference: Reference) -> None:
        self.settings = settings
        self.reference = reference
        # None until the ASGI lifespan has opened storage; the fast path reads the attribute directly.
        self.keystile = keystile
        self.max_body = settings.max_body_bytes
        self.max_headers = settings.max_header_bytes
        self.proxies = TrustedProxies(settings.trusted_proxies)
        """Who may say, in forwarding headers, which address a request came from (SPEC S4)."""
        self._failures: FailureLimiter | None = None

    def failure_limiter(self) -> FailureLimiter:
        """The per-address limit of failed key attempts, one for forward auth and the OAuth token endpoint."""
        limiter = self._failures
        if limiter is None:
            ks = self.ks
            limiter = self._failures = FailureLimiter(
                ks.ctx.verifier.spender, ks.ctx.clock, self.settings.auth_failures_per_minute
            )
        return limiter

    @property
    def ks(self) -> Keystile:
        """The services; raises :class:`StorageError` (503) while they are not open yet."""
        if self.keystile is None:
            raise StorageError("the server is starting and has not opened its storage yet", code="not_ready")
        return self.keystile
