"""Deliveries held in memory (the happy path writes nothing to the database): the stream
entries are acknowledged once delivered; a failure in the middle of an artifact's events,
with newer ones already sent to the database (a lane out of room), keeps their order; a
hanging endpoint's waiting deliveries go to the database, so the entries behind them are
acknowledged while it hangs, and arrive in order once it answers again; events that come
while a failure is being written to the database are neither lost nor sent out of order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from aiohttp import web

from presence_svc.redis.keys import Keyspace
from presence_svc.webhooks import lane
from presence_svc.webhooks.dispatcher import WebhookDispatcher
from presence_svc.webhooks.store import WebhookStore
from presence_svc.webhooks.streams import GROUP
from presence_svc.webhooks.tickets import Fresh
from tests.webhooks.receiver import Receiver, receiving, until

KEYS = Keyspace(16)


def _unacknowledged(sync_redis: redis.Redis) -> int:
    return sum(
        int(sync_redis.xpending(KEYS.outbox(t), GROUP)["pending"])
        for t in KEYS.tags
        if sync_redis.exists(KEYS.outbox(t))
    )


def _unread(sync_redis: redis.Redis) -> int:
    """Outboxes whose group has not read to the end (its last delivered id behind the
    stream's last id)."""
    behind = 0
    for t in KEYS.tags:
        stream = KEYS.outbox(t)
        if not sync_redis.exists(stream):
            continue
        last = sync_redis.xinfo_stream(stream)["last-generated-id"]
        group = next(g for g in sync_redis.xinfo_groups(stream) if g["name"].decode() == GROUP)
        behind += group["last-delivered-id"] != last
    return behind


def _joins(receiver: Receiver, artifact: str) -> list[str]:
    return [
        r.data["userId"]
        for r in receiver.unique()
        if r.type == "presence.join" and r.data["artifactId"] == artifact
    ]


async def test_delivered_events_leave_no_stream_entry_unacknowledged(
    make_hooks: Any, sync_redis: redis.Redis
) -> None:
    hooks = await make_hooks()
    async with receiving() as receiver:
        receiver.secrets.append((await hooks.create(receiver.url, ["presence.join"]))["secret"])
        for user in ("u1", "u2", "u3"):
            await hooks.beat("doc-m", user)
        await until(lambda: _joins(receiver, "doc-m") == ["u1", "u2", "u3"], what="three joins")
        await until(lambda: _unacknowledged(sync_redis) == 0, what="the entries acknowledged")
        assert len(receiver.attempts) == 3  # each once: nothing was retried


async def test_order_holds_when_a_held_delivery_fails_behind_queued_ones(
    make_hooks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lane with room for one delivery: the first join is held (and hangs past the
    # timeout), the next ones go to the database; the first's retry must still come first.
    monkeypatch.setattr(lane, "MEMORY_MAX", 1)
    hooks = await make_hooks(webhook_timeout_s=0.5)
    async with receiving() as receiver:
        receiver.behave = lambda event_id, body, n: (
            "hang" if body["data"].get("userId") == "u1" and n == 1 else None
        )
        receiver.secrets.append((await hooks.create(receiver.url, ["presence.join"]))["secret"])
        users = [f"u{i}" for i in range(1, 6)]
        for user in users:
            await hooks.beat("doc-o", user)
        await until(lambda: len(_joins(receiver, "doc-o")) == 5, what="five joins")
        assert _joins(receiver, "doc-o") == users
        first = [t for i, t in receiver.attempts if i == receiver.unique()[0].event_id]
        assert len(first) == 2  # hung once, then retried


async def test_a_hanging_endpoint_has_its_waiting_deliveries_kept_in_the_database(
    make_hooks: Any, sync_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lane, "SPILL_S", 0.3)
    hooks = await make_hooks(
        webhook_timeout_s=6.0, webhook_concurrency=1, webhook_retry_schedule=(0.1,) * 20
    )
    async with receiving() as receiver:
        hanging = True
        receiver.behave = lambda event_id, body, n: "hang" if hanging else None
        receiver.secrets.append((await hooks.create(receiver.url, ["presence.join"]))["secret"])
        for artifact in ("doc-h1", "doc-h2"):
            for user in ("u1", "u2", "u3"):
                await hooks.beat(artifact, user)
        await until(lambda: len(receiver.attempts) >= 1, what="a first attempt")
        # Held in the database, not in the worker: the entries are acknowledged while the
        # first delivery still hangs (all but the one behind it, before its 6 s timeout).
        await until(
            lambda: _unacknowledged(sync_redis) <= 1, timeout_s=5, what="entries acknowledged"
        )
        assert len(receiver.attempts) == 1
        assert receiver.got == []
        hanging = False
        await until(
            lambda: all(len(_joins(receiver, a)) == 3 for a in ("doc-h1", "doc-h2")),
            timeout_s=30,
            what="every join once the endpoint answers",
        )
        for artifact in ("doc-h1", "doc-h2"):
            assert _joins(receiver, artifact) == ["u1", "u2", "u3"]


async def test_deliveries_held_when_an_endpoint_is_disabled_wait_for_it(
    make_hooks: Any, sync_redis: redis.Redis
) -> None:
    hooks = await make_hooks(webhook_timeout_s=30.0, webhook_concurrency=1)
    async with receiving() as receiver:
        hanging = True
        receiver.behave = lambda event_id, body, n: "hang" if hanging else None
        made = await hooks.create(receiver.url, ["presence.join"])
        receiver.secrets.append(made["secret"])
        path = f"/v1/webhooks/{made['webhookId']}"
        for user in ("u1", "u2", "u3"):
            await hooks.beat("doc-d", user)
        await until(lambda: len(receiver.attempts) == 1, what="the first delivery under way")
        await hooks.call("PATCH", path, json={"enabled": False})
        # Kept in the database for the endpoint, so the entries are acknowledged.
        await until(lambda: _unacknowledged(sync_redis) == 0, what="entries acknowledged")
        hanging = False
        await hooks.call("PATCH", path, json={"enabled": True})
        # The first join waits out its first retry step (5 s +-20 %) after the parking.
        await until(
            lambda: len(_joins(receiver, "doc-d")) == 3, timeout_s=45, what="the three joins"
        )
        assert _joins(receiver, "doc-d") == ["u1", "u2", "u3"]


async def test_events_from_before_a_disable_read_after_it_still_wait_for_the_endpoint(
    make_hooks: Any, sync_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker reads the three joins only after the endpoint was disabled: they happened
    # while it was enabled, so they wait for it; a join from after the disable does not.
    reading = True
    intake = WebhookDispatcher.intake

    async def held_back(self: WebhookDispatcher) -> int:
        return await intake(self) if reading else 0

    monkeypatch.setattr(WebhookDispatcher, "intake", held_back)
    hooks = await make_hooks()
    async with receiving() as receiver:
        made = await hooks.create(receiver.url, ["presence.join"])
        receiver.secrets.append(made["secret"])
        path = f"/v1/webhooks/{made['webhookId']}"
        await hooks.beat("doc-b", "u0")
        await until(lambda: _joins(receiver, "doc-b") == ["u0"], what="the first join")
        reading = False
        for user in ("u1", "u2", "u3"):
            await hooks.beat("doc-b", user)
        await hooks.call("PATCH", path, json={"enabled": False})
        await hooks.beat("doc-b", "u4")  # while disabled: never delivered
        reading = True
        await until(lambda: _unread(sync_redis) == 0, what="every entry read")
        await until(lambda: _unacknowledged(sync_redis) == 0, what="the entries acknowledged")
        body = await hooks.call("GET", path)
        assert body["health"]["pending"] == 3, body
        assert _joins(receiver, "doc-b") == ["u0"]
        await hooks.call("PATCH", path, json={"enabled": True})
        await until(lambda: len(_joins(receiver, "doc-b")) == 4, what="the three held joins")
        await until(lambda: _unacknowledged(sync_redis) == 0, what="nothing held back")
        assert _joins(receiver, "doc-b") == ["u0", "u1", "u2", "u3"]


async def test_a_slow_endpoint_has_its_waiting_deliveries_kept_in_the_database(
    make_hooks: Any, sync_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An endpoint that answers, slowly: what waits behind it in memory goes to the database
    # after SPILL_S all the same (so an erasure, which rewrites the database's queue after
    # waiting out what is in flight, finds the user's deliveries there), in order.
    monkeypatch.setattr(lane, "SPILL_S", 0.3)
    hooks = await make_hooks(webhook_concurrency=1)
    async with receiving() as receiver:
        receiver.behave = lambda event_id, body, n: "slow"
        receiver.secrets.append((await hooks.create(receiver.url, ["presence.join"]))["secret"])
        users = [f"u{i}" for i in range(1, 7)]
        for user in users:
            await hooks.beat("doc-s", user)
        await until(lambda: len(receiver.attempts) >= 1, what="a first attempt")
        # In the database, not in the worker: the entries are acknowledged long before
        # the six slow answers (a second each) are in.
        # (Polled with a generous deadline: the order is what is asserted, not the speed.)
        await until(
            lambda: _unacknowledged(sync_redis) <= 1, timeout_s=30, what="entries acknowledged"
        )
        assert len(receiver.got) < 5
        await until(lambda: len(_joins(receiver, "doc-s")) == 6, timeout_s=30, what="six joins")
        assert _joins(receiver, "doc-s") == users


class HeldWrite:
    """The lane's first write of memory deliveries to the database held open (as a slow
    database would) until ``release``; ``held``: the deliveries lanes took into memory."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.writing, self.release = asyncio.Event(), asyncio.Event()
        self.held: list[str] = []
        park, take = WebhookStore.park, lane.Lane.take

        async def slow_park(store: WebhookStore, *args: Any, **kwargs: Any) -> bool:
            if not self.writing.is_set():
                self.writing.set()
                await self.release.wait()
            return await park(store, *args, **kwargs)

        def counted_take(held_by: lane.Lane, fresh: Fresh) -> bool:
            taken = take(held_by, fresh)
            if taken:
                self.held.append(fresh.event_id)
            return taken

        monkeypatch.setattr(WebhookStore, "park", slow_park)
        monkeypatch.setattr(lane.Lane, "take", counted_take)

    async def released_in_order(
        self, receiver: Receiver, sync_redis: redis.Redis, artifact: str, timeout_s: float
    ) -> None:
        """Release the write: u1, u2 and u3's joins of ``artifact`` then arrive in that
        order, and every stream entry is acknowledged."""
        self.release.set()
        await until(
            lambda: len(_joins(receiver, artifact)) == 3,
            timeout_s=timeout_s,
            what="the three joins",
        )
        assert _joins(receiver, artifact) == ["u1", "u2", "u3"]
        await until(lambda: _unacknowledged(sync_redis) == 0, what="the entries acknowledged")


async def test_events_that_come_while_a_failure_is_written_are_delivered_behind_it(
    make_hooks: Any, sync_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first join fails; while its retry is being written, the next joins of the same
    # artifact reach the lane, which holds them in memory as the artifact has no rows yet.
    # They must follow the retry, not vanish with the artifact's line (under load, the two
    # events of one entry did).
    write = HeldWrite(monkeypatch)
    hooks = await make_hooks(webhook_timeout_s=5.0)
    async with receiving() as receiver:
        receiver.behave = lambda event_id, body, n: (
            web.Response(status=500) if body["data"]["userId"] == "u1" and n == 1 else None
        )
        receiver.secrets.append((await hooks.create(receiver.url, ["presence.join"]))["secret"])
        await hooks.beat("doc-w", "u1")
        await until(write.writing.is_set, what="the failed first join being written")
        for user in ("u2", "u3"):
            await hooks.beat("doc-w", user)
        await until(lambda: len(write.held) == 3, what="the two later joins held in memory")
        await write.released_in_order(receiver, sync_redis, "doc-w", timeout_s=20)


async def test_events_that_come_while_a_slow_endpoints_queue_is_written_follow_it(
    make_hooks: Any, sync_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A slow endpoint: the join waiting behind the one in flight goes to the database
    # after SPILL_S; a join that comes while that is written must follow it there.
    monkeypatch.setattr(lane, "SPILL_S", 0.3)
    write = HeldWrite(monkeypatch)
    hooks = await make_hooks(webhook_concurrency=1, webhook_timeout_s=5.0)
    async with receiving() as receiver:
        receiver.behave = lambda event_id, body, n: "slow"
        receiver.secrets.append((await hooks.create(receiver.url, ["presence.join"]))["secret"])
        for user in ("u1", "u2"):
            await hooks.beat("doc-x", user)
        await until(write.writing.is_set, what="the waiting join being written")
        await hooks.beat("doc-x", "u3")
        await until(lambda: len(write.held) == 3, what="the later join held in memory")
        await write.released_in_order(receiver, sync_redis, "doc-x", timeout_s=30)


async def test_an_event_behind_a_row_still_being_written_is_not_sent_ahead_of_it(
    make_hooks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # u1's join goes to the database (the lane has no room at that moment). While that
    # write is under way, the lane reads its queue whole and does not find the row yet.
    # With room again, u2's join must still go behind u1's row, not ahead of it from memory.
    monkeypatch.setattr(lane, "MEMORY_MAX", 0)
    writing, committed, handed_both = asyncio.Event(), asyncio.Event(), asyncio.Event()
    full_reads = 0
    handed: list[str] = []
    enqueue, pending, take = WebhookStore.enqueue, WebhookStore.pending, lane.Lane.take

    async def held_enqueue(store: WebhookStore, deliveries: Any) -> int:
        if not committed.is_set() and any(d.artifact_id == "doc-t" for d in deliveries):
            writing.set()
            await committed.wait()
        return await enqueue(store, deliveries)

    async def watched_pending(store: WebhookStore, endpoint_id: str, after: int, n: int) -> Any:
        nonlocal full_reads
        if committed.is_set():  # the lane reads the row only once u2 was handed out
            await asyncio.wait_for(handed_both.wait(), 20)
        rows = await pending(store, endpoint_id, after, n)
        full_reads += after == 0
        return rows

    def watched_take(held_by: lane.Lane, fresh: Fresh) -> bool:
        handed.append(fresh.event_id)
        if len(handed) == 2:
            handed_both.set()
        return take(held_by, fresh)

    monkeypatch.setattr(WebhookStore, "enqueue", held_enqueue)
    monkeypatch.setattr(WebhookStore, "pending", watched_pending)
    monkeypatch.setattr(lane.Lane, "take", watched_take)
    hooks = await make_hooks()
    async with receiving() as receiver:
        receiver.secrets.append((await hooks.create(receiver.url, ["presence.join"]))["secret"])
        await hooks.beat("doc-t", "u1")
        await until(writing.is_set, what="u1's join being written")
        reads = full_reads
        await until(lambda: full_reads >= reads + 2, what="a whole read of the queue meanwhile")
        monkeypatch.setattr(lane, "MEMORY_MAX", 4096)
        await hooks.beat("doc-t", "u2")
        committed.set()
        await until(lambda: len(_joins(receiver, "doc-t")) == 2, what="the two joins")
        assert _joins(receiver, "doc-t") == ["u1", "u2"]
