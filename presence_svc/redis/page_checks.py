"""The plain read commands that tell whether a kept presence page still holds.

A page kept by the page cache (``http/page_cache.py``) was built at the artifact's page
mark (``lua/lib/pagemark.lua``), and holds while the mark does, apart from sessions that
time out meanwhile. Under one mark no deadline moves earlier, so no session the page
counts times out before the first deadline it was built with (its ``holds_until``): the
mark (``HGET``) and Redis's clock (``TIME``, the scripts' NOW) tell the rest. Two plain
commands, packed once per artifact and sent in the loop turn's batch
(``RedisConnection.read_in_turn``), instead of the page script with the kept mark (a
script call cost Redis ~8 us, these ~1.5 us; and this process half of what it spent).
"""

from __future__ import annotations

from presence_svc.redis.keys import ArtifactKeys
from presence_svc.redis.resp import Command, Commands, bulk

__all__ = ["PageChecks"]

_TIME = b"*1\r\n$4\r\nTIME\r\n"
_CACHED = 16_384
"""Artifacts whose check is kept packed (~100 B each); past it the cache starts over."""


class PageChecks:
    """Builds the commands; ``RedisConnection.read_in_turn`` runs them."""

    def __init__(self) -> None:
        self._packed: dict[str, Commands] = {}

    def of(self, k: ArtifactKeys) -> Commands:
        """``HGET`` of the artifact's page mark, then ``TIME``: the same bytes for every
        check of the artifact."""
        commands = self._packed.get(k.info)
        if commands is None:
            if len(self._packed) >= _CACHED:
                self._packed.clear()
            info = k.info
            packed = b"*3\r\n$4\r\nHGET\r\n" + bulk(info) + b"$2\r\n~c\r\n" + _TIME

            def tuples() -> list[Command]:
                return [("HGET", info, "~c"), ("TIME",)]

            commands = self._packed[info] = Commands(packed, 2, tuples)
        return commands
