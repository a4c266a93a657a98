"""The worker's webhook dispatcher: outbox and views entries -> queued deliveries ->
HTTP, at least once, in order per artifact and endpoint.

One worker at a time dispatches (the one the live-workers list elects for ``webhooks``,
as the sweeper elects partition owners), so order per artifact holds. Intake: read the
streams through the ``webhooks`` group, derive the events, queue one delivery per
subscribed endpoint in one database transaction, and only then acknowledge the entries.
Delivery: one lane per endpoint, each with its own queue (in the database) and at most
``PRESENCE_WEBHOOK_CONCURRENCY`` requests in flight, never two of one artifact; a slow or
dead endpoint holds only its own lane.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError, ResponseError

from presence_svc import metrics
from presence_svc.db.errors import DatabaseUnavailable
from presence_svc.live.events.interval import LargeRooms
from presence_svc.live.sweeper import owner_of
from presence_svc.redis.connection import RedisConnection, StreamEntry
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import Settings
from presence_svc.webhooks.catalogue import VIEWER_TYPES, sources_of
from presence_svc.webhooks.events import Event, PresenceEvents, view_event
from presence_svc.webhooks.schedule import RetrySchedule
from presence_svc.webhooks.sender import Outcome, Sender
from presence_svc.webhooks.store import Delivery, Endpoint, NewDelivery, WebhookStore
from presence_svc.webhooks.streams import GROUP, WebhookStreams

__all__ = ["REFRESH_S", "WebhookDispatcher"]

log = logging.getLogger(__name__)

REFRESH_S = 1.0
"""How often the endpoints are read again (a change by the API applies within this)."""
DROP_AFTER_S = 60.0
"""The streams go once no endpoint has wanted them this long: not at once, as the API
makes them for a new endpoint right after committing it, and a refresh that read the
endpoints just before that commit must not drop them again."""
READ_COUNT = 500
PAGE = 1000
"""Pending deliveries a lane reads at once."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _outcome(task: asyncio.Task[Outcome]) -> Outcome:
    """A send that raised (a bug, not the receiver) counts as a failed attempt, so its
    artifact is never left waiting on it."""
    if task.cancelled():
        return Outcome("connection", error="cancelled")
    exc = task.exception()
    if exc is not None:
        return Outcome("connection", error=f"{type(exc).__name__}: {exc}"[:300])
    return task.result()


