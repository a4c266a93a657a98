"""Regenerate docs/dashboard.png: the dashboard of a real service with real data.

Starts a redis-server whose clock this script sets (libfaketime, as tests/timeline do) and
`presence-svc serve --worker` on it, then replays the last 40 minutes of one document
through the Python SDK over HTTP: people join and leave (a meeting peaks at 9 people),
tabs report engaged time with their heartbeats, versions v1..v4 are viewed, v4 is marked
latest. Only Redis's clock is moved (30 s per step, so the hour fills in seconds); every
count, total and timeline point is the service's own. Then the clock returns to now,
alice and bob stay online (carol on another document), and headless Chromium screenshots
the dashboard once it shows the timeline's peak, readers per version and who has not seen
v4.

    .venv/bin/python scripts/dashboard_screenshot.py [--out docs/dashboard.png]

Needs redis-server, libfaketime (scripts/test-deps.sh) and Chromium (PRESENCE_TEST_CHROMIUM,
default /usr/bin/chromium), as the browser tests do. Takes about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from playwright.async_api import async_playwright, expect

from presence_svc.auth import Scope, TokenCodec
from presence_svc.client import LiveSession, PresenceClient
from presence_svc.redis.embedded import EmbeddedRedis

ROOT = Path(__file__).resolve().parents[1]
DOC = "design-doc"
STEP_S = 30
MINUTES = 40
VERSIONS = ((0, "v1"), (9, "v2"), (16, "v3"), (28, "v4"))
"""From which minute each version is the one people open; v4 is marked latest."""
NAMES = {
    "alice": "Alice Martin",
    "bob": "Bob Chen",
    "carol": "Carol Diaz",
    "dan": "Dan Okafor",
    "erin": "Erin Walsh",
    "frank": "Frank Moreau",
    "grace": "Grace Kim",
    "heidi": "Heidi Novak",
    "ivan": "Ivan Petrov",
}


@dataclass
class Visit:
    """One tab of `user` open from minute `start` to `end`, engaged `share` of the time."""

    user: str
    start: float
    end: float
    share: float
    tab: str = "1"
    version: str = ""

    @property
    def session(self) -> str:
        return f"tab-{self.user}-{self.tab}-{int(self.start * 10)}"


VISITS = [
    Visit("alice", 0, MINUTES, 0.85),
    Visit("alice", 14, 22, 0.0, tab="2"),  # a second tab in the meeting, not the focused one
    Visit("bob", 5, 24, 0.75),
    Visit("bob", 30, MINUTES, 0.75),
    Visit("carol", 8, 22, 0.6),
    Visit("carol", 33, 33.5, 0.3),  # a glance at v4: seen, not read
    Visit("dan", 11, 21, 0.35),
    Visit("erin", 13, 24, 0.5),
    Visit("frank", 15, 20, 0.2),
    Visit("grace", 16, 21, 0.7),
    Visit("heidi", 17, 20, 0.4),
    Visit("ivan", 18, 19.5, 0.15),
]
"""The crowd: 9 people (10 tabs) at minutes 18-19, alice and bob at the end."""


def version_at(minute: float) -> str:
    return [v for start, v in VERSIONS if start <= minute][-1]


class Clock:
    """Redis's clock through libfaketime's timestamp file: ``set(ms)`` makes TIME read
    ``ms`` now and run on from it."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.file.write_text("+0\n")

    def set(self, ms: float) -> None:
        self.file.write_text(f"{(ms - time.time() * 1000) / 1000:+.3f}\n")

    def real(self) -> None:
        self.file.write_text("+0\n")


def start_redis(root: Path, clock: Path) -> EmbeddedRedis:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        sys.exit("libfaketime is not installed (scripts/test-deps.sh installs it)")
    faked = {
        "LD_PRELOAD": found[0],
        "FAKETIME_TIMESTAMP_FILE": str(clock),
        "FAKETIME_NO_CACHE": "1",
        "DONT_FAKE_MONOTONIC": "1",
    }
    saved = dict(os.environ)
    os.environ.update(faked)  # for the redis-server child only
    try:
        server = EmbeddedRedis(root / "redis")
        server.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_service(root: Path, redis_url: str, secret: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "PRESENCE_REDIS_URL": redis_url,
        "PRESENCE_DATA_DIR": str(root / "data"),
        "PRESENCE_JWT_SECRET": secret,
        # a replay of 40 minutes in seconds is no rate a person makes
        "PRESENCE_RATE_LIMITS": "off",
        "PRESENCE_LOG_LEVEL": "warning",
    }
    cmd = [sys.executable, "-m", "presence_svc", "serve", "--port", str(port), "--worker"]
    process = subprocess.Popen(cmd, env=env, cwd=ROOT)
    api = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{api}/readyz", timeout=5) as r:
                if r.status == 200:
                    return process, api
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            sys.exit("the service did not get ready")
        time.sleep(0.2)


