"""``keystile serve`` refuses a Redis URL it cannot use before starting (exit 2, the setting named), and never
prints the URL's password."""

from __future__ import annotations

import pytest

from .helpers import Shell, plain_error

PASSWORD = "s3cret-pw"


@pytest.mark.parametrize(
    "url", [f"redis://:{PASSWORD}@localhost:6379/abc", f"redis://:{PASSWORD}@localhost:6379/0?timeout=5"]
)
def test_serve_refuses_a_redis_url_it_cannot_use_without_printing_its_password(shell: Shell, url: str) -> None:
    # TLS files that do not exist: a serve that let the URL through stops there (exit 8) instead of serving.
    missing = ("--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem")
    for result in (
        shell("serve", "--redis-url", url, *missing),
        shell("serve", *missing, env={"KEYSTILE_REDIS_URL": url}),
    ):
        assert result.exit_code == 2
        assert "KEYSTILE_REDIS_URL" in plain_error(result)
        assert PASSWORD not in result.output
        assert not shell.data_dir.exists()
