"""``presence-svc ledger import``: the JSON lines of ``ledger export`` into the configured
ledger, streamed in batches, idempotent on the view id.

Each batch is one ``insert_views`` transaction, so importing a file twice adds nothing.
A bad line stops the import after the rows before it are written: everything up to that
line is in, nothing after it, and running the fixed file again skips what is there.

On PostgreSQL the month partitions of a batch's rows are created before it goes in.
Left to the default partition, old rows would wait there until a later ``ensure_month``
moves them, which detaches the default partition and moves every row of that month in
one transaction that holds ``views`` locked: cheap for the few strays the drain can
leave, not for years of history.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO

import msgspec

from presence_svc.jsonl import NulFree, Text, import_lines, line_time
from presence_svc.ledger.entry import LedgerRow
from presence_svc.ledger.postgres import PostgresLedger
from presence_svc.ledger.store import LedgerStore

__all__ = ["BATCH", "LedgerImport", "import_ledger"]

BATCH = 5000
"""Rows per transaction: large enough for one round trip to carry many, small enough
that a failure redoes little."""


class _Line(msgspec.Struct, rename="camel"):
    """One line as ``ledger export`` writes it; unknown keys are ignored."""

    view_id: Text
    artifact_id: Text
    version_id: Text
    user_id: Text
    viewed_at: str
    session_id: NulFree | None = None


_DECODER = msgspec.json.Decoder(_Line)


@dataclass(frozen=True, slots=True)
class LedgerImport:
    read: int
    inserted: int

    @property
    def duplicates(self) -> int:
        """Rows whose view id was already in the ledger (or earlier in the file)."""
        return self.read - self.inserted


def _row(number: int, line: _Line) -> LedgerRow:
    viewed_at_ms = line_time(number, "viewedAt", line.viewed_at)
    return LedgerRow(
        line.view_id,
        line.artifact_id,
        line.version_id,
        line.user_id,
        line.session_id or None,
        viewed_at_ms,
    )


class _Months:
    """The PostgreSQL month partitions this import has made sure of."""

    def __init__(self, ledger: LedgerStore) -> None:
        self._ledger = ledger if isinstance(ledger, PostgresLedger) else None
        self._ready: set[tuple[int, int]] = set()

    async def prepare(self, rows: Sequence[LedgerRow]) -> None:
        if self._ledger is None:
            return
        months = {_month(row.viewed_at_ms) for row in rows} - self._ready
        for year, month in sorted(months):
            await self._ledger.ensure_month(year, month)
            self._ready.add((year, month))


class _Rows:
    """The rows held for the next insert; their months are made sure of first."""

    def __init__(self, ledger: LedgerStore) -> None:
        self._ledger = ledger
        self._months = _Months(ledger)
        self._rows: list[LedgerRow] = []

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, number: int, line: _Line) -> None:
        self._rows.append(_row(number, line))

    async def write(self) -> int:
        await self._months.prepare(self._rows)
        inserted = await self._ledger.insert_views(self._rows)
        self._rows.clear()
        return inserted


def _month(ms: int) -> tuple[int, int]:
    day = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)
    return day.year, day.month


async def import_ledger(
    ledger: LedgerStore,
    source: Iterable[bytes],
    *,
    batch: int = BATCH,
    progress: IO[str] | None = None,
) -> LedgerImport:
    """Insert every row of ``source`` (lines of JSON); raises ``BadLine`` at the first bad
    line, once the rows before it are written. ``progress``: a terminal to count on."""
    read, inserted = await import_lines(
        source,
        _DECODER,
        _Rows(ledger),
        batch=batch,
        progress=progress,
        status=lambda read, inserted: f"read {read} rows, {inserted} new",
    )
    return LedgerImport(read, inserted)
