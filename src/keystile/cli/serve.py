"""``keystile serve``: first-run setup, then the HTTP server (granian, in-process) on the resolved settings.

The server's workers build the app from the environment (``keystile.server.app:app_from_env``), so the settings
resolved here, flags included, are exported as ``KEYSTILE_*`` variables before granian starts them.

Logs are JSON lines on stderr (``keystile.observability.logs``), in this process and in granian's workers;
stdout carries what ``serve`` tells the terminal (the first root key, the address).

Settings the server cannot honour (a busy port, an address the machine lacks, unusable TLS files) are refused
before the first-run setup, in one line with an exit code of its own (``keystile.cli._listen``).
"""

from __future__ import annotations

import dataclasses
import logging.config
import os
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any, TypeVar

import click

from keystile.cli._errors import BadInput
from keystile.cli._listen import SERVE_ADDRESS, AddressSettings, check_address, check_tls, listen_failure, os_error_of
from keystile.cli._output import warn
from keystile.cli._runtime import options
from keystile.cli.rootkeys import ROOT_KEY_FILE_HELP
from keystile.cli.setup import set_up, show_setup
from keystile.config import Settings
from keystile.observability.logs import logging_config

F = TypeVar("F", bound=Callable[..., Any])

APP_FACTORY = "keystile.server.app:app_from_env"
_PATH = click.Path(path_type=Path)

# One flag per setting (SPEC X1; docs/configuration.md), named after its KEYSTILE_* variable.
SETTING_FLAGS: list[tuple[str, Any, str]] = [
    ("data_dir", click.Path(path_type=Path, file_okay=False), "Where the SQLite database and master key live."),
    ("database_url", str, "sqlite:///path, postgresql://user:pass@host/db or memory://."),
    ("database_timeout_ms", int, "Deadline of each PostgreSQL round trip [default: 5000]."),
    ("host", str, "Address to listen on [default: 127.0.0.1]."),
    ("port", int, "Port to listen on [default: 8787]."),
    ("workers", int, "Worker processes [default: 1; more need --redis-url]."),
    ("redis_url", str, "redis:// or rediss:// URL (shared rate limits and credits)."),
    ("redis_prefix", str, "Prefix of every Redis key [default: keystile:]."),
    ("redis_timeout_ms", int, "How long a Redis round trip may take before Redis counts as down [default: 250]."),
    ("master_key", str, "The master key, base64 or hex (prefer the variable: a flag shows in the process list)."),
    ("master_key_file", _PATH, "The master key file [default: <data dir>/master.key]."),
    ("master_key_previous", str, "The master key before a rotation, still accepted (base64 or hex)."),
    ("master_key_previous_file", _PATH, "A file holding the master key before a rotation, still accepted."),
    ("tls_cert", _PATH, "TLS certificate (PEM); serve HTTPS with --tls-key."),
    ("tls_key", _PATH, "TLS private key (PEM)."),
    ("hsts", str, "Strict-Transport-Security on HTTPS answers [default: max-age=63072000; off: none]."),
    ("cache_ttl_ms", int, "How long a verified key is cached [default: 5000; 60000 with Redis or PostgreSQL]."),
    ("cache_size", int, "Keys kept in the verification cache [default: 100000]."),
    (
        "trusted_proxies",
        str,
        "Comma-separated CIDRs whose X-Forwarded-* headers are believed [default: 127.0.0.0/8,::1/128].",
    ),
    ("ratelimit_on_redis_failure", click.Choice(["open", "closed"]), "Rate limits when Redis fails."),
    ("credits_mode", click.Choice(["database", "redis"]), "Where credits are counted [default: database]."),
    ("max_body_bytes", int, "Largest request body [default: 1048576]."),
    ("max_header_bytes", int, "Largest total of request headers [default: 16384]."),
    ("body_timeout_ms", int, "How long a request may take to send its body; then 408 [default: 10000]."),
    ("log_level", click.Choice(["debug", "info", "warning", "error"]), "Log level [default: info]."),
    ("events", click.Choice(["on", "off"]), "Record every verification as an event [default: on]."),
    ("events_buffer", int, "Events held in memory for the writer; more are dropped [default: 100000]."),
    ("events_flush_ms", int, "How often buffered events are written [default: 1000]."),
    ("events_writer", click.Choice(["process", "inline"]), "Who writes events: a writer process [default] or inline."),
    ("events_retention_days", int, "Days raw events are kept [default: 30]."),
    ("rollups_retention_days", int, "Days hourly and daily event counts are kept [default: 400]."),
    ("leaks_public_keys", _PATH, "GitHub's secret scanning public keys (JSON or PEM) for POST /v1/leaks."),
    ("auth_api_ids", str, "Comma-separated APIs whose keys /v1/auth may verify [default: any named by api_id]."),
    ("auth_limited_status", click.Choice(["429", "403"]), "/v1/auth status for RATE_LIMITED [default: 429]."),
    ("auth_failures_per_minute", int, "Failed /v1/auth attempts per client IP a minute [default: 100; 0: off]."),
    ("token_issuer", str, "The iss of API tokens [default: this server's URL, http://host:port]."),
    ("webhooks", click.Choice(["on", "off"]), "Deliver webhooks and run their scheduler [default: on]."),
    ("webhooks_allow_private", click.Choice(["true", "false"]), "Let webhook URLs be private addresses."),
    ("webhooks_timeout_ms", int, "How long one webhook post may take [default: 10000]."),
    ("webhooks_retry_base_ms", int, "First webhook retry's delay, doubling with jitter [default: 5000]."),
    ("webhooks_retry_max_ms", int, "Longest delay between webhook retries [default: 3600000]."),
    ("webhooks_retry_window_ms", int, "How long a webhook is retried before it fails [default: 259200000]."),
    ("webhooks_poll_ms", int, "How often the webhook outbox is checked [default: 1000]."),
    ("webhooks_scan_ms", int, "How often keys are scanned for expiry and rotation events [default: 60000]."),
]


