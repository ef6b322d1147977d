"""What both clients are built from: base URL, root key, timeout, retries, and their environment variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from keystile import __version__

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


def config_from_env(environ: Mapping[str, str]) -> tuple[str, str | None]:
    """The base URL and root key of ``KEYSTILE_URL`` and ``KEYSTILE_ROOT_KEY``; raises ValueError without a URL."""
    url = environ.get(URL_VARIABLE)
    if not url:
        raise ValueError(f"set {URL_VARIABLE} to the Keystile server's URL, such as http://127.0.0.1:8787")
    return url, environ.get(ROOT_KEY_VARIABLE) or None
