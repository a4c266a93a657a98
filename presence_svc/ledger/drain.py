"""The ledger drain: views streams -> ledger database, exactly once in the ledger.

At least once from Redis: one consumer group (``ledger``) over every partition's stream;
an entry is acknowledged only after the transaction holding its row has committed, so a
worker killed mid-batch leaves its entries pending, and another worker (or itself, after
a restart) reclaims them once they have been idle long enough. Exactly once in the ledger:
rows are inserted idempotently on the view id, so a redelivered entry adds nothing.

While the database is out of reach the drain stops reading (the streams keep the views)
and holds the batches it had in hand, still pending under its name; it pings the database
now and then and, once it answers, writes those batches and reads on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError, ResponseError

from presence_svc import metrics
from presence_svc.db.errors import DatabaseUnavailable
from presence_svc.ledger.entry import LedgerRow, parse_entry
from presence_svc.ledger.store import LedgerStore
from presence_svc.redis.connection import RedisConnection, StreamEntry
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import Settings

__all__ = ["GROUP", "MAX_DELIVERIES", "LedgerDrain"]

log = logging.getLogger(__name__)

GROUP = "ledger"
GATHER_S = 0.05
"""After a read that did not fill a batch (the drain has caught up), the next one waits this
long, so that views gather: a read costs about the same for a few entries as for hundreds
(one XREADGROUP per partition's stream, their replies, an insert, an XACK), and the drain
shares the event loop with `serve`'s requests. Reading again at once made ~28 reads a
second of a few hundred views at 10 000 views/s, ~100 a second of ~15 at 1 000/s. Adds at
most this much to a view's way to the ledger; a backlog is read without waiting."""
MAX_DELIVERIES = 5
DEAD_LETTERS_KEPT = 10_000


@dataclass(slots=True)
class _Decoded:
    """A batch read from the streams: its rows, and the entry ids they came from."""

    read: int = 0
    full: bool = False
    """Some stream gave as many entries as a read takes: more are waiting."""
    rows: list[LedgerRow] = field(default_factory=list)
    done: dict[str, list[bytes]] = field(default_factory=dict)


async def _pause(stopping: asyncio.Event, batch: _Decoded, idle_s: float) -> float:
    """Before the next read: ``GATHER_S`` after a short batch, else ``idle_s`` (nothing was
    read, or it failed), which doubles up to 0.1 s while nothing comes; returns the idle
    time for the next pause."""
    if batch.read:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), GATHER_S)
        return 0.01
    try:
        await asyncio.wait_for(stopping.wait(), idle_s)
    except TimeoutError:
        return min(idle_s * 2, 0.1)
    return idle_s


def _flat(fields: dict[bytes, bytes]) -> list[bytes]:
    """Fields as redis-py's parsers give them, flat again as Redis sent them."""
    return [item for pair in fields.items() for item in pair]


