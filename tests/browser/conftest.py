"""Fixtures for tests in a real browser: Debian's headless chromium driven by Playwright
(never a downloaded browser), test pages built from the SDK sources with esbuild and served
from their own origin, and the service (with its worker) on another origin, so CORS is real.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, async_playwright

from presence_svc.auth import Scope, TokenCodec
from presence_svc.http.app import create_app
from presence_svc.settings import Settings
from tests.npm import npm_ci_unless_present

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "clients" / "js"
PAGE = Path(__file__).resolve().parent / "page"
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
CHROMIUM = os.environ.get("PRESENCE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Short times so the behaviour shows within seconds (the SDK's floor is a 1 s interval).
INTERVAL_S = 1.0
TIMEOUT_S = 3.0
GRACE_S = 1.2


def _need(ok: bool, message: str) -> None:
    if not ok:
        pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def page_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/browser/page built with esbuild against the SDK's sources (npm ci if needed)."""
    _need(
        Path(CHROMIUM).exists(),
        f"browser tests need Debian's chromium at {CHROMIUM}: apt-get install -y chromium "
        "(or set PRESENCE_TEST_CHROMIUM); .ci/run installs it",
    )
    node, npm = shutil.which("node"), shutil.which("npm")
    _need(
        node is not None and npm is not None,
        "browser tests need node and npm on PATH: apt-get install -y nodejs npm",
    )
    esbuild = JS / "node_modules" / ".bin" / "esbuild"
    npm_ci_unless_present(str(npm), esbuild)
    out = tmp_path_factory.mktemp("page")
    env = {**os.environ, "NODE_PATH": str(JS / "node_modules")}
    built = subprocess.run(
        [
            str(esbuild),
            str(PAGE / "main.tsx"),
            "--bundle",
            "--format=esm",
            "--target=es2020",
            '--define:process.env.NODE_ENV="production"',
            f"--outfile={out / 'page.js'}",
            "--log-level=warning",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    _need(built.returncode == 0, f"esbuild failed to build the test page:\n{built.stderr}")
    shutil.copy(PAGE / "index.html", out / "index.html")
    return out


@dataclass
class Stack:
    """The page server's origin, the API's base URL and a token maker."""

    pages: str
    api: str
    tokens: TokenCodec

    def token(self, user: str, scope: str = "client") -> str:
        return self.tokens.issue(user, scope=Scope(scope), ttl_s=600)

    def page_url(
        self,
        user: str,
        artifact: str = "doc-1",
        version: str | None = None,
        idle_s: float | None = None,
    ) -> str:
        url = f"{self.pages}/?api={self.api}&artifact={artifact}&token={self.token(user)}"
        url += f"&version={version}" if version else ""
        return url + (f"&idle={idle_s}" if idle_s is not None else "")

    def served_sdk_page_url(self, user: str, artifact: str = "doc-1") -> str:
        """A page that imports the SDK from the service (/sdk/v1/presence.js), no bundler."""
        return (
            f"{self.pages}/served.html?api={self.api}&artifact={artifact}&token={self.token(user)}"
        )


@pytest.fixture
async def stack(page_bundle: Path, settings: Settings, tokens: TokenCodec) -> AsyncIterator[Stack]:
    """Test pages on one origin, the service with its worker (sweeper, ledger) on another."""
    pages_app = web.Application()

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(page_bundle / "index.html")

    async def script(request: web.Request) -> web.FileResponse:
        return web.FileResponse(page_bundle / "page.js")

    async def served(request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE / "served.html")

    pages_app.router.add_get("/", index)
    pages_app.router.add_get("/served.html", served)
    pages_app.router.add_get("/page.js", script)
    pages = TestServer(pages_app, host="127.0.0.1")
    await pages.start_server()
    pages_origin = str(pages.make_url("")).rstrip("/")
    api_app = create_app(
        settings.replace(
            run_worker=True,
            heartbeat_interval_s=INTERVAL_S,
            online_timeout_s=TIMEOUT_S,
            retention_s=60.0,
            leave_grace_s=GRACE_S,
            view_debounce_s=300.0,
            sweep_interval_s=0.25,
            engagement_fold_s=1.0,  # engaged time credited within seconds, not a minute
            cors_origins=(pages_origin,),
        )
    )
    api = TestServer(api_app, host="127.0.0.1")
    await api.start_server()
    try:
        yield Stack(pages_origin, str(api.make_url("")).rstrip("/"), tokens)
    finally:
        await api.close()
        await pages.close()


@pytest.fixture
async def browser(page_bundle: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield launched
        finally:
            await launched.close()


OpenTab = Callable[..., Awaitable[Page]]


@pytest.fixture
async def open_tab(browser: Browser, stack: Stack) -> AsyncIterator[OpenTab]:
    """A new tab of one browser (own sessionStorage) with the test page for ``user``."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})

    async def open_(
        user: str,
        artifact: str = "doc-1",
        version: str | None = None,
        idle_s: float | None = None,
        *,
        served: bool = False,
    ) -> Page:
        page = await context.new_page()
        url = stack.page_url(user, artifact, version, idle_s)
        await page.goto(stack.served_sdk_page_url(user, artifact) if served else url)
        await page.wait_for_function("window.__presence && window.__presence.status === 'active'")
        return page

    try:
        yield open_
    finally:
        await context.close()


async def seen(page: Page) -> dict[str, Any]:
    """The tab's latest usePresence snapshot."""
    value: dict[str, Any] = await page.evaluate("window.__presence")
    return value
