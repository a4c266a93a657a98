"""Engaged time in the database: the worker's flush writes exact absolute daily totals,
whatever happens to it (SIGKILL, a replay, two at once); the ledger endpoint reads them.
On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Callable

import pytest
import redis

from presence_svc.database import Database
from presence_svc.ledger.engagement import EngagementQuery, EngagementTotal
from presence_svc.ledger.engagement_flush import EngagementFlush
from presence_svc.redis.connection import RedisConnection
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import Settings
from presence_svc.stats.engagement import utc_day
from tests.conftest import AppClient, MakeClient, opened_database
from tests.ledger.test_ledger import Workers, write_lock
from tests.ledger.test_ledger import workers as workers  # the fixture

Auth = Callable[..., dict[str, str]]
Key = tuple[str, str, str]


async def engaged_in_redis(client: AppClient, auth: Auth, version: str) -> dict[Key, int]:
    response = await client.get(
        f"/v1/artifacts/doc-1/versions/{version}/viewers", headers=auth("d", scope="dashboard")
    )
    assert response.status == 200
    rows = (await response.json())["viewers"]
    return {("doc-1", version, v["userId"]): v["engagedMs"] for v in rows if v["engagedMs"]}


async def engaged_in_db(url: str) -> dict[Key, int]:
    async with opened_database(url) as database:
        rows = [r async for r in database.engagement.iter_engagement(EngagementQuery())]
    totals: Counter[Key] = Counter()
    for r in rows:
        totals[(r.artifact_id, r.version_id, r.user_id)] += r.engaged_ms
    return dict(totals)


async def wait_for_db(url: str, expected: dict[Key, int], timeout_s: float = 30) -> dict[Key, int]:
    deadline = time.monotonic() + timeout_s
    found = await engaged_in_db(url)
    while found != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        found = await engaged_in_db(url)
    return found


class Readers:
    """Alice, bob and carol view doc-1 v1 and v2 and report engaged time from a tab each."""

    def __init__(self, client: AppClient, auth: Auth) -> None:
        self.client, self.auth = client, auth
        self.users = ("alice", "bob", "carol")

    async def start(self) -> None:
        for user in self.users:
            for version in ("v1", "v2"):
                body = {"artifactId": "doc-1", "versionId": version}
                assert (
                    await self.client.post("/v1/views", json=body, headers=self.auth(user))
                ).status == 200
            await self.report(user, 0, "v1")

    async def report(self, user: str, engaged: int, version: str) -> None:
        body = {
            "artifactId": "doc-1",
            "sessionId": f"tab-{user}-1",
            "versionId": version,
            "engagedMs": engaged,
        }
        response = await self.client.post("/v1/heartbeat", json=body, headers=self.auth(user))
        assert response.status == 200

    async def round(self, engaged: int, version: str = "v1") -> None:
        await asyncio.gather(*(self.report(u, engaged, version) for u in self.users))


@pytest.fixture
async def client(make_client: MakeClient, ledger_url: str) -> AppClient:
    # every report credited at once: these are about the flush (the fold: test_engagement_fold)
    return await make_client(
        online_timeout_s=30.0, retention_s=60.0, ledger_url=ledger_url, engagement_fold_s=0.0
    )


@pytest.mark.timeout(90)
async def test_totals_are_exact_across_a_worker_sigkill_and_two_workers(
    client: AppClient, auth: Auth, ledger_url: str, workers: Workers, settings: Settings
) -> None:
    first = workers(ledger_url, PRESENCE_ENGAGEMENT_FLUSH_S="0.2")
    readers = Readers(client, auth)
    await readers.start()
    for _ in range(3):
        await readers.round(700)
    expected = await engaged_in_redis(client, auth, "v1")
    assert set(expected.values()) == {2100}
    assert await wait_for_db(ledger_url, expected) == expected
    # The database refuses writes: the worker reads the dirty totals and cannot write them.
    async with write_lock(ledger_url, "engagement"):
        await readers.round(900)
        await readers.round(400, "v2")
        await asyncio.sleep(0.6)  # a few flush intervals: the worker is mid-flush
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    workers(ledger_url, PRESENCE_ENGAGEMENT_FLUSH_S="0.2")
    workers(ledger_url, PRESENCE_ENGAGEMENT_FLUSH_S="0.2")  # two at once double nothing
    await readers.round(300, "v2")
    expected = await engaged_in_redis(client, auth, "v1") | await engaged_in_redis(
        client, auth, "v2"
    )
    assert set(expected.values()) == {3000, 700}
    assert await wait_for_db(ledger_url, expected) == expected


@pytest.mark.timeout(90)
async def test_deferred_totals_are_exact_across_a_worker_sigkill_and_two_workers(
    make_client: MakeClient, auth: Auth, ledger_url: str, workers: Workers
) -> None:
    """Reports held in the sessions' accumulators: folded by later reports and by the
    workers' fold (one SIGKILLed midway, two after), each credited once."""
    fast = {"PRESENCE_ENGAGEMENT_FLUSH_S": "0.2", "PRESENCE_ENGAGEMENT_FOLD_S": "0.3"}
    client = await make_client(
        online_timeout_s=30.0, retention_s=60.0, ledger_url=ledger_url, engagement_fold_s=0.3
    )
    first = workers(ledger_url, **fast)
    readers = Readers(client, auth)
    await readers.start()
    for _ in range(3):
        await readers.round(700)
        await asyncio.sleep(0.2)  # spread over folds: some by a report, some by the worker
    await readers.round(900)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    await readers.round(400, "v2")  # v1's held time is credited by this report
    workers(ledger_url, **fast)
    workers(ledger_url, **fast)  # two at once fold and write nothing twice
    await readers.round(300, "v2")
    expected = {(("doc-1", v, u)): n for u in readers.users for v, n in (("v1", 3000), ("v2", 700))}

    async def in_redis() -> dict[Key, int]:
        return await engaged_in_redis(client, auth, "v1") | await engaged_in_redis(
            client, auth, "v2"
        )

    deadline = time.monotonic() + 30
    while await in_redis() != expected:  # v2's last reports: the workers' fold
        assert time.monotonic() < deadline, await in_redis()
        await asyncio.sleep(0.1)
    assert await wait_for_db(ledger_url, expected) == expected


