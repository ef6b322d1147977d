"""A real upstream for proxy tests: an HTTP/1.1 server in a thread that says what it received.

- any path: answers JSON ``{method, target, headers, body_size, body_sha256}`` about the request it got (also kept
  in ``Upstream.seen``), having read the body as it came (``Content-Length`` or chunked) without keeping it;
- ``…/download?chunks=N&size=S``: a chunked answer of N chunks of S bytes (no ``Content-Length``);
- ``…/hang``: answers only once the test ends (for timeouts).
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

CHUNK = 64 * 1024


def pattern(index: int, size: int) -> bytes:
    """The deterministic bytes of chunk ``index`` of a download."""
    return bytes([index % 251]) * size


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _body(self) -> tuple[int, str]:
        digest = hashlib.sha256()
        size = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                length = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if length == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    break
                remaining = length
                while remaining:
                    data = self.rfile.read(min(remaining, CHUNK))
                    digest.update(data)
                    remaining -= len(data)
                    size += len(data)
                self.rfile.readline()
        else:
            remaining = int(self.headers.get("Content-Length", "0"))
            while remaining:
                data = self.rfile.read(min(remaining, CHUNK))
                if not data:
                    break
                digest.update(data)
                remaining -= len(data)
                size += len(data)
        return size, digest.hexdigest()

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        if parts.path.endswith("/hang"):
            self.server.release.wait(60)
        size, sha = self._body()
        if parts.path.endswith("/download"):
            query = parse_qs(parts.query)
            chunks, chunk_size = int(query["chunks"][0]), int(query["size"][0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for index in range(chunks):
                data = pattern(index, chunk_size)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.write(b"0\r\n\r\n")
            return
        record = {
            "method": self.command,
            "target": self.path,
            "headers": [[name.lower(), value] for name, value in self.headers.items()],
            "body_size": size,
            "body_sha256": sha,
        }
        self.server.seen.append(record)
        body = json.dumps(record).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Upstream", "yes")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[dict[str, Any]] = []
        self.release = threading.Event()


class Upstream:
    """The server, listening on a free port of 127.0.0.1 until :meth:`stop`."""

    def __init__(self) -> None:
        self._server = _Server()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def seen(self) -> list[dict[str, Any]]:
        return self._server.seen

    def stop(self) -> None:
        self._server.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
