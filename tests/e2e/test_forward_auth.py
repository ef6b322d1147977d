"""Forward auth for real (SPEC V5, I3): Debian's nginx (``auth_request``) and Caddy (``forward_auth``) in front of
a small upstream that echoes the headers it got, asking a real ``keystile serve`` whether each request may pass.

The proxy configurations are the recipes of docs/forward-auth.md, with temporary paths and random ports; both
proxies run as the current user, in the foreground, with their logs in the test's directory.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from keystile.core import keys as keyformat
from tests.availability import missing

from .server import Server, free_port, serve

pytestmark = pytest.mark.e2e

Json = dict[str, Any]
Setup = tuple["Proxy", Json, dict[str, str]]

START_TIMEOUT_S = 30.0

NGINX_CONF = """
{user}
worker_processes 1;
error_log {dir}/nginx-error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    # The reason of each refusal, for the operator's eyes only (clients never see X-Keystile-Code).
    log_format keystile '$remote_addr "$request" $status keystile=$keystile_code';
    access_log {dir}/access.log keystile;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    upstream keystile {{ server 127.0.0.1:{keystile_port}; keepalive 16; }}
    upstream app {{ server 127.0.0.1:{upstream_port}; keepalive 16; }}

    server {{
        listen 127.0.0.1:{port};

        location = /_keystile {{
            internal;
            proxy_pass http://keystile/v1/auth?api_id={api_id};
            include {dir}/keystile-auth.conf;
        }}
        location = /_keystile_docs_write {{
            internal;
            proxy_pass http://keystile/v1/auth?api_id={api_id}&permissions=docs.write;
            include {dir}/keystile-auth.conf;
        }}

        location / {{
            auth_request /_keystile;
            include {dir}/identity.conf;
            proxy_pass http://app;
        }}
        location /docs/ {{
            auth_request /_keystile_docs_write;
            include {dir}/identity.conf;
            proxy_pass http://app;
        }}
    }}
}}
"""

# What every internal auth location sends Keystile: no body, the original URI, method and client.
NGINX_AUTH = """
proxy_pass_request_body off;
proxy_set_header Content-Length "";
proxy_set_header X-Original-URI $request_uri;
proxy_set_header X-Original-Method $request_method;
proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
proxy_http_version 1.1;
proxy_set_header Connection "";
"""

NGINX_IDENTITY = """
auth_request_set $keystile_key_id $upstream_http_x_keystile_key_id;
auth_request_set $keystile_owner_id $upstream_http_x_keystile_owner_id;
auth_request_set $keystile_api_id $upstream_http_x_keystile_api_id;
auth_request_set $keystile_code $upstream_http_x_keystile_code;
auth_request_set $keystile_retry_after $upstream_http_retry_after;
proxy_set_header X-Keystile-Key-Id $keystile_key_id;
proxy_set_header X-Keystile-Owner-Id $keystile_owner_id;
proxy_set_header X-Keystile-Api-Id $keystile_api_id;
proxy_set_header Authorization "";
proxy_set_header X-API-Key "";
proxy_http_version 1.1;
proxy_set_header Connection "";
add_header Retry-After $keystile_retry_after always;
"""

CADDYFILE = """
{{
    admin off
    auto_https off
    storage file_system {dir}/caddy-data
}}
http://127.0.0.1:{port} {{
    handle /docs/* {{
        {docs_route}
    }}
    handle {{
        {route}
    }}
}}
"""

CADDY_ROUTE = """route {{
            request_header -X-Keystile-Key-Id
            request_header -X-Keystile-Owner-Id
            request_header -X-Keystile-Api-Id
            forward_auth 127.0.0.1:{keystile_port} {{
                uri /v1/auth?api_id={api_id}{options}
                copy_headers X-Keystile-Key-Id X-Keystile-Owner-Id X-Keystile-Api-Id
                header_down -X-Keystile-Code
            }}
            request_header -Authorization
            request_header -X-API-Key
            reverse_proxy 127.0.0.1:{upstream_port}
        }}"""


def _tool(name: str) -> str:
    """The path of ``name``: on PATH, or in /usr/sbin where Debian puts nginx (not on a user's PATH)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        missing(name)
    assert found is not None
    return found


class _Echo(BaseHTTPRequestHandler):
    """Answers every request with the headers and path it received, as JSON."""

    def _answer(self) -> None:
        body = json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


class Proxy:
    """A proxy process in the foreground; ``url`` answers once it is up."""

    def __init__(self, command: list[str], workdir: Path, port: int, env: Mapping[str, str] | None = None) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = workdir / f"{Path(command[0]).name}.out"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:  # polling for another process to come up, with a deadline
            if self.process.poll() is not None:
                raise AssertionError(f"{command[0]} exited with {self.process.returncode}: {self.output(workdir)}")
            try:
                httpx.get(self.url, timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError(f"{command[0]} did not answer: {self.output(workdir)}")

    def output(self, workdir: Path) -> str:
        return "\n".join(p.read_text(errors="replace") for p in workdir.glob("*.out") if p.exists()) + "\n".join(
            p.read_text(errors="replace") for p in workdir.glob("*error.log")
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _setup(keystile: Server) -> tuple[Json, dict[str, str]]:
    """An API and keys: plain, with docs.write, with owner, revoked, and limited to one request a minute."""
    auth = {"Authorization": f"Bearer {keystile.root_key()}"}
    api = httpx.post(f"{keystile.url}/v1/apis", json={"name": "orders"}, headers=auth).json()

    def create(**fields: Any) -> Json:
        answer = httpx.post(f"{keystile.url}/v1/apis/{api['id']}/keys", json=fields, headers=auth)
        assert answer.status_code == 201, answer.text
        created: Json = answer.json()
        return created

    keys = {
        "valid": create(owner_id="acme", permissions=["docs.read"]),
        "writer": create(permissions=["docs.write"]),
        "revoked": create(),
        "disabled": create(enabled=False),
        "expired": create(expires_at="2001-01-01T00:00:00Z"),
        "limited": create(ratelimits=[{"name": "api", "limit": 1, "duration_ms": 60_000}]),
    }
    other = httpx.post(f"{keystile.url}/v1/apis", json={"name": "elsewhere"}, headers=auth).json()
    foreign = httpx.post(f"{keystile.url}/v1/apis/{other['id']}/keys", json={}, headers=auth)
    assert foreign.status_code == 201, foreign.text
    keys["foreign"] = foreign.json()
    assert httpx.post(f"{keystile.url}/v1/keys/{keys['revoked']['id']}/revoke", headers=auth).status_code == 200
    # An API token of the valid key (it passes as the key does).
    token = httpx.post(f"{keystile.url}/v1/tokens", headers={"X-API-Key": keys["valid"]["key"]})
    assert token.status_code == 200, token.text
    keys["token"] = {"key": token.json()["token"], "id": keys["valid"]["id"]}
    return api, {name: key["key"] for name, key in keys.items()} | {
        f"{name}_id": key["id"] for name, key in keys.items()
    }


def _echoed(answer: httpx.Response) -> dict[str, str]:
    assert answer.status_code == 200, (answer.status_code, answer.headers)
    headers: dict[str, str] = answer.json()["headers"]
    return headers


def _assert_common(url: str, api: Json, keys: dict[str, str]) -> None:
    """What both proxies must do alike."""
    got = _echoed(httpx.get(f"{url}/orders/7", headers={"Authorization": f"Bearer {keys['valid']}"}))
    assert got["x-keystile-key-id"] == keys["valid_id"]
    assert got["x-keystile-owner-id"] == "acme"
    assert got["x-keystile-api-id"] == api["id"]
    assert "authorization" not in got  # the key does not reach the upstream
    assert keys["valid"] not in json.dumps(got)

    got = _echoed(httpx.post(f"{url}/orders", headers={"X-API-Key": keys["writer"]}, content=b"{}"))
    assert got["x-keystile-key-id"] == keys["writer_id"]
    assert "x-api-key" not in got
    # A client cannot claim an identity: the proxy replaces what it sent with what Keystile said.
    spoof = {"X-API-Key": keys["writer"], "X-Keystile-Owner-Id": "admin", "X-Keystile-Key-Id": "key_forged"}
    got = _echoed(httpx.get(f"{url}/orders", headers=spoof))
    assert not got.get("x-keystile-owner-id"), got  # the writer key has no owner
    assert got["x-keystile-key-id"] == keys["writer_id"]

    none = httpx.get(f"{url}/orders")
    assert none.status_code == 401
    assert none.headers["www-authenticate"] == "Bearer"
    # Revoked, disabled, expired, another API's and unknown keys look alike to the client (issue 8, finding 11):
    # the same status and headers, and no X-Keystile-Code telling them apart.
    refusals = {
        name: httpx.get(f"{url}/orders", headers={"Authorization": f"Bearer {key}"})
        for name, key in [(name, keys[name]) for name in ("revoked", "disabled", "expired", "foreign")]
        + [("unknown", keyformat.generate("ks"))]
    }
    for name, refused in refusals.items():
        assert refused.status_code == 401, name
        assert "x-keystile-code" not in refused.headers, (name, refused.headers)
    shapes = {name: (refused.headers.get("www-authenticate"), refused.content) for name, refused in refusals.items()}
    assert len(set(shapes.values())) == 1, shapes
    assert {tuple(sorted(set(r.headers) - {"date"})) for r in refusals.values()} == {
        tuple(sorted(set(refusals["unknown"].headers) - {"date"}))
    }


def _nginx(workdir: Path, keystile: Server, api: Json, upstream: int) -> Proxy:
    port = free_port()
    (workdir / "identity.conf").write_text(NGINX_IDENTITY)
    (workdir / "keystile-auth.conf").write_text(NGINX_AUTH)
    conf = workdir / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            user=f"user {getpass.getuser()};" if os.geteuid() == 0 else "",
            dir=workdir,
            port=port,
            keystile_port=keystile.url.rsplit(":", 1)[1],
            api_id=api["id"],
            upstream_port=upstream,
        )
    )
    command = [_tool("nginx"), "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "nginx-error.log")]
    return Proxy([*command, "-g", "daemon off;"], workdir, port)


def _caddy(workdir: Path, keystile: Server, api: Json, upstream: int) -> Proxy:
    port = free_port()
    caddyfile = workdir / "Caddyfile"
    ports = {"keystile_port": keystile.url.rsplit(":", 1)[1], "api_id": api["id"], "upstream_port": upstream}
    caddyfile.write_text(
        CADDYFILE.format(
            dir=workdir,
            port=port,
            route=CADDY_ROUTE.format(options="", **ports),
            docs_route=CADDY_ROUTE.format(options="&permissions=docs.write", **ports),
        )
    )
    env = {"HOME": str(workdir), "XDG_DATA_HOME": str(workdir), "XDG_CONFIG_HOME": str(workdir)}
    return Proxy([_tool("caddy"), "run", "--config", str(caddyfile), "--adapter", "caddyfile"], workdir, port, env)


# nginx's auth_request turns anything but 2xx, 401 and 403 into a 500, so Keystile answers it 403 for 429; Caddy
# passes every answer through as it is.
PROXIES = {"nginx": (_nginx, {"KEYSTILE_AUTH_LIMITED_STATUS": "403"}, 403), "caddy": (_caddy, {}, 429)}


@pytest.fixture(scope="module", params=list(PROXIES))
def proxied(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, upstream: int) -> Iterator[Setup]:
    """A real keystile serve, its API and keys, and the proxy (nginx or Caddy) in front of the echoing upstream."""
    start, env, _ = PROXIES[request.param]
    workdir = tmp_path_factory.mktemp(request.param)
    keystile = serve(workdir, env, name="keystile")
    try:
        api, keys = _setup(keystile)
        proxy = start(workdir, keystile, api, upstream)
        try:
            yield proxy, api, keys
        finally:
            proxy.stop()
            assert keys["valid"] not in keystile.output()
    finally:
        keystile.stop()


def test_valid_keys_pass_with_their_identity_and_the_key_stays_behind(proxied: Setup) -> None:
    proxy, api, keys = proxied
    _assert_common(proxy.url, api, keys)
    # The key in the query string is read from the original URI.
    got = _echoed(httpx.get(f"{proxy.url}/orders?api_key={keys['valid']}"))
    assert got["x-keystile-key-id"] == keys["valid_id"]


def test_a_missing_permission_is_refused_with_403(proxied: Setup) -> None:
    proxy, _, keys = proxied
    refused = httpx.get(f"{proxy.url}/docs/page", headers={"Authorization": f"Bearer {keys['valid']}"})
    assert refused.status_code == 403
    assert "x-keystile-code" not in refused.headers
    allowed = _echoed(httpx.get(f"{proxy.url}/docs/page", headers={"Authorization": f"Bearer {keys['writer']}"}))
    assert allowed["x-keystile-key-id"] == keys["writer_id"]


def test_a_rate_limited_key_is_refused_with_retry_after(proxied: Setup, request: pytest.FixtureRequest) -> None:
    proxy, _, keys = proxied
    expected = PROXIES[request.node.callspec.params["proxied"]][2]
    limited = {"Authorization": f"Bearer {keys['limited']}"}
    assert httpx.get(f"{proxy.url}/orders", headers=limited).status_code == 200
    refused = httpx.get(f"{proxy.url}/orders", headers=limited)
    assert refused.status_code == expected  # 403 for nginx (KEYSTILE_AUTH_LIMITED_STATUS=403), 429 for Caddy
    assert "x-keystile-code" not in refused.headers
    assert refused.headers["retry-after"] == "60"


def test_the_reason_of_a_refusal_reaches_nginxs_log_not_the_client(
    proxied: Setup, request: pytest.FixtureRequest
) -> None:
    proxy, _, keys = proxied
    if request.node.callspec.params["proxied"] != "nginx":
        pytest.skip("the log format is nginx's recipe; Caddy's strips the header (asserted by the other tests)")
    refused = httpx.get(f"{proxy.url}/orders/logged", headers={"Authorization": f"Bearer {keys['revoked']}"})
    assert refused.status_code == 401
    assert "x-keystile-code" not in refused.headers
    log = (proxy.log.parent / "access.log").read_text()
    assert '"GET /orders/logged HTTP/1.1" 401 keystile=REVOKED' in log, log


def test_an_api_token_passes_with_its_keys_identity(proxied: Setup) -> None:
    proxy, api, keys = proxied
    got = _echoed(httpx.get(f"{proxy.url}/orders/7", headers={"Authorization": f"Bearer {keys['token']}"}))
    assert (got["x-keystile-key-id"], got["x-keystile-owner-id"]) == (keys["valid_id"], "acme")
    assert got["x-keystile-api-id"] == api["id"]
    assert "authorization" not in got
    # The token holds docs.read only: the docs.write location refuses it.
    refused = httpx.get(f"{proxy.url}/docs/page", headers={"Authorization": f"Bearer {keys['token']}"})
    assert refused.status_code == 403
    forged = httpx.get(f"{proxy.url}/orders/7", headers={"Authorization": f"Bearer {keys['token'][:-4]}AAAA"})
    assert forged.status_code == 401
