"""The plain read commands behind a batch of online counts (``live.store.online_json``).

The writers keep each artifact's counts record in its partition's counts hash
(``lua/lib/counts.lua``), already in the answer's JSON. A batch reads them with one plain
``HMGET`` per partition and Redis's clock (``TIME``, sent last: every record was read
before it), all in one round trip (one per node on a Cluster), instead of a script per
partition: a script spent ~1.5 us of Redis per artifact looking at its record and
building its member, a plain ``HMGET`` ~0.2 us. Whether each record still holds is then
told in bulk (``held``), with no loop over the artifacts in Python either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from presence_svc.redis.keys import Keyspace
from presence_svc.redis.resp import Command, Commands, bulk

__all__ = ["CountReads", "clock_ms", "held"]

_TIME = b"*1\r\n$4\r\nTIME\r\n"
_CACHED_IDS = 65_536
"""Artifact ids kept packed as bulk strings (~30 B each); past it the cache starts over."""


class CountReads:
    """Builds the commands; ``RedisConnection.read_commands`` runs them."""

    def __init__(self) -> None:
        self._bulks: dict[str, bytes] = {}
        self._keys: dict[str, bytes] = {}

    def records(self, groups: Sequence[tuple[str, Sequence[str]]]) -> Commands:
        """Per partition tag, ``HMGET`` of its artifacts' records; then ``TIME``. The
        answers: one list per partition (``None`` for an artifact without a record), then
        Redis's clock (see ``clock_ms``)."""
        bulks = self._bulks
        parts: list[bytes] = []
        for tag, ids in groups:
            key = self._keys.get(tag)
            if key is None:
                key = self._keys[tag] = b"$5\r\nHMGET\r\n" + bulk(Keyspace.counts(tag))
            parts.append(b"*%d\r\n" % (len(ids) + 2))
            parts.append(key)
            start = len(parts)
            try:
                parts += map(bulks.__getitem__, ids)
            except KeyError:
                del parts[start:]  # `+=` may have added some: the ids over again
                if len(bulks) + len(ids) > _CACHED_IDS:
                    bulks.clear()
                parts += [bulks.get(a) or bulks.setdefault(a, bulk(a)) for a in ids]
        parts.append(_TIME)

        def tuples() -> list[Command]:
            listed: list[Command] = [("HMGET", Keyspace.counts(t), *ids) for t, ids in groups]
            return [*listed, ("TIME",)]

        return Commands(b"".join(parts), len(groups) + 1, tuples)


def clock_ms(answer: Any) -> int:
    """``TIME``'s answer (seconds, microseconds) in milliseconds, as the scripts' NOW."""
    return int(answer[0]) * 1000 + int(answer[1]) // 1000


def held(records: list[Any], now_ms: int) -> bool:
    """Whether every record is there and holds at ``now_ms``: each is ``{...}`` (no
    session counted: the zeros hold) or ``<until>{...}`` with ``until`` later than now.
    Told in one comparison of the smallest: an until is a deadline in ms, 13 digits
    (2001 to 2286) like ``now``, so it is later exactly when its record sorts above
    ``<now>~`` (``~`` sorts above ``{`` and ``.``), and ``{`` sorts above every digit.
    A record this cannot tell (a fraction, more digits, the same 13) is not told held:
    the caller then asks the script, which is exact for any record. (Fewer digits, a
    deadline before 2001, cannot be a live session's.)"""
    return None not in records and bool(min(records) > b"%d~" % now_ms)
