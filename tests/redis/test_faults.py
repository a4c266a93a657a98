"""Faults on the wire between the service and Redis (a fault proxy in between): answers
held too long, connections cut in the middle of an answer, traffic black-holed without a
reset. Each is a 503 within about 2 s; once the fault is lifted the service serves again
by itself, and every view it accepted (a 2xx counted) reaches the ledger, once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from presence_svc.ratelimits import RateLimits
from presence_svc.settings import Settings
from tests.conftest import AppClient, MakeClient
from tests.faultproxy import FaultProxy
from tests.ledger.test_ledger import View, wait_for_rows

Auth = Callable[..., dict[str, str]]
RECLAIM_IDLE_S = 120


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[FaultProxy]:
    upstream = redis_url.removeprefix("unix://")
    faults = await FaultProxy(upstream).start()
    yield faults
    await faults.close()


class _Views:
    """Views by fresh users, keeping those answered 200 and counted."""

    def __init__(self, client: AppClient, auth: Auth) -> None:
        self.client, self.auth = client, auth
        self.counted: list[View] = []
        self._n = 0

    async def one(self) -> int:
        self._n += 1
        view = ("doc-1", "v1", f"user-{self._n}")
        response = await self.client.post(
            "/v1/views", json={"artifactId": "doc-1", "versionId": "v1"}, headers=self.auth(view[2])
        )
        if response.status == 200 and (await response.json())["counted"]:
            self.counted.append(view)
        return response.status


CUT_WITHIN_S = 2.0
"""A cut connection is a 503 at once (one retry on a fresh connection, cut too): the
issue's 2 s holds with room to spare (0.1-0.3 s measured at load 16)."""
SILENT_WITHIN_S = 2 * Settings().redis_timeout_s + 0.7
"""A Redis that stops answering (latency, a black hole) is a 503 when the request's
deadline, two tries of ``PRESENCE_REDIS_TIMEOUT_S`` (1.8 s), runs out: 1.80-1.82 s
measured at load 16. The margin past 2 s is for a loaded 2-core CI machine running the
client, the proxy and the service on one event loop (docs/operations.md#when-redis-refuses)."""


async def _quick_503(request: Callable[[], object], within_s: float = CUT_WITHIN_S) -> None:
    started = time.monotonic()
    response = await request()  # type: ignore[misc]
    elapsed = time.monotonic() - started
    assert response.status == 503, await response.text()
    assert elapsed < within_s, f"answered after {elapsed:.2f} s"
    assert response.content_type == "application/problem+json"
    assert int(response.headers["Retry-After"]) >= 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fault", ["latency", "cut", "blackhole"])
async def test_a_redis_fault_is_a_quick_503_and_heals_losing_no_accepted_view(
    fault: str, proxy: FaultProxy, make_client: MakeClient, auth: Auth, tmp_path: Path
) -> None:
    ledger_url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    client = await make_client(
        redis_url=f"redis://{proxy.address}",
        ledger_url=ledger_url,
        run_worker=True,
        ledger_reclaim_idle_s=RECLAIM_IDLE_S,
    )
    views = _Views(client, auth)
    beat = {"artifactId": "doc-1", "sessionId": "tab-aaaa1"}

    def heartbeat() -> object:
        return client.post("/v1/heartbeat", json=beat, headers=auth("a"))

    assert (await heartbeat()).status == 200
    await asyncio.gather(*(views.one() for _ in range(20)))

    proxy.latency_s = 0.2  # slow is not down: still answered
    assert (await heartbeat()).status == 200
    proxy.heal()

    if fault == "latency":
        proxy.latency_s = 5.0
    else:
        proxy.mode = fault
    within_s = CUT_WITHIN_S if fault == "cut" else SILENT_WITHIN_S
    await _quick_503(heartbeat, within_s)
    await _quick_503(
        lambda: client.post(
            "/v1/views", json={"artifactId": "doc-1", "versionId": "v1"}, headers=auth("lost")
        ),
        within_s,
    )
    await _quick_503(lambda: client.get("/v1/online?artifactId=doc-1", headers=auth("a")), within_s)
    proxy.heal()

    deadline = time.monotonic() + 20
    while (await heartbeat()).status != 200:
        assert time.monotonic() < deadline, "the service did not heal"
        await asyncio.sleep(0.1)
    await asyncio.gather(*(views.one() for _ in range(20)))

    # Every accepted view is in the ledger once; views answered 503 may be counted too
    # (Redis ran the script, the answer was lost), and then they are in the ledger as well.
    stats = await (
        await client.get("/v1/artifacts/doc-1/stats", headers=auth("b", scope="dashboard"))
    ).json()
    # Well before the reclaim idle time: a read whose answer was cut is taken back at once.
    rows = await wait_for_rows(ledger_url, stats["views"], timeout_s=RECLAIM_IDLE_S / 4)
    assert len(views.counted) >= 40
    assert Counter(rows) == Counter(set(rows)), "a view written twice"
    assert set(views.counted) <= set(rows)
    assert len(rows) == stats["views"]


@pytest.mark.every_redis
@pytest.mark.timeout(60)
async def test_a_view_whose_answers_are_cut_is_a_503_and_its_retry_counts_it_once(
    proxy: FaultProxy, make_client: MakeClient, auth: Auth, tmp_path: Path
) -> None:
    """The view and the user's notes travel in one round trip: when its answers are cut
    (Redis ran both scripts, twice with the connection's own retry), the client gets a 503;
    its retry is answered and the view is counted once: in the stats, the recent list and
    the ledger."""
    ledger_url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    client = await make_client(
        redis_url=f"redis://{proxy.address}",
        ledger_url=ledger_url,
        run_worker=True,
        ledger_reclaim_idle_s=RECLAIM_IDLE_S,
        rate_limits=RateLimits(buckets=()),
    )
    body = {"artifactId": "doc-cut", "versionId": "v1"}
    warm = {"artifactId": "doc-warm", "versionId": "v1"}
    assert (await client.post("/v1/views", json=warm, headers=auth("alice"))).status == 200

    proxy.mode = "cut"
    await _quick_503(lambda: client.post("/v1/views", json=body, headers=auth("alice")))
    proxy.heal()

    deadline = time.monotonic() + 20
    while True:
        retried = await client.post("/v1/views", json=body, headers=auth("alice"))
        if retried.status == 200:
            break
        assert time.monotonic() < deadline, "the service did not heal"
        await asyncio.sleep(0.1)
    assert (await retried.json())["counted"] is False  # counted by the try cut short
    dashboard = auth("d", scope="dashboard")
    stats = await (await client.get("/v1/artifacts/doc-cut/stats", headers=dashboard)).json()
    assert (stats["views"], stats["uniqueViewers"]) == (1, 1)
    recent = await (await client.get("/v1/users/alice/recent", headers=auth("alice"))).json()
    assert [i["artifactId"] for i in recent["items"]] == ["doc-cut", "doc-warm"]
    rows = await wait_for_rows(ledger_url, 2, timeout_s=RECLAIM_IDLE_S / 4)
    assert sorted(rows) == [("doc-cut", "v1", "alice"), ("doc-warm", "v1", "alice")]
