"""A real webhook receiver for tests: an HTTP server in a thread that checks every post's signature with the
``standardwebhooks`` package (the reference implementation from PyPI) and keeps what it received."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    """One post: its headers, its body as JSON, whether a secret verified it, and when it came (monotonic)."""

    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes
    verified: bool
    at: float
    status: int


@dataclass
class Receiver:
    """What the server answers (``answer(n)`` for the n-th post, from 0) and what it has received."""

    url: str = ""
    secrets: list[str] = field(default_factory=list)
    answer: Callable[[int], int] = lambda n: 200
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def verify(self, body: bytes, headers: dict[str, str]) -> bool:
        for secret in list(self.secrets):
            try:
                Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            return True
        return False

    def unique(self) -> dict[str, Received]:
        """What was received, de-duplicated by ``webhook-id`` (at-least-once delivery may repeat a post)."""
        with self.lock:
            return {r.headers["webhook-id"]: r for r in self.received if 200 <= r.status < 300}

    def events(self) -> list[tuple[str, str]]:
        """``(type, key id)`` of each unique event received, in the order received."""
        found = sorted(self.unique().values(), key=lambda r: r.at)
        return [(r.body["type"], r.body["data"]["id"]) for r in found]

    def wait_for(self, count: int, timeout: float = 30.0) -> dict[str, Received]:
        """Wait until ``count`` unique events have arrived; returns them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            unique = self.unique()
            if len(unique) >= count:
                return unique
            time.sleep(0.05)
        raise AssertionError(f"{len(self.unique())} of {count} events arrived within {timeout} s")


@contextmanager
def receiver(answer: Callable[[int], int] = lambda n: 200) -> Iterator[Receiver]:
    """A receiver listening on 127.0.0.1 until the block ends."""
    state = Receiver(answer=answer)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            with state.lock:
                status = state.answer(len(state.received))
                state.received.append(
                    Received(headers, json.loads(body), body, state.verify(body, headers), time.monotonic(), status)
                )
            self.send_response(status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 1024  # two servers' deliverers connect at once

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
