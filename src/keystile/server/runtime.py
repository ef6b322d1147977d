"""What the HTTP layer shares: the settings and the services (opened at startup when not handed in)."""

from __future__ import annotations

from keystile.config import Settings
from keystile.errors import StorageError
from keystile.service import Keystile


class Runtime:
    """The settings and, once started, the :class:`Keystile` services of one app."""

    __slots__ = ("keystile", "max_body", "max_headers", "settings")

    def __init__(self, settings: Settings, keystile: Keystile | None) -> None:
        self.settings = settings
        # None until the ASGI lifespan has opened storage; the fast path reads the attribute directly.
        self.keystile = keystile
        self.max_body = settings.max_body_bytes
        self.max_headers = settings.max_header_bytes

    @property
    def ks(self) -> Keystile:
        """The services; raises :class:`StorageError` (503) while they are not open yet."""
        if self.keystile is None:
            raise StorageError("the server is starting and has not opened its storage yet", code="not_ready")
        return self.keystile
