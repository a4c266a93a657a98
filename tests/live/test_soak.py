"""Soak: a few hundred simulated browser clients on many artifacts, with timeouts of seconds.

Clients join, heartbeat, switch tabs, reload, leave, or vanish without a word. Afterwards
Redis is back to where it started (the same keys, each holding the same bytes), and every
client that went produced exactly one ``leave`` event, with the right reason, to the
artifact's listener.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis

from tests.conftest import AppClient, MakeClient
from tests.sse import EventStream

pytestmark = pytest.mark.slow

Auth = Callable[..., dict[str, str]]

CLIENTS = 300
ARTIFACTS = 30
BEAT_S = 0.6  # well inside the 5 s online timeout, even on a busy machine


def _key_bytes(sync_redis: redis.Redis, but: bytes = b"\0") -> dict[bytes | str, int]:
    """Every key with the bytes Redis holds for it (``MEMORY USAGE``, exact).

    Counted per key rather than from ``INFO memory``: the allocator's totals move by
    ±100 KB between two quiet moments (client buffers, the Lua heap, lazy frees), which
    would hide a leak of that size and fail a run without one. Rate-limit buckets (``rl:``)
    are left out: each expires by itself once full again, whenever the readers last read;
    so are the timelines (``_timeline``)."""
    keys = [
        k
        for k in sync_redis.keys("*")
        if not k.startswith(b"rl:") and not k.startswith(but) and not _timeline(k)
    ]
    return {key: int(sync_redis.memory_usage(key, samples=0) or 0) for key in keys}


def _timeline(key: bytes) -> bool:
    """The artifacts' timelines (and their partitions' rollup index) are kept for
    ``PRESENCE_TIMELINE_DAYS`` by design: each must have a TTL, checked at the end."""
    return key.endswith((b":tl", b":tli"))


def _difference(before: dict[bytes | str, int], after: dict[bytes | str, int]) -> list[str]:
    """The first keys that were added, dropped or changed size, for the failure message."""
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return [f"{k!r}: {before.get(k)} -> {after.get(k)}" for k in changed[:20]]


class Browser:
    """One simulated user: its tabs heartbeat until it leaves or disappears."""

    def __init__(self, client: AppClient, auth: Auth, n: int) -> None:
        self.client = client
        self.user = f"user-{n:03d}"
        self.artifact = f"doc-{n % ARTIFACTS:02d}"
        self.kind = ("leaver", "vanisher", "tab-switcher", "reloader")[n % 4]
        self.headers = auth(self.user)
        self.expected = "timeout" if self.kind in ("vanisher", "tab-switcher") else "left"

    async def beat(self, tab: str, **extra: Any) -> None:
        body = {"artifactId": self.artifact, "sessionId": f"{self.user}-{tab}", **extra}
        response = await self.client.post("/v1/heartbeat", json=body, headers=self.headers)
        assert response.status == 200, await response.text()

    async def leave(self, tab: str, grace: bool = False) -> None:
        body = {"artifactId": self.artifact, "sessionId": f"{self.user}-{tab}", "grace": grace}
        response = await self.client.post("/v1/leave", json=body, headers=self.headers)
        assert response.status == 200, await response.text()

    async def pause(self) -> None:
        await asyncio.sleep(BEAT_S * random.uniform(0.8, 1.0))

    async def run(self) -> None:
        await asyncio.sleep(random.uniform(0, 1.0))
        if self.kind == "tab-switcher":
            await asyncio.gather(self.beat("tab-a", versionId="v1"), self.beat("tab-b"))
            for round_ in range(4):  # tab b hidden (no beats) while tab a changes state
                await self.pause()
                await self.beat("tab-a", state={"round": round_})
            await self.beat("tab-b")  # tab b visible again
            await self.leave("tab-a", grace=True)  # tab a closed
            await self.pause()
            await self.beat("tab-b")
            return  # then the browser vanishes
        await self.beat("tab-a", versionId="v1")
        for round_ in range(4):
            await self.pause()
            await self.beat("tab-a", state={"round": round_} if round_ == 2 else None)
            if self.kind == "reloader" and round_ == 1:
                await self.leave("tab-a", grace=True)  # pagehide, then the reload beats
                await self.beat("tab-a")
        if self.kind == "leaver":
            await self.leave("tab-a")
        elif self.kind == "reloader":
            await self.leave("tab-a", grace=True)  # the tab closes for good


@pytest.mark.timeout(90)
async def test_soak_nothing_grows_and_every_departure_is_one_leave(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis
) -> None:
    random.seed(5)
    client = await make_client(
        run_worker=True,
        heartbeat_interval_s=0.6,
        # 5 s: 300 clients beating in one event loop fell more than 2.5 s behind on a
        # loaded machine (load ~20), and timed-out users came back for a second leave
        online_timeout_s=5.0,
        away_timeout_s=5.0,  # no tab is away here; it bounds the where-now indexes' TTL
        retention_s=6.0,
        sweep_interval_s=0.25,
        leave_grace_s=0.5,
        recent_s=5.0,  # the recently-here lists expire soon after the last departure
    )
    board = auth("board", scope="dashboard")
    listeners: dict[str, EventStream] = {}
    for a in range(ARTIFACTS):
        artifact = f"doc-{a:02d}"
        response = await client.get(f"/v1/artifacts/{artifact}/events", headers=board)
        assert response.status == 200
        listeners[artifact] = EventStream(response)
    for stream in listeners.values():
        assert (await stream.next()).event == "sync"
    assert (await client.get("/v1/artifacts/doc-00/presence", headers=board)).status == 200
    # Without the board's rate-limit bucket: it expires by itself once full (~1 s), and
    # every bucket the run fills must be gone by the end as well.
    before = {k: n for k, n in _key_bytes(sync_redis).items() if not k.startswith(b"rl:")}

    browsers = [Browser(client, auth, n) for n in range(CLIENTS)]
    peak_keys = 0

    async def watch() -> None:
        nonlocal peak_keys
        while True:
            peak_keys = max(peak_keys, sync_redis.dbsize())
            await asyncio.sleep(0.2)

    watcher = asyncio.create_task(watch())
    try:
        await asyncio.gather(*(b.run() for b in browsers))

        def leaves() -> list[tuple[str, str, str]]:
            return [
                (artifact, e.data["userId"], e.data["reason"])
                for artifact, stream in listeners.items()
                for e in stream.events
                if e.event == "leave"
            ]

        deadline = time.monotonic() + 30
        while len(leaves()) < CLIENTS:
            assert time.monotonic() < deadline, f"only {len(leaves())} leaves"
            await asyncio.sleep(0.1)
        # after retention every presence key is gone again (the sweeper deletes them) and
        # the view streams are trimmed back to what the ledger has not taken yet: nothing
        # The users' where-now indexes outlive that by design (PRESENCE_RECENT_S + 10
        # online timeouts + 2 x the longer timeout after their last write): each must be on
        # its way out (a TTL).
        deadline = time.monotonic() + 30
        while (after := _key_bytes(sync_redis, but=b"wn:")) != before:
            assert time.monotonic() < deadline, _difference(before, after)
            await asyncio.sleep(0.1)
        for key in sync_redis.keys("wn:*"):
            assert 0 < sync_redis.pttl(key) <= (5.0 + 10 * 5.0 + 2 * 5.0) * 1000
        timelines = [k for k in sync_redis.keys("ps:*") if _timeline(k)]
        assert timelines  # the run's joins and leaves were recorded
        for key in timelines:
            assert 0 < sync_redis.pttl(key) <= 7 * 86_400_000
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)

    got = Counter(leaves())
    want = Counter((b.artifact, b.user, b.expected) for b in browsers)
    assert got == want  # exactly one leave each, with the right reason
    joins = Counter(
        (artifact, e.data["userId"])
        for artifact, stream in listeners.items()
        for e in stream.events
        if e.event == "join"
    )
    assert joins == Counter((b.artifact, b.user) for b in browsers)
    for artifact, stream in listeners.items():
        counts = [e.data for e in stream.events if e.event == "count"]
        assert counts[-1] == {"online": 0, "sessions": 0, "active": 0, "away": 0}, artifact

    assert peak_keys > len(before) + CLIENTS / 10
    print(
        f"soak: keys {len(before)} -> peak {peak_keys} -> {len(after)}; "
        f"bytes in keys {sum(before.values())} -> {sum(after.values())}"
    )
    for stream in listeners.values():
        await stream.close()
