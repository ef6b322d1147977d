"""``keystile proxy`` (SPEC I4): key checks in front of any HTTP API, served by granian like ``keystile serve``.

The proxy opens the configured database itself (no ``keystile serve`` needed, no network hop per request), but
never creates or migrates it: it refuses to start on a database that ``keystile init`` has not set up, on an
``--api-id`` that does not exist, or on a permission query that does not parse, rather than refuse every request.
"""

from __future__ import annotations

import dataclasses
import logging.config
import os
from typing import TYPE_CHECKING, Any

import click

from keystile.cli._listen import AddressSettings, check_address
from keystile.cli._runtime import options, run
from keystile.cli.serve import checked, export, listening_url, setting_flags_except, start
from keystile.observability.logs import logging_config

if TYPE_CHECKING:
    from keystile.proxy import ProxyOptions
    from keystile.service import Keystile

# Settings the proxy has no use for. --listen replaces --host and --port: the proxy usually runs beside
# `keystile serve`, so it has its own default.
_NOT_FLAGS = (
    "host",
    "port",
    "max_body_bytes",
    "events_retention_days",
    "rollups_retention_days",
    "leaks_public_keys",
)
_ADDRESS = AddressSettings("--listen or KEYSTILE_PROXY_LISTEN", "--listen or KEYSTILE_PROXY_LISTEN")


@click.command()
@click.option("--upstream", metavar="URL", help="Where valid requests go, e.g. http://127.0.0.1:8000 (required).")
@click.option("--listen", metavar="HOST:PORT", help="Address to listen on [default: 127.0.0.1:8788].")
@click.option("--api-id", help="Accept only keys of this API (others are refused as not found).")
@click.option("--permissions", metavar="QUERY", help="A permission query every key must satisfy, e.g. 'docs.read'.")
@click.option("--cost", type=int, help="Credits each request spends [default: 1].")
@click.option("--upstream-timeout", "upstream_timeout_s", type=float, help="Seconds to wait on the upstream [60].")
@setting_flags_except(*_NOT_FLAGS)
def proxy(
    upstream: str | None,
    listen: str | None,
    api_id: str | None,
    permissions: str | None,
    cost: int | None,
    upstream_timeout_s: float | None,
    **flags: Any,
) -> None:
    """Put key checks in front of an HTTP API.

    Every request must carry a key (Authorization: Bearer, X-API-Key or ?api_key=). Valid ones are forwarded to
    --upstream without the key, with X-Keystile-Key-Id, X-Keystile-Owner-Id, X-Keystile-Api-Id and RateLimit-*
    headers; others get 401, 403 or 429 as problem+json. Each option has a KEYSTILE_PROXY_* variable (e.g.
    KEYSTILE_PROXY_UPSTREAM), and the shared settings their KEYSTILE_* ones. See docs/proxy.md.
    """
    from keystile.proxy import APP_FACTORY, ProxyOptions

    given = {
        "upstream": upstream,
        "listen": listen,
        "api_id": api_id,
        "permissions": permissions,
        "cost": cost,
        "upstream_timeout_s": upstream_timeout_s,
    }
    proxy_options = ProxyOptions.from_env(os.environ, **given)
    host, port = proxy_options.address()
    settings = checked(dataclasses.replace(options().settings(**flags), host=host, port=port))
    check_address(settings, _ADDRESS)
    logging.config.dictConfig(logging_config(settings.log_level))

    async def ready(ks: Keystile) -> None:
        await _check(ks, proxy_options)

    run(ready, settings=settings)
    export(settings, os.environ)
    proxy_options.export(os.environ)
    announce = f"Keystile proxy listening on {listening_url(settings)}, forwarding to {proxy_options.upstream}"
    start(settings, APP_FACTORY, announce=announce, names=_ADDRESS)


async def _check(ks: Keystile, proxy_options: ProxyOptions) -> None:
    """Raise NotFound for an ``--api-id`` that does not exist."""
    from keystile.service import CLI_ACTOR

    if proxy_options.api_id is not None:
        await ks.apis.get(CLI_ACTOR.principal, proxy_options.api_id)
