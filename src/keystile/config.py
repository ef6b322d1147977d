"""Settings (SPEC X1): environment variables, each with a matching CLI flag.

``Settings.from_env`` takes the environment as an argument, so tests pass a plain dict and nothing is read at
import time.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as _field
from pathlib import Path
from typing import Any, overload
from urllib.parse import parse_qsl, urlsplit

from keystile.core.netaddr import normalise_allowlist
from keystile.errors import InvalidInput

DEFAULT_DATA_DIR = "./keystile-data"
DEFAULT_CACHE_TTL_MS = 5_000
NOTIFIED_CACHE_TTL_MS = 60_000
"""The cache TTL when changes are pushed to every process (Redis or PostgreSQL notifications, SPEC V6)."""
DEFAULT_ISSUER_URL = "http://127.0.0.1:8787"
"""The ``iss`` of API tokens when nothing else says (the default host and port)."""
DEFAULT_TRUSTED_PROXIES = ("127.0.0.0/8", "::1/128")
DEFAULT_HSTS = "max-age=63072000"
"""Two years, as browsers' preload lists ask (SPEC S1)."""
_HSTS_RE = re.compile(r"max-age=[0-9]{1,10}([ \t]*;[ \t]*(includeSubDomains|preload))*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting Keystile reads; see ``docs/configuration.md``."""

    data_dir: Path = Path(DEFAULT_DATA_DIR)
    database_url: str = ""
    database_timeout_ms: int = 5_000
    """The deadline of each round trip to PostgreSQL (connecting, a query); a database that does not answer
    within it counts as unreachable."""
    redis_url: str | None = None
    redis_prefix: str = "keystile:"
    redis_timeout_ms: int = 250
    """How long a Redis round trip may take before Redis counts as down (SPEC L2: fail open or closed at once)."""
    host: str = "127.0.0.1"
    port: int = 8787
    workers: int = 1
    master_key: str | None = _field(default=None, repr=False)
    """The master key itself (base64 or hex; SPEC K3), instead of ``master_key_file``. A secret: masked when shown."""
    master_key_file: Path | None = None
    master_key_previous: str | None = _field(default=None, repr=False)
    """The master key before a rotation, still accepted to open data keys it wrapped (base64 or hex)."""
    master_key_previous_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    hsts: str = DEFAULT_HSTS
    """The ``Strict-Transport-Security`` value sent on every HTTPS response (SPEC S1); ``off`` sends none."""
    cache_ttl_ms: int | None = None
    """``None``: 5 s, or 60 s when a notifying change bus pushes changes (see ``Keystile.create``)."""
    cache_size: int = 100_000
    trusted_proxies: tuple[str, ...] = DEFAULT_TRUSTED_PROXIES
    ratelimit_on_redis_failure: str = "open"
    credits_mode: str = "database"
    max_body_bytes: int = 1024 * 1024
    max_header_bytes: int = 16 * 1024
    body_timeout_ms: int = 10_000
    """How long a request may take to send its body, from when the server starts reading it; a slower one is
    answered 408 (a client that sends its headers and then its body slowly, or never, holds a request until then)."""
    log_level: str = "info"
    events: bool = True
    """Record every verification (SPEC O1); off only to measure what recording costs (SPEC P6)."""
    events_buffer: int = 100_000
    """Events held in memory waiting to be written; beyond this they are dropped and counted."""
    events_flush_ms: int = 1_000
    events_writer: str = "process"
    """Who writes the events a server records: a child process of each server process (``process``: the serving
    event loop only hands records over, SPEC P2/P6), or the server process itself (``inline``). One-shot commands
    and ``memory://`` always write inline."""
    events_retention_days: int = 30
    rollups_retention_days: int = 400
    leaks_public_keys: Path | None = None
    """GitHub's secret scanning public keys (JSON or PEM) that sign ``POST /v1/leaks``; none: the route is off."""
    auth_api_ids: tuple[str, ...] = ()
    """The APIs whose keys forward auth (``/v1/auth``, SPEC V5) may verify; empty: any API named by ``api_id``.
    With exactly one, it is the default ``api_id``."""
    auth_limited_status: int = 429
    """What ``/v1/auth`` answers for ``RATE_LIMITED``/``USAGE_EXCEEDED``: 429, or 403 for nginx's auth_request."""
    auth_failures_per_minute: int = 100
    token_issuer: str | None = None
    """The ``iss`` of API tokens (SPEC T1); default the server's own URL (``http(s)://host:port``)."""
    """Failed ``/v1/auth`` attempts (401s) allowed per client IP and minute before it answers 429; 0: no limit."""
    webhooks: bool = True
    """Deliver webhooks and run their scheduler in ``keystile serve`` (SPEC R5); off: events wait in the outbox."""
    webhooks_allow_private: bool = False
    """Let webhook endpoints be loopback, link-local or private addresses (SSRF guard off; tests, private nets)."""
    webhooks_timeout_ms: int = 10_000
    """How long one webhook post may take."""
    webhooks_retry_base_ms: int = 5_000
    """The first retry's delay; each next one doubles (with jitter), up to ``webhooks_retry_max_ms``."""
    webhooks_retry_max_ms: int = 3_600_000
    webhooks_retry_window_ms: int = 3 * 86_400_000
    """How long a delivery is retried before it is marked ``failed`` (3 days)."""
    webhooks_poll_ms: int = 1_000
    """How often the outbox is checked for due deliveries."""
    webhooks_scan_ms: int = 60_000
    """How often the scheduler looks for keys expiring, expired or due for rotation."""

    def __post_init__(self) -> None:
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'keystile.db'}")
        if self.master_key_file is None:
            object.__setattr__(self, "master_key_file", self.data_dir / "master.key")

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> Settings:
        """Settings from ``KEYSTILE_*`` variables; ``overrides`` (CLI flags) win. Raises InvalidInput."""
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            name = f"KEYSTILE_{field.name.upper()}"
            if overrides.get(field.name) is not None:
                values[field.name] = _coerce(field.name, name, overrides[field.name])
            elif environ.get(name, "") != "":
                values[field.name] = _coerce(field.name, name, environ[name])
        return cls(**values)

    @property
    def issuer(self) -> str:
        """The ``iss`` of API tokens: ``token_issuer``, else this server's URL."""
        if self.token_issuer:
            return self.token_issuer
        scheme = "https" if self.tls_cert is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def public(self) -> dict[str, Any]:
        """The settings with secrets (passwords in URLs) masked, for ``keystile serve`` to print."""
        shown = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        for name in ("database_url", "redis_url"):
            shown[name] = mask_url(shown[name])
        for name in _SECRETS:
            if shown[name] is not None:
                shown[name] = "***"
        return shown


