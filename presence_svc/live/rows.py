"""Presence rows as clients see them: the one place that joins the users directory in.

The presence list, the events stream's ``sync`` and its ``join`` events all send the same
row, with ``name`` and ``avatarUrl`` read from the directory at the time of sending (Redis
keeps opaque ids only), so a renamed or erased user shows up right everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

from presence_svc.live.store import PresencePage, PresenceRow
from presence_svc.schemas import PresenceOut, PresenceUser
from presence_svc.timefmt import to_iso
from presence_svc.users.directory import Profile, UsersDirectory

__all__ = ["presence_out", "presence_user", "presence_users"]


def presence_user(row: PresenceRow, profile: Profile | None) -> PresenceUser:
    return PresenceUser(
        user_id=row.user_id,
        name=profile.name if profile else None,
        avatar_url=profile.avatar_url if profile else None,
        version_id=row.version_id,
        last_seen=to_iso(row.last_seen_ms),
        sessions=row.sessions,
        state=row.state,
    )


async def presence_users(users: UsersDirectory, rows: Sequence[PresenceRow]) -> list[PresenceUser]:
    """The rows with their profiles, fetched in one query."""
    profiles = await users.get_profiles(row.user_id for row in rows)
    return [presence_user(row, profiles.get(row.user_id)) for row in rows]


async def presence_out(users: UsersDirectory, page: PresencePage) -> PresenceOut:
    return PresenceOut(
        online=page.counts.online,
        sessions=page.counts.sessions,
        users=await presence_users(users, page.rows),
        next_cursor=page.next_cursor,
    )
