"""The dashboard page in headless chromium, fed by the Python SDK."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from playwright.async_api import Browser, Route, expect

from presence_svc.client import PresenceClient
from presence_svc.settings import Settings
from tests.browser.conftest import SCREENSHOTS, Stack

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A reader after 2 s of engaged time (30 s by default), so a test makes readers."""
    return settings.replace(read_after_s=2.0)


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


async def _read(client: PresenceClient, version: str, *reports: int) -> None:
    """Engaged time as a tab reports it: a session on ``version`` sending each report (ms,
    under the server's 2 s slack, so none is clamped), then leaving (which credits it)."""
    session = f"read-{version}-{time.monotonic_ns()}"
    for engaged in reports:
        await client.heartbeat(
            "design-doc", session_id=session, version_id=version, engaged_ms=engaged
        )
    await client.leave("design-doc", session_id=session)


async def _credited(client: PresenceClient, version: str, engaged_ms: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        stats = await client.stats("design-doc")
        if any(v.version_id == version and v.engaged_ms == engaged_ms for v in stats.versions):
            return
        assert time.monotonic() < deadline, f"{version}: {engaged_ms} ms never credited"
        await asyncio.sleep(0.1)


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
    browser: Browser, stack: Stack
) -> None:
    clients = await _seed(stack)
    try:
        publisher = PresenceClient(stack.api, stack.token("cms", "publisher"))
        clients.append(publisher)
        await publisher.set_latest("design-doc", "v4")  # published, nobody opened it yet
        await clients[0].record_view("design-doc", "v4")
        # engaged time reported by tabs: alice reads v4 for 3 s (a reader: 2 s), bob v3 for
        # 3 s (a reader), carol v3 for 1 s
        await _read(clients[0], "v4", 1_500, 1_500)
        await _read(clients[1], "v3", 1_500, 1_500)
        await _read(clients[2], "v3", 1_000)
        board_client = PresenceClient(stack.api, stack.token("board", "dashboard"))
        clients.append(board_client)
        await _credited(board_client, "v4", 3_000)
        await _credited(board_client, "v3", 4_000)

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
        await expect(seen_rows.first).to_contain_text("3 s")
        await expect(seen_rows.first).to_contain_text("read")
        not_seen = page.locator("#not-seen tbody tr")
        await expect(not_seen).to_have_count(3)
        await expect(page.locator("#not-seen")).to_contain_text("Bob Chen")
        await expect(page.locator("#not-seen")).to_contain_text("v3")
        # engaged time and readers per version, the newest version first, marked latest:
        # version, viewers, readers, engaged, engaged per viewer
        rows = page.locator("#versions tbody tr")
        await expect(rows).to_have_count(4)
        await expect(rows.nth(0).locator("td")).to_have_text(["v4latest", "1", "1", "3 s", "3 s"])
        await expect(rows.nth(1).locator("td")).to_have_text(["v3", "4", "1", "4 s", "1 s"])
        await expect(rows.nth(2).locator("td")).to_have_text(["v2", "2", "0", "0 s", "0 s"])
        await expect(rows.nth(3).locator("td")).to_have_text(["v1", "1", "0", "0 s", "0 s"])
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
    """A timeline of several minutes with a peak inside it, scripted at the network level in
    the documented shape (the page still runs under its CSP): the service's own answer is
    drawn in test_dashboard_draws_the_timeline_from_the_service."""
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


async def test_dashboard_draws_the_timeline_from_the_service(
    browser: Browser, stack: Stack
) -> None:
    """The timeline as the service answers it (no scripted answer): this minute's peak is
    the people who joined (alice with two tabs, bob), the hour before it empty."""
    clients = await _seed(stack)
    try:
        board_client = PresenceClient(stack.api, stack.token("board", "dashboard"))
        clients.append(board_client)
        timeline = await board_client.timeline("design-doc", step="1m")
        assert timeline.peak.online == 2  # what the page gets: the last hour, minute by minute
        assert [p.online for p in timeline.points[:-2]] == [0] * (len(timeline.points) - 2)
        page = await browser.new_page(viewport={"width": 1366, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url) if "/timeline" in r.url else None)
        board = stack.token("board", "dashboard")
        await page.goto(f"{stack.api}/dashboard#token={board}&artifact=design-doc")
        chart = page.locator("#timeline svg")
        await expect(chart.locator("polyline")).to_have_count(2)
        await expect(chart.locator("circle.peak-dot")).to_have_count(1)
        await expect(page.locator("#peak")).to_contain_text("peak 2 at")
        # the y axis runs to the most sessions (3: alice's two tabs and bob's); each line
        # has a point per minute of the hour
        await expect(chart.locator("text").first).to_have_text("3")
        for line in ("polyline.line-online", "polyline.line-sessions"):
            drawn = await chart.locator(line).get_attribute("points")
            assert drawn is not None
            assert len(drawn.split()) in (60, 61)  # an hour of minutes, both ends counted
        assert asked  # asked of the service itself
        assert all(url.startswith(f"{stack.api}/v1/artifacts/design-doc/timeline") for url in asked)
        assert not errors
    finally:
        for client in clients:
            await client.close()