class Lane:
    """One endpoint's deliveries, in order per artifact, a few at once.

    It reads its queue a page at a time (oldest first) into one line per artifact, sends
    the head of each line (at most ``PRESENCE_WEBHOOK_CONCURRENCY`` at once), and on a 2xx
    sends that artifact's next at once; a failure puts the artifact's line back in the
    database's hands (its head waits for its retry, the rest behind it). Deliveries that
    succeeded are deleted in batches: a crash before that only sends them again.
    """

    def __init__(self, dispatcher: WebhookDispatcher, endpoint: Endpoint) -> None:
        self.d = dispatcher
        self.endpoint = endpoint
        self.wake = asyncio.Event()
        self.wake.set()
        self.failing_since_ms = endpoint.failing_since_ms
        self._lines: dict[str, collections.deque[Delivery]] = {}
        self._known: set[int] = set()
        """Seqs read from the queue and not yet deleted or given back."""
        self._blocked: set[str] = set()
        """Artifacts with a delivery in flight."""
        self._waiting: set[str] = set()
        """Artifacts whose oldest pending delivery waits for its retry."""
        self._last_seq = 0
        self._next_full = 0.0
        self._retry_at_ms: int | None = None
        """When the earliest retry the last full read saw falls due."""
        self._done: list[Delivery] = []
        self._done_since = 0.0
        self.task = asyncio.create_task(self.run(), name=f"webhook-lane-{endpoint.endpoint_id}")

    async def run(self) -> None:
        flying: dict[asyncio.Task[Outcome], Delivery] = {}
        try:
            while True:
                try:
                    await self._round(flying)
                except DatabaseUnavailable as exc:
                    log.warning("webhooks: database unavailable", extra={"error": str(exc)})
                    await asyncio.sleep(1.0)
                except Exception:
                    log.exception("webhooks: lane failed a round; retrying")
                    await asyncio.sleep(1.0)
        finally:
            for task in flying:
                task.cancel()

    async def _round(self, flying: dict[asyncio.Task[Outcome], Delivery]) -> None:
        limit = self.d.settings.webhook_concurrency
        if len(flying) < limit:
            retry_due = self._retry_at_ms is not None and _now_ms() >= self._retry_at_ms
            if time.monotonic() >= self._next_full or retry_due or not (self._lines or flying):
                self.wake.clear()
                await self._read(full=True)
            elif self.wake.is_set() and sum(map(len, self._lines.values())) < PAGE:
                self.wake.clear()
                await self._read(full=False)
        for artifact in list(self._lines):
            if len(flying) >= limit:
                break
            if artifact in self._blocked:
                continue
            line = self._lines[artifact]
            delivery = line.popleft()
            if not line:
                del self._lines[artifact]
            self._blocked.add(artifact)
            secrets = self.endpoint.secrets(_now_ms())
            send = self.d.sender.send(
                self.endpoint.url, secrets, delivery.event_id, delivery.body.encode()
            )
            flying[asyncio.create_task(send)] = delivery
        await self._wait(flying)
        ended = [t for t in flying if t.done()]
        await self._record([(flying.pop(t), _outcome(t)) for t in ended])
        if self._done and (len(self._done) >= 200 or time.monotonic() - self._done_since > 0.05):
            await self._flush()

    async def _read(self, *, full: bool) -> None:
        """Pending deliveries into the artifacts' lines: new ones only, or (``full``,
        every second and after a failure) the queue from its start, where retries fall
        due. An artifact whose oldest delivery is not due yet waits whole behind it."""
        now = _now_ms()
        if full:
            self._waiting = set()
            self._next_full = time.monotonic() + REFRESH_S
            self._retry_at_ms = None
        after = 0 if full else self._last_seq
        for delivery in await self.d.store.pending(self.endpoint.endpoint_id, after, PAGE):
            self._last_seq = max(self._last_seq, delivery.seq)
            artifact = delivery.artifact_id
            if delivery.seq in self._known or artifact in self._waiting:
                continue
            if delivery.next_at_ms > now:
                self._waiting.add(artifact)
                if self._retry_at_ms is None or delivery.next_at_ms < self._retry_at_ms:
                    self._retry_at_ms = delivery.next_at_ms
                continue
            self._known.add(delivery.seq)
            self._lines.setdefault(artifact, collections.deque()).append(delivery)

    async def _wait(self, flying: dict[asyncio.Task[Outcome], Delivery]) -> None:
        """Until a delivery ends or new ones are queued (at most a second, or until the
        batch of done deliveries is due to be written)."""
        if len(flying) < self.d.settings.webhook_concurrency and any(
            a not in self._blocked for a in self._lines
        ):
            return
        timeout = 0.05 if self._done else REFRESH_S
        if self._retry_at_ms is not None:
            timeout = min(timeout, max(0.0, (self._retry_at_ms - _now_ms()) / 1000))
        if len(flying) >= self.d.settings.webhook_concurrency:
            # Full: only an ending delivery frees a slot (new ones wait in the queue).
            await asyncio.wait(flying, timeout=timeout, return_when="FIRST_COMPLETED")
            return
        waiter = asyncio.ensure_future(self.wake.wait())
        try:
            await asyncio.wait({*flying, waiter}, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            waiter.cancel()

    async def _record(self, ended: Sequence[tuple[Delivery, Outcome]]) -> None:
        now = _now_ms()
        for delivery, outcome in ended:
            if outcome.ok:
                metrics.WEBHOOK_DELIVERIES.labels("delivered").inc()
                age_s = max(0.0, (now - delivery.created_at_ms) / 1000)
                metrics.WEBHOOK_DELIVERY_SECONDS.observe(age_s)
                if not self._done:
                    self._done_since = time.monotonic()
                self._done.append(delivery)
                self._blocked.discard(delivery.artifact_id)
                self.failing_since_ms = None
            else:
                await self._failed(delivery, outcome, now)

    async def _flush(self) -> None:
        done, self._done = self._done, []
        await self.d.store.delivered(self.endpoint.endpoint_id, [d.seq for d in done], _now_ms())
        self._known.difference_update(d.seq for d in done)

    async def _failed(self, delivery: Delivery, outcome: Outcome, now: int) -> None:
        metrics.WEBHOOK_DELIVERIES.labels(outcome.kind).inc()
        delay = self.d.schedule.delay_s(delivery.attempts + 1, outcome.retry_after_s)
        if delay is None:
            metrics.WEBHOOK_DELIVERIES.labels("failed").inc()
            log.warning(
                "webhook delivery failed for good; kept among the endpoint's failures",
                extra={"endpoint": delivery.endpoint_id, "event": delivery.event_id},
            )
        next_at = None if delay is None else now + int(delay * 1000)
        error = outcome.error or outcome.kind
        await self.d.store.attempt_failed(delivery, next_at_ms=next_at, error=error, now_ms=now)
        # The artifact's line goes back to the database: read again, in order, once due
        # (or, filed as a failure, without it).
        line = self._lines.pop(delivery.artifact_id, collections.deque())
        self._known.difference_update([delivery.seq, *(d.seq for d in line)])
        self._blocked.discard(delivery.artifact_id)
        self._waiting.add(delivery.artifact_id)
        self._next_full = 0.0
        if self.failing_since_ms is None:
            self.failing_since_ms = now
        failing_ms = now - self.failing_since_ms
        if failing_ms >= self.d.settings.webhook_disable_after_s * 1000 and self.endpoint.enabled:
            self.endpoint = await self.d.store.disable(self.endpoint, "failing", now)
            metrics.WEBHOOK_DISABLED.inc()
            log.warning(
                "webhook endpoint disabled: every delivery failed for too long",
                extra={"endpoint": delivery.endpoint_id, "failing_s": failing_ms / 1000},
            )
            self.d.drop_lane(delivery.endpoint_id)


class WebhookDispatcher:
    def __init__(
        self, redis: RedisConnection, store: WebhookStore, settings: Settings, owner: str
    ) -> None:
        self.redis = redis
        self.store = store
        self.settings = settings
        self.owner = owner
        self.keys = Keyspace(settings.partitions)
        self.streams = WebhookStreams(redis, self.keys)
        self.sender = Sender(
            timeout_s=settings.webhook_timeout_s, allow_private=settings.webhook_allow_private
        )
        self.schedule = RetrySchedule(settings.webhook_retry_schedule)
        self.rooms = LargeRooms(settings.large_room_users, settings.large_room_interval_s)
        self.lease_ms = int(settings.sweep_interval_s * 3000)
        self.presence = PresenceEvents(self.rooms)
        self.endpoints: list[Endpoint] = []
        self.lanes: dict[str, Lane] = {}
        self._measured: set[str] = set()
        self._unwanted_since: dict[str, float] = {}
        self._dropped: frozenset[str] = frozenset()
        """Sources whose streams this dispatcher dropped (once, not every refresh)."""
        self.leading = False
        self._reading: list[str] = []
        self._resume = True
        self._cursors: dict[str, bytes | str] = {}
        self._next_refresh = 0.0

    async def run(self, stopping: asyncio.Event) -> None:
        idle_s = 0.01
        while not stopping.is_set():
            read = 0
            try:
                if time.monotonic() >= self._next_refresh:
                    await self.refresh()
                    self._next_refresh = time.monotonic() + REFRESH_S
                if self.leading:
                    read = await self.intake()
            except (RedisError, OSError) as exc:
                log.warning("webhooks: redis unavailable", extra={"error": repr(exc)})
                self._resume, self._cursors, idle_s = True, {}, 1.0
                self._next_refresh = 0.0
            except DatabaseUnavailable as exc:
                log.warning("webhooks: database unavailable", extra={"error": str(exc)})
                self._resume, self._cursors, idle_s = True, {}, 1.0
            except Exception:
                log.exception("webhooks: dispatch round failed; it is retried")
                self._resume, self._cursors, idle_s = True, {}, 1.0
            if read:
                idle_s = 0.01
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), idle_s)
            idle_s = min(idle_s * 2, 0.05)
        await self.close()

    async def close(self) -> None:
        for endpoint_id in list(self.lanes):
            self.drop_lane(endpoint_id)
        await self.sender.close()

    # Leadership, endpoints, streams.

    async def refresh(self) -> None:
        call = self.redis.scripts.workers.call(self.keys.workers(), self.owner, self.lease_ms, True)
        live = [w.decode() if isinstance(w, bytes) else str(w) for w in await self.redis.run(call)]
        leading = owner_of("webhooks", live) == self.owner
        if leading != self.leading:
            log.info("webhooks: dispatching" if leading else "webhooks: another worker dispatches")
            self.leading, self._resume, self._cursors = leading, True, {}
        if not leading:
            for endpoint_id in list(self.lanes):
                self.drop_lane(endpoint_id)
            return
        self.endpoints = [e for e in await self.store.endpoints() if e.enabled]
        wanted = sources_of(frozenset().union(*(e.events for e in self.endpoints)))
        presence, views = "presence" in wanted, "views" in wanted
        now = time.monotonic()
        for source in ("presence", "views"):
            if source in wanted:
                self._unwanted_since.pop(source, None)
            else:
                self._unwanted_since.setdefault(source, now)
        drop = frozenset(
            s
            for s, since in self._unwanted_since.items()
            if now - since >= DROP_AFTER_S and s not in self._dropped
        )
        await self.streams.ensure(presence=presence, views=views, drop=drop)
        self._dropped = (self._dropped | drop) - wanted
        self._reading = (self.streams.outboxes if presence else []) + (
            self.streams.views if views else []
        )
        self._lanes_for_endpoints()
        if presence:
            await self._trim()
        await self._measure()

    def _lanes_for_endpoints(self) -> None:
        current = {e.endpoint_id: e for e in self.endpoints}
        for endpoint_id in list(self.lanes):
            if endpoint_id not in current:
                self.drop_lane(endpoint_id)
        for endpoint_id, endpoint in current.items():
            lane = self.lanes.get(endpoint_id)
            if lane is None:
                self.lanes[endpoint_id] = Lane(self, endpoint)
            else:
                lane.endpoint = endpoint

    def drop_lane(self, endpoint_id: str) -> None:
        lane = self.lanes.pop(endpoint_id, None)
        if lane is not None:
            lane.task.cancel()

    async def _measure(self) -> None:
        now = _now_ms()
        backlog = await self.store.backlog()
        for gone in self._measured - {e.endpoint_id for e in self.endpoints}:
            with contextlib.suppress(KeyError):
                metrics.WEBHOOK_BACKLOG.remove(gone)
                metrics.WEBHOOK_LAG_SECONDS.remove(gone)
        self._measured = {e.endpoint_id for e in self.endpoints}
        for endpoint in self.endpoints:
            found = backlog.get(endpoint.endpoint_id)
            pending = found.pending if found else 0
            oldest = found.oldest_ms if found else None
            metrics.WEBHOOK_BACKLOG.labels(endpoint.endpoint_id).set(pending)
            lag = 0.0 if oldest is None else max(0.0, (now - oldest) / 1000)
            metrics.WEBHOOK_LAG_SECONDS.labels(endpoint.endpoint_id).set(lag)

    # Intake.

    async def intake(self) -> int:
        """Read what is new (first, after a start or a failure, what this worker holds
        or some dead one held), queue its deliveries, acknowledge it; returns entries read."""
        if not self._reading:
            return 0
        if self._resume:
            return await self._resume_pending()
        replies = await self.redis.read_group(GROUP, self.owner, self._reading, READ_COUNT)
        batch: dict[str, list[StreamEntry]] = {}
        for stream, reply in zip(self._reading, replies, strict=True):
            if isinstance(reply, ResponseError):
                if "NOGROUP" in str(reply):  # lost (a Redis restart): made again
                    self._next_refresh = 0.0
                    continue
                raise reply
            if reply:
                batch[stream] = reply
        await self._queue(batch)
        return sum(map(len, batch.values()))

    async def _resume_pending(self) -> int:
        """Everything the group still has pending, taken over and queued, page by page
        (a cursor per stream, so entries held by an open interval are read once)."""
        if not self._cursors:
            await self._claim_all()
            self.presence = PresenceEvents(self.rooms)
            self._cursors = {stream: "0" for stream in self._reading}
        pipe = self.redis.client.pipeline(transaction=False)
        streams = list(self._cursors)
        for stream in streams:
            pipe.xreadgroup(GROUP, self.owner, {stream: self._cursors[stream]}, count=READ_COUNT)
        batch: dict[str, list[StreamEntry]] = {}
        for stream, reply in zip(streams, await pipe.execute(raise_on_error=False), strict=True):
            entries = [] if isinstance(reply, Exception) or not reply else reply[0][1]
            live = [(i, _flat(f)) for i, f in entries if f]
            if live:
                batch[stream] = live
            if entries:
                self._cursors[stream] = entries[-1][0]
            else:
                del self._cursors[stream]
        await self._queue(batch)
        if not self._cursors:
            self._resume = False
        return max(1, sum(map(len, batch.values())))

    async def _claim_all(self) -> None:
        """Take over every entry of the group still pending: only the dispatcher reads,
        so whoever held them is gone (or was, until this one took over)."""
        pipe = self.redis.client.pipeline(transaction=False)
        for stream in self._reading:
            pipe.execute_command("XAUTOCLAIM", stream, GROUP, self.owner, 0, "0-0", "COUNT", 100000)
        await pipe.execute(raise_on_error=False)

    async def _queue(self, batch: dict[str, list[StreamEntry]]) -> None:
        events, acks = self._derive(batch)
        await self._hide_viewers(events)
        if events:
            # Read again now: an endpoint created just before these entries were written
            # gets them (its POST's answer promised so), whatever the last refresh saw.
            self.endpoints = [e for e in await self.store.endpoints() if e.enabled]
            self._lanes_for_endpoints()
        deliveries = self._deliveries(events)
        await self.store.enqueue(deliveries)  # committed before the entries are acknowledged
        if acks:
            await self.redis.ack(GROUP, acks)
        for endpoint_id in {d.endpoint_id for d in deliveries}:
            lane = self.lanes.get(endpoint_id)
            if lane is not None:
                lane.wake.set()

    async def _hide_viewers(self, events: Sequence[Event]) -> None:
        """``view.counted`` (and ``version.seen`` / ``read``: ``VIEWER_TYPES``) of a user
        whose view history is hidden goes out without the user (``userId`` null): the view
        counts, who viewed is listed to nobody. Read from the privacy mirror every API
        process keeps (one HMGET per batch)."""
        views = [e for e in events if e.event_type in VIEWER_TYPES and e.data["userId"]]
        if not views:
            return
        users = sorted({str(e.data["userId"]) for e in views})
        flags = await self.redis.client.hmget(Keyspace.hidden_users(), users)
        hidden = {u for u, f in zip(users, flags, strict=True) if f and int(f) & 1}
        for event in views:
            if event.data["userId"] in hidden:
                event.data["userId"] = None

    def _derive(
        self, batch: dict[str, list[StreamEntry]]
    ) -> tuple[list[Event], dict[str, list[bytes]]]:
        """The batch's events (and the intervals that ended), and the entries to
        acknowledge once they are queued (not those an open interval holds)."""
        events: list[Event] = []
        acks: dict[str, list[bytes]] = {}
        outboxes = set(self.streams.outboxes)
        for stream, entries in batch.items():
            for entry_id, fields in entries:
                held = False
                try:
                    if stream in outboxes:
                        found, held = self.presence.derive((stream, entry_id), fields)
                        events += found
                    else:
                        events.append(view_event(fields))
                except ValueError as exc:
                    log.error(
                        "webhooks: skipped an entry that is not an event",
                        extra={"stream": stream, "entry": entry_id.decode(), "reason": str(exc)},
                    )
                if not held:
                    acks.setdefault(stream, []).append(entry_id)
        for event, refs in self.presence.flush(_now_ms()):
            if event is not None:
                events.append(event)
            for stream, entry_id in refs:
                acks.setdefault(stream, []).append(entry_id)
        return events, acks

    def _deliveries(self, events: Sequence[Event]) -> list[NewDelivery]:
        out: list[NewDelivery] = []
        for event in events:
            body: str | None = None
            for endpoint in self.endpoints:
                if endpoint.wants(event.event_type, event.artifact_id):
                    body = body or event.body()
                    out.append(
                        NewDelivery(
                            endpoint.endpoint_id,
                            event.event_id,
                            event.event_type,
                            event.artifact_id,
                            body,
                            event.at_ms,
                        )
                    )
        return out

    async def _trim(self) -> None:
        """The outboxes are only this group's: drop what it acknowledged. (The views
        streams are trimmed by the ledger drain, which keeps what this group still needs.)"""
        trim = self.redis.scripts.trim_stream
        results: list[Any] = await self.redis.run_many(
            [trim.call(s) for s in self.streams.outboxes]
        )
        for result in results:
            if isinstance(result, Exception):
                raise result


def _flat(fields: dict[bytes, bytes]) -> list[bytes]:
    return [item for pair in fields.items() for item in pair]
