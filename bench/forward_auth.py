"""SPEC P3 and P2 for forward auth: nginx + ``/v1/auth`` against the same nginx without auth, and ``/v1/auth``
against a hello world on the same server stack.

Servers, started side by side (granian, ASGI interface, one worker each, as in ``http_verify.py``):

* hello: ``bench/hello.py:app`` (a fixed small JSON body), the upstream nginx proxies to in every P3 variant;
* Keystile: ``keystile.server.app:app_from_env`` over a SQLite file prepared as in P2 (an API and a key with
  three permissions and a two-CIDR allowlist);
* context only: ``bench/hello.py:app_empty``, a trivial verifier answering 200 with no body.

One nginx (Debian's, one worker process, keep-alive connections to every upstream, access log off) listens on three
ports: **plain** proxies to hello; **auth** asks Keystile first (``auth_request`` to
``/v1/auth?api_id=…&permissions=docs.read AND (docs.write OR admin)``, passing the client's address with
``X-Forwarded-For`` and setting the identity headers for the upstream, as docs/forward-auth.md does) and then
proxies to hello; **empty** does the same with the trivial verifier.

``wrk`` (one thread, ``--connections`` connections) sends the same request everywhere (``bench/get.lua``):
``GET`` with the key as a Bearer token and ``X-Forwarded-For: 10.20.30.40`` (inside the key's allowlist; nginx
appends its own peer, which Keystile trusts as loopback). Every answer through Keystile is checked to be 200
before and after the runs. Short runs alternate plain, auth, empty, hello, /v1/auth directly, round by round;
each ratio is the median over rounds of the two runs' req/s, measured back to back.

Run: ``python bench/forward_auth.py [--duration S] [--rounds N]``. Needs nginx and wrk (``apt-get install nginx
wrk``; installed when missing and running as root).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from http_verify import (
    BENCH_DIR,
    CLIENT_IP,
    HELLO_TARGET,
    KEYSTILE_TARGET,
    QUERY,
    STARTUP_TIMEOUT_S,
    Server,
    WrkRun,
    ensure_wrk,
    free_port,
    group_cpu_seconds,
    prepare_database,
    run_wrk,
)

GET_SCRIPT = BENCH_DIR / "get.lua"
EMPTY_TARGET = "hello:app_empty"
TARGET_P3 = 0.8
TARGET_P2 = 0.8

NGINX_CONF = """
{user}
worker_processes 1;
error_log {dir}/nginx-error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream hello {{ server 127.0.0.1:{hello}; keepalive 64; }}
    upstream keystile {{ server 127.0.0.1:{keystile}; keepalive 64; }}
    upstream empty {{ server 127.0.0.1:{empty}; keepalive 64; }}
    # Keep-alive to the upstreams. proxy_set_header is inherited only by blocks that set none of their own, so
    # every location below that sets headers repeats Connection "" (without it, each request opens a connection).
    proxy_http_version 1.1;
    proxy_set_header Connection "";

    server {{
        listen 127.0.0.1:{plain_port};
        location / {{ proxy_pass http://hello; }}
    }}
    server {{
        listen 127.0.0.1:{auth_port};
        location = /_keystile {{
            internal;
            proxy_pass http://keystile/v1/auth?api_id={api_id}&permissions={permissions};
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Connection "";
        }}
        location / {{
            auth_request /_keystile;
            auth_request_set $keystile_key_id $upstream_http_x_keystile_key_id;
            auth_request_set $keystile_owner_id $upstream_http_x_keystile_owner_id;
            proxy_set_header X-Keystile-Key-Id $keystile_key_id;
            proxy_set_header X-Keystile-Owner-Id $keystile_owner_id;
            proxy_set_header Authorization "";
            proxy_set_header Connection "";
            proxy_pass http://hello;
        }}
    }}
    server {{
        listen 127.0.0.1:{empty_port};
        location = /_auth {{
            internal;
            proxy_pass http://empty/;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Connection "";
        }}
        location / {{
            auth_request /_auth;
            proxy_set_header Authorization "";
            proxy_set_header Connection "";
            proxy_pass http://hello;
        }}
    }}
}}
"""


@dataclass(frozen=True, slots=True)
class Result:
    """Runs per variant, round by round."""

    runs: dict[str, tuple[WrkRun, ...]]
    connections: int
    duration_s: float

    def _ratio(self, measured: str, baseline: str) -> float:
        pairs = zip(self.runs[baseline], self.runs[measured], strict=True)
        return statistics.median(m.rps / b.rps for b, m in pairs)

    @property
    def p3_ratio(self) -> float:
        """nginx + /v1/auth / nginx alone (median of rounds)."""
        return self._ratio("nginx_auth", "nginx_plain")

    @property
    def empty_ratio(self) -> float:
        """nginx + a trivial verifier / nginx alone: what forward auth costs nginx itself."""
        return self._ratio("nginx_empty", "nginx_plain")

    @property
    def verifier_ratio(self) -> float:
        """nginx + /v1/auth / nginx + a trivial verifier: Keystile's own share of what forward auth costs."""
        return self._ratio("nginx_auth", "nginx_empty")

    @property
    def p2_ratio(self) -> float:
        """/v1/auth directly / hello world directly (median of rounds)."""
        return self._ratio("auth", "hello")

    def cpu_ratio(self, measured: str, baseline: str) -> float | None:
        """Median server CPU per request (nginx and every server) of ``baseline`` / ``measured``: the throughput
        ratio of a machine where the servers, not the neighbours, are the limit; far steadier than req/s here."""
        cpu = {name: [r.cpu_us for r in self.runs[name] if r.cpu_us is not None] for name in (measured, baseline)}
        if not cpu[measured] or not cpu[baseline]:
            return None
        return statistics.median(cpu[baseline]) / statistics.median(cpu[measured])

    def p99_ms(self, name: str) -> float:
        return statistics.median(r.p99_ms for r in self.runs[name])

    def rps(self, name: str) -> float:
        return statistics.median(r.rps for r in self.runs[name])

    @property
    def errors(self) -> list[str]:
        found = []
        for name, runs in self.runs.items():
            for i, run in enumerate(runs):
                if run.non_2xx:
                    found.append(f"{name} round {i + 1}: {run.non_2xx} non-2xx responses")
                if run.socket_errors:
                    found.append(f"{name} round {i + 1}: socket errors {run.socket_errors}")
        return found

    def report(self) -> str:
        names = list(self.runs)
        lines = [
            f"P3/P2 forward auth: nginx 1 worker, granian asgi 1 worker per server; wrk -t1 -c{self.connections} "
            f"-d{self.duration_s:g}s per run, variants alternating; {os.cpu_count()} CPUs shared (nothing pinned)",
            "  round " + "".join(f"{name:>13}" for name in names) + "   (req/s)",
        ]
        for i in range(len(self.runs[names[0]])):
            lines.append(f"  {i + 1:<6}" + "".join(f"{self.runs[n][i].rps:>13,.0f}" for n in names))
        lines.append("  p99 ms" + "".join(f"{self.p99_ms(n):>13.2f}" for n in names))
        cpu = {n: statistics.median(r.cpu_us or 0.0 for r in self.runs[n]) for n in names}
        lines.append("  cpu us" + "".join(f"{cpu[n]:>13.0f}" for n in names) + "   (all servers' CPU per request)")
        lines.append(
            f"  P3 nginx+/v1/auth / nginx alone = {self.p3_ratio:.2f} (median of rounds), target >= {TARGET_P3:g}; "
            f"p99 {self.p99_ms('nginx_auth'):.2f} ms"
        )
        p3_cpu, empty_cpu = self.cpu_ratio("nginx_auth", "nginx_plain"), self.cpu_ratio("nginx_empty", "nginx_plain")
        if p3_cpu is not None and empty_cpu is not None:
            lines.append(
                f"  the same from CPU per request: nginx+/v1/auth {p3_cpu:.2f}, nginx+trivial verifier {empty_cpu:.2f}"
            )
        lines.append(f"  context: nginx + a trivial empty-reply verifier / nginx alone = {self.empty_ratio:.2f}")
        lines.append(f"  context: nginx + /v1/auth / nginx + the trivial verifier = {self.verifier_ratio:.2f}")
        lines.append(
            f"  P2 /v1/auth / hello world = {self.p2_ratio:.2f} (median of rounds), target >= {TARGET_P2:g}; "
            f"p99 {self.p99_ms('auth'):.2f} ms"
        )
        p2_cpu = self.cpu_ratio("auth", "hello")
        if p2_cpu is not None:
            lines.append(f"  hello / /v1/auth server CPU per request = {p2_cpu:.2f}")
        lines.extend(f"  ERROR {error}" for error in self.errors)
        return "\n".join(lines)


