"""Browser tests of the dashboard and the portal (SPEC D1, D2): Playwright for Python driving Debian's Chromium
(``make chromium`` installs it; Playwright never downloads a browser here) against a real ``keystile serve``.

Every page a test visits is photographed at 1280x800 and at 390x844 into ``test-artifacts/screenshots/`` (kept
after the run, git-ignored; the path is printed at the end of the run) and checked with axe-core, vendored in
``vendor/``: no serious or critical violation may be found.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, ViewportSize, sync_playwright

from tests.availability import require_chromium
from tests.e2e.server import REPO, Server, serve

SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}


# Module-scoped, not session-scoped: Playwright's synchronous API runs an event loop of its own while it is open,
# and the asynchronous tests that run after these ones need theirs.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    require_chromium()
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=require_chromium(), args=CHROMIUM_ARGS)
    try:
        yield launched
    finally:
        launched.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SCREENSHOTS.is_dir() and any(SCREENSHOTS.iterdir()):
        terminalreporter.write_line(f"screenshots of the dashboard and the portal: {SCREENSHOTS}")


@pytest.fixture
def context(browser: Browser, server: Server) -> Iterator[BrowserContext]:
    made = browser.new_context(viewport=DESKTOP, base_url=server.url)
    made.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def browser_no_js(browser: Browser, server: Server) -> Iterator[BrowserContext]:
    made = browser.new_context(viewport=DESKTOP, base_url=server.url, java_script_enabled=False)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    return opened


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Events are written every 100 ms so that a verification shows in the chart and the logs soon; webhooks go to
    # a receiver on 127.0.0.1, polled often, retried quickly and given up on after 1.5 s.
    env = {
        "KEYSTILE_EVENTS_FLUSH_MS": "100",
        "KEYSTILE_WEBHOOKS_ALLOW_PRIVATE": "true",
        "KEYSTILE_WEBHOOKS_POLL_MS": "100",
        "KEYSTILE_WEBHOOKS_RETRY_BASE_MS": "200",
        "KEYSTILE_WEBHOOKS_RETRY_WINDOW_MS": "1500",
    }
    running = serve(tmp_path_factory.mktemp("browser"), env)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def root_key(server: Server) -> str:
    return server.root_key()


def api(server: Server, root_key: str, method: str, path: str, body: Any = None) -> httpx.Response:
    """A call of the HTTP API with the root key."""
    return httpx.request(
        method, f"{server.url}{path}", json=body, headers={"Authorization": f"Bearer {root_key}"}, timeout=10
    )


def check_page(page: Page, name: str) -> None:
    """Photograph the page at both sizes and run axe-core in it: no serious or critical violation."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    for label, size in (("1280x800", DESKTOP), ("390x844", PHONE)):
        page.set_viewport_size(size)
        page.screenshot(path=str(SCREENSHOTS / f"{slug}-{label}.png"), full_page=True)
        violations = axe(page)
        assert violations == [], f"{name} at {label}: {json.dumps(violations, indent=1)}"
    page.set_viewport_size(DESKTOP)


def axe(page: Page) -> list[dict[str, Any]]:
    """The serious and critical violations axe-core finds in the page (its script is evaluated through the
    DevTools protocol, which the page's Content-Security-Policy does not govern)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    found: list[dict[str, Any]] = page.evaluate(
        """async () => {
            const result = await window.axe.run(document, {resultTypes: ["violations"]});
            return result.violations
                .filter(v => v.impact === "serious" || v.impact === "critical")
                .map(v => ({id: v.id, impact: v.impact, help: v.help,
                            nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}));
        }"""
    )
    return found


def csrf_of(page: Page) -> str:
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    assert token
    return token


def assert_nowhere(server: Server, *secrets: str) -> None:
    """No secret shown in the browser is in the server's output or in any file of its data directory (the
    database, its WAL)."""
    output = server.output()
    data = server.stdout_path.parent / "keystile-data"
    files = [path.read_bytes() for path in data.rglob("*") if path.is_file()]
    for secret in secrets:
        assert secret not in output
        assert all(secret.encode() not in content for content in files)