_SECRETS = ("master_key", "master_key_previous")
_QUERY_PASSWORD_RE = re.compile(r"([?&][a-z_]*password=)[^&#]*", re.IGNORECASE)


@overload
def mask_url(url: str) -> str: ...
@overload
def mask_url(url: None) -> None: ...
def mask_url(url: str | None) -> str | None:
    """``url`` as it may be shown (logs, ``keystile serve``): its password, in the user info or a ``password``
    query parameter (PostgreSQL takes one), replaced by ``***``."""
    if url is None or "://" not in url:
        return url
    url = _QUERY_PASSWORD_RE.sub(r"\1***", url)
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url


_INTS = {
    "port": (1, 65535),
    "redis_timeout_ms": (10, 60_000),
    "workers": (1, 256),
    "cache_ttl_ms": (0, 86_400_000),
    "database_timeout_ms": (10, 3_600_000),
    "cache_size": (1, 100_000_000),
    "max_body_bytes": (1024, 1024**3),
    "max_header_bytes": (1024, 1024 * 1024),
    "body_timeout_ms": (100, 3_600_000),
    "events_buffer": (1, 100_000_000),
    "events_flush_ms": (1, 3_600_000),
    "events_retention_days": (1, 36_500),
    "rollups_retention_days": (1, 36_500),
    "auth_failures_per_minute": (0, 1_000_000),
    "webhooks_timeout_ms": (100, 600_000),
    "webhooks_retry_base_ms": (1, 86_400_000),
    "webhooks_retry_max_ms": (1, 86_400_000),
    "webhooks_retry_window_ms": (1, 30 * 86_400_000),
    "webhooks_poll_ms": (10, 3_600_000),
    "webhooks_scan_ms": (100, 86_400_000),
}
_SWITCHES = {"on": True, "true": True, "1": True, "yes": True, "off": False, "false": False, "0": False, "no": False}
_CHOICES = {
    "ratelimit_on_redis_failure": ("open", "closed"),
    "credits_mode": ("database", "redis"),
    "log_level": ("debug", "info", "warning", "error"),
    "events_writer": ("process", "inline"),
}
_BOOLEANS = ("events", "webhooks", "webhooks_allow_private")
_PATHS = ("data_dir", "master_key_file", "master_key_previous_file", "tls_cert", "tls_key", "leaks_public_keys")


