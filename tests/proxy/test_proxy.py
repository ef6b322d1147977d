"""``keystile proxy`` for real (SPEC I4): a real upstream, a real proxy process, keys made by the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import Server, cli, free_port, raw_exchange

from .conftest import Deployment
from .upstream import Upstream, pattern

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
STREAMED = 64 * MIB
# A proxy that held a body whole would grow by at least its size; one that streams grows by its buffers.
MAX_GROWTH_KIB = STREAMED // 1024 // 2
PROBLEM = "application/problem+json"


def _headers(record: dict[str, object]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in record["headers"]:  # type: ignore[attr-defined]
        found[name] = value
    return found


def _peak_rss_kib(server: Server) -> int:
    """The highest resident memory any process of the server has had (granian runs workers as children)."""
    peak = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            group = int(stat.rsplit(")", 1)[1].split()[2])
            if group != server.process.pid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except (OSError, ValueError, IndexError):
            continue  # a process that ended meanwhile
    return peak


def _last_seen(upstream: Upstream, before: int) -> dict[str, object]:
    assert len(upstream.seen) == before + 1, "the upstream got exactly one request"
    return upstream.seen[-1]


def test_a_valid_key_reaches_the_upstream_without_the_key_and_with_the_callers_identity(
    deployment: Deployment, upstream: Upstream, proxy: Server
) -> None:
    key, key_id = deployment.key("--owner-id", "jürgen 50%")
    port = proxy.url.rsplit(":", 1)[1]
    channels = [
        ({"Authorization": f"Bearer {key}"}, ""),
        ({"X-API-Key": key, "Authorization": "Basic dXNlcjpwYXNz"}, ""),
        ({}, f"&api_key={key}"),
    ]
    for headers, query in channels:
        before = len(upstream.seen)
        spoofed = {**headers, "X-Keystile-Key-Id": "key_spoofed", "X-Keystile-Owner-Id": "mallory"}
        answer = httpx.post(f"{proxy.url}/things/1?a=1{query}&b=%20x", headers=spoofed, content=b"payload")

        assert answer.status_code == 200, answer.text
        assert answer.headers["x-upstream"] == "yes"
        seen = _last_seen(upstream, before)
        got = _headers(seen)
        assert seen["target"] == "/base/things/1?a=1&b=%20x"
        assert key not in json.dumps(seen), "the upstream never sees the key"
        assert "x-api-key" not in got
        assert got["x-keystile-key-id"] == key_id
        assert got["x-keystile-owner-id"] == "j%C3%BCrgen 50%25"  # as forward auth sends it: ASCII, lossless
        assert got["x-keystile-api-id"] == deployment.api_id
        assert got["x-forwarded-for"] == "127.0.0.1"
        assert got["x-forwarded-proto"] == "http"
        assert got["x-forwarded-host"] == f"127.0.0.1:{port}"
        assert got["x-request-id"].startswith("req_")
        assert seen["body_size"] == len(b"payload")
        if "Authorization" in headers and headers["Authorization"].startswith("Basic"):
            assert got["authorization"] == "Basic dXNlcjpwYXNz", "another scheme is the upstream's business"
        else:
            assert "authorization" not in got


def test_rate_limit_state_goes_to_the_upstream_and_back_to_the_client(
    deployment: Deployment, upstream: Upstream, proxy: Server
) -> None:
    key, _ = deployment.key("--ratelimit", "api=10/1m")
    before = len(upstream.seen)

    answer = httpx.get(f"{proxy.url}/limited", headers={"Authorization": f"Bearer {key}"})

    assert answer.status_code == 200
    assert (answer.headers["ratelimit-limit"], answer.headers["ratelimit-remaining"]) == ("10", "9")
    assert 0 < int(answer.headers["ratelimit-reset"]) <= 60
    got = _headers(_last_seen(upstream, before))
    assert (got["ratelimit-limit"], got["ratelimit-remaining"]) == ("10", "9")


def test_verifications_through_the_proxy_are_recorded_as_events(deployment: Deployment, proxy: Server) -> None:
    key, key_id = deployment.key()
    for _ in range(3):
        assert httpx.get(f"{proxy.url}/e", headers={"X-API-Key": key}).status_code == 200
    # The proxy writes its events in batches (every 100 ms here): poll the CLI's view of them until a deadline.
    deadline = time.monotonic() + 20
    events: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        events = json.loads(deployment.cli("logs", "--key-id", key_id, "--json"))["items"]
        if len(events) >= 3:
            break
        time.sleep(0.2)
    assert [event["outcome"] for event in events] == ["VALID"] * 3
    assert all(event["ip"] == "127.0.0.1" for event in events)


def test_a_request_id_that_carries_the_key_never_reaches_the_upstream_or_the_events(
    deployment: Deployment, upstream: Upstream, proxy: Server
) -> None:
    key, key_id = deployment.key()
    for channel in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
        for sent in (key, f"trace.{key}", "x_" + key.rpartition("_")[2]):
            before = len(upstream.seen)
            answer = httpx.get(f"{proxy.url}/rid", headers={**channel, "X-Request-Id": sent})
            assert answer.status_code == 200
            seen = _last_seen(upstream, before)
            assert _headers(seen)["x-request-id"].startswith("req_")
            assert key.rpartition("_")[2] not in json.dumps(seen)
    kept = httpx.get(f"{proxy.url}/rid", headers={"X-API-Key": key, "X-Request-Id": "trace-7"})
    assert kept.status_code == 200
    assert _headers(upstream.seen[-1])["x-request-id"] == "trace-7"
    deadline = time.monotonic() + 20
    events: list[dict[str, object]] = []
    while time.monotonic() < deadline and len(events) < 7:
        events = json.loads(deployment.cli("logs", "--key-id", key_id, "--json"))["items"]
        time.sleep(0.2)
    assert len(events) == 7
    assert [event["request_id"] for event in events].count("trace-7") == 1
    assert key.rpartition("_")[2] not in json.dumps(events)


def test_a_chunked_body_with_a_bad_chunk_size_is_a_400_problem(
    deployment: Deployment, upstream: Upstream, proxy: Server
) -> None:
    key, _ = deployment.key()
    for body in (b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabc\r\nzz\r\n"):
        head = f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\nTransfer-Encoding: chunked\r\n\r\n"
        status, headers, answer = raw_exchange(proxy.url, head.encode() + body)

        assert status == 400, answer
        assert headers["content-type"] == PROBLEM
        problem = json.loads(answer)
        assert problem["code"] == "incomplete_body"
        assert problem["request_id"] == headers["x-request-id"]


def _chunks(total: int, size: int = MIB) -> Iterator[bytes]:
    for index in range(total // size):
        yield pattern(index, size)


def test_a_large_upload_is_streamed_to_the_upstream_not_held(
    deployment: Deployment, upstream: Upstream, proxy: Server
) -> None:
    key, _ = deployment.key()
    auth = {"Authorization": f"Bearer {key}"}
    expected = hashlib.sha256(b"".join(_chunks(STREAMED))).hexdigest()
    assert httpx.get(f"{proxy.url}/warm-up", headers=auth).status_code == 200
    peak_before = _peak_rss_kib(proxy)

    # No length declared: the client sends it chunked, and so does the proxy.
    before = len(upstream.seen)
    answer = httpx.put(f"{proxy.url}/upload", headers=auth, content=_chunks(STREAMED), timeout=120)
    assert answer.status_code == 200, answer.text
    chunked = _last_seen(upstream, before)
    # With a declared length, the upstream gets it as declared.
    before = len(upstream.seen)
    sized = {**auth, "Content-Length": str(STREAMED)}
    answer = httpx.put(f"{proxy.url}/upload", headers=sized, content=_chunks(STREAMED), timeout=120)
    assert answer.status_code == 200, answer.text
    declared = _last_seen(upstream, before)

    assert (chunked["body_size"], chunked["body_sha256"]) == (STREAMED, expected)
    assert _headers(chunked)["transfer-encoding"] == "chunked"
    assert (declared["body_size"], declared["body_sha256"]) == (STREAMED, expected)
    assert _headers(declared)["content-length"] == str(STREAMED)
    growth = _peak_rss_kib(proxy) - peak_before
    assert growth < MAX_GROWTH_KIB, f"the proxy grew by {growth} KiB passing on {STREAMED // 1024} KiB"


def test_a_chunked_download_is_streamed_back_not_held(deployment: Deployment, proxy: Server) -> None:
    key, _ = deployment.key()
    auth = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{proxy.url}/warm-up", headers=auth).status_code == 200
    peak_before = _peak_rss_kib(proxy)
    chunks = STREAMED // (64 * 1024)
    expected = hashlib.sha256(b"".join(pattern(i, 64 * 1024) for i in range(chunks))).hexdigest()

    digest = hashlib.sha256()
    size = 0
    url = f"{proxy.url}/download?chunks={chunks}&size={64 * 1024}"
    with httpx.stream("GET", url, headers=auth, timeout=120) as answer:
        assert answer.status_code == 200
        assert "content-length" not in answer.headers
        assert answer.headers["transfer-encoding"] == "chunked"
        for data in answer.iter_raw():
            digest.update(data)
            size += len(data)

    assert (size, digest.hexdigest()) == (STREAMED, expected)
    growth = _peak_rss_kib(proxy) - peak_before
    assert growth < MAX_GROWTH_KIB, f"the proxy grew by {growth} KiB passing on {STREAMED // 1024} KiB"


def _refused(answer: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    problem: dict[str, object] = answer.json()
    assert (problem["status"], problem["code"]) == (status, code)
    assert problem["request_id"] == answer.headers["x-request-id"]
    return problem


def test_401_with_a_bearer_challenge_without_a_key(upstream: Upstream, proxy: Server) -> None:
    before = len(upstream.seen)
    answer = httpx.get(f"{proxy.url}/things")
    _refused(answer, 401, "missing_key")
    assert answer.headers["www-authenticate"] == "Bearer"
    assert len(upstream.seen) == before, "nothing reached the upstream"


def test_401_for_unknown_revoked_disabled_and_foreign_keys(
    deployment: Deployment, upstream: Upstream, proxy: Server
) -> None:
    revoked, revoked_id = deployment.key()
    deployment.cli("keys", "revoke", revoked_id)
    disabled, _ = deployment.key("--disabled")
    other_api = json.loads(deployment.cli("apis", "create", "other", "--json"))["id"]
    foreign = json.loads(deployment.cli("keys", "create", other_api, "--permission", "docs.read", "--json"))["key"]
    before = len(upstream.seen)

    answers = []
    for key in ("ks_" + "A" * 38, revoked, disabled, foreign):
        answer = httpx.get(f"{proxy.url}/things", headers={"Authorization": f"Bearer {key}"})
        problem = _refused(answer, 401, "invalid_key")
        assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert "x-keystile-code" not in answer.headers
        assert key not in answer.text
        answers.append((problem["type"], problem["title"], problem["detail"], sorted(set(answer.headers) - {"date"})))
    # Unknown, revoked, disabled and another API's keys look alike to the caller (SPEC S2).
    assert len(set(map(str, answers))) == 1, answers
    assert len(upstream.seen) == before


def test_401_for_two_different_keys(deployment: Deployment, proxy: Server) -> None:
    first, _ = deployment.key()
    second, _ = deployment.key()
    answer = httpx.get(f"{proxy.url}/things", headers={"Authorization": f"Bearer {first}", "X-API-Key": second})
    _refused(answer, 401, "ambiguous_credentials")


def test_403_for_a_key_without_the_required_permission_or_off_its_allowlist(
    deployment: Deployment, upstream: Upstream, proxy: Server
) -> None:
    unprivileged = json.loads(deployment.cli("keys", "create", deployment.api_id, "--json"))["key"]
    fenced, _ = deployment.key("--ip", "10.0.0.0/8")
    before = len(upstream.seen)

    answer = httpx.get(f"{proxy.url}/things", headers={"X-API-Key": unprivileged})
    _refused(answer, 403, "insufficient_permissions")
    answer = httpx.get(f"{proxy.url}/things", headers={"X-API-Key": fenced})
    _refused(answer, 403, "ip_not_allowed")
    assert len(upstream.seen) == before


def test_429_with_retry_after_when_rate_limited_or_out_of_credits(deployment: Deployment, proxy: Server) -> None:
    limited, _ = deployment.key("--ratelimit", "api=1/1m")
    assert httpx.get(f"{proxy.url}/things", headers={"X-API-Key": limited}).status_code == 200
    answer = httpx.get(f"{proxy.url}/things", headers={"X-API-Key": limited})
    _refused(answer, 429, "rate_limited")
    assert 1 <= int(answer.headers["retry-after"]) <= 60
    assert answer.headers["ratelimit-remaining"] == "0"

    metered, _ = deployment.key("--credits", "1")
    assert httpx.get(f"{proxy.url}/things", headers={"X-API-Key": metered}).status_code == 200
    answer = httpx.get(f"{proxy.url}/things", headers={"X-API-Key": metered})
    _refused(answer, 429, "usage_exceeded")
    assert int(answer.headers["retry-after"]) >= 1


def test_502_problem_when_the_upstream_is_down(deployment: Deployment) -> None:
    key, _ = deployment.key()
    down = deployment.proxy(f"http://127.0.0.1:{free_port()}", name="proxy-down")
    try:
        answer = httpx.get(f"{down.url}/things", headers={"X-API-Key": key})
        _refused(answer, 502, "upstream_unavailable")
    finally:
        down.stop()


def test_504_problem_when_the_upstream_is_too_slow(deployment: Deployment, upstream: Upstream) -> None:
    key, _ = deployment.key()
    slow = deployment.proxy(upstream.url, "--upstream-timeout", "1", name="proxy-slow")
    try:
        answer = httpx.get(f"{slow.url}/hang", headers={"X-API-Key": key}, timeout=30)
        _refused(answer, 504, "upstream_timeout")
    finally:
        slow.stop()


def test_the_proxy_refuses_to_start_on_an_api_that_does_not_exist(deployment: Deployment) -> None:
    import subprocess

    from tests.e2e.server import BIN

    done = subprocess.run(
        [str(BIN / "keystile"), "proxy", "--upstream", "http://127.0.0.1:1", "--api-id", "api_0000000000000000000000"],
        cwd=deployment.workdir,
        env={**os.environ, **deployment.env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert "api_0000000000000000000000" in done.stderr


def test_a_key_revoked_with_the_cli_stops_at_the_proxy(deployment: Deployment, proxy: Server) -> None:
    key, key_id = deployment.key()
    assert httpx.get(f"{proxy.url}/things", headers={"X-API-Key": key}).status_code == 200

    deployment.cli("keys", "revoke", key_id)

    # The proxy's cache keeps a key for KEYSTILE_CACHE_TTL_MS (200 ms here) without notifications: poll.
    deadline = time.monotonic() + 10
    answer = httpx.get(f"{proxy.url}/things", headers={"X-API-Key": key})
    while answer.status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.05)
        answer = httpx.get(f"{proxy.url}/things", headers={"X-API-Key": key})
    _refused(answer, 401, "invalid_key")


def test_an_api_token_passes_as_its_key_does_and_stops_when_the_key_is_revoked(
    deployment: Deployment, upstream: Upstream, proxy: Server
) -> None:
    key, key_id = deployment.key("--owner-id", "tess")
    token = cli("tokens", "issue", "--ttl", "600", workdir=deployment.workdir, env=deployment.env, stdin=key).strip()
    before = len(upstream.seen)
    answer = httpx.get(f"{proxy.url}/things/2", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    seen = _last_seen(upstream, before)
    got = _headers(seen)
    assert (got["x-keystile-key-id"], got["x-keystile-owner-id"]) == (key_id, "tess")
    assert (got["x-keystile-api-id"], got["x-keystile-token"]) == (deployment.api_id, "true")
    assert "authorization" not in got
    assert token not in json.dumps(seen), "the upstream never sees the token"
    assert httpx.get(f"{proxy.url}/things", headers={"X-API-Key": token}).status_code == 200
    _refused(httpx.get(f"{proxy.url}/things", headers={"X-API-Key": token[:-3] + "abc"}), 401, "invalid_key")

    deployment.cli("keys", "revoke", key_id)
    deadline = time.monotonic() + 10
    answer = httpx.get(f"{proxy.url}/things", headers={"Authorization": f"Bearer {token}"})
    while answer.status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.05)
        answer = httpx.get(f"{proxy.url}/things", headers={"Authorization": f"Bearer {token}"})
    _refused(answer, 401, "invalid_key")
