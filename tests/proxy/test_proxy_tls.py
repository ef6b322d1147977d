"""``keystile proxy`` over HTTPS (SPEC S1, I4): the same TLS settings as ``keystile serve``, HSTS included."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.certs import self_signed

from .conftest import Deployment
from .upstream import Upstream

pytestmark = pytest.mark.e2e


def test_the_proxy_serves_https_with_hsts_and_tells_the_upstream(
    deployment: Deployment, upstream: Upstream, tmp_path: Path
) -> None:
    cert, key_file, trusted = self_signed(tmp_path)
    key, key_id = deployment.key()
    env = {"KEYSTILE_TLS_CERT": str(cert), "KEYSTILE_TLS_KEY": str(key_file), "KEYSTILE_HSTS": "max-age=600"}
    proxy = deployment.proxy(upstream.url, name="proxy-https", env=env, tls=trusted)
    try:
        assert proxy.url.startswith("https://")
        before = len(upstream.seen)
        answer = httpx.get(f"{proxy.url}/secure", headers={"Authorization": f"Bearer {key}"}, verify=trusted)
        refused = httpx.get(f"{proxy.url}/secure", verify=trusted)
    finally:
        proxy.stop()

    assert answer.status_code == 200
    assert refused.status_code == 401
    assert answer.headers["strict-transport-security"] == "max-age=600"
    assert refused.headers["strict-transport-security"] == "max-age=600"
    headers = dict(upstream.seen[before]["headers"])
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-keystile-key-id"] == key_id
