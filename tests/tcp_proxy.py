"""A TCP proxy that a test owns and can break: the way to take PostgreSQL or Redis away from a running server for
a while, for real, without touching the machine's shared services.

Three states:

- **flowing**: bytes go both ways;
- **cut** (:meth:`TcpProxy.cut`): every open connection is shut down (the server reads end-of-file in the middle of
  its conversation) and new ones are accepted and closed at once, as when the database restarts;
- **blackholed** (:meth:`TcpProxy.blackhole`): connections stay open and new ones are accepted, but no byte goes
  through in either direction, as when a network partition or a frozen server swallows packets. Nothing is lost:
  what was sent meanwhile goes through on :meth:`TcpProxy.restore`, as TCP would retransmit it.

:meth:`TcpProxy.restore` lets everything through again on the same port.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import urlsplit, urlunsplit


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target`` with a thread per direction of each connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._cut = threading.Event()
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.connections = 0
        """Connections forwarded so far."""
        self.refused = 0
        """Connections closed on arrival because the proxy was cut."""
        threading.Thread(target=self._accept, name="tcp-proxy", daemon=True).start()

    def cut(self) -> None:
        """Shut every open connection down and refuse new ones until :meth:`restore`."""
        self._cut.set()
        self._flowing.set()  # a blackholed pump must see its socket closed, not wait for the restore
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def blackhole(self) -> None:
        """Hold every byte in both directions (connections stay open, new ones are accepted) until
        :meth:`restore`."""
        self._flowing.clear()

    def restore(self) -> None:
        self._cut.clear()
        self._flowing.set()

    def close(self) -> None:
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # the listener was closed
                return
            if self._cut.is_set():
                self.refused += 1
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self.connections += 1
            with self._lock:
                self._open |= {client, upstream}
            threading.Thread(target=self._serve, args=(client, upstream), daemon=True).start()

    def _serve(self, client: socket.socket, upstream: socket.socket) -> None:
        back = threading.Thread(target=self._pump, args=(upstream, client), daemon=True)
        back.start()
        self._pump(client, upstream)
        back.join()
        with self._lock:
            self._open -= {client, upstream}
        client.close()
        upstream.close()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Copy while flowing until either side ends, then end both (so that the other direction's pump ends
        too)."""
        try:
            while True:
                self._flowing.wait()
                data = source.recv(65536)
                if not data:
                    break
                self._flowing.wait()  # bytes read while blackholed wait here for the restore
                if self._cut.is_set():
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def proxy_for(url: str, default_port: int) -> TcpProxy:
    """A proxy in front of the server a URL (``postgresql://``, ``redis://``) names."""
    parts = urlsplit(url)
    return TcpProxy((parts.hostname or "127.0.0.1", parts.port or default_port))


def through(url: str, proxy: TcpProxy) -> str:
    """``url`` pointed at ``proxy`` instead of its server (user and password kept)."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{proxy.port}" if credentials else f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=netloc))
