"""The dashboard page in headless chromium, fed by the Python SDK."""

from __future__ import annotations

import aiohttp
import msgspec
import pytest
import redis
from playwright.async_api import Browser, Route, expect

from presence_svc.client import PresenceClient
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import Settings
from tests.browser.conftest import SCREENSHOTS, Stack

pytestmark = pytest.mark.slow

PEOPLE = {"alice": "Alice Martin", "bob": "Bob Chen", "carol": "Carol Diaz", "dan": "Dan Okafor"}


async def _seed(stack: Stack) -> list[PresenceClient]:
    """Names in the users directory; views of three versions; people online on two docs."""
    admin = {"Authorization": f"Bearer {stack.token('ops', 'admin')}"}
    async with aiohttp.ClientSession() as http:
        for user, name in PEOPLE.items():
            async with http.put(
                f"{stack.api}/v1/users/{user}", json={"name": name}, headers=admin
            ) as r:
                assert r.status == 200
    clients = []
    views = {"alice": ["v1", "v2", "v3"], "bob": ["v2", "v3"], "carol": ["v3"], "dan": ["v3"]}
    for user, versions in views.items():
        client = PresenceClient(stack.api, stack.token(user))
        clients.append(client)
        for version in versions:
            await client.record_view("design-doc", version)
    await clients[0].join("design-doc", version_id="v3", state={"page": 2})
    await clients[0].join("design-doc", version_id="v3")
    await clients[1].join("design-doc", version_id="v3")
    await clients[2].join("roadmap", version_id="q4")
    return clients


