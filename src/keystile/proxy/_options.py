"""What ``keystile proxy`` is told besides the shared settings: where to forward, what to require, where to listen.

Each option is a ``KEYSTILE_PROXY_*`` variable with a matching flag (flags win), so that granian's workers, which
build the app from the environment, see what the command line said.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from keystile.core.permissions import parse_query
from keystile.errors import InvalidInput

DEFAULT_LISTEN = "127.0.0.1:8788"
DEFAULT_TIMEOUT_S = 60.0
_PREFIX = "KEYSTILE_PROXY_"


@dataclass(frozen=True, slots=True)
class ProxyOptions:
    """The proxy's own options; see ``docs/proxy.md``."""

    upstream: str
    """The base URL requests are forwarded to (``http://`` or ``https://``, optionally with a path prefix)."""
    listen: str = DEFAULT_LISTEN
    api_id: str | None = None
    """Accept keys of this API only (others are ``NOT_FOUND``)."""
    permissions: str | None = None
    """A permission query every request's key must satisfy (SPEC V3)."""
    cost: int | None = None
    """Credits each request spends (default 1)."""
    upstream_timeout_s: float = DEFAULT_TIMEOUT_S
    """How long to wait for the upstream to connect, accept a chunk or send one (then 504)."""

    def __post_init__(self) -> None:
        parts = urlsplit(self.upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise InvalidInput(
                "--upstream must be an http:// or https:// URL without a query, like http://127.0.0.1:8000",
                code="invalid_setting",
            )
        self.address()  # validates --listen
        if self.permissions is not None:
            parse_query(self.permissions)
        if self.cost is not None and not 0 <= self.cost <= 1_000_000:
            raise InvalidInput("--cost must be between 0 and 1000000", code="invalid_setting")
        if not 0 < self.upstream_timeout_s <= 3600:
            raise InvalidInput(
                "--upstream-timeout must be more than 0 and at most 3600 seconds", code="invalid_setting"
            )

    def address(self) -> tuple[str, int]:
        """``--listen`` as ``(host, port)``; raises InvalidInput."""
        host, _, port = self.listen.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not host or not (port.isascii() and port.isdigit() and len(port) <= 5) or not 0 < int(port) < 65536:
            raise InvalidInput("--listen must be HOST:PORT, like 127.0.0.1:8788", code="invalid_setting")
        return host, int(port)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> ProxyOptions:
        """Options from ``KEYSTILE_PROXY_*`` variables; ``overrides`` (flags) win. Raises InvalidInput."""
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = overrides.get(field.name)
            if raw is None and environ.get(_PREFIX + field.name.upper(), "") != "":
                raw = environ[_PREFIX + field.name.upper()]
            if raw is not None:
                values[field.name] = _coerce(field.name, raw)
        if "upstream" not in values:
            raise InvalidInput(
                "keystile proxy needs --upstream URL (or KEYSTILE_PROXY_UPSTREAM)", code="invalid_setting"
            )
        return cls(**values)

    def export(self, environ: MutableMapping[str, str]) -> None:
        """Write the options into ``environ`` as ``KEYSTILE_PROXY_*`` (unset ones are removed), for the workers."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None:
                environ.pop(_PREFIX + field.name.upper(), None)
            else:
                environ[_PREFIX + field.name.upper()] = str(value)


def _coerce(name: str, raw: Any) -> Any:
    try:
        if name == "cost":
            return int(raw)
        if name == "upstream_timeout_s":
            return float(raw)
    except (TypeError, ValueError):
        raise InvalidInput(f"{_PREFIX}{name.upper()} must be a number", code="invalid_setting") from None
    return str(raw)
