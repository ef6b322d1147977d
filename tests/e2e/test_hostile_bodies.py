"""Request bodies that end badly, over a real socket to a real ``keystile serve`` (granian): a chunked body with
a chunk size that is not hexadecimal, a client that leaves mid-body. Granian hands the app ``http.disconnect``
for both; the answer must be a 400 problem, never granian's plain-text 500, and a client that is gone must cost
nothing but that answer (no error in the log)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from .server import Server, raw_exchange, serve

pytestmark = pytest.mark.e2e

BAD_CHUNK = b"zz\r\nabc\r\n0\r\n\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = serve(tmp_path_factory.mktemp("hostile"))
    yield running
    running.stop()


def _head(path: str, root_key: str, framing: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {root_key}\r\n"
        f"X-Request-Id: trace-chunk\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("path", ["/v1/keys/verify", "/v1/apis"])
def test_a_chunked_body_with_a_bad_chunk_size_is_a_400_problem(server: Server, path: str) -> None:
    status, headers, body = raw_exchange(
        server.url, _head(path, server.root_key(), "Transfer-Encoding: chunked") + BAD_CHUNK
    )

    assert status == 400, body
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert (problem["code"], problem["request_id"]) == ("incomplete_body", "trace-chunk")
    assert headers["x-request-id"] == "trace-chunk"


@pytest.mark.parametrize("path", ["/v1/keys/verify", "/v1/apis"])
def test_a_body_cut_after_its_first_chunk_is_a_400_problem(server: Server, path: str) -> None:
    framing = "Transfer-Encoding: chunked"
    status, _, body = raw_exchange(server.url, _head(path, server.root_key(), framing) + b'3\r\n{"k\r\nzz\r\n')

    assert status == 400, body
    assert json.loads(body)["code"] == "incomplete_body"


def test_forward_auth_does_not_read_the_body_and_answers_as_usual(server: Server) -> None:
    head = b"POST /v1/auth?api_id=api_x HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    status, headers, body = raw_exchange(server.url, head + BAD_CHUNK)

    assert (status, headers["x-keystile-code"], body) == (401, "missing_key", b"")


def test_a_client_that_leaves_mid_body_costs_no_error_and_the_server_serves_on(server: Server) -> None:
    for path in ("/v1/keys/verify", "/v1/apis"):
        raw_exchange(server.url, _head(path, server.root_key(), "Content-Length: 100") + b'{"key": "', leave=True)
    answer = httpx.post(
        f"{server.url}/v1/keys/verify",
        json={"key": "ks_nope"},
        headers={"Authorization": f"Bearer {server.root_key()}"},
    )

    assert answer.json()["code"] == "NOT_FOUND"
    lines = [json.loads(line) for line in server.stderr().splitlines() if line.startswith("{")]
    errors = [line for line in lines if line["level"] in ("error", "critical")]
    assert not errors, errors
    assert "Traceback" not in server.stderr()