def _coerce(field: str, variable: str, value: Any) -> Any:
    if field in _INTS:
        low, high = _INTS[field]
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise InvalidInput(f"{variable} must be a whole number", code="invalid_setting") from None
        if not low <= number <= high:
            raise InvalidInput(f"{variable} must be between {low} and {high}", code="invalid_setting")
        return number
    if field in _CHOICES:
        text = str(value).lower()
        if text not in _CHOICES[field]:
            choices = " or ".join(_CHOICES[field])
            raise InvalidInput(f"{variable} must be {choices}", code="invalid_setting")
        return text
    if field in _BOOLEANS:
        if isinstance(value, bool):
            return value
        switch = _SWITCHES.get(str(value).strip().lower())
        if switch is None:
            raise InvalidInput(f"{variable} must be on or off", code="invalid_setting")
        return switch
    if field in _PATHS:
        return Path(value)
    if field == "redis_url":
        text = str(value)
        problem = _redis_url_problem(text)
        if problem is not None:
            raise InvalidInput(f"{variable} {problem}", code="invalid_setting")
        return text
    if field == "hsts":
        text = str(value).strip()
        if text.lower() != "off" and not _HSTS_RE.fullmatch(text):
            raise InvalidInput(
                f"{variable} must be off or a Strict-Transport-Security value like max-age=63072000",
                code="invalid_setting",
            )
        return "off" if text.lower() == "off" else text
    if field == "auth_limited_status":
        if str(value).strip() not in ("429", "403"):
            raise InvalidInput(f"{variable} must be 429 or 403", code="invalid_setting")
        return int(value)
    if field == "auth_api_ids":
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(dict.fromkeys(item.strip() for item in items if item.strip()))
    if field == "trusted_proxies":
        items = value.split(",") if isinstance(value, str) else list(value)
        try:
            return normalise_allowlist(item.strip() for item in items if item.strip())
        except InvalidInput as exc:
            raise InvalidInput(f"{variable}: {exc.detail}", code="invalid_setting") from None
    return str(value)


_REDIS_TLS_OPTIONS = frozenset(
    {"ssl_ca_certs", "ssl_ca_data", "ssl_ca_path", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_ciphers"}
)
# The values whose meaning redis-py and Keystile agree on (redis-py reads "off" as true).
_REDIS_CHOICES = {
    "ssl_check_hostname": ("true", "false", "yes", "no", "1", "0"),
    "ssl_cert_reqs": ("none", "optional", "required"),
}
_NAME_RE = re.compile(r"[a-z_]{1,40}")


def _redis_url_problem(url: str) -> str | None:
    """What is wrong with a Redis URL, in words that follow the setting's name (``None``: nothing).

    Accepted: ``redis://`` or ``rediss://``, a host, a port from 1 to 65535 if given, a database path that is
    empty or a whole number (``/0``), and as query parameters only what redis-py understands and both of
    Keystile's Redis connections apply: ``db`` and, with ``rediss://``, the TLS options. The answer never quotes
    the URL, which may hold a password (a query parameter is named only when its name is a plain word).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is not a number, or out of range; an unbalanced [ ] host
        return (
            "must be a URL like redis://:password@localhost:6379/0, with a port from 1 to 65535 (a / ? # or @ in the"
            " password percent-encoded)"
        )
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss") or not url.lower().startswith(("redis://", "rediss://")):
        return "must be a redis:// or rediss:// URL"
    if not parts.hostname:
        return "must name a host, like redis://localhost:6379/0"
    if port == 0:
        return "must have a port from 1 to 65535"
    if parts.fragment:
        return "must not have a #fragment"
    database = parts.path.removeprefix("/")
    if database and not _database_number(database):
        return "must end in a database number (/0, /1 ...) or nothing after the host"
    seen: set[str] = set()
    for name, value in parse_qsl(parts.query, keep_blank_values=True):  # as redis-py reads it
        shown = name if _NAME_RE.fullmatch(name) else "parameter"
        if name in seen:
            return f"has the query parameter {shown} twice"
        seen.add(name)
        if name == "db":
            if not _database_number(value):
                return "has a db= that is not a database number"
        elif name in _REDIS_TLS_OPTIONS or name in _REDIS_CHOICES:
            if scheme != "rediss":
                return f"has {name}, a TLS option: use rediss:// for TLS"
            given = value.lower() if name == "ssl_check_hostname" else value
            if name in _REDIS_CHOICES and given not in _REDIS_CHOICES[name]:
                return f"must have {name}= one of {', '.join(_REDIS_CHOICES[name])}"
        else:
            known = ", ".join(["db", *sorted(_REDIS_TLS_OPTIONS | _REDIS_CHOICES.keys())])
            unknown = f"an unknown query parameter {shown}" if shown != "parameter" else "an unknown query parameter"
            return f"has {unknown} (Keystile applies {known})"
    return None


def _database_number(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 10 and int(text) < 2**31
