"""SPEC S1 for real: ``keystile serve --tls-cert --tls-key`` speaks HTTPS with HSTS, and without TLS a key that
arrives over plain HTTP from another machine is warned about in the JSON log."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from .certs import self_signed
from .server import BIN, Server, free_port, non_loopback_address, serve

pytestmark = pytest.mark.e2e

HSTS = "max-age=63072000"


def test_the_readme_walkthrough_over_https_with_hsts_on_every_answer(tmp_path: Path) -> None:
    cert, key, trusted = self_signed(tmp_path)
    port = free_port()
    command = [str(BIN / "keystile"), "serve", "--tls-cert", str(cert), "--tls-key", str(key)]
    server = Server(command, tmp_path, {"KEYSTILE_DATA_DIR": str(tmp_path / "data")}, port, "https", tls=trusted)
    try:
        assert f"Keystile listening on https://127.0.0.1:{port}" in server.stdout()
        root = {"Authorization": f"Bearer {server.root_key()}"}
        with httpx.Client(base_url=server.url, verify=trusted) as http:
            api = http.post("/v1/apis", json={"name": "weather"}, headers=root)
            body = {"name": "alice laptop", "owner_id": "alice", "permissions": ["forecast.read"]}
            created = http.post(f"/v1/apis/{api.json()['id']}/keys", json=body, headers=root)
            query = {"key": created.json()["key"], "permissions": "forecast.read"}
            verified = http.post("/v1/keys/verify", json=query, headers=root)
            revoked = http.post(f"/v1/keys/{created.json()['id']}/revoke", headers=root)
            again = http.post("/v1/keys/verify", json={"key": created.json()["key"]}, headers=root)
            refused = http.get("/v1/apis")
        answers = [api, created, verified, revoked, again, refused]

        assert [answer.status_code for answer in answers] == [201, 201, 200, 200, 200, 401]
        assert (verified.json()["code"], again.json()["code"]) == ("VALID", "REVOKED")
        assert all(answer.headers["strict-transport-security"] == HSTS for answer in answers)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/healthz")  # a client that does not trust the certificate refuses it
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz")  # no plain HTTP on the TLS port
    finally:
        server.stop()


def _plaintext_warnings(server: Server) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in server.stderr().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "plaintext_key"]


def test_a_key_over_plain_http_from_another_address_is_warned_about_once(tmp_path: Path) -> None:
    address = non_loopback_address()
    if address is None:
        # tests/server/test_transport.py proves the decision on scopes either way.
        pytest.skip("this machine has no address but loopback to connect from")
    server = serve(tmp_path, {"KEYSTILE_DATA_DIR": str(tmp_path / "data"), "KEYSTILE_HOST": "0.0.0.0"})
    try:
        root = {"Authorization": f"Bearer {server.root_key()}"}
        remote_url = server.url.replace("127.0.0.1", address)
        assert httpx.get(f"{server.url}/v1/apis", headers=root).status_code == 200
        assert httpx.get(f"{remote_url}/healthz").status_code == 200
        assert _plaintext_warnings(server) == [], "loopback clients and requests without keys are not warned about"

        for _ in range(3):
            assert httpx.get(f"{remote_url}/v1/apis", headers=root).status_code == 200
        # The line is written before the answer is sent, so it is there now.
        warnings = _plaintext_warnings(server)
        assert len(warnings) == 1
        assert warnings[0]["level"] == "warning"
        assert warnings[0]["client_ip"] == address
        assert server.root_key() not in server.stderr()
    finally:
        server.stop()


def test_the_dashboards_and_the_portals_cookies_are_secure_over_https(tmp_path: Path) -> None:
    cert, key, trusted = self_signed(tmp_path)
    port = free_port()
    command = [str(BIN / "keystile"), "serve", "--tls-cert", str(cert), "--tls-key", str(key)]
    server = Server(command, tmp_path, {"KEYSTILE_DATA_DIR": str(tmp_path / "data")}, port, "https", tls=trusted)
    try:
        root_key = server.root_key()
        with httpx.Client(base_url=server.url, verify=trusted) as http:
            form = http.get("/dashboard/sign-in")
            csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
            signed_in = http.post("/dashboard/sign-in", data={"csrf": csrf, "root_key": root_key})
            api_id = http.post("/v1/apis", json={"name": "w"}, headers={"Authorization": f"Bearer {root_key}"})
            link = http.post(
                "/v1/portal/sessions",
                json={"api_id": api_id.json()["id"], "owner_id": "alice"},
                headers={"Authorization": f"Bearer {root_key}"},
            ).json()["url"]
            assert link.startswith(f"https://127.0.0.1:{port}/portal/sign-in?token=")
            portal = http.post("/portal/sign-in", data={"token": link.split("token=")[1]})
        cookies = [
            form.headers["set-cookie"],
            *signed_in.headers.get_list("set-cookie"),
            portal.headers["set-cookie"],
        ]
        assert len(cookies) == 4
        for cookie in cookies:
            attributes = [part.strip().lower() for part in cookie.split(";")]
            assert {"secure", "httponly", "samesite=strict"} <= set(attributes), cookie
        assert signed_in.headers["strict-transport-security"] == HSTS
    finally:
        server.stop()


@pytest.mark.parametrize(("trusted", "secure"), [("127.0.0.1/32", True), ("192.0.2.0/24", False)])
def test_behind_a_tls_proxy_the_cookie_is_secure_when_the_proxy_is_trusted(
    tmp_path: Path, trusted: str, secure: bool
) -> None:
    server = serve(tmp_path, {"KEYSTILE_TRUSTED_PROXIES": trusted})
    try:
        form = httpx.get(f"{server.url}/dashboard/sign-in", headers={"X-Forwarded-Proto": "https"})
        attributes = [part.strip().lower() for part in form.headers["set-cookie"].split(";")]
        assert ("secure" in attributes) is secure
    finally:
        server.stop()
