"""A real deployment for proxy tests: a database set up by ``keystile init``, keys made by the CLI, a real
upstream, and real ``keystile proxy`` processes in front of it."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.server import BIN, Server, cli, free_port

from .upstream import Upstream


@dataclass
class Deployment:
    workdir: Path
    env: dict[str, str]
    api_id: str

    def cli(self, *args: str) -> str:
        return cli(*args, workdir=self.workdir, env=self.env)

    def key(self, *options: str) -> tuple[str, str]:
        """A new key of the deployment's API with ``options`` of ``keys create``: ``(key, key id)``."""
        created = json.loads(self.cli("keys", "create", self.api_id, "--permission", "docs.read", *options, "--json"))
        return created["key"], created["id"]

    def proxy(
        self,
        upstream: str,
        *options: str,
        name: str = "proxy",
        env: dict[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> Server:
        """``keystile proxy`` in front of ``upstream``, for keys of the deployment's API with ``docs.read`` (over
        HTTPS when ``env`` names a certificate that ``tls`` trusts)."""
        port = free_port()
        command = [
            str(BIN / "keystile"),
            "proxy",
            "--upstream",
            upstream,
            "--listen",
            f"127.0.0.1:{port}",
            "--api-id",
            self.api_id,
            "--permissions",
            "docs.read",
            *options,
        ]
        return Server(command, self.workdir, {**self.env, **(env or {})}, port, name, tls=tls, ready=("/", 401))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    workdir = tmp_path_factory.mktemp("proxy")
    # Events are written often, so that tests see them soon; keys are cached briefly, so changes show soon.
    env = {
        "KEYSTILE_DATA_DIR": str(workdir / "data"),
        "KEYSTILE_EVENTS_FLUSH_MS": "100",
        "KEYSTILE_CACHE_TTL_MS": "200",
    }
    cli("init", workdir=workdir, env=env)
    api = json.loads(cli("apis", "create", "proxied", "--json", workdir=workdir, env=env))
    return Deployment(workdir, env, api["id"])


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    running = Upstream()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def proxy(deployment: Deployment, upstream: Upstream) -> Iterator[Server]:
    running = deployment.proxy(upstream.url + "/base")
    yield running
    running.stop()
