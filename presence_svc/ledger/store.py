"""What a ledger backend provides: idempotent batch inserts and keyset reads; and what the
SQL backends share: the keyset page's query and the iteration over pages."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from presence_svc.ledger.entry import LedgerRow

__all__ = ["VIEW_COLUMNS", "LedgerQuery", "LedgerStore", "iter_pages", "select_views"]

VIEW_COLUMNS = "view_id, artifact_id, version_id, user_id, session_id, viewed_at"
"""The ``views`` table's columns, in ``LedgerRow`` order."""


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
    shown_to: str | None = None
    """Leave out the rows of users whose view history is hidden (the users directory's
    ``privacy`` table, on the same database), except this user's own; None: every row
    (admins, exports)."""


class LedgerStore(Protocol):
    async def ping(self) -> None:
        """Raise if the database cannot be reached now."""

    async def insert_views(self, rows: Sequence[LedgerRow]) -> int:
        """Insert in one transaction, ignoring view ids already present; returns new rows."""

    async def query_views(self, query: LedgerQuery, limit: int) -> list[LedgerRow]:
        """Rows matching ``query``, oldest first (viewed_at, then view id), or newest first."""

    def iter_views(self, query: LedgerQuery, batch: int = 1000) -> AsyncIterator[LedgerRow]:
        """Every row matching ``query``, oldest first, fetched in batches."""

    async def erase_user(self, user_id: str, tombstone: str, limit: int) -> int:
        """Up to ``limit`` of the user's rows: ``tombstone`` for the user id, no session id
        (the row stays, so counts from the ledger do not change); returns how many."""

    async def upkeep(self, now_ms: int, keep_days: int | None) -> None:
        """Storage chores the worker runs now and then: rows older than ``keep_days``
        removed (in bounded steps), and whatever the backend prepares ahead."""


def select_views(
    query: LedgerQuery, limit: int, mark: Callable[[int], str]
) -> tuple[str, list[object]]:
    """The SELECT of one keyset page on ``views`` and its parameters; ``mark(n)`` is the
    backend's placeholder for the n-th parameter (counting from 1)."""
    params: list[object] = []

    def bind(value: object) -> str:
        params.append(value)
        return mark(len(params))

    conditions = (
        ("artifact_id = ", query.artifact_id),
        ("user_id = ", query.user_id),
        ("viewed_at >= ", query.since_ms),
        ("viewed_at < ", query.until_ms),
    )
    where = [sql + bind(value) for sql, value in conditions if value is not None]
    if query.shown_to is not None:
        where.append(
            "user_id NOT IN (SELECT user_id FROM privacy WHERE view_history = 'hidden' "
            f"AND user_id <> {bind(query.shown_to)})"
        )
    if query.after is not None:
        op = "<" if query.newest_first else ">"
        viewed_at_ms, view_id = query.after
        where.append(f"(viewed_at, view_id) {op} ({bind(viewed_at_ms)}, {bind(view_id)})")
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    order = "viewed_at DESC, view_id DESC" if query.newest_first else "viewed_at, view_id"
    return f"SELECT {VIEW_COLUMNS} FROM views {clause}ORDER BY {order} LIMIT {bind(limit)}", params


async def iter_pages(
    query_views: Callable[[LedgerQuery, int], Awaitable[list[LedgerRow]]],
    query: LedgerQuery,
    batch: int,
) -> AsyncIterator[LedgerRow]:
    """``LedgerStore.iter_views`` on a backend's ``query_views``: pages of ``batch`` rows,
    each after the last row of the one before, until a page comes back short."""
    while True:
        rows = await query_views(query, batch)
        for row in rows:
            yield row
        if len(rows) < batch:
            return
        last = rows[-1]
        query = dataclasses.replace(query, after=(last.viewed_at_ms, last.view_id))
