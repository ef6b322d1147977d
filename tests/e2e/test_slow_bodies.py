"""Slow request bodies over a real socket to a real ``keystile serve`` (granian): a client that sends its headers
and then its body slowly, or never, is answered 408 ``body_timeout`` once ``KEYSTILE_BODY_TIMEOUT_MS`` has passed
(within the deadline's sweep interval) and its connection is closed; meanwhile the server serves everyone else,
and a body that arrives in time, however slowly, is served as usual."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .server import Server, cli, free_port, read_answer, serve

pytestmark = pytest.mark.e2e

TIMEOUT_MS = 600
SWEEP_S = TIMEOUT_MS / 1000 / 2
SLACK_S = 3.0
"""A shared machine's scheduling, beyond the deadline and one sweep interval."""
CLOSED_S = 2.0
"""The connection is closed as the 408 is written: nothing waits for the garbage collector to free the request."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = serve(tmp_path_factory.mktemp("slow"), {"KEYSTILE_BODY_TIMEOUT_MS": str(TIMEOUT_MS)})
    yield running
    running.stop()


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes the connection after its answer (the rest of a late body is never read)."""
    sock.settimeout(CLOSED_S)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _head(path: str, headers: str, length: int) -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Content-Length: {length}\r\n\r\n".encode()


@pytest.mark.parametrize(
    ("path", "authorized", "content_type"),
    [
        ("/v1/keys/verify", True, "application/json"),
        ("/v1/apis", True, "application/json"),
        ("/oauth/token", False, "application/x-www-form-urlencoded"),
        ("/v2/keys.verifyKey", True, "application/json"),
        ("/dashboard/sign-in", False, "application/x-www-form-urlencoded"),
    ],
)
def test_a_body_that_does_not_come_is_answered_408_and_the_connection_closed(
    server: Server, path: str, authorized: bool, content_type: str
) -> None:
    headers = f"Content-Type: {content_type}\r\n"
    if authorized:
        headers += f"Authorization: Bearer {server.root_key()}\r\n"
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=30) as sock:
        sent = time.monotonic()
        sock.sendall(_head(path, headers, 100) + b'{"key": "')  # then nothing
        status, answer_headers, body = read_answer(sock)
        took = time.monotonic() - sent

        assert status == 408, body
        assert TIMEOUT_MS / 1000 <= took < TIMEOUT_MS / 1000 + SWEEP_S + SLACK_S, f"answered after {took:.2f} s"
        if not path.startswith("/dashboard/"):
            assert answer_headers["connection"] == "close"
        if path.startswith("/v1/"):
            assert answer_headers["content-type"] == "application/problem+json"
            assert json.loads(body)["code"] == "body_timeout"
        elif path.startswith("/v2/"):
            assert json.loads(body)["error"]["status"] == 408
        assert _closed_by_server(sock)


def test_many_slow_clients_are_cut_off_while_the_server_serves_the_others(server: Server) -> None:
    answers: list[int] = []

    def slow_client() -> None:
        with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=30) as sock:
            sock.sendall(_head("/oauth/token", "Content-Type: application/x-www-form-urlencoded\r\n", 50) + b"gra")
            answers.append(read_answer(sock)[0])

    clients = [threading.Thread(target=slow_client) for _ in range(40)]
    for client in clients:
        client.start()
    # While they hold their requests, verifications are answered at once.
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.root_key()}"}) as http:
        for _ in range(20):
            answer = http.post("/v1/keys/verify", json={"key": "ks_nope"}, timeout=5)
            assert answer.json()["code"] == "NOT_FOUND"
    for client in clients:
        client.join(timeout=TIMEOUT_MS / 1000 + SWEEP_S + SLACK_S + 10)
    assert answers == [408] * 40


def test_a_body_that_trickles_in_before_the_deadline_is_served(server: Server) -> None:
    body = json.dumps({"key": "ks_nope"}).encode()
    headers = f"Content-Type: application/json\r\nAuthorization: Bearer {server.root_key()}\r\n"
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=30) as sock:
        sock.sendall(_head("/v1/keys/verify", headers, len(body)))
        for i in range(0, len(body), 6):
            time.sleep(0.05)  # a slow client, well within the deadline in all
            sock.sendall(body[i : i + 6])
        status, _, answer = read_answer(sock)

    assert status == 200, answer
    assert json.loads(answer)["code"] == "NOT_FOUND"


def test_slow_clients_holding_every_request_slot_are_cut_off_and_the_server_serves_again(tmp_path: Path) -> None:
    """granian admits a bounded number of requests at once (``--backpressure``; 1,024 by default): slow clients
    holding every one of them would otherwise keep everyone else waiting for as long as they like. Their
    connections are closed with the 408, so the slots come back although the clients never send another byte."""
    workdir = tmp_path
    env = {"KEYSTILE_DATA_DIR": str(workdir), "KEYSTILE_BODY_TIMEOUT_MS": str(TIMEOUT_MS)}
    cli("init", workdir=workdir, env=env)
    port = free_port()
    command = [sys.executable, "-m", "granian", "--interface", "asgi", "--workers", "1", "--backpressure", "2"]
    command += ["--port", str(port), "--factory", "keystile.server.app:app_from_env"]
    server = Server(command, workdir, env, port, "granian")
    slow: list[socket.socket] = []
    try:
        for _ in range(2):  # every slot
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(_head("/oauth/token", "Content-Type: application/x-www-form-urlencoded\r\n", 50) + b"gra")
            slow.append(sock)
        time.sleep(0.1)
        asked = time.monotonic()
        answer = httpx.get(f"{server.url}/healthz", timeout=TIMEOUT_MS / 1000 + SWEEP_S + SLACK_S + 10)
        waited = time.monotonic() - asked

        assert answer.status_code == 200
        assert waited < TIMEOUT_MS / 1000 + SWEEP_S + SLACK_S, f"served after {waited:.2f} s"
        for sock in slow:  # still open on the clients' side: they sent nothing more
            assert read_answer(sock)[0] == 408
            assert _closed_by_server(sock)
    finally:
        for sock in slow:
            sock.close()
        server.stop()