async def test_a_replayed_flush_writes_the_same_absolute_numbers(
    client: AppClient,
    auth: Auth,
    ledger_url: str,
    settings: Settings,
    redis_conn: RedisConnection,
    sync_redis: redis.Redis,
) -> None:
    readers = Readers(client, auth)
    await readers.start()
    await readers.round(1_000)
    await readers.round(500)
    keys = Keyspace(settings.partitions)
    dirty = keys.engage_dirty(keys.tag_of("doc-1"))
    held = sync_redis.zrange(dirty, 0, -1, withscores=True)
    assert len(held) == 3
    async with opened_database(ledger_url) as database:
        flush = EngagementFlush(redis_conn, database.engagement, settings)
        assert await flush.flush_once() == 3
        assert sync_redis.zcard(dirty) == 0
        first = await engaged_in_db(ledger_url)
        assert set(first.values()) == {1_500}
        # a replay of the same totals, and a stale one (an older, smaller total)
        sync_redis.zadd(dirty, {m: s for m, s in held})
        assert await flush.flush_once() == 3
        sync_redis.zadd(dirty, {m: s - 500 for m, s in held})
        await flush.flush_once()
        assert await engaged_in_db(ledger_url) == first


async def test_the_engagement_ledger_pages_filters_and_refuses_bad_input(
    make_client: MakeClient, auth: Auth, ledger_url: str, database: Database
) -> None:
    day = utc_day()
    totals = [
        EngagementTotal("doc-1", f"v{i % 2}", f"user-{i}", day, 1000 * i) for i in range(1, 6)
    ] + [EngagementTotal("doc-2", "v1", "user-1", "2026-01-02", 42)]
    assert await database.engagement.upsert_totals(totals, 1_000) == 6
    client = await make_client(ledger_url=ledger_url)
    board = auth("d", scope="dashboard")
    seen, cursor = [], None
    while True:
        query = "artifactId=doc-1&limit=2" + (f"&cursor={cursor}" if cursor else "")
        response = await client.get(f"/v1/ledger/engagement?{query}", headers=board)
        assert response.status == 200
        page = await response.json()
        seen += [(i["versionId"], i["userId"], i["engagedMs"], i["day"]) for i in page["items"]]
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted((t.version_id, t.user_id, t.engaged_ms, day) for t in totals[:5])
    old = await client.get(
        "/v1/ledger/engagement?userId=user-1&until=2026-01-03T00:00:00Z", headers=board
    )
    assert [i["artifactId"] for i in (await old.json())["items"]] == ["doc-2"]
    for query, field in [
        ("cursor=nonsense", "cursor"),
        ("limit=0", "limit"),
        ("since=yesterday", "since"),
        ("versionId=a%20b", "versionId"),
    ]:
        response = await client.get(f"/v1/ledger/engagement?{query}", headers=board)
        assert response.status == 400, query
        assert [e["field"] for e in (await response.json())["errors"]] == [field]
    assert (await client.get("/v1/ledger/engagement", headers=auth("alice"))).status == 403


