"""``presence-svc users export`` and ``users import``: the users directory as JSON lines,
``{"userId", "name", "avatarUrl", "updatedAt"}``, one profile per line, by user id.

Import writes each profile with its own ``updatedAt`` and keeps a stored profile that is
as new or newer, so it can be run again after the target took writes of its own without
undoing them. An erasure on the target is not known to the file: a profile erased there
since the export comes back if that export is imported again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO

import msgspec

from presence_svc.jsonl import NulFree, Progress, Text, import_lines, line_time
from presence_svc.timefmt import to_iso
from presence_svc.users.directory import Profile, UsersDirectory

__all__ = ["BATCH", "ProfilesImport", "export_profiles", "import_profiles"]

BATCH = 1000
"""Profiles per transaction on import (and per keyset page on export)."""


class _Line(msgspec.Struct, rename="camel", kw_only=True):
    """One profile line; unknown keys are ignored."""

    user_id: Text
    name: Text
    avatar_url: NulFree | None = None
    updated_at: str


_DECODER = msgspec.json.Decoder(_Line)
_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class ProfilesImport:
    read: int
    written: int

    @property
    def kept(self) -> int:
        """Profiles left as stored, being as new or newer (or repeated in the file)."""
        return self.read - self.written


async def export_profiles(
    users: UsersDirectory, out: IO[str], *, progress: IO[str] | None = None
) -> int:
    """Write every profile, by user id; returns how many. ``progress``: a terminal."""
    meter = Progress(progress)
    written = 0
    try:
        async for profile in users.iter_profiles(BATCH):
            line = _Line(
                user_id=profile.user_id,
                name=profile.name,
                avatar_url=profile.avatar_url,
                updated_at=to_iso(profile.updated_at_ms),
            )
            out.write(_ENCODER.encode(line).decode() + "\n")
            written += 1
            meter.show(f"exported {written} profiles")
    finally:
        meter.done(f"exported {written} profiles")
    return written


def _profile(number: int, line: _Line) -> Profile:
    updated_at_ms = line_time(number, "updatedAt", line.updated_at)
    return Profile(line.user_id, line.name, line.avatar_url or None, updated_at_ms)


class _Profiles:
    """The profiles held for the next merge: the newest of each user's."""

    def __init__(self, users: UsersDirectory) -> None:
        self._users = users
        self._held: dict[str, Profile] = {}

    def __len__(self) -> int:
        return len(self._held)

    def add(self, number: int, line: _Line) -> None:
        profile = _profile(number, line)
        held = self._held.get(profile.user_id)
        if held is None or held.updated_at_ms < profile.updated_at_ms:
            self._held[profile.user_id] = profile

    async def write(self) -> int:
        written = await self._users.merge_profiles(list(self._held.values()))
        self._held.clear()
        return written


async def import_profiles(
    users: UsersDirectory,
    source: Iterable[bytes],
    *,
    batch: int = BATCH,
    progress: IO[str] | None = None,
) -> ProfilesImport:
    """Merge every profile of ``source`` (lines of JSON) into ``users``; raises ``BadLine``
    at the first bad line, once the profiles before it are written."""
    read, written = await import_lines(
        source,
        _DECODER,
        _Profiles(users),
        batch=batch,
        progress=progress,
        status=lambda read, written: f"read {read} profiles, {written} written",
    )
    return ProfilesImport(read, written)
