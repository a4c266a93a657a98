"""The events webhooks deliver, derived from what the presence writers append to the
partition outboxes and from the views streams; each with an id that is the same however
often its entry is read (the idempotency key receivers dedupe on).

An outbox entry is msgpack ``[artifact, online, sessions, events, active, now_ms,
online_before]`` (see docs/data-model.md): the users online before and after the change
(hidden ones included, who announce no join or leave): 0 before and some after is
``artifact.occupied``, some before and 0 after is ``artifact.vacated`` (with the reason of
the last leave, else ``left``). An entry without ``online_before`` (written before it was
added) derives it as ``online - joins + leaves``. A room in interval mode (as
its event streams judge it, ``live.events.interval``) sends its joins and leaves as one
``presence.interval`` per interval, netted by the same ``IntervalBatch`` the streams use;
the entries behind an open interval stay unacknowledged until it is queued.

An outbox entry with the field ``e`` instead is one engagement event
(``lib/outbox_event.lua``): msgpack ``[kind, user, artifact, version, now_ms, latest,
engaged_ms]``, ``seen`` -> ``version.seen``, ``read`` -> ``version.read``; the user is ''
when the viewer hid their view history (``userId`` null). It is never held by an interval.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from presence_svc.ledger.entry import parse_entry
from presence_svc.live.events.interval import IntervalBatch, LargeRooms, Mode
from presence_svc.live.store import PresenceRow
from presence_svc.timefmt import to_iso

__all__ = ["EntryRef", "Event", "PresenceEvents", "engagement_event", "view_event"]

_DECODER = msgspec.msgpack.Decoder(list[Any])

EntryRef = tuple[str, bytes]
"""An outbox entry: its stream and id."""


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    event_type: str
    artifact_id: str
    at_ms: int
    data: dict[str, Any]

    def body(self) -> str:
        """The JSON delivered (and signed): ``{id, type, timestamp, data}``."""
        return json.dumps(
            {
                "id": self.event_id,
                "type": self.event_type,
                "timestamp": to_iso(self.at_ms),
                "data": self.data,
            },
            separators=(",", ":"),
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def view_event(fields: Sequence[bytes]) -> Event:
    """``view.counted`` for a views stream entry (ValueError if it is not a view)."""
    row = parse_entry(fields)
    return Event(
        f"vw_{row.view_id}",
        "view.counted",
        row.artifact_id,
        row.viewed_at_ms,
        {
            "artifactId": row.artifact_id,
            "versionId": row.version_id,
            "userId": row.user_id,
            "viewId": row.view_id,
        },
    )


_ENGAGEMENT_TYPES = {"seen": "version.seen", "read": "version.read"}


def _base_id(ref: EntryRef) -> str:
    """``ev_<partition tag>_<entry id>``: unique per outbox entry, the same on every read."""
    return f"ev_{ref[0].split('{', 1)[-1].split('}', 1)[0]}_{_text(ref[1])}"


def engagement_event(ref: EntryRef, packed: bytes) -> Event:
    """``version.seen`` / ``version.read`` for an outbox entry's field ``e`` (ValueError if
    it is not one)."""
    try:
        items = _DECODER.decode(packed)
        kind = _ENGAGEMENT_TYPES[_text(items[0])]
        user, artifact, version = _text(items[1]), _text(items[2]), _text(items[3])
        now_ms, latest, engaged_ms = int(items[4]), bool(int(items[5])), int(items[6])
    except (msgspec.DecodeError, IndexError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not an engagement entry: {exc}") from exc
    data: dict[str, Any] = {
        "artifactId": artifact,
        "versionId": version,
        "userId": user or None,
        "latest": latest,
    }
    if kind == "version.read":
        data["engagedMs"] = engaged_ms
    return Event(f"{_base_id(ref)}_0", kind, artifact, now_ms, data)


@dataclass(slots=True)
class _Open:
    """An artifact in interval mode: its open interval and the entries behind it."""

    first_id: str
    opened_ms: int
    batch: IntervalBatch = field(default_factory=IntervalBatch)
    online: int = 0
    entries: list[EntryRef] = field(default_factory=list)


class PresenceEvents:
    """Outbox entries -> events, keeping each large room's open interval."""

    def __init__(self, rooms: LargeRooms) -> None:
        self.rooms = rooms
        self._modes: dict[str, Mode] = {}
        """Artifacts in interval mode (any other is in exact mode)."""
        self._open: dict[str, _Open] = {}

    def derive(self, ref: EntryRef, fields: Sequence[bytes]) -> tuple[list[Event], bool]:
        """The entry's events now, and whether the entry is held by an open interval (to
        be acknowledged once ``flush`` hands that interval out). ValueError if malformed."""
        if len(fields) == 2 and fields[0] == b"e":
            return [engagement_event(ref, fields[1])], False
        if len(fields) != 2 or fields[0] != b"m":
            raise ValueError("not an outbox entry: expected the one field 'm' or 'e'")
        try:
            items = _DECODER.decode(fields[1])
            artifact, online, changes, now_ms = (
                _text(items[0]),
                int(items[1]),
                items[3],
                int(items[5]),
            )
            # the writers' count before the change (older entries: derived from events)
            counted_before = int(items[6]) if len(items) > 6 else None
        except (msgspec.DecodeError, IndexError, TypeError, ValueError) as exc:
            raise ValueError(f"not an outbox entry: {exc}") from exc
        base = _base_id(ref)
        joins = [c for c in changes if isinstance(c, list) and c and _text(c[0]) == "join"]
        leaves = [c for c in changes if isinstance(c, list) and c and _text(c[0]) == "leave"]
        before = online - len(joins) + len(leaves) if counted_before is None else counted_before
        out: list[Event] = []

        def add(kind: str, data: dict[str, Any]) -> None:
            out.append(Event(f"{base}_{len(out)}", kind, artifact, now_ms, data))

        if before <= 0 < online:
            add("artifact.occupied", {"artifactId": artifact, "online": online})
        mode = self._next_mode(artifact, online)
        held = False
        if mode == "interval":
            held = self._add_to_interval(ref, artifact, online, now_ms, joins, leaves, base)
        else:
            for change in changes:
                if not isinstance(change, list) or not change:
                    continue
                kind = _text(change[0])
                if kind == "join":
                    add("presence.join", _join_data(artifact, change))
                elif kind == "leave":
                    add("presence.leave", _leave_data(artifact, change))
        if before > 0 and online == 0:
            reason = _text(leaves[-1][2]) if leaves and len(leaves[-1]) > 2 else "left"
            add("artifact.vacated", {"artifactId": artifact, "reason": reason})
        return out, held

    def _next_mode(self, artifact: str, online: int) -> Mode:
        was = self._modes.get(artifact)
        mode = self.rooms.first_mode(online) if was is None else self.rooms.next_mode(was, online)
        if mode == "interval":
            self._modes[artifact] = mode
        else:
            self._modes.pop(artifact, None)
        return mode

    def _add_to_interval(
        self,
        ref: EntryRef,
        artifact: str,
        online: int,
        now_ms: int,
        joins: list[list[Any]],
        leaves: list[list[Any]],
        base: str,
    ) -> bool:
        if not joins and not leaves:
            return False
        opened = self._open.get(artifact)
        if opened is None:
            opened = self._open[artifact] = _Open(base, now_ms)
        for join in joins:
            data = _join_data(artifact, join)
            row = PresenceRow(data["userId"], data.get("versionId"), None, now_ms, 1)
            opened.batch.join(row)
        for leave in leaves:
            opened.batch.leave(_text(leave[1]), _text(leave[2]) if len(leave) > 2 else "left")
        opened.online = online
        opened.entries.append(ref)
        return True

    def flush(
        self, now_ms: int, *, everything: bool = False
    ) -> list[tuple[Event | None, list[EntryRef]]]:
        """The intervals that are over (or all, ``everything``): one ``presence.interval``
        each (None if it netted to nothing), with the entries it holds."""
        due_ms = int(self.rooms.interval_s * 1000)
        out: list[tuple[Event | None, list[EntryRef]]] = []
        for artifact in list(self._open):
            opened = self._open[artifact]
            if not everything and artifact in self._modes and now_ms - opened.opened_ms < due_ms:
                continue
            del self._open[artifact]
            taken = opened.batch.take(self.rooms.list_cap)
            if not taken.joined and not taken.left:
                out.append((None, opened.entries))
                continue
            data = {
                "artifactId": artifact,
                "online": opened.online,
                "joined": [
                    {"userId": r.user_id, **({"versionId": r.version_id} if r.version_id else {})}
                    for r in taken.joined
                ],
                "left": [{"userId": u, "reason": reason} for u, reason in taken.left],
                "more": taken.more,
            }
            event = Event(f"{opened.first_id}_i", "presence.interval", artifact, now_ms, data)
            out.append((event, opened.entries))
        return out

    def holding(self) -> int:
        return sum(len(o.entries) for o in self._open.values())


def _join_data(artifact: str, change: list[Any]) -> dict[str, Any]:
    data: dict[str, Any] = {"artifactId": artifact, "userId": _text(change[1])}
    if len(change) > 2 and change[2]:
        data["versionId"] = _text(change[2])
    if len(change) > 5 and change[5]:
        data["status"] = _text(change[5])
    return data


def _leave_data(artifact: str, change: list[Any]) -> dict[str, Any]:
    reason = _text(change[2]) if len(change) > 2 else "left"
    return {"artifactId": artifact, "userId": _text(change[1]), "reason": reason}
