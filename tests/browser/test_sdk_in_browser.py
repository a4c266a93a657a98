"""The browser SDK in headless chromium, against the real service on another origin."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import pytest
from playwright.async_api import Page, Request, Response

from presence_svc import metrics
from tests.browser.conftest import GRACE_S, INTERVAL_S, TIMEOUT_S, OpenTab, Stack, seen

pytestmark = pytest.mark.slow

SESSION_KEY = "presence-svc:session"


def _leaves() -> float:
    """Answered POST /v1/leave so far (the service runs in this process)."""
    return metrics.REQUESTS.labels("/v1/leave", "POST", "200")._value.get()


def _row(snapshot: dict[str, object], user: str) -> dict[str, object] | None:
    users = snapshot["users"]
    assert isinstance(users, list)
    return next((u for u in users if u["userId"] == user), None)


async def _wait_user(page: Page, user: str, *, present: bool, timeout_s: float = 10) -> None:
    check = "u => u.userId === " + repr(user)
    expr = f"window.__presence.users.some({check})"
    await page.wait_for_function(expr if present else f"!({expr})", timeout=timeout_s * 1000)


async def test_two_tabs_of_one_user_are_one_user_with_two_sessions(open_tab: OpenTab) -> None:
    observer = await open_tab("carol")
    first = await open_tab("alice")
    second = await open_tab("alice")
    ids = {
        await tab.evaluate(f"sessionStorage.getItem('{SESSION_KEY}')") for tab in (first, second)
    }
    assert len(ids) == 2  # one session id per tab
    await observer.wait_for_function(
        "window.__presence.sessions === 3 &&"
        " window.__presence.users.some(u => u.userId === 'alice' && u.sessions === 2)"
    )
    now = await seen(observer)
    assert _row(now, "alice") == {"userId": "alice", "sessions": 2}
    assert (now["online"], now["sessions"]) == (2, 3)  # alice (2 tabs) and carol herself
    assert [u["userId"] for u in now["users"]].count("alice") == 1
    assert now["transport"] == "events"  # live through EventSource, not the polling fallback


async def test_closed_tab_is_seen_gone_within_3_seconds(open_tab: OpenTab) -> None:
    observer = await open_tab("carol")
    bob = await open_tab("bob")
    await _wait_user(observer, "bob", present=True)
    leaves = _leaves()
    started = time.monotonic()
    await bob.close(run_before_unload=True)
    await _wait_user(observer, "bob", present=False, timeout_s=TIMEOUT_S + 5)
    elapsed = time.monotonic() - started
    print(f"closed tab seen gone by another tab after {elapsed:.2f} s")
    # The timeout alone would take TIMEOUT_S + a poll; the beacon leave takes the grace.
    assert elapsed < 3.0, f"the closed tab was seen gone only after {elapsed:.2f} s"
    assert _leaves() == leaves + 1  # through the page's beacon, not a timeout


async def test_reload_shows_no_leave_no_join_and_counts_one_view(
    open_tab: OpenTab, stack: Stack
) -> None:
    observer = await open_tab("carol")
    alice = await open_tab("alice", version="v1")
    await _wait_user(observer, "alice", present=True)
    session = await alice.evaluate(f"sessionStorage.getItem('{SESSION_KEY}')")
    board = {"Authorization": f"Bearer {stack.token('board', 'dashboard')}"}
    lowest: list[int] = []
    stop = asyncio.Event()

    async def watch(http: aiohttp.ClientSession) -> None:
        """The server's own count, every 50 ms, while the tab reloads."""
        while not stop.is_set():
            async with http.get(f"{stack.api}/v1/artifacts/doc-1/online", headers=board) as r:
                lowest.append((await r.json())["sessions"])
            await asyncio.sleep(0.05)

    async with aiohttp.ClientSession() as http:
        watcher = asyncio.create_task(watch(http))
        await observer.evaluate("window.__history.length = 0")
        leaves = _leaves()
        started = time.monotonic()
        await alice.reload()
        await alice.wait_for_function("window.__presence && window.__presence.status === 'active'")
        reload_s = time.monotonic() - started
        await asyncio.sleep(GRACE_S + 2 * INTERVAL_S)  # past the grace and a few polls
        stop.set()
        await watcher
        stats_url = f"{stack.api}/v1/artifacts/doc-1/stats"
        async with http.get(stats_url, headers=board) as r:
            stats = await r.json()
    print(f"reload took {reload_s:.2f} s")
    assert await alice.evaluate(f"sessionStorage.getItem('{SESSION_KEY}')") == session
    assert _leaves() == leaves + 1, "the reload sent no grace leave: nothing was tested"
    assert lowest
    assert min(lowest) == 2, "the server saw the reloading tab leave"
    history = await observer.evaluate("window.__history")
    assert all(_row(h, "alice") == {"userId": "alice", "sessions": 1} for h in history)
    assert all(h["sessions"] == 2 for h in history), history
    assert stats["versions"][0]["versionId"] == "v1"
    assert stats["views"] == 1, "the reload counted a second view"


Beats = list[tuple[float, str]]


def _record_heartbeats(page: Page) -> Beats:
    """When each heartbeat of ``page`` went out, and the status its body said."""
    beats: Beats = []

    def on_request(request: Request) -> None:
        if request.url.endswith("/v1/heartbeat") and request.method == "POST":
            beats.append((time.monotonic(), request.post_data_json.get("status")))

    page.on("request", on_request)
    return beats


