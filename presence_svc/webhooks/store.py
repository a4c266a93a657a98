"""Webhook endpoints and their delivery queue, in the database (SQLite or PostgreSQL).

The queue holds what must survive a worker killed mid-delivery, a Redis restart or a
database restart but cannot stay in the stream: deliveries that failed and wait for a
retry (and the artifact's next ones behind them), deliveries an endpoint's lane had no
room to hold in memory, and failures. The dispatcher acknowledges a stream entry only
once each of its deliveries either got a 2xx or is committed here (inserted idempotently
on ``(endpoint, event id)``); a row goes only once the receiver answered 2xx. A row that
used up its retries stays, with ``failed = 1``, as one of the endpoint's failures until
replayed.

Both backends run the same SQL (``?`` placeholders, numbered for PostgreSQL).
"""

from __future__ import annotations

import enum
import json
import logging
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import asyncpg

from presence_svc.db.postgres import PostgresPool, rows_affected
from presence_svc.db.sqlite import SqliteFile, transaction

__all__ = [
    "KEEP",
    "Backlog",
    "Delivery",
    "Endpoint",
    "EndpointChange",
    "EndpointGone",
    "Keep",
    "NewDelivery",
    "PostgresWebhooks",
    "SqliteWebhooks",
    "WebhookStore",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

INTERVAL_TYPE = "presence.interval"
_PRESENCE_LISTS = frozenset({"presence.join", "presence.leave", INTERVAL_TYPE})

_ENDPOINT_COLUMNS = (
    "endpoint_id, url, events, artifact_prefix, secret, previous_secret, previous_until, "
    "enabled, disabled_reason, failing_since, last_success, last_failure, created_at, "
    "updated_at, disabled_at"
)
_DELIVERY_COLUMNS = (
    "seq, endpoint_id, event_id, event_type, artifact_id, body, created_at, attempts, "
    "next_at, last_error"
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    endpoint_id: str
    url: str
    events: frozenset[str]
    artifact_prefix: str | None
    secret: str
    previous_secret: str | None
    previous_until_ms: int | None
    enabled: bool
    disabled_reason: str | None
    failing_since_ms: int | None
    last_success_ms: int | None
    last_failure_ms: int | None
    created_at_ms: int
    updated_at_ms: int
    disabled_at_ms: int | None = None
    """When it was disabled (None while enabled): events from before are kept for it."""

    def secrets(self, now_ms: int) -> list[str]:
        """The secrets that sign now: the current one, and the previous one during the
        overlap after a rotation."""
        if self.previous_secret and (self.previous_until_ms or 0) > now_ms:
            return [self.secret, self.previous_secret]
        return [self.secret]

    def wants(self, event_type: str, artifact_id: str) -> bool:
        if self.artifact_prefix and not artifact_id.startswith(self.artifact_prefix):
            return False
        if event_type == INTERVAL_TYPE:
            return bool(self.events & _PRESENCE_LISTS)
        return event_type in self.events

    @classmethod
    def _of(cls, row: Sequence[Any]) -> Endpoint:
        return cls(
            row[0],
            row[1],
            frozenset(json.loads(row[2])),
            row[3],
            row[4],
            row[5],
            row[6],
            bool(row[7]),
            row[8],
            row[9],
            row[10],
            row[11],
            row[12],
            row[13],
            row[14],
        )

    def _row(self) -> tuple[Any, ...]:
        return (
            self.endpoint_id,
            self.url,
            json.dumps(sorted(self.events)),
            self.artifact_prefix,
            self.secret,
            self.previous_secret,
            self.previous_until_ms,
            int(self.enabled),
            self.disabled_reason,
            self.failing_since_ms,
            self.last_success_ms,
            self.last_failure_ms,
            self.created_at_ms,
            self.updated_at_ms,
            self.disabled_at_ms,
        )


class Keep(enum.Enum):
    """A field an ``EndpointChange`` leaves as it is (None is a value: no prefix)."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP


@dataclass(frozen=True, slots=True)
class EndpointChange:
    """What an admin's PATCH changes; every field left ``KEEP`` stays as stored."""

    now_ms: int
    url: str | Keep = KEEP
    events: frozenset[str] | Keep = KEEP
    artifact_prefix: str | Keep | None = KEEP
    enabled: bool | Keep = KEEP
    secret: str | Keep = KEEP
    """A new secret: the stored one becomes the previous one, signing until
    ``previous_until_ms``."""
    previous_until_ms: int | None = None

    def _sets(self) -> tuple[str, list[Any]]:
        """The SET clause and its arguments. Every expression reads the row as it is
        when the UPDATE runs (SQL evaluates them all before assigning any)."""
        sets: list[str] = ["updated_at = ?"]
        args: list[Any] = [self.now_ms]
        if not isinstance(self.url, Keep):
            sets.append("url = ?")
            args.append(self.url)
        if not isinstance(self.events, Keep):
            sets.append("events = ?")
            args.append(json.dumps(sorted(self.events)))
        if not isinstance(self.artifact_prefix, Keep):
            sets.append("artifact_prefix = ?")
            args.append(self.artifact_prefix)
        if self.enabled is True:
            # a fresh start for the disable clock, if it was disabled
            sets.append(
                "failing_since = CASE WHEN enabled = 0 THEN NULL ELSE failing_since END, "
                "enabled = 1, disabled_reason = NULL, disabled_at = NULL"
            )
        elif self.enabled is False:
            # a disable already there (the lane's, for failing) keeps its reason and its
            # time: events from before it are the ones kept for the endpoint
            sets.append(
                "disabled_reason = CASE WHEN enabled = 1 THEN 'by request' "
                "ELSE disabled_reason END, "
                "disabled_at = CASE WHEN enabled = 1 THEN ? ELSE disabled_at END, enabled = 0"
            )
            args.append(self.now_ms)
        if not isinstance(self.secret, Keep):
            sets.append("previous_secret = secret, secret = ?, previous_until = ?")
            args += [self.secret, self.previous_until_ms]
        return ", ".join(sets), args


@dataclass(frozen=True, slots=True)
class NewDelivery:
    endpoint_id: str
    event_id: str
    event_type: str
    artifact_id: str
    body: str
    created_at_ms: int
    attempts: int = 0
    next_at_ms: int | None = None
    """When it is due (None: at once, ``created_at_ms``)."""
    last_error: str | None = None
    failed: bool = False


@dataclass(frozen=True, slots=True)
class Delivery:
    seq: int
    endpoint_id: str
    event_id: str
    event_type: str
    artifact_id: str
    body: str
    created_at_ms: int
    attempts: int
    next_at_ms: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class Backlog:
    pending: int
    oldest_ms: int | None
    failures: int


_INSERT = (
    "INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, artifact_id, "
    "body, created_at, attempts, next_at, last_error, failed) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (endpoint_id, event_id) DO NOTHING"
)


def _values(d: NewDelivery) -> tuple[Any, ...]:
    next_at = d.created_at_ms if d.next_at_ms is None else d.next_at_ms
    return (
        d.endpoint_id,
        d.event_id,
        d.event_type,
        d.artifact_id,
        d.body,
        d.created_at_ms,
        d.attempts,
        next_at,
        d.last_error,
        int(d.failed),
    )


class EndpointGone(Exception):
    """A delivery's endpoint is no longer there (deleted since it was read): the foreign
    key from the deliveries to the endpoints refused the row."""


def _success(endpoint_id: str, at_ms: int) -> tuple[str, tuple[Any, ...]]:
    """The endpoint's success at ``at_ms``: its failure clock stops only if no failure
    came after (a lane writes its successes in batches, so one can land after a later
    failure), and its last success never moves back."""
    return (
        "UPDATE webhook_endpoints SET "
        "failing_since = CASE WHEN last_failure IS NULL OR last_failure < ? "
        "THEN NULL ELSE failing_since END, "
        "last_success = CASE WHEN last_success IS NULL OR last_success < ? "
        "THEN ? ELSE last_success END "
        "WHERE endpoint_id = ?",
        (at_ms, at_ms, at_ms, endpoint_id),
    )


def _numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, ...``."""
    count = 0

    def number(_: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return f"${count}"

    return re.sub(r"\?", number, sql)


class WebhookStore(ABC):
    """The statements both backends run; each backend says how to run them."""

    _HOLD_ENDPOINT = "SELECT endpoint_id FROM webhook_endpoints WHERE endpoint_id = ?"
    """Taken first in a transaction that deletes an endpoint's rows and writes new ones
    (``park``): a delete of the endpoint then waits for it, or it for the delete,
    instead of each holding what the other needs (PostgreSQL: a deadlock)."""
    _HOLD_QUEUE = _HOLD_ENDPOINT
    """``park``'s hold: also no row of the endpoint is written between its read of the
    artifacts' rows and its commit, else a newer event's row, inserted meanwhile, kept a
    seq ahead of the older ones it writes (SQLite: its one writer at a time does that)."""

    @abstractmethod
    async def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Sequence[Any]]: ...

    @abstractmethod
    async def _execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Runs one statement; returns the rows it changed."""

    @abstractmethod
    async def _in_transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        """Runs each ``(sql, args)`` in one transaction; returns the rows each changed."""

    @abstractmethod
    async def _in_transaction_reading(
        self,
        reads: Sequence[tuple[str, Sequence[Any]]],
        writes: Callable[[list[list[Sequence[Any]]]], Sequence[tuple[str, Sequence[Any]]]],
    ) -> None:
        """In one transaction: each of ``reads``, then the statements ``writes`` makes of
        their rows (a list per read); ``EndpointGone`` if a row's endpoint is not there."""

    @abstractmethod
    async def _insert_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Runs ``sql`` for each row in one transaction; ``EndpointGone`` if a row's
        endpoint is not there (nothing is written then)."""

    @abstractmethod
    async def _insert_for_endpoints(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """``_insert_many`` for the rows whose endpoint (their first value) is there, the
        endpoints held until the commit so none goes meanwhile; returns the rows left out."""

    # Endpoints.

    async def add_endpoint(self, endpoint: Endpoint) -> None:
        marks = ", ".join("?" * 15)
        await self._execute(
            f"INSERT INTO webhook_endpoints ({_ENDPOINT_COLUMNS}) VALUES ({marks})",
            endpoint._row(),
        )

    async def endpoints(self) -> list[Endpoint]:
        rows = await self._fetch(
            f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at, endpoint_id"
        )
        return [Endpoint._of(r) for r in rows]

    async def endpoint(self, endpoint_id: str) -> Endpoint | None:
        rows = await self._fetch(
            f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE endpoint_id = ?",
            (endpoint_id,),
        )
        return Endpoint._of(rows[0]) if rows else None

    async def update_endpoint(self, endpoint_id: str, change: EndpointChange) -> Endpoint | None:
        """Apply an admin's change in one statement that writes only the columns it
        changes, each from the row as it is then (not as the admin last read it), so a
        lane's write meanwhile (failing, disabled, succeeded) or another change stands.
        Returns the row as written; None if the endpoint is gone."""
        sets, args = change._sets()
        rows = await self._fetch(
            f"UPDATE webhook_endpoints SET {sets} WHERE endpoint_id = ? "
            f"RETURNING {_ENDPOINT_COLUMNS}",
            (*args, endpoint_id),
        )
        return Endpoint._of(rows[0]) if rows else None

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        """False if it was not there (or another delete took it first). Its deliveries
        go with it (the foreign key's ``ON DELETE CASCADE``)."""
        deleted = await self._execute(
            "DELETE FROM webhook_endpoints WHERE endpoint_id = ?", (endpoint_id,)
        )
        return deleted > 0

    async def disable(
        self, endpoint: Endpoint, reason: str, now_ms: int, *, failing_by_ms: int | None = None
    ) -> Endpoint | None:
        """The lane's disable, decided on the row as it is now: only while enabled (an
        admin's disable since, which this copy may predate, keeps its reason and time)
        and, with ``failing_by_ms``, only if the row's failure clock started by then (or
        was cleared by a success not written in order): an admin's re-enable since
        restarted it. Returns the row as written, or None if it was not disabled."""
        clock = (
            "" if failing_by_ms is None else " AND (failing_since IS NULL OR failing_since <= ?)"
        )
        rows = await self._fetch(
            "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = ?, updated_at = ?, "
            f"disabled_at = ? WHERE endpoint_id = ? AND enabled = 1{clock} "
            f"RETURNING {_ENDPOINT_COLUMNS}",
            (reason, now_ms, now_ms, endpoint.endpoint_id)
            + (() if failing_by_ms is None else (failing_by_ms,)),
        )
        return Endpoint._of(rows[0]) if rows else None

    # The queue.

    async def enqueue(self, deliveries: Sequence[NewDelivery]) -> int:
        """One transaction; a delivery already queued (same endpoint and event) is kept.
        Deliveries for an endpoint deleted since the caller read it are dropped (they
        would go unsent anyway); returns how many were."""
        if not deliveries:
            return 0
        rows = [_values(d) for d in deliveries]
        try:
            await self._insert_many(_INSERT, rows)
            return 0
        except EndpointGone:
            pass  # rare: the batch again, with only the endpoints still there
        dropped = await self._insert_for_endpoints(_INSERT, rows)
        log.info("webhooks: deliveries for a deleted endpoint dropped", extra={"dropped": dropped})
        return dropped

    async def park(
        self,
        endpoint_id: str,
        deliveries: Sequence[NewDelivery],
        *,
        now_ms: int,
        behind: Sequence[str] = (),
    ) -> bool:
        """Write deliveries held in memory only (a failed attempt's, with the artifact's
        next ones behind it; or a slow lane's waiting ones) in one transaction.
        ``behind``: artifacts whose pending rows are newer than these and move after them
        (new seqs, in their order), so the queue keeps each artifact's order. A failed
        attempt among them marks the endpoint failing, as ``attempt_failed`` does.
        False, with nothing written, if the endpoint was deleted meanwhile (its queue
        went with it: so do these)."""
        wanted = sorted(set(behind))
        reads: list[tuple[str, Sequence[Any]]] = [(self._HOLD_QUEUE, (endpoint_id,))]
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            reads.append(
                (
                    "SELECT seq, event_id, event_type, artifact_id, body, created_at, "
                    "attempts, next_at, last_error FROM webhook_deliveries WHERE endpoint_id = ? "
                    f"AND failed = 0 AND artifact_id IN ({', '.join('?' * len(chunk))})",
                    (endpoint_id, *chunk),
                )
            )

        def writes(found: list[list[Sequence[Any]]]) -> list[tuple[str, Sequence[Any]]]:
            moved = sorted((row for rows in found[1:] for row in rows), key=lambda r: int(r[0]))
            statements: list[tuple[str, Sequence[Any]]] = [
                ("DELETE FROM webhook_deliveries WHERE seq = ?", (row[0],)) for row in moved
            ]
            statements += [(_INSERT, _values(d)) for d in deliveries]
            statements += [(_INSERT, (endpoint_id, *row[1:9], 0)) for row in moved]
            if any(d.attempts for d in deliveries):
                statements.append(
                    (
                        "UPDATE webhook_endpoints SET last_failure = ?, "
                        "failing_since = COALESCE(failing_since, ?) WHERE endpoint_id = ?",
                        (now_ms, now_ms, endpoint_id),
                    )
                )
            return statements

        try:
            await self._in_transaction_reading(reads, writes)
        except EndpointGone:
            log.info(
                "webhooks: a deleted endpoint's deliveries dropped",
                extra={"endpoint": endpoint_id, "dropped": len(deliveries)},
            )
            return False
        return True

    async def succeeded(self, endpoint_id: str, now_ms: int) -> None:
        """The endpoint answered 2xx at ``now_ms`` (deliveries held in memory leave no row
        to delete). Written late (a lane batches its successes), it clears no failure
        recorded after it."""
        await self._execute(*_success(endpoint_id, now_ms))

    async def pending(self, endpoint_id: str, after_seq: int, limit: int) -> list[Delivery]:
        """The endpoint's pending deliveries after ``after_seq``, oldest first."""
        rows = await self._fetch(
            f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries "
            "WHERE endpoint_id = ? AND failed = 0 AND seq > ? ORDER BY seq LIMIT ?",
            (endpoint_id, after_seq, limit),
        )
        return [Delivery(*r) for r in rows]

    async def delivered(self, endpoint_id: str, seqs: Sequence[int], now_ms: int) -> None:
        """Rows delivered (the latest 2xx at ``now_ms``: see ``succeeded``)."""
        # The endpoint's row first, as a delete of the endpoint takes it (then cascades to
        # the deliveries): the other order deadlocks with that delete on PostgreSQL.
        statements: list[tuple[str, Sequence[Any]]] = [_success(endpoint_id, now_ms)]
        statements += [
            ("DELETE FROM webhook_deliveries WHERE seq = ? AND failed = 0", (seq,)) for seq in seqs
        ]
        await self._in_transaction(statements)

    async def attempt_failed(
        self,
        delivery: Delivery,
        *,
        next_at_ms: int | None,
        error: str,
        now_ms: int,
    ) -> None:
        """Count a failed attempt: try again at ``next_at_ms``, or (None) file it among the
        endpoint's failures."""
        failed = 1 if next_at_ms is None else 0
        await self._in_transaction(
            [
                # the endpoint's row first, as its delete (and ``delivered``) take it
                (
                    "UPDATE webhook_endpoints SET last_failure = ?, "
                    "failing_since = COALESCE(failing_since, ?) WHERE endpoint_id = ?",
                    (now_ms, now_ms, delivery.endpoint_id),
                ),
                (
                    "UPDATE webhook_deliveries SET attempts = attempts + 1, next_at = ?, "
                    "last_error = ?, failed = ? WHERE seq = ?",
                    (next_at_ms if next_at_ms is not None else now_ms, error, failed, delivery.seq),
                ),
            ]
        )

    async def failures(self, endpoint_id: str, after_seq: int, limit: int) -> list[Delivery]:
        rows = await self._fetch(
            f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries "
            "WHERE endpoint_id = ? AND failed = 1 AND seq > ? ORDER BY seq LIMIT ?",
            (endpoint_id, after_seq, limit),
        )
        return [Delivery(*r) for r in rows]

    async def replay(self, endpoint_id: str, seq: int | None, now_ms: int) -> int:
        """Put one failure (or all of them) back in the queue, due now, retries afresh."""
        sql = (
            "UPDATE webhook_deliveries SET failed = 0, attempts = 0, next_at = ? "
            "WHERE endpoint_id = ? AND failed = 1"
        )
        if seq is None:
            return await self._execute(sql, (now_ms, endpoint_id))
        return await self._execute(sql + " AND seq = ?", (now_ms, endpoint_id, seq))

    async def backlog(self) -> dict[str, Backlog]:
        rows = await self._fetch(
            "SELECT endpoint_id, SUM(1 - failed), MIN(CASE WHEN failed = 0 THEN created_at END), "
            "SUM(failed) FROM webhook_deliveries GROUP BY endpoint_id"
        )
        return {r[0]: Backlog(int(r[1] or 0), r[2], int(r[3] or 0)) for r in rows}

    async def erase_user(self, user_id: str, tombstone: str) -> int:
        """Replace ``user_id`` by ``tombstone`` in the queued and failed deliveries'
        bodies (their ``userId`` fields); returns the deliveries changed."""
        needle = json.dumps(user_id)  # a `%` or `_` in it only widens the candidates
        rows = await self._fetch(
            "SELECT seq, body FROM webhook_deliveries WHERE body LIKE ?",
            (f"%{needle}%",),
        )
        changed: list[tuple[str, Sequence[Any]]] = []
        for seq, body in rows:
            scrubbed = json.dumps(
                _scrub(json.loads(body), user_id, tombstone), separators=(",", ":")
            )
            if scrubbed != body:
                changed.append(
                    ("UPDATE webhook_deliveries SET body = ? WHERE seq = ?", (scrubbed, seq))
                )
        if changed:
            await self._in_transaction(changed)
        return len(changed)


def _scrub(value: Any, user_id: str, tombstone: str) -> Any:
    if isinstance(value, dict):
        return {
            k: (tombstone if k == "userId" and v == user_id else _scrub(v, user_id, tombstone))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_scrub(v, user_id, tombstone) for v in value]
    return value


def _sqlite_gone(exc: sqlite3.IntegrityError) -> Exception:
    """``EndpointGone`` for a refused foreign key, else ``exc`` as it is."""
    if "FOREIGN KEY" in str(exc):
        return EndpointGone(str(exc))
    return exc


class SqliteWebhooks(WebhookStore):
    def __init__(self, file: SqliteFile) -> None:
        self._file = file

    async def _run_checked(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self._file.run(fn)
        except sqlite3.IntegrityError as exc:
            raise _sqlite_gone(exc) from exc

    async def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Sequence[Any]]:
        def fetch(conn: sqlite3.Connection) -> list[Sequence[Any]]:
            return list(conn.execute(sql, tuple(args)).fetchall())

        return await self._file.run(fetch)

    async def _execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        return await self._file.run(lambda c: c.execute(sql, tuple(args)).rowcount)

    async def _in_transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        def run(conn: sqlite3.Connection) -> list[int]:
            with transaction(conn):
                changed = [conn.execute(sql, tuple(args)).rowcount for sql, args in statements]
            return changed

        return await self._run_checked(run)

    async def _in_transaction_reading(
        self,
        reads: Sequence[tuple[str, Sequence[Any]]],
        writes: Callable[[list[list[Sequence[Any]]]], Sequence[tuple[str, Sequence[Any]]]],
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                found = [list(conn.execute(sql, tuple(args)).fetchall()) for sql, args in reads]
                for sql, args in writes(found):
                    conn.execute(sql, tuple(args))

        await self._run_checked(run)

    async def _insert_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.executemany(sql, rows)

        await self._run_checked(run)

    async def _insert_for_endpoints(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        wanted = sorted({str(row[0]) for row in rows})

        def run(conn: sqlite3.Connection) -> int:
            with transaction(conn):  # BEGIN IMMEDIATE: no delete comes between
                there = {
                    found
                    for start in range(0, len(wanted), 500)
                    for (found,) in conn.execute(
                        "SELECT endpoint_id FROM webhook_endpoints WHERE endpoint_id IN "
                        f"({', '.join('?' * len(wanted[start : start + 500]))})",
                        wanted[start : start + 500],
                    )
                }
                kept = [row for row in rows if row[0] in there]
                conn.executemany(sql, kept)
            return len(rows) - len(kept)

        return await self._run_checked(run)


class PostgresWebhooks(WebhookStore):
    _HOLD_ENDPOINT = WebhookStore._HOLD_ENDPOINT + " FOR KEY SHARE"
    # FOR UPDATE: an insert's foreign-key check (FOR KEY SHARE) waits for it, and it for
    # an insert under way.
    _HOLD_QUEUE = WebhookStore._HOLD_ENDPOINT + " FOR UPDATE"

    def __init__(self, pool: PostgresPool) -> None:
        self._pool = pool

    async def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Sequence[Any]]:
        return [tuple(r) for r in await self._pool.fetch(_numbered(sql), *args)]

    async def _execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        return rows_affected(await self._pool.execute(_numbered(sql), *args))

    async def _in_transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                return [
                    rows_affected(await conn.execute(_numbered(sql), *args))
                    for sql, args in statements
                ]
        except asyncpg.ForeignKeyViolationError as exc:
            raise EndpointGone(str(exc)) from exc

    async def _in_transaction_reading(
        self,
        reads: Sequence[tuple[str, Sequence[Any]]],
        writes: Callable[[list[list[Sequence[Any]]]], Sequence[tuple[str, Sequence[Any]]]],
    ) -> None:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                found: list[list[Sequence[Any]]] = [
                    [tuple(r) for r in await conn.fetch(_numbered(sql), *args)]
                    for sql, args in reads
                ]
                for sql, args in writes(found):
                    await conn.execute(_numbered(sql), *args)
        except asyncpg.ForeignKeyViolationError as exc:
            raise EndpointGone(str(exc)) from exc

    async def _insert_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.executemany(_numbered(sql), rows)
        except asyncpg.ForeignKeyViolationError as exc:
            raise EndpointGone(str(exc)) from exc

    async def _insert_for_endpoints(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        wanted = sorted({str(row[0]) for row in rows})
        async with self._pool.acquire() as conn, conn.transaction():
            # FOR KEY SHARE: a delete of one of them waits for this commit (one already
            # under way is waited for, and its row then left out).
            found = await conn.fetch(
                "SELECT endpoint_id FROM webhook_endpoints WHERE endpoint_id = ANY($1::text[]) "
                "FOR KEY SHARE",
                wanted,
            )
            there = {record[0] for record in found}
            kept = [row for row in rows if row[0] in there]
            if kept:
                await conn.executemany(_numbered(sql), kept)
        return len(rows) - len(kept)