def ensure_nginx() -> str:
    """The path of nginx, installed with apt-get when missing and running as root; raises RuntimeError."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if found is None and os.name == "posix" and os.geteuid() == 0 and shutil.which("apt-get"):
        print("nginx is missing: installing it with apt-get", file=sys.stderr)
        if subprocess.run(["apt-get", "install", "-y", "nginx"], check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], check=False)
            subprocess.run(["apt-get", "install", "-y", "nginx"], check=False)
        found = shutil.which("nginx", path="/usr/sbin:/sbin:/usr/bin")
    if found is None:
        raise RuntimeError("the forward-auth benchmark needs nginx: `sudo apt-get install nginx`")
    return found


def _cpu(groups: list[int]) -> float | None:
    """CPU time of nginx and every server together (the idle ones add next to nothing)."""
    times = [group_cpu_seconds(group) for group in groups]
    return None if None in times else sum(t or 0.0 for t in times)


def _get(port: int, path: str, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _wait(port: int, path: str, headers: dict[str, str], what: str) -> int:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        try:
            return _get(port, path, headers)
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not answer in time") from None
            time.sleep(0.1)  # polling a starting process


def run(*, duration_s: float = 2.0, warmup_s: float = 2.0, rounds: int = 7, connections: int = 32) -> Result:
    """Run P3 and P2 for /v1/auth; raises RuntimeError when a server cannot start or answer 200."""
    wrk = ensure_wrk()
    nginx = ensure_nginx()
    with tempfile.TemporaryDirectory(prefix="keystile-bench-fa-") as tmp:
        directory = Path(tmp)
        url = f"sqlite:///{directory / 'keystile.db'}"
        _, api_id, key = asyncio.run(prepare_database(url))
        auth_path = f"/v1/auth?api_id={api_id}&permissions={quote(QUERY)}"
        headers = {"Authorization": f"Bearer {key}", "X-Forwarded-For": CLIENT_IP}
        wrk_env = {**os.environ, "BENCH_AUTHORIZATION": headers["Authorization"], "BENCH_FORWARDED_FOR": CLIENT_IP}
        server_env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH_DIR), os.environ.get("PYTHONPATH")])),
            "KEYSTILE_DATA_DIR": str(directory),
            "KEYSTILE_DATABASE_URL": url,
            "KEYSTILE_LOG_LEVEL": "warning",
        }
        servers: list[Server] = []
        proxy: subprocess.Popen[bytes] | None = None
        try:
            hello = Server("hello", HELLO_TARGET, factory=False, env=server_env, logs=directory / "hello.log")
            servers.append(hello)
            keystile = Server("keystile", KEYSTILE_TARGET, factory=True, env=server_env, logs=directory / "ks.log")
            servers.append(keystile)
            empty = Server("empty", EMPTY_TARGET, factory=False, env=server_env, logs=directory / "empty.log")
            servers.append(empty)
            for server, path in ((hello, "/"), (keystile, auth_path), (empty, "/")):
                _wait(server.port, path, headers, server.name)  # up before nginx proxies to them
            ports = {"plain_port": free_port(), "auth_port": free_port(), "empty_port": free_port()}
            conf = directory / "nginx.conf"
            conf.write_text(
                NGINX_CONF.format(
                    user=f"user {getpass.getuser()};" if os.geteuid() == 0 else "",
                    dir=directory,
                    hello=hello.port,
                    keystile=keystile.port,
                    empty=empty.port,
                    api_id=api_id,
                    permissions=quote(QUERY),
                    **ports,
                )
            )
            with (directory / "nginx.out").open("wb") as out:
                proxy = subprocess.Popen(
                    [
                        nginx,
                        "-p",
                        str(directory),
                        "-c",
                        str(conf),
                        "-e",
                        str(directory / "nginx-error.log"),
                        "-g",
                        "daemon off;",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            targets = {
                "nginx_plain": (ports["plain_port"], "/"),
                "nginx_auth": (ports["auth_port"], "/"),
                "nginx_empty": (ports["empty_port"], "/"),
                "hello": (hello.port, "/"),
                "auth": (keystile.port, auth_path),
            }
            for name, (port, path) in targets.items():
                status = _wait(port, path, headers, name)
                if status != 200:
                    raise RuntimeError(
                        f"{name} answered {status}; {(directory / 'nginx-error.log').read_text()[-800:]}"
                    )
            groups = [proxy.pid, *(server.process.pid for server in servers)]
            for port, path in targets.values():
                run_wrk(wrk, f"http://127.0.0.1:{port}{path}", wrk_env, connections, warmup_s, GET_SCRIPT)
            runs: dict[str, list[WrkRun]] = {name: [] for name in targets}
            for _ in range(rounds):
                for name, (port, path) in targets.items():
                    before = _cpu(groups)
                    run = run_wrk(wrk, f"http://127.0.0.1:{port}{path}", wrk_env, connections, duration_s, GET_SCRIPT)
                    after = _cpu(groups)
                    runs[name].append(run.with_cpu(None if before is None or after is None else after - before))
            for name in ("nginx_auth", "auth"):
                port, path = targets[name]
                if (status := _get(port, path, headers)) != 200:
                    raise RuntimeError(f"{name} answered {status} after the runs")
        finally:
            if proxy is not None and proxy.poll() is None:
                proxy.terminate()
                proxy.wait(timeout=10)
            for server in servers:
                server.stop()
    return Result({name: tuple(r) for name, r in runs.items()}, connections, duration_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measured run (default 2)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per target (default 2)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds of the five variants (default 7)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    args = parser.parse_args(argv)
    try:
        result = run(duration_s=args.duration, warmup_s=args.warmup, rounds=args.rounds, connections=args.connections)
    except RuntimeError as exc:
        print(f"forward-auth benchmark not run: {exc}", file=sys.stderr)
        return 1
    print(result.report())
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