async def _until(check: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_hidden_tab_says_away_then_rarely_and_active_again_when_shown(
    open_tab: OpenTab,
) -> None:
    alice = await open_tab("alice")
    beats = _record_heartbeats(alice)
    await _until(lambda: len(beats) >= 1)
    assert {status for _, status in beats} == {"active"}, "a visible tab is active"
    await _set_visibility(alice, "hidden")
    await _until(lambda: any(status == "away" for _, status in beats))
    assert (await seen(alice))["status"] == "hidden"
    await alice.wait_for_timeout(INTERVAL_S * 3000)  # three intervals: still one away beat
    statuses = [status for _, status in beats]
    while_hidden = statuses[statuses.index("away") :]
    assert while_hidden == ["away"], f"a hidden tab heartbeats once a minute: {while_hidden}"
    shown_at = time.monotonic()
    await _set_visibility(alice, "visible")
    await _until(lambda: any(t >= shown_at and status == "active" for t, status in beats))
    assert (await seen(alice))["status"] == "active"


async def test_an_idle_tab_says_away_and_input_brings_it_back(open_tab: OpenTab) -> None:
    alice = await open_tab("alice", idle_s=2)
    beats = _record_heartbeats(alice)
    await _until(lambda: any(status == "away" for _, status in beats), timeout_s=15)
    went_away = time.monotonic()
    await alice.mouse.move(200, 200)
    await alice.mouse.move(300, 260)
    await _until(lambda: any(t > went_away and status == "active" for t, status in beats))


async def _set_visibility(page: Page, state: str) -> float:
    """What the browser does when the tab is switched away from (headless has no tab strip).
    Returns the page's clock at the switch: ms since the page's navigation began."""
    at: float = await page.evaluate(
        """state => {
            const define = (name, value) =>
                Object.defineProperty(document, name, {value, configurable: true});
            define('visibilityState', state);
            define('hidden', state === 'hidden');
            const at = performance.now();
            document.dispatchEvent(new Event('visibilitychange'));
            return at;
        }""",
        state,
    )
    return at


async def test_sdk_module_served_by_the_service_works_in_a_page(
    open_tab: OpenTab, stack: Stack
) -> None:
    """A page on another origin imports /sdk/v1/presence.js from the service (no npm, no
    bundler) and sees, and is seen by, a tab using the npm build."""
    observer = await open_tab("carol")
    fetched: list[tuple[str, int, str]] = []
    context = observer.context

    def on_response(response: Response) -> None:
        if "/sdk/" in response.url:
            fetched.append((response.url, response.status, response.headers["content-type"]))

    context.on("response", on_response)
    alice = await open_tab("alice", served=True)
    assert fetched == [(f"{stack.api}/sdk/v1/presence.js", 200, "text/javascript; charset=utf-8")]
    await _wait_user(observer, "alice", present=True)
    await alice.wait_for_function(
        "window.__presence.users.some(u => u.userId === 'carol') && window.__presence.online === 2"
    )
    now = await seen(alice)
    assert now["transport"] == "events"
    assert await alice.evaluate("window.__errors") == []
    assert "2 online (events)" in await alice.inner_text("#status")


async def test_a_tab_visible_and_active_for_3_s_then_hidden_reports_3_s(
    open_tab: OpenTab, stack: Stack
) -> None:
    alice = await open_tab("alice", version="v1")
    reported: list[int] = []

    def on_request(request: Request) -> None:
        if request.url.endswith("/v1/heartbeat") and request.method == "POST":
            reported.append(int(request.post_data_json.get("engagedMs") or 0))

    alice.on("request", on_request)
    await alice.mouse.move(200, 200)  # someone at the tab
    # The span on the page's own clock: from the SDK's start (its first heartbeat, sent as it
    # starts counting) to the switch, made by a page timer 3 s after that start.
    started_ms, hidden_at_ms = await alice.evaluate(
        """async () => {
            const first = performance.getEntriesByType('resource')
                .find((e) => e.name.endsWith('/v1/heartbeat'));
            const start = first.startTime;
            await new Promise((r) => setTimeout(r, Math.max(0, start + 3000 - performance.now())));
            const define = (name, value) =>
                Object.defineProperty(document, name, {value, configurable: true});
            define('visibilityState', 'hidden');
            define('hidden', true);
            const at = performance.now();
            document.dispatchEvent(new Event('visibilitychange'));
            return [start, at];
        }"""
    )
    span_ms = hidden_at_ms - started_ms
    await _until(lambda: len(reported) >= 3 and reported[-1] > 0)  # the heartbeat on hiding
    await alice.wait_for_timeout(1500)  # hidden: nothing more counts
    board = {"Authorization": f"Bearer {stack.token('board', 'dashboard')}"}
    credited = 0
    async with aiohttp.ClientSession() as http:
        url = f"{stack.api}/v1/artifacts/doc-1/versions/v1/viewers"
        deadline = time.monotonic() + 20  # folded within the fold interval (1 s) + 5 s
        while not credited and time.monotonic() < deadline:
            async with http.get(url, headers=board) as response:
                credited = (await response.json())["viewers"][0]["engagedMs"]
            await asyncio.sleep(0.2)
    print(f"visible span {span_ms:.0f} ms, engaged time credited {credited} ms")
    assert 2_990 <= span_ms <= 3_500, f"the page's timer hid the tab after {span_ms:.0f} ms"
    assert abs(credited - span_ms) <= 500
    assert 0 < sum(reported) <= credited  # (a heartbeat may have gone before the listener)
