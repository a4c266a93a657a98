"""``presence-svc ledger export``: ledger rows, oldest first, as JSON lines or CSV.

Rows are fetched in keyset batches and written as they come, so an export of any size
runs in constant memory.
"""

from __future__ import annotations

import csv
import sys
import time
from typing import IO

import msgspec

from presence_svc.ledger.engagement import EngagementLedger, EngagementQuery
from presence_svc.ledger.entry import LedgerRow
from presence_svc.ledger.store import LedgerQuery, LedgerStore
from presence_svc.timefmt import to_iso

__all__ = ["FORMATS", "export_engagement", "export_ledger"]

FORMATS = ("jsonl", "csv")
_COLUMNS = ("viewId", "artifactId", "versionId", "userId", "sessionId", "viewedAt")
_ENGAGEMENT_COLUMNS = ("artifactId", "versionId", "userId", "day", "engagedMs", "updatedAt")
_JSON = msgspec.json.Encoder()


def _record(row: LedgerRow) -> tuple[str, str, str, str, str | None, str]:
    return (
        row.view_id,
        row.artifact_id,
        row.version_id,
        row.user_id,
        row.session_id,
        to_iso(row.viewed_at_ms),
    )


async def export_ledger(ledger: LedgerStore, query: LedgerQuery, fmt: str, out: IO[str]) -> int:
    """Write every row matching ``query``; returns how many. Progress goes to a terminal."""
    progress = sys.stderr.isatty()
    written = 0
    last_report = 0.0
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(_COLUMNS)
    try:
        async for row in ledger.iter_views(query):
            record = _record(row)
            if writer is not None:
                writer.writerow(record)
            else:
                out.write(_JSON.encode(dict(zip(_COLUMNS, record, strict=True))).decode() + "\n")
            written += 1
            if progress and time.monotonic() - last_report > 0.5:
                last_report = time.monotonic()
                sys.stderr.write(f"\rexported {written} rows (up to {record[-1]})")
    finally:
        if progress:
            sys.stderr.write(f"\rexported {written} rows{' ' * 40}\n")
    return written


async def export_engagement(
    store: EngagementLedger, query: EngagementQuery, fmt: str, out: IO[str]
) -> int:
    """Write every engaged-time daily total matching ``query`` (``--engagement``), in the
    order of ``GET /v1/ledger/engagement``; returns how many."""
    written = 0
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(_ENGAGEMENT_COLUMNS)
    async for row in store.iter_engagement(query):
        record = (*row[:5], to_iso(row.updated_at_ms))
        if writer is not None:
            writer.writerow(record)
        else:
            line = dict(zip(_ENGAGEMENT_COLUMNS, record, strict=True))
            out.write(_JSON.encode(line).decode() + "\n")
        written += 1
    return written
