"""SPEC I2: what one verification costs the integrations, local against remote (docs/integrations.md).

Starts a real ``keystile serve`` on a SQLite file, then verifies one key many times through:

* ``LocalVerifier``: the services opened in this process on the same database (cached: a hash and a lookup);
* ``RemoteVerifier`` without its cache: one ``POST /v1/keys/verify`` round trip each (httpx, keep-alive);
* ``RemoteVerifier`` with its cache: answers that spent nothing are kept for the TTL.

Prints microseconds per verification and the remote/local ratio. Run: ``python bench/integrations_verify.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.server import serve  # noqa: E402

from keystile import Client  # noqa: E402
from keystile.config import Settings  # noqa: E402
from keystile.integrations import KeyVerifier, LocalVerifier, RemoteVerifier  # noqa: E402
from keystile.schemas import ApiCreate, KeyCreate, VerifyRequest  # noqa: E402

WARMUP = 200


async def _per_verification_us(verifier: KeyVerifier, key: str, n: int) -> float:
    request = VerifyRequest(key=key, permissions="notes.read")
    for _ in range(WARMUP):
        assert (await verifier.verify(request)).valid
    start = time.perf_counter()
    for _ in range(n):
        await verifier.verify(request)
    return (time.perf_counter() - start) / n * 1e6


async def _measure(url: str, root_key: str, key: str, database_url: str, n: int) -> dict[str, float]:
    verifiers: dict[str, KeyVerifier] = {
        "local": LocalVerifier(Settings(database_url=database_url)),
        "remote, no cache": RemoteVerifier(url, root_key, cache_ttl=0),
        "remote, cached": RemoteVerifier(url, root_key, cache_ttl=60),
    }
    try:
        return {name: await _per_verification_us(verifier, key, n) for name, verifier in verifiers.items()}
    finally:
        for verifier in verifiers.values():
            await verifier.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="verifications per verifier (default 2000)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="keystile-bench-"))
    database_url = f"sqlite:///{workdir / 'keystile.db'}"
    server = serve(workdir, {"KEYSTILE_DATABASE_URL": database_url})
    try:
        root_key = server.root_key()
        with Client(server.url, root_key) as keystile:
            api = keystile.create_api(ApiCreate(name="bench"))
            key = keystile.create_key(api.id, KeyCreate(permissions=["notes.read"])).key
        results = asyncio.run(_measure(server.url, root_key, key, database_url, args.n))
    finally:
        server.stop()
    for name, us in results.items():
        print(f"{name:<18} {us:9.1f} us per verification")
    print(f"remote without cache / local: {results['remote, no cache'] / results['local']:.0f}x")


if __name__ == "__main__":
    main()
