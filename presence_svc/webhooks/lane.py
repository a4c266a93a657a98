"""One endpoint's deliveries, in order per artifact, a few at once, each endpoint on its
own lane (its own HTTP session, queue and in-flight limit) so a slow or dead one delays
no other.

The happy path stays in memory: the dispatcher hands a lane each new event as a ``Fresh``
delivery; a 2xx settles it and nothing is written. The database holds what must wait:
a delivery that failed (with the artifact's next ones behind it, so order holds), what a
lane had no room for (over ``MEMORY_MAX`` held, or waiting longer than ``SPILL_S`` behind a
slow or stuck endpoint), and replayed failures. While an artifact has rows there, its new events
join them there (``take`` says no), and the lane reads them back in order, as due.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal

from presence_svc import metrics
from presence_svc.db.errors import DatabaseUnavailable
from presence_svc.tasks import cancel_and_wait
from presence_svc.webhooks.sender import Outcome, Sender
from presence_svc.webhooks.store import Delivery, Endpoint, NewDelivery
from presence_svc.webhooks.tickets import Fresh

if TYPE_CHECKING:
    from presence_svc.webhooks.dispatcher import WebhookDispatcher

__all__ = ["MEMORY_MAX", "PAGE", "REFRESH_S", "SPILL_S", "Lane", "Retire", "held_at_most_s"]

log = logging.getLogger(__name__)

REFRESH_S = 1.0
"""How often a lane reads its database queue from the start (retries falling due,
replayed failures)."""
PAGE = 1000
"""Pending deliveries a lane reads at once."""
MEMORY_MAX = 4096
"""Deliveries a lane holds in memory; beyond, new ones go to the database."""
SPILL_S = 5.0
"""A delivery that has waited this long in memory (behind a slow, hanging or down
endpoint) goes to the database with everything else the lane holds waiting, so the stream
entries behind them are acknowledged and the worker's memory stays small. It also bounds
how long a user's id can stay in memory only: an erasure waits for what is in flight
(``privacy.wiring``) and then rewrites the database's queue."""


def held_at_most_s(timeout_s: float) -> float:
    """How long a delivery may stay in a worker's memory before it is delivered or in the
    database: ``SPILL_S`` waiting, one attempt of ``timeout_s``, and a margin for a busy
    loop. An erasure that finds the user's events held waits this long."""
    return SPILL_S + timeout_s + 5.0


SUCCESS_EVERY_S = 1.0
"""How often a lane that delivers from memory records the endpoint's last success."""

Item = Fresh | Delivery
Retire = Literal["park", "discard", "abandon"]
"""What a dropped lane does with the deliveries it holds in memory: write them to the
database (its endpoint was disabled: they wait for it), settle them unsent (it was
deleted), or leave them (another worker takes over and reads their entries again)."""


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


def _row(
    endpoint_id: str, fresh: Fresh, *, next_at_ms: int | None = None, error: str | None = None
) -> NewDelivery:
    """``fresh`` as a queue row: untried, or (``error``) after its first failed attempt,
    due at ``next_at_ms`` (None with an error: filed as a failure)."""
    return NewDelivery(
        endpoint_id,
        fresh.event_id,
        fresh.event_type,
        fresh.artifact_id,
        fresh.body.decode(),
        fresh.created_at_ms,
        attempts=0 if error is None else 1,
        next_at_ms=next_at_ms,
        last_error=error,
        failed=error is not None and next_at_ms is None,
    )


