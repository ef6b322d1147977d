"""Problem answers become typed errors carrying the problem's fields; a missing answer becomes TransportError;
only calls that are safe to repeat are retried, and only when the connection failed."""

from __future__ import annotations

from collections.abc import Mapping

import httpx
import pytest

import keystile
from keystile import AsyncClient, Client
from keystile.client import (
    ApiError,
    AuthenticationFailed,
    BadRequest,
    ConflictError,
    NotFoundError,
    PayloadTooLarge,
    PermissionDenied,
    ServerError,
    ServiceUnavailable,
    TooManyRequests,
    TransportError,
)
from keystile.client._call import error_from
from keystile.schemas import ApiCreate, IdentityCreate, KeyCreate, RootKeyCreate, VerifyRequest
from tests.e2e.server import free_port

from .conftest import BASE_URL, Connect


async def test_a_bad_root_key_is_authentication_failed_with_the_problem_fields(connect: Connect) -> None:
    async with connect("ks_root_not_a_real_key") as stranger:
        with pytest.raises(AuthenticationFailed) as caught:
            await stranger.list_apis()
    error = caught.value
    assert isinstance(error, keystile.Unauthenticated)
    assert isinstance(error, keystile.KeystileError)
    assert (error.status, error.code) == (401, "invalid_root_key")
    assert error.request_id is not None
    assert error.request_id.startswith("req_")
    assert error.detail
    assert "ks_root_not_a_real_key" not in str(error)


async def test_no_root_key_is_missing_root_key(connect: Connect) -> None:
    async with connect() as anonymous:
        with pytest.raises(AuthenticationFailed) as caught:
            await anonymous.list_apis()
    assert caught.value.code == "missing_root_key"


async def test_a_refused_body_is_bad_request_naming_the_field(client: AsyncClient) -> None:
    with pytest.raises(BadRequest) as caught:
        await client.create_api(ApiCreate(name="x", prefix="NOT VALID"))
    assert isinstance(caught.value, keystile.InvalidInput)
    assert (caught.value.status, caught.value.field) == (400, "/prefix")


async def test_a_bad_permission_query_is_bad_request_with_its_position(client: AsyncClient) -> None:
    with pytest.raises(BadRequest) as caught:
        await client.verify_key(VerifyRequest(key="ks_x", permissions="a AND (b"))
    assert caught.value.code == "invalid_permission_query"
    assert caught.value.position is not None


async def test_a_missing_permission_is_permission_denied(client: AsyncClient, connect: Connect) -> None:
    reader = await client.create_root_key(RootKeyCreate(permissions=["apis.read"]))
    async with connect(reader.key) as limited:
        with pytest.raises(PermissionDenied) as caught:
            await limited.create_api(ApiCreate(name="nope"))
    assert isinstance(caught.value, keystile.Forbidden)
    assert caught.value.code == "insufficient_permissions"


async def test_an_unknown_object_is_not_found_and_a_clash_is_a_conflict(client: AsyncClient) -> None:
    with pytest.raises(NotFoundError) as missing:
        await client.get_key("key_000000000000000000000")
    assert isinstance(missing.value, keystile.NotFound)
    await client.create_identity(IdentityCreate(owner_id="acme"))
    with pytest.raises(ConflictError) as clash:
        await client.create_identity(IdentityCreate(owner_id="acme"))
    assert isinstance(clash.value, keystile.Conflict)
    assert clash.value.code == "identity_exists"


async def test_a_body_over_the_limit_is_payload_too_large(client: AsyncClient) -> None:
    api = await client.create_api(ApiCreate(name="big"))
    with pytest.raises(PayloadTooLarge) as caught:
        await client.create_key(api.id, KeyCreate(name="x", meta={"padding": "p" * (1024 * 1024)}))
    assert caught.value.status == 413


def _answer(
    status: int, body: bytes, headers: Mapping[str, str] | Mapping[bytes, bytes] | None = None
) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers, request=httpx.Request("GET", BASE_URL))