def _as_bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _id_ms(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


class LedgerDrain:
    def __init__(
        self,
        redis: RedisConnection,
        ledger: LedgerStore,
        settings: Settings,
        consumer: str,
        predecessor: str | None = None,
    ) -> None:
        self.redis = redis
        self.ledger = ledger
        self.consumer = consumer
        self.predecessor = predecessor
        """A dead worker's name whose pending entries are this one's to resume at start
        (the same host and data dir under another host name: a recreated container)."""
        keys = Keyspace(settings.partitions)
        self.streams = [keys.views_stream(tag) for tag in keys.tags]
        self.dead_letters = {keys.views_stream(t): keys.dead_letters(t) for t in keys.tags}
        self.read_count = max(10, 16000 // len(self.streams))
        self.max_lag = settings.webhook_max_lag
        """The most entries another group (webhooks) may lag behind a stream's end."""
        self.outboxes = [keys.outbox(tag) for tag in keys.tags]
        self.reclaim_idle_ms = int(settings.ledger_reclaim_idle_s * 1000)
        self.maintenance_s = min(5.0, settings.ledger_reclaim_idle_s / 2)
        self._claim_cursors: dict[str, bytes | str] = {}
        self._joined = False
        self._resumed = False
        self._database_down = False
        self._held: list[_Decoded] = []
        """Batches read but not written because the database was down."""

    # Running.

    async def run(self, stopping: asyncio.Event) -> None:
        """Drain until ``stopping``; the batches in hand (and one prefetched) are finished.

        Stages overlap so that the ledger's thread never waits for Redis or the event loop
        while there is a backlog: as batch N commits, batch N + 1 is already queued for the
        thread behind it (sorted and encoded), batch N + 2 is read and decoded, and batch
        N - 1 is acknowledged. Each batch is acknowledged only after its own commit. Once
        a read comes back short (caught up), the next one waits ``GATHER_S``.
        """
        idle_s = 0.01
        next_maintenance = 0.0
        prefetch: asyncio.Task[_Decoded] | None = None
        writing: asyncio.Task[None] | None = None
        while not stopping.is_set():
            try:
                if not self._joined:
                    await self.join()
                if time.monotonic() >= next_maintenance:
                    await self.maintain()
                    next_maintenance = time.monotonic() + self.maintenance_s
                await self._catch_up()  # raises while the database is still down
                # Taken before awaiting: a prefetch that failed must not be awaited again.
                pending, prefetch = prefetch, None
                batch = await (pending or self._read_decoded())
                previous, writing = writing, None
                if batch.full:
                    prefetch = asyncio.create_task(self._read_decoded())
                if batch.read:
                    # At most two writes in hand: this one queued behind the one before.
                    writing = asyncio.create_task(self._write_decoded(batch))
                if previous is not None:
                    await previous  # with nothing new, the last write: its failure is logged
            except DatabaseUnavailable as exc:
                await self._hold(exc, writing, prefetch)
                writing = prefetch = None
                batch, idle_s = _Decoded(), 1.0
            except (RedisError, OSError) as exc:
                log.warning("ledger drain: redis unavailable", extra={"error": repr(exc)})
                # A read whose answer was lost left its entries pending under our name:
                # take them back first once Redis answers, not after the reclaim idle time.
                self._resumed = False
                batch, idle_s = _Decoded(), 1.0
            except Exception:
                log.exception("ledger drain: batch failed; it stays pending and is retried")
                batch, idle_s = _Decoded(), 1.0
            if batch.full:
                idle_s = 0.01
                continue
            idle_s = await _pause(stopping, batch, idle_s)
        await self._finish(writing, prefetch)
        await self.leave()

    async def _hold(
        self,
        exc: DatabaseUnavailable,
        writing: asyncio.Task[None] | None,
        prefetch: asyncio.Task[_Decoded] | None,
    ) -> None:
        """The database went away: stop reading, let the write in hand end (failing, it
        holds its batch) and hold what was read ahead."""
        if not self._database_down:
            log.warning(
                "ledger drain: database unavailable; holding what was read until it is back",
                extra={"error": str(exc)},
            )
            self._database_down = True
        if writing is not None:
            try:
                await writing
            except DatabaseUnavailable:
                pass
            except Exception:
                log.exception("ledger drain: batch failed; it stays pending and is retried")
        if prefetch is not None:
            try:
                batch = await prefetch
            except Exception as exc:  # nothing was read: nothing to hold
                log.warning("ledger drain: read-ahead failed", extra={"error": repr(exc)})
            else:
                if batch.read:
                    self._held.append(batch)

    async def _catch_up(self) -> None:
        """Before reading anything new: the batches held while the database was down,
        then (once, at start) what this consumer had read and not acknowledged."""
        if self._database_down or self._held:
            await self._write_held()
        if not self._resumed:
            await self.resume_own()

    async def _write_held(self) -> None:
        """Once the database answers again, write the batches held meanwhile (raises
        ``DatabaseUnavailable`` while it does not)."""
        await self.ledger.ping()
        while self._held:
            await self._write_decoded(self._held.pop(0))
        if self._database_down:
            log.info("ledger drain: database back; draining again")
            self._database_down = False

    async def _finish(
        self, writing: asyncio.Task[None] | None, prefetch: asyncio.Task[_Decoded] | None
    ) -> None:
        """On the way out: finish the write in hand, then write what was prefetched. A
        batch that fails here stays pending and is reclaimed."""
        if writing is not None:
            with contextlib.suppress(Exception):
                await writing
        if prefetch is not None:
            with contextlib.suppress(Exception):
                await self._write_decoded(await prefetch)

    async def join(self) -> None:
        """Create the consumer group on every stream (from its start) if it is missing."""
        pipe = self.redis.client.pipeline(transaction=False)
        for stream in self.streams:
            pipe.xgroup_create(stream, GROUP, id="0", mkstream=True)
        for result in await pipe.execute(raise_on_error=False):
            if isinstance(result, ResponseError) and "BUSYGROUP" not in str(result):
                raise result
        self._joined = True

    async def leave(self) -> None:
        """On a clean exit, remove this consumer where it holds nothing pending (removing a
        consumer drops its pending entries, so never where it still has some)."""
        try:
            pipe = self.redis.client.pipeline(transaction=False)
            for stream in self.streams:
                pipe.xpending_range(stream, GROUP, "-", "+", 1, consumername=self.consumer)
            pending = await pipe.execute(raise_on_error=False)
            pipe = self.redis.client.pipeline(transaction=False)
            for stream, mine in zip(self.streams, pending, strict=True):
                if mine == []:
                    pipe.xgroup_delconsumer(stream, GROUP, self.consumer)
            await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            log.warning("ledger drain: could not leave the group", extra={"error": repr(exc)})

    async def resume_own(self) -> None:
        """Write what this consumer read and did not acknowledge (a previous incarnation
        killed mid-batch) before reading anything new: at once, not after the reclaim idle
        time, which is there to keep off a live worker's entries."""
        if self.predecessor is not None:
            await self.adopt(self.predecessor)
        resumed = 0
        while True:
            replies = await self.redis.read_group(
                GROUP, self.consumer, self.streams, self.read_count, own=True
            )
            batch: dict[str, list[StreamEntry]] = {}
            vanished: dict[str, list[bytes]] = {}
            for stream, reply in zip(self.streams, replies, strict=True):
                if isinstance(reply, ResponseError):
                    if "NOGROUP" not in str(reply):
                        raise reply
                    self._joined = False
                    continue
                for entry_id, fields in reply:
                    if fields:
                        batch.setdefault(stream, []).append((entry_id, fields))
                    else:  # trimmed while pending: nothing left to write
                        vanished.setdefault(stream, []).append(entry_id)
            if vanished:
                await self.redis.ack(GROUP, vanished)
                gone = sum(map(len, vanished.values()))
                metrics.LEDGER_ROWS.labels("trimmed_while_pending").inc(gone)
            if not batch and not vanished:
                break
            if batch:
                await self.write(batch)
                resumed += sum(map(len, batch.values()))
        self._resumed = True
        if resumed:
            log.info(
                "resumed own pending views", extra={"consumer": self.consumer, "count": resumed}
            )

    async def adopt(self, predecessor: str) -> None:
        """Make what ``predecessor`` (dead) read and did not acknowledge this consumer's
        own, then remove it from the group: ``resume_own`` writes it next."""
        adopted = 0
        streams = list(self.streams)
        while streams:
            pipe = self.redis.client.pipeline(transaction=False)
            for stream in streams:
                pipe.xpending_range(stream, GROUP, "-", "+", 1000, consumername=predecessor)
            replies = await pipe.execute(raise_on_error=False)
            pipe = self.redis.client.pipeline(transaction=False)
            claimed: list[str | None] = []
            for stream, pending in zip(streams, replies, strict=True):
                if isinstance(pending, ResponseError):  # NOGROUP: nothing to adopt
                    continue
                ids = [p["message_id"] for p in pending]
                if ids:
                    pipe.xclaim(stream, GROUP, self.consumer, 0, ids, justid=True)
                    adopted += len(ids)
                    claimed.append(stream)
                else:
                    pipe.xgroup_delconsumer(stream, GROUP, predecessor)
                    claimed.append(None)
            answers = await pipe.execute(raise_on_error=False)
            # Until each stream holds nothing more of it (a claim that failed is left to
            # the reclaim, not retried here for ever).
            streams = [
                stream
                for stream, answer in zip(claimed, answers, strict=True)
                if stream is not None and not isinstance(answer, Exception)
            ]
        self.predecessor = None
        if adopted:
            log.info(
                "adopted a dead predecessor's pending views",
                extra={"consumer": self.consumer, "predecessor": predecessor, "count": adopted},
            )

    # Reading new entries.

    async def drain_once(self) -> int:
        """Read what is new on every stream, write it, acknowledge it; returns entries read."""
        batch = await self.read()
        if batch:
            await self.write(batch)
        return sum(len(entries) for entries in batch.values())

    async def read(self) -> dict[str, list[StreamEntry]]:
        """New entries of every stream, delivered to this consumer (one round trip)."""
        replies = await self.redis.read_group(GROUP, self.consumer, self.streams, self.read_count)
        batch: dict[str, list[StreamEntry]] = {}
        for stream, reply in zip(self.streams, replies, strict=True):
            if isinstance(reply, ResponseError):
                if "NOGROUP" in str(reply):
                    self._joined = False  # the stream was lost (e.g. Redis data loss)
                    continue
                raise reply
            if reply:
                batch[stream] = reply
        return batch

    async def write(self, batch: dict[str, list[StreamEntry]]) -> None:
        """One ledger transaction for the whole batch, then XACK (never before commit)."""
        await self._write_decoded(await self._decode(batch))

    async def _write_decoded(self, batch: _Decoded) -> None:
        try:
            await self._commit(batch.rows)
        except DatabaseUnavailable:
            self._held.append(batch)  # still pending: written once the database is back
            raise
        await self._ack(batch.done)

    async def _read_decoded(self) -> _Decoded:
        return await self._decode(await self.read())

    async def _decode(self, batch: dict[str, list[StreamEntry]]) -> _Decoded:
        """The batch's rows, and the ids to acknowledge once they commit; an entry that is
        not a view is parked in the dead letters (and acknowledged) here."""
        decoded = _Decoded(read=sum(map(len, batch.values())))
        decoded.full = any(len(entries) >= self.read_count for entries in batch.values())
        for stream, entries in batch.items():
            done = decoded.done.setdefault(stream, [])
            for entry_id, fields in entries:
                try:
                    decoded.rows.append(parse_entry(fields))
                except ValueError as exc:
                    await self._dead_letter(stream, entry_id, fields, str(exc))
                    continue
                done.append(entry_id)
        return decoded

    async def _commit(self, rows: list[LedgerRow]) -> None:
        if not rows:
            return
        inserted = await self.ledger.insert_views(rows)
        metrics.LEDGER_ROWS.labels("inserted").inc(inserted)
        metrics.LEDGER_ROWS.labels("duplicate").inc(len(rows) - inserted)
        oldest = min(row.viewed_at_ms for row in rows)
        metrics.LEDGER_WRITE_LAG_SECONDS.observe(max(0.0, time.time() - oldest / 1000))

    async def _ack(self, done: dict[str, list[bytes]]) -> None:
        done = {stream: ids for stream, ids in done.items() if ids}
        if not done:
            return
        await self.redis.ack(GROUP, done)

    async def _dead_letter(
        self, stream: str, entry_id: bytes, fields: list[bytes], reason: str
    ) -> None:
        """Park an entry that cannot be written where an operator can look at it."""
        log.error(
            "view moved to the dead-letter stream",
            extra={"stream": stream, "entry": entry_id.decode(), "reason": reason},
        )
        dead: dict[Any, Any] = dict(zip(fields[::2], fields[1::2], strict=True))
        dead.update({b"source": entry_id, b"reason": reason})
        pipe = self.redis.client.pipeline(transaction=False)
        pipe.xadd(self.dead_letters[stream], dead, maxlen=DEAD_LETTERS_KEPT, approximate=True)
        pipe.xack(stream, GROUP, entry_id)
        await pipe.execute()
        metrics.LEDGER_ROWS.labels("dead_letter").inc()

    # Maintenance: reclaim, trim, measure.

    async def maintain(self) -> None:
        try:
            await self.ledger.ping()
        except Exception as exc:
            if not self._database_down:  # else said once already
                log.warning("ledger unreachable; not reclaiming", extra={"error": repr(exc)})
        else:
            await self.reclaim(*self.streams)
        await self.trim_and_measure()

    async def reclaim(self, *streams: str) -> None:
        """Take over entries left pending (by a dead worker, or a failed batch) for longer
        than the reclaim idle time, and write them. One round trip asks every stream."""
        pipe = self.redis.client.pipeline(transaction=False)
        for stream in streams:
            cursor = self._claim_cursors.get(stream, "0-0")
            idle_ms = self.reclaim_idle_ms
            claim = ("XAUTOCLAIM", stream, GROUP, self.consumer, idle_ms, cursor, "COUNT", 100)
            pipe.execute_command(*claim)
        for stream, reply in zip(streams, await pipe.execute(), strict=True):
            self._claim_cursors[stream] = reply[0]
            await self._reclaimed(stream, reply[1])

    async def _reclaimed(self, stream: str, entries: list[Any]) -> None:
        """Write what XAUTOCLAIM handed over; park what was delivered too often."""
        if not entries:
            return
        live: list[StreamEntry] = [(i, _flat(f)) for i, f in entries if i is not None]
        pending = await self.redis.client.xpending_range(
            stream, GROUP, "-", "+", 1000, consumername=self.consumer
        )
        deliveries: dict[bytes, int] = {
            _as_bytes(p["message_id"]): int(p["times_delivered"]) for p in pending
        }
        to_write: list[StreamEntry] = []
        for entry_id, fields in live:
            if deliveries.get(entry_id, 1) > MAX_DELIVERIES:
                await self._dead_letter(stream, entry_id, fields, "delivered more than 5 times")
            else:
                to_write.append((entry_id, fields))
        if len(live) < len(entries):
            # Redis 6.2 answers nil, without the id, for entries trimmed while pending;
            # they stay pending under our name: find them and acknowledge them.
            await self._ack_vanished(stream, set(deliveries) - {i for i, _ in live})
        if to_write:
            log.info("reclaimed pending views", extra={"stream": stream, "count": len(to_write)})
            await self.write({stream: to_write})

    async def _ack_vanished(self, stream: str, candidates: Iterable[bytes]) -> None:
        ids = list(candidates)
        if not ids:
            return
        pipe = self.redis.client.pipeline(transaction=False)
        for entry_id in ids:
            pipe.xrange(stream, entry_id, entry_id)
        found = await pipe.execute()
        gone = [i for i, hit in zip(ids, found, strict=True) if not hit]
        if gone:
            await self.redis.client.xack(stream, GROUP, *gone)
            metrics.LEDGER_ROWS.labels("trimmed_while_pending").inc(len(gone))
            log.warning(
                "views trimmed from the stream while pending",
                extra={"stream": stream, "count": len(gone)},
            )

    async def trim_and_measure(self) -> None:
        """Drop what the group has fully handled; export the backlog and its oldest age."""
        trim = self.redis.scripts.trim_stream
        backlog = 0
        oldest: int | None = None
        # The views streams, and the webhook outboxes (the dispatcher trims those, but not
        # while it is down): the webhooks group holds either by at most max_lag entries.
        calls = [trim.call(s, GROUP, self.max_lag) for s in self.streams]
        calls += [trim.call(s, "", self.max_lag) for s in self.outboxes]
        results = await self.redis.run_many(calls)
        for i, (stream, result) in enumerate(
            zip([*self.streams, *self.outboxes], results, strict=True)
        ):
            if isinstance(result, Exception):
                raise result
            left, first_id, dropped = result
            outbox = i >= len(self.streams)
            if dropped:
                # The webhooks group lagged past PRESENCE_WEBHOOK_MAX_LAG: it gave up its
                # oldest entries so the stream stays bounded; the ledger lost nothing.
                source = "presence" if outbox else "views"
                metrics.WEBHOOK_DROPPED.labels(source).inc(int(dropped))
                log.warning(
                    "webhooks lagged too far behind a stream: its oldest entries dropped",
                    extra={"stream": stream, "count": int(dropped), "max_lag": self.max_lag},
                )
            if outbox:
                continue
            backlog += int(left)
            if first_id:
                ms = _id_ms(first_id)
                oldest = ms if oldest is None else min(oldest, ms)
        metrics.LEDGER_BACKLOG.set(backlog)
        lag = 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)
        metrics.LEDGER_LAG_SECONDS.set(lag)
