"""The users directory: the only place names and avatars live (Redis and the ledger hold
opaque ids), joined in at read time.

Every method raises ``DatabaseUnavailable`` when the directory cannot be reached now;
readers that can do without names (presence lists) catch that one alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from presence_svc.db.errors import DatabaseUnavailable

__all__ = ["DatabaseUnavailable", "Profile", "ProfileLookup", "UsersDirectory"]


@dataclass(frozen=True, slots=True)
class Profile:
    user_id: str
    name: str
    avatar_url: str | None
    updated_at_ms: int


class UsersDirectory(Protocol):
    async def get_profile(self, user_id: str) -> Profile | None: ...

    async def get_profiles(self, user_ids: Iterable[str]) -> dict[str, Profile]:
        """The profiles that exist among ``user_ids``, in one query."""

    async def put_profile(self, user_id: str, name: str, avatar_url: str | None) -> Profile: ...

    async def delete_profile(self, user_id: str) -> bool: ...

    def iter_profiles(self, batch: int = 1000) -> AsyncIterator[Profile]:
        """Every profile, by user id, fetched in keyset batches (for export)."""

    async def merge_profiles(self, profiles: Sequence[Profile]) -> int:
        """Write profiles as given, ``updated_at_ms`` included, in one transaction; a
        stored profile as new or newer is kept. At most one per user id; returns how
        many were written (for import)."""


class ProfileLookup(Protocol):
    async def __call__(self, user_ids: Iterable[str]) -> dict[str, Profile]: ...