class Lane:
    def __init__(self, dispatcher: WebhookDispatcher, endpoint: Endpoint) -> None:
        self.d = dispatcher
        self.endpoint = endpoint
        settings = dispatcher.settings
        self.limit = settings.webhook_concurrency
        self.sender = Sender(
            timeout_s=settings.webhook_timeout_s,
            allow_private=settings.webhook_allow_private,
            limit=self.limit,
        )
        self.wake = asyncio.Event()
        self.ready = asyncio.Event()
        """Set by the first full read of the queue: until then every event goes there."""
        self.failing_since_ms = endpoint.failing_since_ms
        self.fresh = 0
        """``Fresh`` deliveries held (waiting and in flight)."""
        self._lines: dict[str, collections.deque[Item]] = {}
        self._flying: dict[asyncio.Task[Outcome], Item] = {}
        self._known: set[int] = set()
        """Seqs read from the queue and not yet deleted or given back."""
        self._blocked: set[str] = set()
        """Artifacts with a delivery in flight."""
        self._waiting: set[str] = set()
        """Artifacts whose oldest pending delivery waits for its retry."""
        self._db: set[str] = set()
        """Artifacts with pending rows in the queue: their new events go there too."""
        self._db_since_read: set[str] = set()
        """Artifacts sent to the queue since the last full read began (or still being
        written then): a read that did not see their rows keeps them in ``_db`` all the same."""
        self._diverted: set[str] = set()
        """Artifacts the dispatcher sent to the queue whose rows it has not committed yet."""
        self._complete = False
        """The last full read saw the whole queue (so ``_db`` is exact)."""
        self._db_new = False
        self._last_seq = 0
        self._next_full = 0.0
        self._retry_at_ms: int | None = None
        """When the earliest retry the last full read saw falls due."""
        self._done: list[Delivery] = []
        self._done_since = 0.0
        self._succeeded = False
        self._success_at = 0.0
        self._success_ms = 0
        """When the latest 2xx came: the success written is that one (written late, it
        clears no failure that came after it)."""
        self._spill_check = 0.0
        self.task = asyncio.create_task(self.run(), name=f"webhook-lane-{endpoint.endpoint_id}")

    # What the dispatcher calls.

    def take(self, fresh: Fresh) -> bool:
        """Hold ``fresh`` in memory (True), or say it goes to the queue (False): its
        artifact has rows there, the lane is full, or the queue was not read whole."""
        artifact = fresh.artifact_id
        if not self._complete or artifact in self._db or self.fresh >= MEMORY_MAX:
            self.divert(artifact)
            return False
        line = self._lines.get(artifact)
        if line is None:
            line = self._lines[artifact] = collections.deque()
        fresh.queued = time.monotonic()
        line.append(fresh)
        self.fresh += 1
        self.wake.set()
        return True

    def divert(self, artifact: str) -> None:
        """The artifact's next delivery goes to the queue: so do the ones after it."""
        self._db.add(artifact)
        self._db_since_read.add(artifact)
        self._diverted.add(artifact)
        self._db_new = True
        self.wake.set()

    def queued(self) -> None:
        """Rows were committed to this lane's queue (every one diverted so far): read them."""
        self._diverted = set()
        self._db_new = True
        self.wake.set()

    def oldest_fresh_ms(self) -> int | None:
        """When the oldest event held in memory happened (for the lag metric)."""
        heads = [i for i in self._flying.values() if isinstance(i, Fresh)]
        heads += [line[0] for line in self._lines.values() if isinstance(line[0], Fresh)]
        return min((i.created_at_ms for i in heads), default=None)

    async def retire(self, how: Retire) -> None:
        """Stop the lane; then its memory deliveries are parked, discarded or left."""
        await cancel_and_wait(self.task)  # for sure: a cancellation can be lost on 3.11
        try:
            if how == "abandon":
                return
            held: dict[str, list[Fresh]] = {}
            for item in [*self._flying.values(), *(i for ln in self._lines.values() for i in ln)]:
                if isinstance(item, Fresh) and not item.settled:
                    held.setdefault(item.artifact_id, []).append(item)
            if how == "park":
                await self._park(held, behind=[a for a in held if a in self._db], retry=True)
            for items in held.values():
                for item in items:
                    item.settle()
        finally:
            await self.sender.close()

    # The lane's loop.

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self._round()
                except DatabaseUnavailable as exc:
                    log.warning("webhooks: database unavailable", extra={"error": str(exc)})
                    await asyncio.sleep(1.0)
                except Exception:
                    log.exception("webhooks: lane failed a round; retrying")
                    await asyncio.sleep(1.0)
        finally:
            for task in self._flying:
                task.cancel()

    async def _round(self) -> None:
        flying = self._flying
        if len(flying) < self.limit:
            retry_due = self._retry_at_ms is not None and _now_ms() >= self._retry_at_ms
            if time.monotonic() >= self._next_full or retry_due:
                await self._read(full=True)
            elif self._db_new and len(self._known) < PAGE:
                self._db_new = False
                await self._read(full=False)
        self.wake.clear()
        self._start()
        await self._wait()
        ended = [t for t in flying if t.done()]
        if ended:
            await self._record([(flying.pop(t), _outcome(t)) for t in ended])
        now = time.monotonic()
        if self._done and (len(self._done) >= 200 or now - self._done_since > 0.05):
            await self._flush()
        if self._succeeded and now - self._success_at >= SUCCESS_EVERY_S:
            self._succeeded, self._success_at = False, now
            await self.d.store.succeeded(self.endpoint.endpoint_id, self._success_ms)
        if now - self._spill_check >= 0.5:
            self._spill_check = now
            await self._spill_if_stuck(now)

    def _start(self) -> None:
        """Send the head of each artifact's line that has none in flight."""
        secrets = self.endpoint.secrets(_now_ms())
        url = self.endpoint.url
        for artifact in list(self._lines):
            if len(self._flying) >= self.limit:
                return
            if artifact in self._blocked:
                continue
            line = self._lines[artifact]
            item = line.popleft()
            if not line:
                del self._lines[artifact]
            self._blocked.add(artifact)
            body = item.body if isinstance(item, Fresh) else item.body.encode()
            send = self.sender.send(url, secrets, item.event_id, body)
            self._flying[asyncio.create_task(send)] = item

    async def _read(self, *, full: bool) -> None:
        """Pending deliveries into the artifacts' lines: new ones only, or (``full``,
        every second and after a failure) the queue from its start, where retries fall
        due. An artifact whose oldest delivery is not due yet waits whole behind it."""
        now = _now_ms()
        if full:
            self._waiting = set()
            self._next_full = time.monotonic() + REFRESH_S
            self._retry_at_ms = None
            # (not empty: rows being committed now may come after this read's look)
            self._db_since_read = set(self._diverted)
        after = 0 if full else self._last_seq
        rows = await self.d.store.pending(self.endpoint.endpoint_id, after, PAGE)
        seen: set[str] = set()
        for delivery in rows:
            self._last_seq = max(self._last_seq, delivery.seq)
            artifact = delivery.artifact_id
            seen.add(artifact)
            if delivery.seq in self._known or artifact in self._waiting:
                continue
            if delivery.next_at_ms > now:
                self._waiting.add(artifact)
                if self._retry_at_ms is None or delivery.next_at_ms < self._retry_at_ms:
                    self._retry_at_ms = delivery.next_at_ms
                continue
            self._known.add(delivery.seq)
            self._lines.setdefault(artifact, collections.deque()).append(delivery)
        if full and len(rows) < PAGE:
            held = [*self._flying.values(), *(i for ln in self._lines.values() for i in ln)]
            held_rows = {i.artifact_id for i in [*held, *self._done] if isinstance(i, Delivery)}
            self._db = seen | held_rows | self._db_since_read
            self._complete = True
        else:
            self._db |= seen
            self._complete = self._complete and not full
        if full:
            self.ready.set()

    async def _wait(self) -> None:
        """Until a delivery ends or new ones come (at most a second, or until the batch
        of done deliveries is due to be written)."""
        flying = self._flying
        if len(flying) < self.limit and any(a not in self._blocked for a in self._lines):
            return
        timeout = 0.05 if self._done else min(REFRESH_S, 0.5)
        if self._retry_at_ms is not None:
            timeout = min(timeout, max(0.0, (self._retry_at_ms - _now_ms()) / 1000))
        if len(flying) >= self.limit:
            # Full: only an ending delivery frees a slot (new ones wait in line).
            await asyncio.wait(flying, timeout=timeout, return_when="FIRST_COMPLETED")
            return
        waiter = asyncio.ensure_future(self.wake.wait())
        try:
            await asyncio.wait({*flying, waiter}, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            waiter.cancel()

    async def _record(self, ended: Sequence[tuple[Item, Outcome]]) -> None:
        now = _now_ms()
        delivered = 0
        for item, outcome in ended:
            if outcome.ok:
                delivered += 1
                metrics.WEBHOOK_DELIVERY_SECONDS.observe(
                    max(0.0, (now - item.created_at_ms) / 1000)
                )
                self._blocked.discard(item.artifact_id)
                self.failing_since_ms = None
                if isinstance(item, Fresh):
                    self.fresh -= 1
                    item.settle()
                    self._succeeded = True
                else:
                    if not self._done:
                        self._done_since = time.monotonic()
                    self._done.append(item)
        if delivered:
            self._success_ms = now
            metrics.WEBHOOK_DELIVERIES.labels("delivered").inc(delivered)
        failed = [(item, outcome) for item, outcome in ended if not outcome.ok]
        for n, (item, outcome) in enumerate(failed):
            try:
                await self._failed(item, outcome, now)
            except BaseException:
                for again, _ in failed[n + 1 :]:  # not filed either: sent again
                    self._again(again)
                raise

    async def _flush(self) -> None:
        done = self._done
        await self.d.store.delivered(
            self.endpoint.endpoint_id, [d.seq for d in done], self._success_ms
        )
        # Dropped only once written: a failed write is tried again, not forgotten (its
        # rows would stay pending, never sent again by this lane nor deleted).
        self._done = self._done[len(done) :]
        self._known.difference_update(d.seq for d in done)
        self._succeeded, self._success_at = False, time.monotonic()

    async def _park(
        self, held: dict[str, list[Fresh]], *, behind: Sequence[str], retry: bool = False
    ) -> None:
        """Write memory deliveries to the queue (the artifacts' order kept), until it
        works with ``retry`` (a lane being retired has no later round)."""
        rows = [_row(self.endpoint.endpoint_id, f) for items in held.values() for f in items]
        if not rows:
            return
        if self._done:
            await self._flush()
        while True:
            try:
                await self.d.store.park(
                    self.endpoint.endpoint_id, rows, now_ms=_now_ms(), behind=behind
                )
                return
            except DatabaseUnavailable:
                if not retry:
                    raise
                await asyncio.sleep(1.0)

    async def _spill_if_stuck(self, now: float) -> None:
        """Every delivery waiting in memory goes to the queue once the oldest has waited
        ``SPILL_S`` (the endpoint is slow, hanging or down)."""
        waiting = [ln[0] for ln in self._lines.values() if isinstance(ln[0], Fresh)]
        if not waiting or now - min(f.queued for f in waiting) < SPILL_S:
            return
        held: dict[str, list[Fresh]] = {}
        for artifact, line in self._lines.items():
            items = [i for i in line if isinstance(i, Fresh)]
            if items:
                held[artifact] = items
        await self._park(held, behind=[a for a in held if a in self._db])
        for artifact, items in held.items():
            await self._park_late(artifact, items)
        for artifact, items in held.items():
            self._forget(self._lines.pop(artifact, ()))
            self._db.add(artifact)
            self._db_since_read.add(artifact)
            for item in items:
                item.settle()
            self.fresh -= len(items)
        self._next_full = 0.0
        log.info(
            "webhooks: a slow endpoint's waiting deliveries went to the queue",
            extra={
                "endpoint": self.endpoint.endpoint_id,
                "deliveries": sum(map(len, held.values())),
            },
        )

    def _fresh_in_line(self, artifact: str) -> list[Fresh]:
        return [i for i in self._lines.get(artifact, ()) if isinstance(i, Fresh)]

    async def _park_late(self, artifact: str, written: list[Fresh]) -> None:
        """Write the artifact's deliveries still held in memory behind ``written`` (those
        just written for it; extended with these), until none is left: while the artifact
        has no rows, the dispatcher hands this lane its new events during any write, and
        the caller then drops the artifact's line from memory. Tried until it works: the
        rows before them are in the queue already, so sending these first breaks order."""
        done = {id(f) for f in written}
        while late := [f for f in self._fresh_in_line(artifact) if id(f) not in done]:
            await self._park({artifact: late}, behind=[], retry=True)
            done.update(id(f) for f in late)
            written += late

    def _again(self, item: Item) -> None:
        """``item`` ended (failed) without being filed: back at the head of its artifact's
        line, to be sent again."""
        line = self._lines.get(item.artifact_id)
        if line is None:
            line = self._lines[item.artifact_id] = collections.deque()
        line.appendleft(item)
        self._blocked.discard(item.artifact_id)

    def _forget(self, items: Iterable[Item]) -> None:
        self._known.difference_update(i.seq for i in items if isinstance(i, Delivery))

    async def _failed(self, item: Item, outcome: Outcome, now: int) -> None:
        metrics.WEBHOOK_DELIVERIES.labels(outcome.kind).inc()
        delay = self.d.schedule.delay_s(item.attempts + 1, outcome.retry_after_s)
        if delay is None:
            metrics.WEBHOOK_DELIVERIES.labels("failed").inc()
            log.warning(
                "webhook delivery failed for good; kept among the endpoint's failures",
                extra={"endpoint": self.endpoint.endpoint_id, "event": item.event_id},
            )
        next_at = None if delay is None else now + int(delay * 1000)
        error = outcome.error or outcome.kind
        artifact = item.artifact_id
        # The artifact's line goes to the database: read again, in order, once due (or,
        # filed as a failure, without it). Rows of it already there are newer than what
        # memory held, so they move behind. Nothing changes here until that is written:
        # if it cannot be (the database down), the delivery goes back to the head of its
        # line and is sent again (at least once, in order; the artifact never stalls).
        endpoint_id = self.endpoint.endpoint_id
        behind: list[Fresh] = []
        try:
            if isinstance(item, Fresh):
                if self._done:
                    await self._flush()
                behind = self._fresh_in_line(artifact)
                rows = [_row(endpoint_id, item, next_at_ms=next_at, error=error)]
                rows += [_row(endpoint_id, f) for f in behind]
                moved = [artifact] if artifact in self._db else []
                await self.d.store.park(endpoint_id, rows, now_ms=now, behind=moved)
            else:
                await self.d.store.attempt_failed(item, next_at_ms=next_at, error=error, now_ms=now)
        except BaseException:
            self._again(item)
            raise
        # (after a row's failure, fresh ones are not expected: an artifact with rows takes
        # none; after a fresh one's, the dispatcher may have handed more during the write)
        await self._park_late(artifact, behind)
        self._forget(self._lines.pop(artifact, ()))
        if isinstance(item, Fresh):
            behind.append(item)
        else:
            self._known.discard(item.seq)
        for fresh in behind:
            fresh.settle()
        self.fresh -= len(behind)
        self._db.add(artifact)
        self._db_since_read.add(artifact)
        self._blocked.discard(artifact)
        self._waiting.add(artifact)
        self._next_full = 0.0
        if self.failing_since_ms is None:
            self.failing_since_ms = now
        failing_ms = now - self.failing_since_ms
        after_ms = int(self.d.settings.webhook_disable_after_s * 1000)
        if failing_ms >= after_ms and self.endpoint.enabled:
            off = await self.d.store.disable(
                self.endpoint, "failing", now, failing_by_ms=now - after_ms
            )
            if off is not None:
                self.endpoint = off
                metrics.WEBHOOK_DISABLED.inc()
                log.warning(
                    "webhook endpoint disabled: every delivery failed for too long",
                    extra={"endpoint": endpoint_id, "failing_s": failing_ms / 1000},
                )
                self.d.drop_lane(endpoint_id, "park")
                return
            # An admin's change came first: their disable stands (the lane goes), or their
            # re-enable restarted the failure clock (the lane follows it).
            found = await self.d.store.endpoint(endpoint_id)
            if found is not None and found.enabled:
                self.failing_since_ms = found.failing_since_ms
            else:  # (deleted: what it holds goes with it)
                self.d.drop_lane(endpoint_id, "discard" if found is None else "park")
