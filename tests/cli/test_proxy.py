"""``keystile proxy`` refuses what it cannot honour before it listens (its traffic is in tests/proxy/)."""

from __future__ import annotations

import pytest

from keystile.proxy import ProxyOptions

from .helpers import Shell, create_api, init, plain_error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "needs --upstream"),
        (["--upstream", "ftp://example.org"], "http:// or https://"),
        (["--upstream", "http://127.0.0.1:9000?x=1"], "without a query"),
        (["--upstream", "http://127.0.0.1:9000", "--listen", "8788"], "HOST:PORT"),
        (["--upstream", "http://127.0.0.1:9000", "--listen", "127.0.0.1:²"], "HOST:PORT"),
        (["--upstream", "http://127.0.0.1:9000", "--listen", "127.0.0.1:٨٧٨٨"], "HOST:PORT"),
        (["--upstream", "http://127.0.0.1:9000", "--cost", "-1"], "--cost"),
        (["--upstream", "http://127.0.0.1:9000", "--upstream-timeout", "0"], "--upstream-timeout"),
        (["--upstream", "http://127.0.0.1:9000", "--permissions", "docs.read AND ("], "invalid_permission_query"),
        (["--upstream", "http://127.0.0.1:9000", "--tls-cert", "/nonexistent/cert.pem"], "--tls-key"),
    ],
)
def test_bad_options_exit_2_before_anything_starts(shell: Shell, args: list[str], message: str) -> None:
    result = shell("proxy", *args)
    assert result.exit_code == 2, result.output
    assert message in plain_error(result)


def test_the_proxy_needs_a_database_that_init_set_up(shell: Shell) -> None:
    result = shell("proxy", "--upstream", "http://127.0.0.1:9000")
    assert result.exit_code == 5, result.output
    assert "keystile init" in plain_error(result)
    assert not shell.data_dir.exists(), "the proxy never creates a database"


def test_the_proxy_needs_an_api_that_exists(shell: Shell) -> None:
    init(shell)
    create_api(shell)
    result = shell("proxy", "--upstream", "http://127.0.0.1:9000", "--api-id", "api_0000000000000000000000")
    assert result.exit_code == 3, result.output
    assert "api_0000000000000000000000" in plain_error(result)


def test_options_travel_to_the_workers_through_the_environment() -> None:
    options = ProxyOptions(
        upstream="https://api.internal/v2",
        listen="[::1]:9443",
        api_id="api_x",
        permissions="docs.read OR admin",
        cost=3,
        upstream_timeout_s=2.5,
    )
    environ: dict[str, str] = {"KEYSTILE_PROXY_COST": "9"}
    options.export(environ)
    assert ProxyOptions.from_env(environ) == options
    assert options.address() == ("::1", 9443)
    assert ProxyOptions.from_env(environ, cost=5).cost == 5, "flags win"