async def test_erase_user_replaces_the_id_by_the_tombstone(database: Database) -> None:
    totals = [
        EngagementTotal("doc-1", "v1", "alice", "2026-11-01", 10),
        EngagementTotal("doc-1", "v1", "bob", "2026-11-01", 20),
    ]
    await database.engagement.upsert_totals(totals, 1)
    assert await database.engagement.erase_user("alice", "erased-1f2e") == 1
    rows = [r async for r in database.engagement.iter_engagement(EngagementQuery())]
    assert sorted((r.user_id, r.engaged_ms) for r in rows) == [("bob", 20), ("erased-1f2e", 10)]


async def test_a_backlog_over_a_batch_is_written_whole_and_drained(
    ledger_url: str, settings: Settings, redis_conn: RedisConnection, sync_redis: redis.Redis
) -> None:
    keys = Keyspace(settings.partitions)
    dirty = keys.engage_dirty(keys.tag_of("doc-1"))
    sync_redis.zadd(dirty, {f"2026-11-30/doc-1/v1/user-{i:05d}": 10 + i for i in range(2_500)})
    sync_redis.zadd(keys.engage_dirty(keys.tag_of("doc-2")), {"2026-11-30/doc-2/v1/bob": 7})
    async with opened_database(ledger_url) as database:
        flush = EngagementFlush(redis_conn, database.engagement, settings)
        assert await flush.flush_once() == 2_501
    assert sync_redis.zcard(dirty) == 0
    found = await engaged_in_db(ledger_url)
    assert len(found) == 2_501
    assert found[("doc-1", "v1", "user-02499")] == 2_509
    assert found[("doc-2", "v1", "bob")] == 7


@pytest.mark.every_redis
async def test_forget_user_takes_their_unwritten_totals_out_of_redis(
    client: AppClient,
    auth: Auth,
    ledger_url: str,
    settings: Settings,
    redis_conn: RedisConnection,
) -> None:
    readers = Readers(client, auth)
    await readers.start()
    await readers.round(1_000)
    async with opened_database(ledger_url) as database:
        flush = EngagementFlush(redis_conn, database.engagement, settings)
        assert await flush.forget_user("bob") == 2  # bob's dirty mark and day total
        assert await flush.flush_once() == 2
    assert set(await engaged_in_db(ledger_url)) == {
        ("doc-1", "v1", "alice"),
        ("doc-1", "v1", "carol"),
    }
