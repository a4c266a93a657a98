"""The worker's webhook dispatcher: outbox and views entries -> deliveries -> HTTP, at
least once, in order per artifact and endpoint.

One worker at a time dispatches (the one the live-workers list elects for ``webhooks``,
as the sweeper elects partition owners), so order per artifact holds. Intake: read the
streams through the ``webhooks`` group, derive the events, and hand each subscribed
endpoint's lane its delivery, held in memory (``lane``); an entry is acknowledged once
each of its deliveries got a 2xx or was committed to the database (a failure waiting for
its retry, or what a lane had no room for: ``tickets``). A worker killed before that
leaves the entry pending; the next reads it again.
Delivery: one lane per endpoint, each with its own HTTP session and at most
``PRESENCE_WEBHOOK_CONCURRENCY`` requests in flight, never two of one artifact; a slow or
dead endpoint holds only its own lane.
"""

from __future__ import annotations

import asyncio
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
from presence_svc.webhooks.lane import REFRESH_S, Lane, Retire
from presence_svc.webhooks.schedule import RetrySchedule
from presence_svc.webhooks.store import Endpoint, NewDelivery, WebhookStore
from presence_svc.webhooks.streams import GROUP, WebhookStreams
from presence_svc.webhooks.tickets import Fresh, Ticket

__all__ = ["REFRESH_S", "WebhookDispatcher"]

log = logging.getLogger(__name__)

DROP_AFTER_S = 60.0
"""The streams go once no endpoint has wanted them this long: not at once, as the API
makes them for a new endpoint right after committing it, and a refresh that read the
endpoints just before that commit must not drop them again."""
READ_COUNT = 500
READY_TIMEOUT_S = 10.0
"""How long intake waits for a new lane's first read of its queue."""