async def test_dashboard_shows_live_counts_and_saves_a_screenshot(
    browser: Browser, stack: Stack
) -> None:
    clients = await _seed(stack)
    try:
        page = await browser.new_page(viewport={"width": 1366, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        board = stack.token("board", "dashboard")
        await page.goto(f"{stack.api}/dashboard#token={board}&artifact=design-doc")
        assert "token=" not in page.url  # the token left the address bar
        # The page runs under its strict CSP, so waits use locators (no string evaluation).
        design = page.locator('#artifacts tbody tr[data-artifact="design-doc"] td')
        await expect(design.nth(1)).to_have_text("2")
        await expect(design.nth(2)).to_have_text("3")
        roadmap = page.locator('#artifacts tbody tr[data-artifact="roadmap"] td')
        await expect(roadmap.nth(1)).to_have_text("1")
        await expect(page.locator("#d-online")).to_have_text("2")
        await expect(page.locator("#d-sessions")).to_have_text("3")
        await expect(page.locator("#d-views")).to_have_text("7")
        await expect(page.locator("#d-unique")).to_have_text("4")
        await expect(page.locator("#chart svg rect")).to_have_count(6)  # 3 versions x 2 bars
        presence = await page.text_content("#presence")
        assert presence is not None
        assert "Alice Martin (alice)" in presence
        assert "Bob Chen (bob)" in presence
        viewers = await page.text_content("#viewers")
        assert viewers is not None
        assert "Dan Okafor" in viewers
        # The ledger is written by the worker a moment after the views: newest first.
        await expect(page.locator("#ledger tbody tr")).to_have_count(7)
        first = await page.text_content("#ledger tbody tr:first-child")
        assert first is not None
        assert "v3" in first

        # Live: one more person arrives, the counts follow without a reload.
        await clients[3].join("design-doc", version_id="v3")
        await expect(page.locator("#d-online")).to_have_text("3")
        await expect(design.nth(1)).to_have_text("3")
        await expect(page.locator("#status")).to_have_text("connected")
        assert not errors
        SCREENSHOTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)
        assert (SCREENSHOTS / "dashboard.png").stat().st_size > 10_000
    finally:
        for client in clients:
            await client.close()


async def test_dashboard_says_when_the_token_is_not_a_dashboard_token(
    browser: Browser, stack: Stack
) -> None:
    page = await browser.new_page()
    await page.goto(f"{stack.api}/dashboard#token={stack.token('alice')}")
    await expect(page.locator("#status")).to_contain_text("not a dashboard token")


async def test_dashboard_shows_who_has_seen_the_latest_version(
    browser: Browser, stack: Stack, sync_redis: redis.Redis, settings: Settings
) -> None:
    clients = await _seed(stack)
    try:
        publisher = PresenceClient(stack.api, stack.token("cms", "publisher"))
        clients.append(publisher)
        await publisher.set_latest("design-doc", "v4")  # published, nobody opened it yet
        await clients[0].record_view("design-doc", "v4")
        # engaged time as the engagement work records it: alice read v4 for 95 s
        keys = Keyspace(settings.partitions)
        viewers = keys.version_viewers("design-doc", "v4")
        entry = msgspec.msgpack.decode(sync_redis.hget(viewers, "alice"))
        sync_redis.hset(viewers, "alice", msgspec.msgpack.encode([*entry[:3], 95_000]))
        sync_redis.hset(keys.version_stats("design-doc", "v4"), "readers", 1)

        page = await browser.new_page(viewport={"width": 1366, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        board = stack.token("board", "dashboard")
        await page.goto(f"{stack.api}/dashboard#token={board}&artifact=design-doc")
        await expect(page.locator("#latest-version")).to_have_text("v4")
        await expect(page.locator("#l-seen")).to_have_text("1")
        await expect(page.locator("#l-read")).to_have_text("1")
        await expect(page.locator("#l-not-seen")).to_have_text("3")  # bob, carol, dan
        seen_rows = page.locator("#seen tbody tr")
        await expect(seen_rows).to_have_count(1)
        await expect(seen_rows.first).to_contain_text("Alice Martin")
        await expect(seen_rows.first).to_contain_text("1 min 35 s")
        await expect(seen_rows.first).to_contain_text("read")
        not_seen = page.locator("#not-seen tbody tr")
        await expect(not_seen).to_have_count(3)
        await expect(page.locator("#not-seen")).to_contain_text("Bob Chen")
        await expect(page.locator("#not-seen")).to_contain_text("v3")
        # the newest version first, marked latest (its readers and engaged time show once
        # the stats carry them)
        await expect(page.locator("#versions tbody tr").first).to_contain_text("v4latest")
        # the timeline: a chart where the server has one, else a note saying it has none
        await expect(page.locator("#timeline")).not_to_be_empty()
        await expect(page.locator("#status")).to_have_text("connected")
        assert not errors
        SCREENSHOTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / "dashboard-seen.png"), full_page=True)
    finally:
        for client in clients:
            await client.close()


async def test_dashboard_draws_the_timeline_and_its_peak_when_the_service_has_one(
    browser: Browser, stack: Stack
) -> None:
    """The timeline endpoint comes with the timeline work; its answer is scripted here at
    the network level (the page still runs under its CSP), in the documented shape."""
    clients = await _seed(stack)
    try:
        page = await browser.new_page(viewport={"width": 1366, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        answer = {
            "artifactId": "design-doc",
            "step": "1m",
            "points": [
                {"t": f"2026-11-30T03:{m:02d}:00.000Z", "online": o, "sessions": o + 1}
                for m, o in enumerate([1, 2, 5, 3, 2])
            ],
            "peak": {"online": 5, "at": "2026-11-30T03:02:00.000Z"},
        }

        async def timeline(route: Route) -> None:
            await route.fulfill(json=answer)

        await page.route("**/v1/artifacts/design-doc/timeline*", timeline)
        board = stack.token("board", "dashboard")
        await page.goto(f"{stack.api}/dashboard#token={board}&artifact=design-doc")
        await expect(page.locator("#timeline svg polyline")).to_have_count(2)
        await expect(page.locator("#timeline svg circle.peak-dot")).to_have_count(1)
        await expect(page.locator("#peak")).to_contain_text("peak 5 at")
        # without a latest version, the seen block says so
        await expect(page.locator("#latest-version")).to_have_text("none set")
        await expect(page.locator("#seen tbody")).to_contain_text("no latest version")
        assert not errors
    finally:
        for client in clients:
            await client.close()