@pytest.mark.parametrize(
    ("status", "error_type", "base"),
    [
        (429, TooManyRequests, keystile.RateLimited),
        (503, ServiceUnavailable, keystile.StorageError),
        (500, ServerError, keystile.KeystileError),
        (418, ApiError, keystile.KeystileError),
    ],
)
def test_statuses_the_api_rarely_answers_map_to_their_errors(
    status: int, error_type: type[ApiError], base: type[Exception]
) -> None:
    body = b'{"type":"t","title":"T","status":%d,"detail":"d","code":"c","request_id":"req_1"}' % status
    error = error_from(_answer(status, body, {"retry-after": "7"}))
    assert type(error) is error_type
    assert isinstance(error, base)
    assert (error.status, error.code, error.request_id) == (status, "c", "req_1")
    assert error.retry_after == 7


@pytest.mark.parametrize("retry_after", ["²", "٣", "9" * 5000, "Wed, 21 Oct 2037 07:28:00 GMT", "-1", ""])
def test_a_retry_after_that_is_not_ascii_seconds_is_ignored(retry_after: str) -> None:
    body = b'{"type":"t","title":"T","status":429,"detail":"d","code":"c","request_id":"req_1"}'
    headers = {b"retry-after": retry_after.encode()}  # bytes, as they come off the wire
    error = error_from(_answer(429, body, headers))
    assert isinstance(error, TooManyRequests)
    assert error.retry_after is None


def test_an_answer_that_is_not_a_problem_still_becomes_an_error_of_its_status() -> None:
    error = error_from(_answer(502, b"<html>Bad Gateway</html>", {"x-request-id": "req_proxy"}))
    assert isinstance(error, ServerError)
    assert (error.status, error.code, error.request_id) == (502, "http_502", "req_proxy")


class CountingTransport(httpx.BaseTransport):
    """A real HTTP transport that counts the requests it is asked to send."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.sent = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        return self.inner.handle_request(request)


def test_a_refused_connection_is_a_transport_error_retried_only_for_idempotent_calls() -> None:
    transport = CountingTransport()
    root_key = "ks_root_secret_that_must_not_leak"
    with Client(f"http://127.0.0.1:{free_port()}", root_key, transport=transport, retries=2, backoff=0) as nowhere:
        with pytest.raises(TransportError) as caught:
            nowhere.list_apis()
        assert transport.sent == 3
        assert caught.value.code == "connection_failed"
        assert isinstance(caught.value.__cause__, httpx.ConnectError)
        assert root_key not in str(caught.value)

        with pytest.raises(TransportError):
            nowhere.create_api(ApiCreate(name="once"))
        assert transport.sent == 4
        with pytest.raises(TransportError):
            nowhere.verify_key(VerifyRequest(key="ks_x"))
        assert transport.sent == 5


class FailingFirst(httpx.AsyncBaseTransport):
    """Refuses the first ``failures`` connections (as a restarting server does), then serves the app."""

    def __init__(self, inner: httpx.AsyncBaseTransport, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.sent = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        if self.sent <= self.failures:
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


async def test_an_idempotent_call_succeeds_once_the_connection_comes_back(client: AsyncClient) -> None:
    api = await client.create_api(ApiCreate(name="kept"))
    transport = FailingFirst(client._http._transport, failures=2)
    async with AsyncClient(BASE_URL, client.config.root_key, transport=transport, backoff=0) as flaky:
        assert (await flaky.get_api(api.id)).name == "kept"
    assert transport.sent == 3


async def test_a_call_that_is_not_idempotent_is_not_repeated(client: AsyncClient) -> None:
    transport = FailingFirst(client._http._transport, failures=1)
    async with AsyncClient(BASE_URL, client.config.root_key, transport=transport, backoff=0) as flaky:
        with pytest.raises(TransportError):
            await flaky.create_api(ApiCreate(name="maybe"))
        assert transport.sent == 1
        assert (await flaky.list_apis()).items == []  # it never reached the server


def test_a_client_is_configured_from_the_environment() -> None:
    with Client.from_env({"KEYSTILE_URL": "http://127.0.0.1:1", "KEYSTILE_ROOT_KEY": "ks_root_x"}) as configured:
        assert configured.config.base_url == "http://127.0.0.1:1"
        assert configured.config.root_key == "ks_root_x"
    with pytest.raises(ValueError, match="KEYSTILE_URL"):
        Client.from_env({})
