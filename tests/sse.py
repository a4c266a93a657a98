"""A small server-sent-events reader for tests: parses a real HTTP response as it streams."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass
class Event:
    event: str
    data: Any
    id: str | None
    at: float


class EventStream:
    """Reads events in the background; ``next``/``wait_for`` take them in order."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.events: list[Event] = []
        self.comments: list[str] = []
        self.ended = asyncio.Event()
        self.last_id: str | None = None
        self._taken = 0
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        event, data, event_id = "message", [], None
        try:
            while line := await self.response.content.readline():
                text = line.decode().rstrip("\r\n")
                if not text:
                    if data:
                        if event_id is not None:
                            self.last_id = event_id
                        parsed = json.loads("\n".join(data))
                        self.events.append(Event(event, parsed, event_id, time.monotonic()))
                        self._changed.set()
                    event, data, event_id = "message", [], None
                elif text.startswith(":"):
                    self.comments.append(text[1:].strip())
                    self._changed.set()
                else:
                    field, _, value = text.partition(":")
                    value = value.removeprefix(" ")
                    if field == "event":
                        event = value
                    elif field == "data":
                        data.append(value)
                    elif field == "id":
                        event_id = value
        except (aiohttp.ClientError, ConnectionError):
            pass
        finally:
            self.ended.set()
            self._changed.set()

    async def next(self, within_s: float = 10.0) -> Event:
        """The next event not taken yet."""
        deadline = time.monotonic() + within_s
        while self._taken >= len(self.events):
            if self.ended.is_set():
                raise AssertionError("the stream ended")
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no event within {within_s}s (had {self.events})"
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                continue
        self._taken += 1
        return self.events[self._taken - 1]

    async def next_of(self, kind: str, within_s: float = 10.0) -> Event:
        """The next event of ``kind``, skipping others (e.g. ``count``)."""
        while True:
            event = await self.next(within_s)
            if event.event == kind:
                return event

    async def wait_until(self, ok: Callable[[], bool], within_s: float = 10.0) -> None:
        deadline = time.monotonic() + within_s
        while not ok():
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"condition not met within {within_s}s (had {self.events})"
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
            except TimeoutError:
                continue

    def pending(self) -> list[Event]:
        return self.events[self._taken :]

    async def close(self) -> None:
        self.response.close()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
