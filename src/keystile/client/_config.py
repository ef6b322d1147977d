"""What both clients are built from: base URL, root key, timeout, retries, and their environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from keystile._version import __version__

URL_VARIABLE = "KEYSTILE_URL"
ROOT_KEY_VARIABLE = "KEYSTILE_ROOT_KEY"
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_RETRIES = 2
DEFAULT_BACKOFF_S = 0.1


@dataclass(frozen=True, slots=True)
class ClientConfig:
    base_url: str
    root_key: str | None
    timeout: float
    retries: int
    backoff: float

    def headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {"user-agent": f"keystile-python/{__version__}", "accept": "application/json"}
        if self.root_key is not None:
            headers["authorization"] = f"Bearer {self.root_key}"
        return {**headers, **(extra or {})}


class FromEnv:
    """``from_env`` of both clients."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> Self:
        """A client of ``KEYSTILE_URL`` with ``KEYSTILE_ROOT_KEY`` (``environ`` defaults to ``os.environ``);
        ``options`` as for the constructor. Raises ValueError without a URL."""
        env = os.environ if environ is None else environ
        url = env.get(URL_VARIABLE)
        if not url:
            raise ValueError(f"set {URL_VARIABLE} to the Keystile server's URL, such as http://127.0.0.1:8787")
        return cls(url, env.get(ROOT_KEY_VARIABLE) or None, **options)  # type: ignore[call-arg]
