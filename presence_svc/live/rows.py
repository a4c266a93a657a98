"""Presence rows as clients see them: the one place that joins the users directory in.

The presence list, the events stream's ``sync`` and its ``join`` events all send the same
row, with ``name`` and ``avatarUrl`` read from the directory at the time of sending (Redis
keeps opaque ids only), so a renamed or erased user shows up right everywhere. When the
directory cannot be read (the database is down) the rows still go out, without names, and
say so (``namesJoined: false``): who is here matters more than what they are called.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from presence_svc.live.recent import RecentPage
from presence_svc.live.store import PresencePage, PresenceRow, SessionMeta
from presence_svc.schemas import (
    JoinEvent,
    PresenceListOut,
    PresenceOut,
    PresenceUser,
    RecentUserOut,
    SessionMetaOut,
)
from presence_svc.timefmt import to_iso
from presence_svc.users.directory import (
    DatabaseUnavailable,
    Profile,
    ProfileLookup,
    UsersDirectory,
)

__all__ = [
    "join_event",
    "presence_out",
    "presence_user",
    "presence_users",
    "profiles_or_none",
    "with_recent",
    "without_hidden",
]

log = logging.getLogger(__name__)


_User = TypeVar("_User", bound=PresenceUser)
_Page = TypeVar("_Page", PresencePage, RecentPage)


def without_hidden(page: _Page, hidden: Callable[[str], bool]) -> _Page:
    """``page`` without the rows of users whose presence is hidden (the counts unchanged).
    The scripts leave out sessions marked hidden; this covers a user who turned invisible
    since their sessions' last heartbeat, and the recently-here rows from before."""
    rows = [row for row in page.rows if not hidden(row.user_id)]
    if len(rows) == len(page.rows):
        return page
    return dataclasses.replace(page, rows=rows)


def _row_out(kind: type[_User], row: PresenceRow, profile: Profile | None, **more: Any) -> _User:
    """``row`` as ``kind`` sends it, with the profile's name and avatar (None without one)."""
    return kind(
        user_id=row.user_id,
        name=profile.name if profile else None,
        avatar_url=profile.avatar_url if profile else None,
        version_id=row.version_id,
        last_seen=to_iso(row.last_seen_ms),
        sessions=row.sessions,
        state=row.state,
        status=row.status,
        session_list=None if row.metas is None else [_meta_out(m) for m in row.metas],
        **more,
    )


def _meta_out(meta: SessionMeta) -> SessionMetaOut:
    return SessionMetaOut(
        version_id=meta.version_id,
        state=meta.state,
        last_seen=to_iso(meta.last_seen_ms),
        status=meta.status,
    )


def presence_user(row: PresenceRow, profile: Profile | None) -> PresenceUser:
    return _row_out(PresenceUser, row, profile)


def join_event(row: PresenceRow, profile: Profile | None, names_joined: bool) -> JoinEvent:
    return _row_out(JoinEvent, row, profile, names_joined=names_joined)


async def profiles_or_none(
    lookup: ProfileLookup, user_ids: Iterable[str]
) -> dict[str, Profile] | None:
    """The profiles of ``user_ids`` in one query; None when the directory is unavailable."""
    try:
        return await lookup(user_ids)
    except DatabaseUnavailable as exc:
        log.warning("users directory unavailable; names left out", extra={"error": str(exc)})
        return None


async def presence_users(
    users: UsersDirectory, rows: Sequence[PresenceRow]
) -> tuple[list[PresenceUser], bool]:
    """The rows with their profiles, and whether the profiles could be read."""
    profiles = await profiles_or_none(users.get_profiles, (row.user_id for row in rows))
    found = profiles or {}
    # ``presence_user`` inlined: a page of 100 rows spent a third of its Python time in
    # the two calls and the keyword dict per row
    out = []
    for row in rows:
        profile = found.get(row.user_id)
        metas = row.metas
        out.append(
            PresenceUser(
                user_id=row.user_id,
                name=profile.name if profile else None,
                avatar_url=profile.avatar_url if profile else None,
                version_id=row.version_id,
                last_seen=to_iso(row.last_seen_ms),
                sessions=row.sessions,
                state=row.state,
                status=row.status,
                session_list=None if metas is None else [_meta_out(m) for m in metas],
            )
        )
    return out, profiles is not None


async def presence_out(users: UsersDirectory, page: PresencePage) -> PresenceOut:
    rows, joined = await presence_users(users, page.rows)
    return PresenceOut(
        online=page.counts.online,
        sessions=page.counts.sessions,
        active=page.counts.active,
        away=page.counts.away,
        users=rows,
        next_cursor=page.next_cursor,
        names_joined=joined,
    )


async def with_recent(users: UsersDirectory, out: PresenceOut, page: RecentPage) -> PresenceListOut:
    """``out`` with the recently-here page (``?include=recent``), names joined the same way."""
    profiles = await profiles_or_none(users.get_profiles, (row.user_id for row in page.rows))
    found = profiles or {}
    recent = [
        RecentUserOut(
            user_id=row.user_id,
            name=profile.name if profile else None,
            avatar_url=profile.avatar_url if profile else None,
            last_seen=to_iso(row.last_seen_ms),
            reason=row.reason,  # type: ignore[arg-type]  # "left" | "timeout" | None
        )
        for row in page.rows
        for profile in (found.get(row.user_id),)
    ]
    return PresenceListOut(
        online=out.online,
        sessions=out.sessions,
        active=out.active,
        away=out.away,
        users=out.users,
        next_cursor=out.next_cursor,
        names_joined=out.names_joined and profiles is not None,
        recent=recent,
        recent_next_cursor=page.next_cursor,
    )
