"""What a database backend must provide: the ledger and the users directory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

__all__ = ["Database", "LedgerQuery", "LedgerRow", "Profile"]


@dataclass(frozen=True, slots=True)
class Profile:
    user_id: str
    name: str
    avatar_url: str | None
    updated_at_ms: int


class LedgerRow(NamedTuple):
    """One counted view. ``view_id`` is unique: writing a row twice keeps one.

    A tuple, so a batch goes to the database driver as it is, with no copy per row."""

    view_id: str
    artifact_id: str
    version_id: str
    user_id: str
    session_id: str | None
    viewed_at_ms: int


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


class Database(Protocol):
    async def open(self) -> None:
        """Connect and create or migrate the schema."""

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    # The ledger.
    async def insert_views(self, rows: Sequence[LedgerRow]) -> int:
        """Insert in one transaction, ignoring view ids already present; returns new rows."""

    async def query_views(self, query: LedgerQuery, limit: int) -> list[LedgerRow]:
        """Rows matching ``query``, oldest first (viewed_at, then view id), or newest first."""

    def iter_views(self, query: LedgerQuery, batch: int = 1000) -> AsyncIterator[LedgerRow]:
        """Every row matching ``query``, oldest first, fetched in batches."""

    # The users directory.
    async def get_profile(self, user_id: str) -> Profile | None: ...

    async def get_profiles(self, user_ids: Iterable[str]) -> dict[str, Profile]: ...

    async def put_profile(self, user_id: str, name: str, avatar_url: str | None) -> Profile: ...

    async def delete_profile(self, user_id: str) -> bool: ...
