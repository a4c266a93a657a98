"""Faults on the wire between the service and PostgreSQL (a fault proxy in between):
answers held too long, connections cut in the middle of an answer, traffic black-holed
without a reset. The database's endpoints answer 503 within about 2 s; once the fault is
lifted they serve again by themselves, no profile written with a 2xx is lost, and every
counted view still reaches the ledger once (the worker's connections cross the proxy too)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from presence_svc.settings import Settings
from tests.conftest import MakeClient
from tests.faultproxy import FaultProxy
from tests.ledger.test_ledger import wait_for_rows

Auth = Callable[..., dict[str, str]]


@pytest.fixture
async def proxy(pg_url: str) -> AsyncIterator[FaultProxy]:
    upstream = pg_url.split("@", 1)[1].split("/", 1)[0]
    faults = await FaultProxy(upstream).start()
    yield faults
    await faults.close()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("fault", ["latency", "cut", "blackhole"])
async def test_a_database_fault_is_a_quick_503_and_heals_losing_no_accepted_write(
    fault: str, proxy: FaultProxy, pg_url: str, make_client: MakeClient, auth: Auth
) -> None:
    host = pg_url.split("@", 1)[1].split("/", 1)[0]
    ledger_url = pg_url.replace(host, proxy.address)
    client = await make_client(ledger_url=ledger_url, run_worker=True)
    admin = auth("ops", scope="admin")
    saved: list[str] = []
    counted: list[tuple[str, str, str]] = []
    n = iter(range(1_000_000))

    async def put() -> Any:
        user = f"user-{next(n)}"
        response = await client.put(f"/v1/users/{user}", json={"name": user}, headers=admin)
        if response.status == 200:
            saved.append(user)
        return response

    async def view() -> None:
        user = f"viewer-{next(n)}"
        body = {"artifactId": "doc-1", "versionId": "v1"}
        response = await client.post("/v1/views", json=body, headers=auth(user))
        assert response.status == 200  # Redis is not behind the proxy: views go on
        if (await response.json())["counted"]:
            counted.append(("doc-1", "v1", user))

    assert (await put()).status == 200
    await asyncio.gather(*(view() for _ in range(10)))

    if fault == "latency":
        proxy.latency_s = 5.0
    else:
        proxy.mode = fault
    for request in (put, lambda: client.get("/v1/users/user-0", headers=admin)):
        started = time.monotonic()
        response = await request()
        elapsed = time.monotonic() - started
        assert response.status == 503, await response.text()
        # A cut: at once (0.06-0.08 s measured at load 19). Silence: when the request's
        # database budget (PRESENCE_DB_REQUEST_TIMEOUT_S, 1.8 s) runs out, 1.80 s measured;
        # the margin is for a loaded CI machine (docs/operations.md#when-redis-refuses).
        within_s = 2.0 if fault == "cut" else Settings().db_request_timeout_s + 0.7
        assert elapsed < within_s, f"answered after {elapsed:.2f} s"
        assert response.headers["Retry-After"] == "5"
        assert "database" in (await response.json())["detail"]
    await asyncio.gather(*(view() for _ in range(10)))  # counted while the ledger is cut off
    proxy.heal()

    deadline = time.monotonic() + 30
    while (await put()).status != 200:
        assert time.monotonic() < deadline, "the service did not heal"
        await asyncio.sleep(0.1)
    for user in saved:
        response = await client.get(f"/v1/users/{user}", headers=admin)
        assert response.status == 200, user
    rows = await wait_for_rows(pg_url, len(counted))
    assert Counter(rows) == Counter(counted)
