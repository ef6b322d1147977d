"""SPEC P8: what API tokens cost, as ratios measured in the same run (docs/tokens.md, bench/README.md).

Starts a real ``keystile serve`` (granian, one worker) on a SQLite file, with one API and one key, then measures:

* over HTTP, one keep-alive connection, requests one after the other, interleaved in rounds:
  ``POST /v1/tokens`` (issuing a token: a verification of the key plus an Ed25519 signature) against
  ``POST /v1/keys/verify`` (a verification of the same key). Target: issuing <= 3x verifying.
* in the integrations, through :func:`keystile.integrations.authenticate` (what every integration calls per
  request) with a :class:`RemoteVerifier` of that server: a token seen before (checked offline, from the cache)
  against a cached key; target <= 2x. For context: a token seen for the first time (its Ed25519 signature checked
  against the cached key set), and the same two through a :class:`LocalVerifier` (in process, on the database).

Run: ``python bench/tokens.py`` (or ``python bench/run.py --only p8``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import httpx  # noqa: E402
from tests.e2e.server import ROOT_KEY_RE, cli, serve  # noqa: E402

from _timing import Timing, measure, measure_async  # noqa: E402
from keystile.config import Settings  # noqa: E402
from keystile.integrations import KeyVerifier, LocalVerifier, RemoteVerifier, authenticate  # noqa: E402

TARGET_ISSUE_RATIO = 3.0
"""Issuing a token over HTTP costs at most this many verifications over HTTP."""
TARGET_CACHED_RATIO = 2.0
"""A token seen before costs the integrations at most this many cached key checks."""
PERMISSIONS = "notes.read"


@dataclass
class Result:
    timings: list[Timing] = field(default_factory=list)

    def best(self, name: str) -> float:
        return next(t.best for t in self.timings if t.name == name)

    @property
    def issue_ratio(self) -> float:
        return self.best("HTTP POST /v1/tokens") / self.best("HTTP POST /v1/keys/verify")

    @property
    def cached_ratio(self) -> float:
        return self.best("remote: token seen before") / self.best("remote: cached key")

    @property
    def first_ratio(self) -> float:
        return self.best("remote: token first seen (signature)") / self.best("remote: cached key")

    @property
    def local_ratio(self) -> float:
        return self.best("local: token seen before") / self.best("local: cached key")

    def report(self) -> str:
        lines = ["P8: API tokens (ns per call; ratios use the best sample of each)"]
        lines += [f"  {timing.line()}" for timing in self.timings]
        lines.append(f"  issuing over HTTP / verifying over HTTP:       {self.issue_ratio:.2f}x")
        lines.append(f"  token seen before / cached key (remote):       {self.cached_ratio:.2f}x")
        lines.append(f"  token first seen / cached key (remote):        {self.first_ratio:.1f}x")
        lines.append(f"  token seen before / cached key (local):        {self.local_ratio:.2f}x")
        return "\n".join(lines)


def _http(url: str, root_key: str, key: str, requests: int, repeats: int) -> list[Timing]:
    """Issuing against verifying over HTTP, interleaved: one sample of each per round."""
    verify_body = {"key": key, "permissions": PERMISSIONS}
    with httpx.Client(base_url=url, timeout=10) as client:

        def issue_pass() -> None:
            for _ in range(requests):
                answer = client.post("/v1/tokens", headers={"X-API-Key": key})
                if answer.status_code != 200:
                    raise RuntimeError(f"POST /v1/tokens answered {answer.status_code}: {answer.text}")

        def verify_pass() -> None:
            for _ in range(requests):
                answer = client.post(
                    "/v1/keys/verify", json=verify_body, headers={"Authorization": f"Bearer {root_key}"}
                )
                if answer.status_code != 200 or not answer.json()["valid"]:
                    raise RuntimeError(f"POST /v1/keys/verify answered {answer.status_code}: {answer.text}")

        issue: list[float] = []
        verify: list[float] = []
        for _ in range(repeats):
            verify += measure("verify", verify_pass, requests, passes=1, repeats=1).samples_ns
            issue += measure("issue", issue_pass, requests, passes=1, repeats=1).samples_ns
    return [
        Timing("HTTP POST /v1/keys/verify", requests * repeats, tuple(verify)),
        Timing("HTTP POST /v1/tokens", requests * repeats, tuple(issue)),
    ]


async def _integration(
    label: str, verifier: KeyVerifier, key: str, token: str, fresh: list[str] | None, calls: int, repeats: int
) -> list[Timing]:
    async def one(credential: str) -> None:
        seen = await authenticate(
            verifier, [(b"authorization", b"Bearer " + credential.encode())], b"", None, permissions=PERMISSIONS
        )
        assert seen.key_id

    async def key_pass() -> None:
        for _ in range(calls):
            await one(key)

    async def token_pass() -> None:
        for _ in range(calls):
            await one(token)

    timings = []
    key_samples: list[float] = []
    token_samples: list[float] = []
    for _ in range(repeats):  # interleaved
        key_samples += (await measure_async("k", key_pass, calls, passes=1, repeats=1)).samples_ns
        token_samples += (await measure_async("t", token_pass, calls, passes=1, repeats=1)).samples_ns
    timings.append(Timing(f"{label}: cached key", calls * repeats, tuple(key_samples)))
    timings.append(Timing(f"{label}: token seen before", calls * repeats, tuple(token_samples)))
    if fresh:
        # Each token once: the first check of a token (signature, claims) against the cached key set.
        chunk = len(fresh) // repeats
        samples = []
        for n in range(repeats):
            batch = fresh[n * chunk : (n + 1) * chunk]
            start = time.perf_counter_ns()
            for credential in batch:
                await one(credential)
            samples.append((time.perf_counter_ns() - start) / len(batch))
        timings.append(Timing(f"{label}: token first seen (signature)", chunk * repeats, tuple(samples)))
    return timings


def run(*, requests: int = 200, calls: int = 2000, repeats: int = 7, fresh_tokens: int = 700) -> Result:
    """Measure P8 against a real server; raises RuntimeError when it cannot run."""
    workdir = Path(tempfile.mkdtemp(prefix="keystile-bench-tokens-"))
    data = workdir / "data"
    database_url = f"sqlite:///{data / 'keystile.db'}"
    env = {"KEYSTILE_DATA_DIR": str(data), "KEYSTILE_DATABASE_URL": database_url, "KEYSTILE_CACHE_TTL_MS": "60000"}
    found = ROOT_KEY_RE.findall(cli("init", workdir=workdir, env=env))
    if len(found) != 1:
        raise RuntimeError("keystile init printed no root key")
    root_key = found[0]
    server = serve(workdir, env, name="keystile")
    try:
        url = server.url
        auth = {"Authorization": f"Bearer {root_key}"}
        api_id = httpx.post(f"{url}/v1/apis", json={"name": "bench"}, headers=auth).json()["id"]
        created = httpx.post(f"{url}/v1/apis/{api_id}/keys", json={"permissions": ["notes.read"]}, headers=auth)
        key = created.json()["key"]
        result = Result(_http(url, root_key, key, requests, repeats))
        with httpx.Client(base_url=url) as client:
            tokens = [
                client.post("/v1/tokens", headers={"X-API-Key": key}).json()["token"] for _ in range(fresh_tokens + 1)
            ]

        async def integrations() -> list[Timing]:
            remote = RemoteVerifier(url, root_key, cache_ttl=3600)
            local = LocalVerifier(Settings(database_url=database_url, cache_ttl_ms=60_000))
            try:
                timings = await _integration("remote", remote, key, tokens[0], tokens[1:], calls, repeats)
                timings += await _integration("local", local, key, tokens[0], None, calls, repeats)
                return timings
            finally:
                await remote.aclose()
                await local.aclose()

        result.timings += asyncio.run(integrations())
        return result
    finally:
        server.stop()


def _ok(ratio: float, target: float) -> str:
    return "met" if ratio <= target else "MISSED"


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="HTTP requests per sample (default 200)")
    parser.add_argument("--calls", type=int, default=2000, help="integration checks per sample (default 2000)")
    parser.add_argument("--repeats", type=int, default=7, help="samples of each (default 7)")
    args = parser.parse_args(argv)
    result = run(requests=args.requests, calls=args.calls, repeats=args.repeats)
    out(result.report())
    out(f"issuing <= {TARGET_ISSUE_RATIO:g}x verifying: {_ok(result.issue_ratio, TARGET_ISSUE_RATIO)}")
    out(f"token seen before <= {TARGET_CACHED_RATIO:g}x cached key: {_ok(result.cached_ratio, TARGET_CACHED_RATIO)}")


if __name__ == "__main__":
    main()
