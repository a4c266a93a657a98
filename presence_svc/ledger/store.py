"""What a ledger backend provides: idempotent batch inserts and keyset reads."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from presence_svc.ledger.entry import LedgerRow

__all__ = ["LedgerQuery", "LedgerStore"]


@dataclass(frozen=True, slots=True)
class LedgerQuery:
    artifact_id: str | None = None
    user_id: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    after: tuple[int, str] | None = None
    """Keyset cursor: (viewed_at_ms, view_id) of the last row already read."""
    newest_first: bool = False
    """Order by (viewed_at, view_id) descending; ``after`` then continues downwards."""


class LedgerStore(Protocol):
    async def ping(self) -> None:
        """Raise if the database cannot be reached now."""

    async def insert_views(self, rows: Sequence[LedgerRow]) -> int:
        """Insert in one transaction, ignoring view ids already present; returns new rows."""

    async def query_views(self, query: LedgerQuery, limit: int) -> list[LedgerRow]:
        """Rows matching ``query``, oldest first (viewed_at, then view id), or newest first."""

    def iter_views(self, query: LedgerQuery, batch: int = 1000) -> AsyncIterator[LedgerRow]:
        """Every row matching ``query``, oldest first, fetched in batches."""

    async def upkeep(self, now_ms: int, keep_days: int | None) -> None:
        """Storage chores the worker runs now and then: rows older than ``keep_days``
        removed (in bounded steps), and whatever the backend prepares ahead."""