def setting_flags(fn: F) -> F:
    """Decorate ``fn`` with one option per setting, in the order of :data:`SETTING_FLAGS`."""
    return setting_flags_except()(fn)


def setting_flags_except(*excluded: str) -> Callable[[F], F]:
    """Like :func:`setting_flags`, without the flags of the ``excluded`` settings."""

    def decorate(fn: F) -> F:
        for name, kind, text in reversed(SETTING_FLAGS):
            if name not in excluded:
                fn = _setting_flag(fn, name, kind, text)
        return fn

    return decorate


def _setting_flag(fn: F, name: str, kind: Any, text: str) -> F:
    flag = "--" + name.replace("_", "-")
    return click.option(flag, name, type=kind, default=None, help=f"{text} (env KEYSTILE_{name.upper()})")(fn)


def export(settings: Settings, environ: MutableMapping[str, str]) -> None:
    """Write every setting into ``environ`` as ``KEYSTILE_*`` (unset ones are removed), for the workers."""
    for field in dataclasses.fields(settings):
        name = f"KEYSTILE_{field.name.upper()}"
        value = getattr(settings, field.name)
        if value is None:
            environ.pop(name, None)
        elif isinstance(value, tuple):
            environ[name] = ",".join(value)
        else:
            environ[name] = str(value)


def listening_url(settings: Settings) -> str:
    scheme = "https" if settings.tls_cert and settings.tls_key else "http"
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"{scheme}://{host}:{settings.port}"


def checked(settings: Settings) -> Settings:
    """Refuse settings ``serve`` cannot honour (BadInput, BadTls), and run one worker without Redis (SPEC L2).

    The address is checked apart, by :func:`check_address`, just before the server is set up.
    """
    if settings.database_url.startswith("memory:"):
        raise BadInput(
            "memory:// lives inside one process, so the server's workers could not share it; "
            "use sqlite:///path or postgresql://",
            code="invalid_setting",
        )
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise BadInput("HTTPS needs both --tls-cert and --tls-key", code="invalid_setting")
    if settings.tls_cert is not None and settings.tls_key is not None:
        check_tls(settings.tls_cert, settings.tls_key)
    if settings.workers > 1 and not settings.redis_url:
        warn(
            f"running 1 worker instead of {settings.workers}: without --redis-url, rate limits would live in each "
            "worker's memory and be enforced per process, not per deployment."
        )
        settings = dataclasses.replace(settings, workers=1)
    return settings


def start(
    settings: Settings, target: str = APP_FACTORY, *, announce: str, names: AddressSettings = SERVE_ADDRESS
) -> None:
    """Run granian on the app factory ``target`` in this process until it is interrupted; print ``announce``
    once it has bound its address. Raises a CliError (named by ``names``) when it cannot bind it."""
    from granian import Granian
    from granian.constants import Interfaces
    from granian.log import LogLevels

    tls: dict[str, Any] = {}
    if settings.tls_cert is not None and settings.tls_key is not None:
        tls = {"ssl_cert": settings.tls_cert, "ssl_key": settings.tls_key}
    server = Granian(
        target=target,
        # JSON lines on stderr, applied by granian in its main process and again in each worker (SPEC O4).
        log_dictconfig=logging_config(settings.log_level),
        factory=True,
        interface=Interfaces.ASGI,
        address=settings.host,
        port=settings.port,
        workers=settings.workers,
        websockets=False,
        log_level=LogLevels(settings.log_level),
        # Events and metrics cover every request; an access log line costs more than a verification (SPEC O4).
        log_access=False,
        **tls,
    )
    server.on_startup(lambda: click.echo(announce))
    try:
        server.serve()
    except RuntimeError as exc:
        # check_address found the address free, but another program took it before granian bound it.
        number = os_error_of(exc)
        if number is None:
            raise
        raise listen_failure(number, settings, names) from None


@click.command()
@setting_flags
@click.option("--root-key-file", type=click.Path(path_type=Path, dir_okay=False), help=ROOT_KEY_FILE_HELP)
def serve(root_key_file: Path | None, **flags: Any) -> None:
    """Start the HTTP server.

    On an empty database it first does what keystile init does (schema, master key, first root key, printed
    once); pending migrations are applied. Every flag has a KEYSTILE_* environment variable; flags win.
    """
    settings = checked(options().settings(**flags))
    check_address(settings)
    logging.config.dictConfig(logging_config(settings.log_level))
    report, sink = set_up(settings, root_key_file=root_key_file, only_on_first_run=True)
    show_setup(report, settings, sink, as_json=False, first_run=True)
    export(settings, os.environ)
    start(settings, announce=f"Keystile listening on {listening_url(settings)}")