def _now_ms() -> int:
    return int(time.time() * 1000)


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
        self.schedule = RetrySchedule(settings.webhook_retry_schedule)
        self.rooms = LargeRooms(settings.large_room_users, settings.large_room_interval_s)
        self.lease_ms = int(settings.sweep_interval_s * 3000)
        self.presence = PresenceEvents(self.rooms)
        self.endpoints: list[Endpoint] = []
        self._disabled: list[Endpoint] = []
        """Disabled endpoints: an event from before one was disabled, read only since, is
        still queued for it (in the database, where its queue waits to be enabled)."""
        self._existing: set[str] = set()
        """Every endpoint's id, disabled ones included (a lane dropped for one of these
        keeps its deliveries; one dropped for a deleted endpoint forgets them)."""
        self.lanes: dict[str, Lane] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._holding: set[tuple[str, bytes]] = set()
        """Entries read whose deliveries are not all settled yet (a resume skips them)."""
        self._to_ack: dict[str, list[bytes]] = {}
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
                if self._to_ack:
                    await self._ack()
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
            self.drop_lane(endpoint_id, "abandon")
        if self._retiring:
            await asyncio.wait(self._retiring, timeout=5)

    # Leadership, endpoints, streams.

    async def refresh(self) -> None:
        call = self.redis.scripts.workers.call(self.keys.workers(), self.owner, self.lease_ms, True)
        live = [w.decode() if isinstance(w, bytes) else str(w) for w in await self.redis.run(call)]
        leading = owner_of("webhooks", live) == self.owner
        if leading != self.leading:
            log.info("webhooks: dispatching" if leading else "webhooks: another worker dispatches")
            self.leading, self._resume, self._cursors = leading, True, {}
            self._holding, self._to_ack = set(), {}
        if not leading:
            for endpoint_id in list(self.lanes):
                self.drop_lane(endpoint_id, "abandon")
            return
        await self._read_endpoints()
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

    async def _read_endpoints(self) -> None:
        every = await self.store.endpoints()
        self._existing = {e.endpoint_id for e in every}
        self.endpoints = [e for e in every if e.enabled]
        self._disabled = [e for e in every if not e.enabled and e.disabled_at_ms is not None]

    def _lanes_for_endpoints(self) -> None:
        current = {e.endpoint_id: e for e in self.endpoints}
        for endpoint_id in list(self.lanes):
            if endpoint_id not in current:
                self.drop_lane(endpoint_id, "park" if endpoint_id in self._existing else "discard")
        for endpoint_id, endpoint in current.items():
            lane = self.lanes.get(endpoint_id)
            if lane is None:
                self.lanes[endpoint_id] = Lane(self, endpoint)
            else:
                lane.endpoint = endpoint

    def drop_lane(self, endpoint_id: str, how: Retire) -> None:
        lane = self.lanes.pop(endpoint_id, None)
        if lane is not None:
            task = asyncio.create_task(lane.retire(how), name=f"webhook-retire-{endpoint_id}")
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _ready(self) -> None:
        """Every lane has read its queue once (so it knows the artifacts with rows
        there, whose new events must go behind them)."""
        for lane in list(self.lanes.values()):
            if not lane.ready.is_set():
                try:
                    await asyncio.wait_for(lane.ready.wait(), READY_TIMEOUT_S)
                except TimeoutError as exc:
                    raise DatabaseUnavailable("a webhook lane could not read its queue") from exc

    async def _retired(self) -> None:
        """Every lane being retired has parked what it held in memory: a disabled
        endpoint's next rows go behind those, so its queue keeps each artifact's order."""
        if not self._retiring:
            return
        _, waiting = await asyncio.wait(set(self._retiring), timeout=READY_TIMEOUT_S)
        if waiting:
            raise DatabaseUnavailable("a disabled webhook endpoint's queue could not be written")

    def _settled(self, ticket: Ticket) -> None:
        for stream, ids in ticket.acks.items():
            self._to_ack.setdefault(stream, []).extend(ids)
            self._holding.difference_update((stream, i) for i in ids)

    async def _ack(self) -> None:
        """Acknowledge the entries whose deliveries all settled (if this fails, they stay
        pending: read again after a restart, delivered twice at worst)."""
        acks, self._to_ack = self._to_ack, {}
        await self.redis.ack(GROUP, acks)

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
            lane = self.lanes.get(endpoint.endpoint_id)
            if lane is not None:
                pending += lane.fresh
                held = lane.oldest_fresh_ms()
                if held is not None and (oldest is None or held < oldest):
                    oldest = held
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
            # Entries whose deliveries this worker still holds are not derived again.
            live = [(i, _flat(f)) for i, f in entries if f and (stream, i) not in self._holding]
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
        derived = self._derive(batch)
        events = [e for e, _ in derived if e is not None]
        await self._hide_viewers(events)
        if events:
            # Read again now: an endpoint created just before these entries were written
            # gets them (its POST's answer promised so), whatever the last refresh saw.
            await self._read_endpoints()
            self._lanes_for_endpoints()
            await self._ready()
            await self._retired()
        # Each ticket holds one count of its own until the deliveries that go to the
        # database are committed: its entries are acknowledged after that, not before.
        tickets = list({id(t): t for _, t in derived}.values())
        refs = []
        for ticket in tickets:
            ticket.count = 1
            refs += [(stream, i) for stream, ids in ticket.acks.items() for i in ids]
        self._holding.update(refs)
        queued = self._hand_out(derived)
        try:
            await self.store.enqueue(queued)
        except BaseException:
            self._holding.difference_update(refs)  # read again on the resume that follows
            raise
        for ticket in tickets:
            ticket.settle()
        for endpoint_id in {d.endpoint_id for d in queued}:
            lane = self.lanes.get(endpoint_id)
            if lane is not None:
                lane.queued()

    def _hand_out(self, derived: Sequence[tuple[Event | None, Ticket]]) -> list[NewDelivery]:
        """Each event to its endpoints' lanes; returns the deliveries a lane did not
        take (they go to the database), with those for endpoints disabled after it."""
        out: list[NewDelivery] = []
        for event, ticket in derived:
            if event is None:
                continue
            text: str | None = None
            body = b""
            for endpoint in self.endpoints:
                if not endpoint.wants(event.event_type, event.artifact_id):
                    continue
                if text is None:
                    text = event.body()
                    body = text.encode()
                lane = self.lanes[endpoint.endpoint_id]
                fresh = Fresh(
                    event.event_id, event.event_type, event.artifact_id, body, event.at_ms, ticket
                )
                if not ticket.acks:
                    lane.divert(event.artifact_id)
                elif lane.take(fresh):
                    ticket.count += 1
                    continue
                out.append(_delivery(endpoint, event, text))
            for endpoint in self._disabled:
                # Disabled after the event happened (the worker read it only since).
                if event.at_ms <= (endpoint.disabled_at_ms or 0) and endpoint.wants(
                    event.event_type, event.artifact_id
                ):
                    text = event.body() if text is None else text
                    out.append(_delivery(endpoint, event, text))
        return out

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

    def _derive(self, batch: dict[str, list[StreamEntry]]) -> list[tuple[Event | None, Ticket]]:
        """The batch's events (and the intervals that ended), each with the ticket of the
        entries it comes from (an entry with no event has one too, to be acknowledged;
        one an open interval holds has none yet: the interval's event gets it)."""
        out: list[tuple[Event | None, Ticket]] = []
        outboxes = set(self.streams.outboxes)
        for stream, entries in batch.items():
            for entry_id, fields in entries:
                held = False
                found: list[Event] = []
                try:
                    if stream in outboxes:
                        found, held = self.presence.derive((stream, entry_id), fields)
                    else:
                        found = [view_event(fields)]
                except ValueError as exc:
                    log.error(
                        "webhooks: skipped an entry that is not an event",
                        extra={"stream": stream, "entry": entry_id.decode(), "reason": str(exc)},
                    )
                if not held:
                    ticket = Ticket({stream: [entry_id]}, self._settled)
                    out += [(e, ticket) for e in found] or [(None, ticket)]
                elif found:
                    # An entry an open interval holds is acknowledged with the interval's
                    # event: its own events (an occupied) go to the database first.
                    out += [(e, Ticket({}, self._settled)) for e in found]
        for event, refs in self.presence.flush(_now_ms()):
            acks: dict[str, list[bytes]] = {}
            for stream, entry_id in refs:
                acks.setdefault(stream, []).append(entry_id)
            out.append((event, Ticket(acks, self._settled)))
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


def _delivery(endpoint: Endpoint, event: Event, body: str) -> NewDelivery:
    return NewDelivery(
        endpoint.endpoint_id,
        event.event_id,
        event.event_type,
        event.artifact_id,
        body,
        event.at_ms,
    )


def _flat(fields: dict[bytes, bytes]) -> list[bytes]:
    return [item for pair in fields.items() for item in pair]
