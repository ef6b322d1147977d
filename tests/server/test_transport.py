"""Transport security (SPEC S1) in process: HSTS on every answer when TLS is on, and the warning about keys sent
over plain HTTP from off this machine (the real-socket versions are in tests/e2e/test_tls.py)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from keystile.config import Settings
from keystile.core.clock import ManualClock
from keystile.errors import InvalidInput
from keystile.http.forwarded import TrustedProxies
from keystile.http.transport import PlainHttpWatch
from keystile.server import create_app
from keystile.service import Keystile

from .helpers import Headers

LOOPBACK = TrustedProxies(Settings().trusted_proxies)
VERIFY = frozenset({"/v1/keys/verify"})


def _scope(
    client: str | None = "192.0.2.7",
    headers: dict[str, str] | None = None,
    path: str = "/v1/apis",
    query: bytes = b"",
    scheme: str = "http",
) -> dict[str, Any]:
    return {
        "type": "http",
        "scheme": scheme,
        "path": path,
        "query_string": query,
        "client": (client, 50000) if client else None,
        "headers": [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()],
    }


KEY = {"Authorization": "Bearer ks_whatever"}


def plain_key_sender(
    scope: dict[str, Any], trusted: TrustedProxies, body_paths: frozenset[str] = frozenset()
) -> str | None:
    """The address a fresh watch warns about for this one request, else ``None``."""
    warned: list[str] = []
    PlainHttpWatch(trusted, body_paths, ManualClock(), warned.append)(scope)
    assert len(warned) <= 1
    return warned[0] if warned else None


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        (_scope(headers=KEY), "192.0.2.7"),
        (_scope(headers={"X-API-Key": "k"}), "192.0.2.7"),
        (_scope(query=b"a=1&api_key=k"), "192.0.2.7"),
        (_scope(path="/v1/keys/verify"), "192.0.2.7"),
        (_scope(), None),
        (_scope(headers=KEY, scheme="https"), None),
        (_scope("127.0.0.1", KEY), None),
        (_scope("::1", KEY), None),
        (_scope("::ffff:127.0.0.1", KEY), None),
        (_scope(None, KEY), None),
        (_scope("2001:db8::1", KEY), "2001:db8::1"),
    ],
    ids=[
        "bearer",
        "x-api-key",
        "query",
        "verify-body",
        "no-key",
        "https",
        "loopback-v4",
        "loopback-v6",
        "loopback-mapped",
        "unix-socket",
        "remote-v6",
    ],
)
def test_which_requests_send_a_key_over_plain_http_from_off_this_machine(
    scope: dict[str, Any], expected: str | None
) -> None:
    assert plain_key_sender(scope, LOOPBACK, VERIFY) == expected


def test_a_trusted_proxy_that_says_https_is_believed_and_others_are_not() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    https = {**KEY, "X-Forwarded-Proto": "https"}
    assert plain_key_sender(_scope("10.1.2.3", https), proxies) is None
    assert plain_key_sender(_scope("10.1.2.3", {**KEY, "X-Forwarded-Proto": "http"}), proxies) == "10.1.2.3"
    assert plain_key_sender(_scope("192.0.2.7", https), proxies) == "192.0.2.7", "anyone can write the header"


def test_the_warning_comes_once_an_hour_per_client() -> None:
    clock = ManualClock()
    warned: list[str] = []
    watch = PlainHttpWatch(LOOPBACK, VERIFY, clock, warned.append)

    for _ in range(3):
        watch(_scope(headers=KEY))
    watch(_scope("192.0.2.8", KEY))
    watch(_scope("127.0.0.1", KEY))
    clock.advance(3599)
    watch(_scope(headers=KEY))
    assert warned == ["192.0.2.7", "192.0.2.8"]
    clock.advance(1)
    watch(_scope(headers=KEY))
    assert warned == ["192.0.2.7", "192.0.2.8", "192.0.2.7"]


async def test_the_server_logs_a_json_warning_for_a_key_over_plain_http(
    ks: Keystile, settings: Settings, auth: Headers, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings, keystile=ks)
    transport = httpx.ASGITransport(app=app, client=("192.0.2.9", 40000))
    caplog.set_level(logging.WARNING, "keystile.security")
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get("/v1/apis", headers=auth)).status_code == 200
        assert (await http.get("/v1/apis", headers=auth)).status_code == 200

    [record] = [r for r in caplog.records if r.name == "keystile.security"]
    assert record.__dict__["client_ip"] == "192.0.2.9"
    assert record.__dict__["event"] == "plaintext_key"
    assert auth["Authorization"].split()[1] not in record.getMessage()


def _tls(settings: Settings, tmp_path: Path, **changes: Any) -> Settings:
    # The files are not read in process: granian terminates TLS; the app only needs to know that it does.
    return dataclasses.replace(settings, tls_cert=tmp_path / "cert.pem", tls_key=tmp_path / "key.pem", **changes)


@pytest.mark.parametrize(
    ("hsts", "expected"),
    [
        (None, "max-age=63072000"),
        ("max-age=600; includeSubDomains", "max-age=600; includeSubDomains"),
        ("off", None),
    ],
)
async def test_every_answer_over_https_carries_hsts(
    ks: Keystile, settings: Settings, auth: Headers, tmp_path: Path, hsts: str | None, expected: str | None
) -> None:
    configured = _tls(settings, tmp_path) if hsts is None else _tls(settings, tmp_path, hsts=hsts)
    app = create_app(configured, keystile=ks)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://test") as http:
        answers = [
            await http.get("/healthz"),
            await http.get("/v1/apis", headers=auth),
            await http.get("/v1/apis"),  # a problem
            await http.post("/v1/keys/verify", json={"key": "ks_nope"}, headers=auth),  # the fast path
            await http.post("/v1/keys/verify", json={"key": "ks_nope"}, headers=auth),  # its cached answer
        ]
    assert [answer.headers.get("strict-transport-security") for answer in answers] == [expected] * len(answers)
    for answer in answers[-2:]:
        assert answer.headers.get_list("strict-transport-security") == ([expected] if expected else [])


def test_the_hsts_setting_takes_a_header_value_or_off() -> None:
    assert Settings.from_env({"KEYSTILE_HSTS": "max-age=31536000; includeSubDomains; preload"}).hsts == (
        "max-age=31536000; includeSubDomains; preload"
    )
    assert Settings.from_env({"KEYSTILE_HSTS": "OFF"}).hsts == "off"
    with pytest.raises(InvalidInput, match="KEYSTILE_HSTS"):
        Settings.from_env({"KEYSTILE_HSTS": "max-age=1\r\nSet-Cookie: x"})
    with pytest.raises(InvalidInput, match="KEYSTILE_HSTS"):
        Settings.from_env({"KEYSTILE_HSTS": "max-age=\u0663"})  # not ASCII digits: not a header value
    with pytest.raises(InvalidInput, match="KEYSTILE_HSTS"):
        Settings.from_env({"KEYSTILE_HSTS": "max-age=1\r\n; preload"})
