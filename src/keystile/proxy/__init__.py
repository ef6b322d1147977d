"""``keystile proxy`` (SPEC I4): key checks in front of any HTTP API, with one command.

Every request's key (SPEC V4) is verified in-process against the configured storage; a valid one is forwarded to
the upstream without the key and with the caller's identity (``X-Keystile-Key-Id``, ``-Owner-Id``, ``-Api-Id``)
and rate-limit state (``RateLimit-*``), bodies streamed both ways. Refusals are problems with the statuses of
forward auth (SPEC V5). See ``docs/proxy.md``.
"""

from __future__ import annotations

import os

from keystile.config import Settings
from keystile.http.stop_signals import stop_on_first_signal
from keystile.proxy._app import ProxyApp, new_client
from keystile.proxy._options import DEFAULT_LISTEN, ProxyOptions

APP_FACTORY = "keystile.proxy:app_from_env"


def app_from_env() -> ProxyApp:
    """The proxy configured by ``KEYSTILE_*`` and ``KEYSTILE_PROXY_*`` variables (granian's factory target)."""
    stop_on_first_signal()
    return ProxyApp(Settings.from_env(os.environ), ProxyOptions.from_env(os.environ))


__all__ = ["APP_FACTORY", "DEFAULT_LISTEN", "ProxyApp", "ProxyOptions", "app_from_env", "new_client"]
