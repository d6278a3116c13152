"""The staff admin and the API docs in a real browser, served by a real gunicorn: styled, working,
and with every request answered by the app itself (no CDN sees staff's or customers' addresses).

Drives Debian's chromium (`apt-get install chromium`; .ci/run installs it). Without it these tests
fail rather than skip: a skipped browser test would hide an unstyled admin or a blank docs page.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

BASE_DIR = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# django_db: so pytest-django sets up the test database that the server is pointed at.
pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture(scope="module")
def server(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """bankcore under gunicorn with the production static files storage, on files collected for it
    (hashed names, gzip copies), as the image and `make run` serve them."""
    from bankcore.testing import GunicornServer, process_env

    static_root = tmp_path_factory.mktemp("staticfiles")
    env = process_env(STATIC_ROOT=str(static_root))
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert collected.returncode == 0, collected.stdout + collected.stderr
    with GunicornServer(env=env, workers=1) as running:
        yield running


@pytest.fixture
def browser() -> Iterator[Any]:
    """Per test: Playwright's sync API keeps an event loop in this thread while it runs, and Django
    refuses database work (the test's own transaction) from a thread with a running loop."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: the browser tests need it (apt-get install chromium)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Visit:
    """One page load in a fresh browser context, with every request, response and error recorded."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.requests: list[str] = []
        self.responses: list[Any] = []
        self.errors: list[str] = []
        self.context.on("request", lambda request: self.requests.append(request.url))
        self.context.on("response", lambda response: self.responses.append(response))
        self.context.on("requestfailed", lambda request: self.errors.append(f"failed: {request.url}"))
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("console", self._console)

    def _console(self, message: Any) -> None:
        url = message.location.get("url", "")
        # The browser asks for /favicon.ico on its own; the admin names no icon, so that one 404 is expected.
        if message.type == "error" and urlsplit(url).path != "/favicon.ico":
            self.errors.append(f"console: {message.text} ({url})")

    def foreign_requests(self, server_url: str) -> list[str]:
        """Requests that went anywhere but the server (data: and blob: URLs never leave the page)."""
        own = urlsplit(server_url).netloc
        return [
            url for url in self.requests if urlsplit(url).scheme not in ("data", "blob") and urlsplit(url).netloc != own
        ]


@pytest.fixture
def visit(browser: Any) -> Iterator[Visit]:
    opened = Visit(browser)
    yield opened
    opened.context.close()


def test_admin_login_page_is_styled_by_css_the_app_serves_itself(server, visit, tmp_path):
    page = visit.page
    response = page.goto(f"{server.url}/admin/login/", wait_until="load")
    assert response is not None and response.status == 200
    page.screenshot(path=tmp_path / "admin-login.png", full_page=True)

    stylesheets = [r for r in visit.responses if r.request.resource_type == "stylesheet"]
    assert any("/static/admin/css/base." in r.url for r in stylesheets), [r.url for r in stylesheets]
    for stylesheet in stylesheets:
        assert stylesheet.status == 200, stylesheet.url
        assert stylesheet.headers["content-type"].startswith("text/css"), stylesheet.url
    # The admin's CSS is applied: the header has its coloured bar and the page a sans-serif font,
    # where an unstyled page has a transparent header and the browser's default serif.
    header_background = page.eval_on_selector("#header", "e => getComputedStyle(e).backgroundColor")
    assert header_background not in ("rgba(0, 0, 0, 0)", "transparent")
    body_font = page.eval_on_selector("body", "e => getComputedStyle(e).fontFamily")
    assert "sans-serif" in body_font
    assert page.is_visible("input[name=otp_token]")
    assert visit.foreign_requests(server.url) == []
    assert visit.errors == []


def test_swagger_ui_renders_the_operations_from_assets_the_app_serves_itself(server, visit, tmp_path):
    page = visit.page
    response = page.goto(f"{server.url}/api/docs/", wait_until="load")
    assert response is not None and response.status == 200
    page.wait_for_selector(".opblock", timeout=30_000)
    page.screenshot(path=tmp_path / "api-docs.png")

    assert page.locator(".opblock").count() > 10
    assert "bankcore mobile API" in page.inner_text(".info .title")
    scripts = [r for r in visit.responses if r.request.resource_type == "script"]
    assert any("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle." in r.url for r in scripts)
    assert all(r.status == 200 for r in visit.responses), [(r.url, r.status) for r in visit.responses]
    assert visit.foreign_requests(server.url) == []
    assert visit.errors == []


def test_static_files_have_hashed_names_and_are_served_compressed_and_cached_for_ever(server):
    page = requests.get(f"{server.url}/admin/login/", timeout=20).text
    start = page.index("/static/admin/css/base.")
    css_url = page[start : page.index('"', start)]
    assert css_url != "/static/admin/css/base.css"  # the content hash is in the name

    response = requests.get(f"{server.url}{css_url}", headers={"Accept-Encoding": "gzip"}, timeout=20)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/css")
    assert response.headers["Content-Encoding"] == "gzip"
    assert "immutable" in response.headers["Cache-Control"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
