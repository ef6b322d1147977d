"""Every example in README.md and docs/*.md works as written against a real ``keystile serve`` (issue 9, step 6).

How an example is marked: words after the language of a fenced code block, which GitHub does not show.

    ```json example=NAME request="METHOD /path"   a request body, sent to that route
    ```sh example=NAME                           commands: every line that starts with `curl` is run with bash
    ```json example=NAME answer=STATUS            the answer to the request, or one JSON value per curl line
    ```http example=NAME answer=STATUS            the answer as `curl -i` shows it: a status line and headers
    ```json example=NAME answer                   an answer that is not HTTP (a log line)
    ```json no-example                            shown for another reason, and not checked

NAME is unique within its file. A scenario below, registered with ``@scenario(file, NAME)``, sets up what the
example assumes (an API, a key, a few verifications), sends the request or runs the commands, and returns what
came back; the test compares that with the answer block:

- objects have the same members, lists the same length, compared item by item;
- strings are equal, except that ``…`` stands for any text (``key_…`` is any string that starts with ``key_``)
  and that an RFC 3339 time stands for any time written the same way (``2026-11-28T09:12:44.031Z``: UTC with
  milliseconds);
- numbers, booleans and null are equal, except the members of ``MEASURED`` (a latency), which need the same type;
- an http answer's status is equal, and each header it lists is there with a matching value (others, such as
  ``date``, may come too);
- answer=STATUS is the status of the request or of every curl line; the curl lines of an example without an
  answer block must all answer below 400.

In a request block, ``…`` marks what the scenario fills in (``"key": "ks_…"``), and path parameters are filled
in the same way. Commands run with ``KS`` (the server's address), ``ROOT_KEY`` and what the scenario sets
(``KEY_ID``, ``API_ID``, ``KEY``).

The test fails for a marked example without a scenario or a scenario without its example, and for any ```json
block, or any block with a ``curl`` command, in README.md or docs/*.md that is neither an example nor marked
no-example: a new example cannot drift silently. (The README's walkthrough is run by test_readme.py.)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.availability import require_tool
from tests.proxy.upstream import Upstream
from tests.server.test_leaks import KEY_ID as GITHUB_KEY_ID
from tests.server.test_leaks import pem, sign

from .server import BIN, REPO, Server, cli, free_port, non_loopback_address, serve

pytestmark = pytest.mark.e2e

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MEASURED = frozenset({"latency_us", "exp", "iat"})
"""Members whose values the server measures (a latency) or takes from its clock (a token's times in seconds):
only their type is compared."""
FENCE = re.compile(
    r"^(?P<indent>[ ]*)(?P<fence>```+)(?P<info>[^`\n]*)\n(?P<body>.*?)^(?P=indent)(?P=fence)[ ]*$", re.M | re.S
)
WALKTHROUGH = re.compile(r"<!-- walkthrough:start -->.*?<!-- walkthrough:end -->", re.S)
CURL = re.compile(r"^\s*(?:\$\s+)?curl\s", re.M)
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)$")
STATUS_MARK = "\x1fstatus "
POLL_S = 30.0


# -- the examples, as the docs mark them ----------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    language: str
    attrs: Mapping[str, str]
    flags: frozenset[str]
    text: str
    in_walkthrough: bool

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


@dataclass
class Example:
    doc: str
    name: str
    request: Block | None = None
    commands: Block | None = None
    answer: Block | None = None

    @property
    def id(self) -> str:
        return f"{self.doc}#{self.name}"


def _blocks(path: Path) -> Iterator[Block]:
    text = path.read_text()
    walkthroughs = [match.span() for match in WALKTHROUGH.finditer(text)]
    for match in FENCE.finditer(text):
        words = shlex.split(match["info"])
        language = words[0] if words else ""
        attrs = dict(word.split("=", 1) for word in words[1:] if "=" in word)
        flags = frozenset(word for word in words[1:] if "=" not in word)
        body = textwrap.dedent(match["body"])
        inside = any(start <= match.start() < end for start, end in walkthroughs)
        line = text.count("\n", 0, match.start()) + 1
        yield Block(str(path.relative_to(REPO)), line, language, attrs, flags, body, inside)


def _all_blocks() -> list[Block]:
    return [block for path in DOCS for block in _blocks(path)]


def _examples() -> dict[str, Example]:
    found: dict[str, Example] = {}
    for block in _all_blocks():
        name = block.attrs.get("example")
        if name is None:
            continue
        example = found.setdefault(f"{block.doc}#{name}", Example(block.doc, name))
        if "answer" in block.attrs or "answer" in block.flags:
            kind = "answer"
        elif "request" in block.attrs:
            kind = "request"
        else:
            kind = "commands"
        assert getattr(example, kind) is None, f"{block.where}: a second {kind} block for the example {name!r}"
        setattr(example, kind, block)
    return found


EXAMPLES = _examples()


# -- what came back, and how it is compared with the docs -----------------------------------------------------


@dataclass
class Got:
    """One answer: its status (None for a log line), headers (lower-case names) and body (JSON, or text)."""

    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


def _pattern(documented: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in documented.split("…")), re.S)


def _shape_of_time(text: str) -> str:
    return re.sub(r"\d", "0", text)


def _same_string(documented: str, actual: str) -> bool:
    if "…" in documented:
        return _pattern(documented).fullmatch(actual) is not None
    if TIME.match(documented):
        return TIME.match(actual) is not None and _shape_of_time(documented) == _shape_of_time(actual)
    return documented == actual


def differences(documented: Any, actual: Any, where: str = "") -> list[str]:
    """How ``actual`` differs from what the docs show (see the module docstring for the rules)."""
    here = where or "/"
    if isinstance(documented, dict):
        if not isinstance(actual, dict):
            return [f"{here}: the docs show an object, the server answered {actual!r}"]
        found = []
        if set(documented) != set(actual):
            found.append(f"{here}: the docs show members {sorted(documented)}, the server answered {sorted(actual)}")
        for name in documented.keys() & actual.keys():
            if name in MEASURED:
                if type(documented[name]) is not type(actual[name]):
                    found.append(f"{where}/{name}: {documented[name]!r} in the docs, {actual[name]!r} answered")
            else:
                found += differences(documented[name], actual[name], f"{where}/{name}")
        return found
    if isinstance(documented, list):
        if not isinstance(actual, list) or len(actual) != len(documented):
            return [f"{here}: the docs show {len(documented)} items, the server answered {actual!r}"]
        return [
            diff
            for i, (d, a) in enumerate(zip(documented, actual, strict=True))
            for diff in differences(d, a, f"{where}/{i}")
        ]
    if isinstance(documented, str):
        if isinstance(actual, str) and _same_string(documented, actual):
            return []
    elif type(documented) is type(actual) and documented == actual:
        return []
    return [f"{here}: {documented!r} in the docs, {actual!r} answered"]


def _json_values(text: str) -> list[Any]:
    """Every JSON value in ``text``, one after the other (an answer block shows one per curl line)."""
    decoder = json.JSONDecoder()
    values, at = [], 0
    while (at := _skip_space(text, at)) < len(text):
        value, at = decoder.raw_decode(text, at)
        values.append(value)
    return values


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def _http_head(text: str) -> Got:
    """A status line and headers, as `curl -i` prints them (and the body after them, if any)."""
    head, _, body = text.replace("\r\n", "\n").partition("\n\n")
    status_line, *lines = head.strip("\n").split("\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return Got(int(status_line.split()[1]), headers, body)


def check(example: Example, got: list[Got], same: Mapping[str, str]) -> None:
    """Compare what came back with the example's answer block (or, without one, require statuses below 400)."""
    assert got, f"{example.id}: the scenario sent nothing"
    answer = example.answer
    if answer is None:
        bad = [g.status for g in got if g.status is None or g.status >= 400]
        assert not bad, f"{example.id}: statuses {bad}"
        return
    text = answer.text
    for documented, actual in same.items():
        text = text.replace(documented, actual)
    status = answer.attrs.get("answer")
    if status is not None:
        assert [g.status for g in got] == [int(status)] * len(got), (
            f"{answer.where}: statuses {[g.status for g in got]}"
        )
    if answer.language == "http":
        [one] = got
        shown = _http_head(text)
        assert one.status == shown.status, f"{answer.where}: status {one.status}"
        wrong = {
            name: one.headers.get(name)
            for name, value in shown.headers.items()
            if name not in one.headers or not _same_string(value, one.headers[name])
        }
        assert not wrong, f"{answer.where}: headers {wrong} differ from the docs; all: {one.headers}"
        return
    shown_values = _json_values(text)
    assert len(shown_values) == len(got), f"{answer.where}: {len(shown_values)} answers shown, {len(got)} made"
    found = [
        diff for shown_value, g in zip(shown_values, got, strict=True) for diff in differences(shown_value, g.body)
    ]
    assert not found, f"{answer.where} differs from what the server answered:\n" + "\n".join(found)


# -- running examples against the server ------------------------------------------------------------------------


class Docs:
    """What a scenario works with: the server, a root key, helpers to set things up and to run an example."""

    def __init__(self, server: Server, workdir: Path, upstream: Upstream, github: ec.EllipticCurvePrivateKey) -> None:
        self.server = server
        self.root_key = server.root_key()
        self.workdir = workdir
        self.upstream = upstream
        """An HTTP API for `keystile proxy` to stand in front of."""
        self.github = github
        """GitHub's signing key, whose public half the server trusts (the test plays GitHub)."""
        self.http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {self.root_key}"}, timeout=30)
        self.same: dict[str, str] = {}
        """Text of the answer block to read as other text (an address the docs show that differs here)."""

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """A management call that must succeed; its JSON answer."""
        answer = self.http.request(method, path, json=body)
        assert answer.status_code < 300, answer.text
        return answer.json() if answer.content else None

    def new_api(self) -> str:
        api_id: str = self.call("POST", "/v1/apis", {"name": "weather"})["id"]
        return api_id

    def example(self, doc: str, name: str) -> Example:
        return EXAMPLES[f"{doc}#{name}"]

    def send(self, example: Example, fill: Mapping[str, str] | None = None, **path: str) -> Got:
        """Send the example's request block, ``…`` filled from ``fill`` and path parameters from ``path``."""
        block = example.request
        assert block is not None, f"{example.id} has no request block"
        method, route = block.attrs["request"].split(" ", 1)
        body = _filled(json.loads(block.text), fill or {}, block.where)
        answer = self.http.request(method, route.format(**path), json=body)
        return Got(answer.status_code, dict(answer.headers), answer.json() if answer.content else None)

    def run(self, example: Example, env: Mapping[str, str], replace: Mapping[str, str] | None = None) -> list[Got]:
        """Run each `curl` line of the example's commands with bash, as written but for ``replace``."""
        require_tool("bash")
        require_tool("curl")
        block = example.commands
        assert block is not None, f"{example.id} has no commands"
        lines = [line for line in block.text.splitlines() if CURL.match(line)]
        assert lines, f"{block.where}: no curl command"
        return [self.shell(line, env, replace) for line in lines]

    def shell(self, line: str, env: Mapping[str, str], replace: Mapping[str, str] | None = None) -> Got:
        for documented, actual in (replace or {}).items():
            line = line.replace(documented, actual)
        # curl is wrapped to write each answer's status to stderr; the line itself is run unchanged.
        script = f"curl() {{ command curl --write-out '%{{stderr}}{STATUS_MARK}%{{http_code}}\\n' \"$@\"; }}\n{line}\n"
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env={
                **os.environ,
                "PATH": f"{BIN}:{os.environ['PATH']}",
                "KS": self.server.url,
                "ROOT_KEY": self.root_key,
                **env,
            },
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"{line!r} exited {done.returncode}: {done.stderr}"
        statuses = [int(code) for code in re.findall(f"{STATUS_MARK}(\\d+)", done.stderr)]
        assert len(statuses) == 1, f"{line!r}: one answer expected, {len(statuses)} came"
        got = _http_head(done.stdout) if done.stdout.startswith("HTTP/") else Got(None, {}, _json_or_text(done.stdout))
        got.status = statuses[0]  # `curl -i` prints the status line too: the two agree
        return got


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _filled(value: Any, fill: Mapping[str, str], where: str) -> Any:
    if isinstance(value, dict):
        return {name: _filled(item, fill, where) for name, item in value.items()}
    if isinstance(value, list):
        return [_filled(item, fill, where) for item in value]
    if isinstance(value, str) and "…" in value:
        assert value in fill, f"{where}: nothing fills in {value!r}"
        return fill[value]
    return value


def poll(what: str, ready: Callable[[], Any]) -> Any:
    """Ask until ``ready`` answers something true (events are written by another task, in batches)."""
    deadline = time.monotonic() + POLL_S
    while time.monotonic() < deadline:
        if result := ready():
            return result
        time.sleep(0.1)
    raise AssertionError(f"{what}: not there within {POLL_S} s")


Scenario = Callable[[Docs, Example], list[Got]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(doc: str, name: str) -> Callable[[Scenario], Scenario]:
    def register(function: Scenario) -> Scenario:
        SCENARIOS[f"{doc}#{name}"] = function
        return function

    return register


# -- the scenarios, one per example -------------------------------------------------------------------------------

API = "docs/api.md"


def _alice(docs: Docs) -> tuple[str, dict[str, Any]]:
    """An API and the key of the docs' create-key example in it."""
    api_id = docs.new_api()
    created = docs.send(docs.example(API, "create-key"), api_id=api_id)
    assert created.status == 201, created.body
    return api_id, created.body


def _verify(docs: Docs, key: str, **body: Any) -> str:
    code: str = docs.call("POST", "/v1/keys/verify", {"key": key, **body})["code"]
    return code


@scenario(API, "create-key")
def _create_key(docs: Docs, example: Example) -> list[Got]:
    return [docs.send(example, api_id=docs.new_api())]


@scenario("docs/import.md", "import")
def _import(docs: Docs, example: Example) -> list[Got]:
    return [docs.send(example, api_id=docs.new_api())]


@scenario(API, "verify")
def _verify_key(docs: Docs, example: Example) -> list[Got]:
    api_id, created = _alice(docs)
    return [docs.send(example, {"ks_…": created["key"], "api_…": api_id})]


@scenario(API, "invalid-limit")
def _invalid_limit(docs: Docs, example: Example) -> list[Got]:
    return [docs.send(example, api_id=docs.new_api())]


@scenario(API, "logs")
def _logs(docs: Docs, example: Example) -> list[Got]:
    api_id, created = _alice(docs)
    limited = {"ratelimits": [{"name": "search", "cost": 101}], "ip": "203.0.113.7"}
    assert _verify(docs, created["key"], api_id=api_id, **limited) == "RATE_LIMITED"
    poll("the event", lambda: docs.call("GET", f"/v1/logs?key_id={created['id']}")["items"])
    return docs.run(example, {"KEY_ID": created["id"]})


@scenario(API, "analytics")
def _analytics(docs: Docs, example: Example) -> list[Got]:
    api_id, created = _alice(docs)
    codes = [_verify(docs, created["key"], api_id=api_id) for _ in range(2)]
    codes.append(_verify(docs, created["key"], api_id=api_id, ratelimits=[{"name": "search", "cost": 101}]))
    assert codes == ["VALID", "VALID", "RATE_LIMITED"]
    query = f"/v1/analytics/verifications?api_id={api_id}"
    poll("the counts", lambda: sum(item["count"] for item in docs.call("GET", query)["items"]) == 3)
    return docs.run(example, {"API_ID": api_id})


@scenario("README.md", "traffic")
def _traffic(docs: Docs, example: Example) -> list[Got]:
    api_id, created = _alice(docs)
    docs.call("POST", f"/v1/keys/{created['id']}/revoke")
    assert _verify(docs, created["key"], api_id=api_id) == "REVOKED"
    return docs.run(example, {"KEY_ID": created["id"]})


@scenario("docs/operations.md", "health")
def _health(docs: Docs, example: Example) -> list[Got]:
    return docs.run(example, {})


@scenario("docs/forward-auth.md", "forward-auth")
def _forward_auth(docs: Docs, example: Example) -> list[Got]:
    api_id = docs.new_api()
    created = docs.call("POST", f"/v1/apis/{api_id}/keys", {"owner_id": "alice"})
    return docs.run(example, {"API_ID": api_id, "KEY": created["key"]})


@scenario("docs/configuration.md", "plaintext-warning")
def _plaintext_warning(docs: Docs, example: Example) -> list[Got]:
    address = non_loopback_address()
    if address is None:
        # tests/server/test_transport.py proves the decision on scopes either way.
        pytest.skip("this machine has no address but loopback to connect from")
    remote = docs.server.url.replace("127.0.0.1", address)
    answer = httpx.get(f"{remote}/v1/apis", headers={"Authorization": f"Bearer {docs.root_key}"})
    assert answer.status_code == 200
    lines = [json.loads(line) for line in docs.server.stderr().splitlines() if line.startswith("{")]
    [line] = [line for line in lines if line.get("event") == "plaintext_key"]
    docs.same["192.0.2.7"] = address
    return [Got(None, {}, line)]


@scenario("docs/recoverable-keys.md", "recover")
def _recover(docs: Docs, example: Example) -> list[Got]:
    api_id = docs.call("POST", "/v1/apis", {"name": "dashboard", "recoverable": True})["id"]
    created = docs.call("POST", f"/v1/apis/{api_id}/keys", {"owner_id": "alice"})
    got = docs.run(example, {"KEY_ID": created["id"]})
    assert [answer.body for answer in got] == [{"key_id": created["id"], "key": created["key"]}]
    return got


def _token_key(docs: Docs) -> str:
    api_id = docs.call("POST", "/v1/apis", {"name": "weather"})["id"]
    key: str = docs.call("POST", f"/v1/apis/{api_id}/keys", {"owner_id": "alice", "permissions": ["forecast.read"]})[
        "key"
    ]
    return key


@scenario("docs/tokens.md", "issue")
def _issue_token(docs: Docs, example: Example) -> list[Got]:
    return docs.run(example, {"KEY": _token_key(docs)})


@scenario("docs/tokens.md", "jwks")
def _jwks(docs: Docs, example: Example) -> list[Got]:
    httpx.post(f"{docs.server.url}/v1/tokens", headers={"X-API-Key": _token_key(docs)}).raise_for_status()
    return docs.run(example, {})


@scenario("docs/tokens.md", "verify")
def _verify_token(docs: Docs, example: Example) -> list[Got]:
    body = {"permissions": ["forecast.read"]}
    answer = httpx.post(f"{docs.server.url}/v1/tokens", json=body, headers={"X-API-Key": _token_key(docs)})
    return docs.run(example, {"TOKEN": answer.json()["token"]})


@scenario("docs/portal.md", "session")
def _portal_session(docs: Docs, example: Example) -> list[Got]:
    return docs.run(example, {"API_ID": docs.new_api()})


@scenario("docs/leaks.md", "report")
def _leak_report(docs: Docs, example: Example) -> list[Got]:
    api_id = docs.call("POST", "/v1/apis", {"name": "acme", "prefix": "acme"})["id"]
    leaked = docs.call("POST", f"/v1/apis/{api_id}/keys", {})["key"]
    lookalike = "acme_" + "x" * 38
    report = [{"token": token, "type": "acme_api_key", "url": "", "source": "content"} for token in (leaked, lookalike)]
    body = json.dumps(report).encode()
    answer = httpx.post(f"{docs.server.url}/v1/leaks", content=body, headers=sign(docs.github, body))
    assert _verify(docs, leaked) == "REVOKED"
    # The docs shorten the hashes; here they are known in full.
    docs.same.update({'"9f86d0…"': json.dumps(_sha256(leaked)), '"2c26b4…"': json.dumps(_sha256(lookalike))})
    return [Got(answer.status_code, dict(answer.headers), answer.json())]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Proxied:
    proxy: Server
    key: str
    key_id: str
    env: dict[str, str]


def _proxied(example: Example, upstream: Upstream, workdir: Path) -> Proxied:
    """The commands of proxy.md's first example, run as written in a fresh data directory, but for the
    addresses (a free port, the test's upstream) and the ids the docs leave out (``api_…``)."""
    block = example.commands
    assert block is not None
    workdir.mkdir()
    env = {"KEYSTILE_DATA_DIR": str(workdir / "data")}
    port = free_port()
    listen = f"http://127.0.0.1:{port}"
    replace = {"http://127.0.0.1:8788": listen, "http://127.0.0.1:8000": upstream.url}
    api_id = key = key_id = ""
    proxy: Server | None = None
    for line in block.text.splitlines():
        command = line.split("#", 1)[0].strip()
        if command.startswith("keystile proxy"):
            argv = shlex.split(command.replace("api_…", api_id).replace("http://127.0.0.1:8000", upstream.url))
            argv[0] = str(BIN / "keystile")
            proxy = Server([*argv, "--listen", f"127.0.0.1:{port}"], workdir, env, port, "proxy", ready=("/", 401))
        elif command.startswith("keystile"):
            out = cli(*shlex.split(command.replace("api_…", api_id))[1:], workdir=workdir, env=env)
            if command.startswith("keystile apis create"):
                api_id = _found(r"\bapi_[0-9A-Za-z]{22}\b", out)
            if command.startswith("keystile keys create"):
                key, key_id = _found(r"\bks_[0-9A-Za-z]{38}\b", out), _found(r"\bkey_[0-9A-Za-z]{22}\b", out)
        elif line.startswith("# Keystile proxy listening on"):
            assert proxy is not None
            said = line.removeprefix("# ")
            for documented, actual in replace.items():
                said = said.replace(documented, actual)
            assert said in proxy.stdout(), f"{block.where}: the proxy does not say {said!r}:\n{proxy.output()}"
    assert proxy is not None, f"{block.where}: no proxy started"
    assert key, f"{block.where}: no key made"
    return Proxied(proxy, key, key_id, {**env, "KEY": key})


def _found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match, f"{pattern} not in {text!r}"
    return match[0]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    running = Upstream()
    yield running
    running.stop()


@scenario("docs/proxy.md", "proxy")
def _proxy(docs: Docs, example: Example) -> list[Got]:
    upstream = docs.upstream
    proxied = _proxied(example, upstream, docs.workdir / "proxy")
    try:
        listen = proxied.proxy.url
        got = docs.run(example, proxied.env, {"http://127.0.0.1:8788": listen})
        assert upstream.seen, "the request reached the upstream"
        return got
    finally:
        proxied.proxy.stop()


@scenario("docs/proxy.md", "proxy-revoked")
def _proxy_revoked(docs: Docs, example: Example) -> list[Got]:
    proxied = _proxied(docs.example("docs/proxy.md", "proxy"), docs.upstream, docs.workdir / "proxy-revoked")
    try:
        cli("keys", "revoke", proxied.key_id, workdir=docs.workdir / "proxy-revoked", env=proxied.env)
        answer = httpx.get(f"{proxied.proxy.url}/forecast", headers={"Authorization": f"Bearer {proxied.key}"})
        return [Got(answer.status_code, dict(answer.headers), answer.json())]
    finally:
        proxied.proxy.stop()


# -- the tests --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Docs]:
    """One server for every example, listening on every address (so that the plain HTTP warning can be seen),
    writing events often (so that the log and analytics examples see them soon)."""
    workdir = tmp_path_factory.mktemp("docs")
    github = ec.generate_private_key(ec.SECP256R1())
    github_keys = workdir / "github-keys.json"
    github_keys.write_text(json.dumps([{"key_identifier": GITHUB_KEY_ID, "key": pem(github), "is_current": True}]))
    env = {
        "KEYSTILE_DATA_DIR": str(workdir / "data"),
        "KEYSTILE_HOST": "0.0.0.0",
        "KEYSTILE_EVENTS_FLUSH_MS": "100",
        "KEYSTILE_LEAKS_PUBLIC_KEYS": str(github_keys),
    }
    server = serve(workdir, env)
    docs = Docs(server, workdir, upstream, github)
    try:
        yield docs
    finally:
        docs.http.close()
        server.stop()
        assert "Traceback" not in server.stderr(), server.stderr()


@pytest.mark.parametrize("example_id", sorted(EXAMPLES))
def test_the_example_gets_the_answer_the_docs_show(docs: Docs, example_id: str) -> None:
    example = EXAMPLES[example_id]
    assert example_id in SCENARIOS, f"{example_id}: no scenario in {__name__} runs this example"
    docs.same.clear()
    got = SCENARIOS[example_id](docs, example)
    check(example, got, docs.same)


def test_every_scenario_has_its_example() -> None:
    assert set(SCENARIOS) <= set(EXAMPLES), sorted(set(SCENARIOS) - set(EXAMPLES))


def test_every_json_block_and_curl_command_in_the_docs_is_an_example_or_marked_as_none() -> None:
    unmarked = [
        block.where
        for block in _all_blocks()
        if (block.language == "json" or CURL.search(block.text))
        and "example" not in block.attrs
        and "no-example" not in block.flags
        and not block.in_walkthrough
    ]
    assert unmarked == [], "mark each as `example=NAME` (and add a scenario) or `no-example`"
    assert "walkthrough:start" in (REPO / "tests" / "e2e" / "test_readme.py").read_text()


@pytest.mark.parametrize(
    ("doc", "heading"), [("README.md", "## More than one process"), ("docs/configuration.md", "## Choosing a database")]
)
def test_the_postgresql_setup_creates_the_database_before_using_it(doc: str, heading: str) -> None:
    # Issue 9: the docs went straight to KEYSTILE_DATABASE_URL, and Keystile does not create the database.
    text = (REPO / doc).read_text()
    section = text[text.index(heading) :].split("\n## ", 1)[0]

    create = section.find("createdb ")
    assert create != -1, f"{doc}: no createdb in {heading!r}"
    assert create < section.index("KEYSTILE_DATABASE_URL=postgresql://")


def test_an_example_that_drifts_from_the_server_is_reported() -> None:
    # The comparison itself: the analytics answer as it was documented before issue 9 (`bucket`, not `ts`).
    answer = {"granularity": "hour", "items": [{"ts": "2026-11-28T09:00:00.000Z", "group": "VALID", "count": 2}]}
    documented = {"granularity": "hour", "items": [{"bucket": "2026-11-28T09:00:00Z", "group": "VALID", "count": 2}]}

    found = differences(documented, answer)

    assert found == [
        "/items/0: the docs show members ['bucket', 'count', 'group'], the server answered ['count', 'group', 'ts']"
    ]
    assert (
        differences(
            {"id": "key_…", "at": "2026-11-28T09:00:00.000Z"}, {"id": "key_x1", "at": "2030-01-02T03:04:05.678Z"}
        )
        == []
    )
    assert differences({"at": "2026-11-28T09:00:00Z"}, {"at": "2030-01-02T03:04:05.678Z"}) != []
    assert differences({"count": 2}, {"count": 2.0}) != []
    assert differences({"latency_us": 41}, {"latency_us": 7}) == []