async def replay(api: str, tokens: TokenCodec, clock: Clock, base_ms: float) -> None:
    """The 40 minutes before now, 30 s of Redis time per step."""
    admin = {"Authorization": f"Bearer {tokens.issue('ops', scope=Scope.ADMIN, ttl_s=3600)}"}
    async with aiohttp.ClientSession() as http:
        for user, name in NAMES.items():
            async with http.put(f"{api}/v1/users/{user}", json={"name": name}, headers=admin) as r:
                r.raise_for_status()
    people = {u: PresenceClient(api, tokens.issue(u, ttl_s=3600)) for u in NAMES}
    publisher = PresenceClient(api, tokens.issue("cms", scope=Scope.PUBLISHER, ttl_s=3600))
    try:
        for step in range(MINUTES * 60 // STEP_S):
            minute = step * STEP_S / 60
            clock.set(base_ms + minute * 60_000)
            current = version_at(minute)
            if minute == VERSIONS[-1][0]:
                await publisher.set_latest(DOC, current)
            for visit in VISITS:
                client = people[visit.user]
                if visit.start <= minute < visit.end:
                    engaged = 0 if not visit.version else int(visit.share * STEP_S * 1000)
                    if visit.version != current:  # opened, or the page moved to a new version
                        await client.record_view(DOC, current, session_id=visit.session)
                        visit.version = current
                    await client.heartbeat(
                        DOC, session_id=visit.session, version_id=current, engaged_ms=engaged
                    )
                elif visit.version and minute >= visit.end:
                    engaged = int(visit.share * STEP_S * 1000)
                    await client.leave(DOC, session_id=visit.session, engaged_ms=engaged)
                    visit.version = ""
    finally:
        await publisher.close()
        for client in people.values():
            await client.close()


async def shoot(api: str, tokens: TokenCodec, clock: Clock, out: Path) -> None:
    base_ms = (time.time() - MINUTES * 60) * 1000
    await replay(api, tokens, clock, base_ms)
    clock.real()
    # now: alice's and bob's tabs still open (the same sessions, heartbeating in real time),
    # carol on another document
    alice = PresenceClient(api, tokens.issue("alice", ttl_s=3600))
    bob = PresenceClient(api, tokens.issue("bob", ttl_s=3600))
    carol = PresenceClient(api, tokens.issue("carol", ttl_s=3600))
    live: list[LiveSession] = []
    try:
        for client, visit in ((alice, VISITS[0]), (bob, VISITS[3])):
            live.append(
                await client.join(DOC, session_id=visit.session, version_id="v4", record_view=False)
            )
        live.append(await carol.join("roadmap", version_id="q4"))
        board = tokens.issue("board", scope=Scope.DASHBOARD, ttl_s=3600)
        chromium = os.environ.get("PRESENCE_TEST_CHROMIUM", "/usr/bin/chromium")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            page = await browser.new_page(viewport={"width": 1366, "height": 800})
            await page.goto(f"{api}/dashboard#token={board}&artifact={DOC}")
            await expect(page.locator("#d-online")).to_have_text("2", timeout=30_000)
            await expect(page.locator("#peak")).to_contain_text("peak 9 at", timeout=30_000)
            await expect(page.locator("#timeline svg polyline")).to_have_count(2)
            await expect(page.locator("#latest-version")).to_have_text("v4")
            await expect(page.locator("#l-seen")).to_have_text("3")
            await expect(page.locator("#l-read")).to_have_text("2")
            await expect(page.locator("#l-not-seen")).to_have_text("6")
            await expect(page.locator("#versions tbody tr")).to_have_count(4)
            await expect(page.locator("#ledger tbody tr")).to_have_count(20, timeout=30_000)
            await expect(page.locator("#status")).to_have_text("connected")
            out.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(out), full_page=True)
            await browser.close()
    finally:
        for session in live:
            await session.stop()
        for client in (alice, bob, carol):
            await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dashboard-shot-") as tmp:
        root = Path(tmp)
        clock = Clock(root / "clock")
        redis_server = start_redis(root, clock.file)
        secret = secrets.token_urlsafe(32)
        service, api = start_service(root, redis_server.url, secret)
        try:
            asyncio.run(shoot(api, TokenCodec(secret), clock, args.out))
        finally:
            service.terminate()
            service.wait(timeout=30)
            redis_server.stop()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
