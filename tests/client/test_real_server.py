"""Both clients against a real ``keystile serve`` over a real socket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from keystile import AsyncClient, Client
from keystile.client import AuthenticationFailed, NotFoundError
from keystile.schemas import ApiCreate, KeyCreate, VerifyRequest
from tests.e2e.server import Server, serve

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = serve(tmp_path_factory.mktemp("client"), {"KEYSTILE_CACHE_TTL_MS": "200"})
    yield running
    running.stop()


def test_the_blocking_client_manages_and_verifies_keys(server: Server) -> None:
    with Client(server.url, server.root_key()) as keystile:
        assert keystile.healthz().status == "ok"
        api = keystile.create_api(ApiCreate(name="real"))
        created = keystile.create_key(api.id, KeyCreate(owner_id="alice", permissions=["notes.read"]))

        answer = keystile.verify_key(VerifyRequest(key=created.key, api_id=api.id, permissions="notes.read"))
        assert (answer.valid, answer.key_id, answer.owner_id) == (True, created.id, "alice")

        keystile.revoke_key(created.id)
        assert keystile.verify_key(VerifyRequest(key=created.key)).code == "REVOKED"  # this process's own write
        keystile.delete_api(api.id)
        with pytest.raises(NotFoundError):
            keystile.get_api(api.id)


async def test_the_async_client_reads_and_maps_errors_over_a_socket(server: Server) -> None:
    async with AsyncClient(server.url, server.root_key()) as keystile:
        api = await keystile.create_api(ApiCreate(name="async"))
        assert api.id in {item.id for item in (await keystile.list_apis()).items}
        assert (await keystile.readyz()).status == "ready"
    async with AsyncClient(server.url, "ks_root_wrong") as stranger:
        with pytest.raises(AuthenticationFailed) as caught:
            await stranger.get_api(api.id)
    assert caught.value.request_id is not None
