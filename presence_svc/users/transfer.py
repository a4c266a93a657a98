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
from typing import IO, Annotated

import msgspec

from presence_svc.jsonl import BadLine, Progress, decode_lines
from presence_svc.timefmt import from_iso, to_iso
from presence_svc.users.directory import Profile, UsersDirectory

__all__ = ["BATCH", "ProfilesImport", "export_profiles", "import_profiles"]

BATCH = 1000
"""Profiles per transaction on import (and per keyset page on export)."""

_Text = Annotated[str, msgspec.Meta(min_length=1, pattern="^[^\x00]*$")]
"""Non-empty, and without NUL (PostgreSQL text cannot hold one)."""


class _Line(msgspec.Struct, rename="camel", kw_only=True):
    """One profile line; unknown keys are ignored."""

    user_id: _Text
    name: _Text
    avatar_url: Annotated[str, msgspec.Meta(pattern="^[^\x00]*$")] | None = None
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
    try:
        updated_at_ms = from_iso(line.updated_at)
    except ValueError as exc:
        raise BadLine(number, f"updatedAt {line.updated_at!r} is not a time: {exc}") from exc
    return Profile(line.user_id, line.name, line.avatar_url or None, updated_at_ms)


async def import_profiles(
    users: UsersDirectory,
    source: Iterable[bytes],
    *,
    batch: int = BATCH,
    progress: IO[str] | None = None,
) -> ProfilesImport:
    """Merge every profile of ``source`` (lines of JSON) into ``users``; raises ``BadLine``
    at the first bad line, once the profiles before it are written."""
    meter = Progress(progress)
    pending: dict[str, Profile] = {}
    read = written = 0

    async def flush() -> None:
        nonlocal written
        if pending:
            written += await users.merge_profiles(list(pending.values()))
            pending.clear()
            meter.show(f"read {read} profiles, {written} written")

    try:
        for number, line in decode_lines(source, _DECODER):
            profile = _profile(number, line)
            read += 1
            held = pending.get(profile.user_id)
            if held is None or held.updated_at_ms < profile.updated_at_ms:
                pending[profile.user_id] = profile
            if len(pending) >= batch:
                await flush()
    except BadLine:
        await flush()
        raise
    else:
        await flush()
    finally:
        meter.done(f"read {read} profiles, {written} written")
    return ProfilesImport(read, written)
