"""Live events of an artifact (``GET /v1/artifacts/{id}/events``) as typed Python objects.

``async for event in client.events("doc-1")`` yields ``SyncEvent``, ``JoinEvent``,
``LeaveEvent``, ``StateEvent``, ``SessionsEvent``, ``CountEvent`` and ``IntervalEvent``, the
shapes of docs/events.md (the browser SDK applies the same). A dropped stream is reopened
with the browser SDK's backoff, sending ``Last-Event-ID`` so the service resumes it (or
starts over with a ``sync``); ``snapshot.LivePresence`` keeps who is here from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import aiohttp
import msgspec

from presence_svc.client.errors import PresenceClientError
from presence_svc.client.models import OnlineCounts, PresenceUser, _Model
from presence_svc.client.retry import parse_retry_after

if TYPE_CHECKING:
    from presence_svc.client.client import PresenceClient

__all__ = [
    "CountEvent",
    "EventStream",
    "IntervalEvent",
    "JoinEvent",
    "LeaveEvent",
    "PresenceEvent",
    "SessionsEvent",
    "StateEvent",
    "SyncEvent",
]

log = logging.getLogger(__name__)

Mode = Literal["exact", "interval"]


class SyncEvent(_Model, frozen=True, kw_only=True):
    """The first page of who is here: replaces what a client kept."""

    kind: ClassVar[str] = "sync"
    online: int
    sessions: int
    users: list[PresenceUser]
    next_cursor: str | None = None
    names_joined: bool = True
    mode: Mode = "exact"
    """``interval``: a large room, whose changes come as ``IntervalEvent``s."""
    active: int = 0
    """Users online with an active session."""
    away: int = 0
    """Users online whose every session is away."""


class JoinEvent(PresenceUser, frozen=True, kw_only=True):
    kind: ClassVar[str] = "join"
    names_joined: bool = True


class LeaveEvent(_Model, frozen=True, kw_only=True):
    kind: ClassVar[str] = "leave"
    user_id: str
    reason: str
    """``left`` or ``timeout``."""


class StateEvent(_Model, frozen=True, kw_only=True):
    kind: ClassVar[str] = "state"
    user_id: str
    version_id: str | None = None
    state: dict[str, Any] | None = None
    status: str | None = None
    """``active`` or ``away``, from a service that tracks it."""


class SessionsEvent(_Model, frozen=True, kw_only=True):
    kind: ClassVar[str] = "sessions"
    user_id: str
    sessions: int


class CountEvent(OnlineCounts, frozen=True, kw_only=True):
    kind: ClassVar[str] = "count"


class IntervalEvent(OnlineCounts, frozen=True, kw_only=True):
    """A large room's changes since the last one: at most 100 of each, ``more`` if cut."""

    kind: ClassVar[str] = "interval"
    joined: list[PresenceUser]
    left: list[LeaveEvent]
    more: bool = False
    names_joined: bool = True


PresenceEvent = (
    SyncEvent | JoinEvent | LeaveEvent | StateEvent | SessionsEvent | CountEvent | IntervalEvent
)
_TYPES: dict[str, type[PresenceEvent]] = {
    t.kind: t for t in (SyncEvent, JoinEvent, LeaveEvent, StateEvent, SessionsEvent, CountEvent)
} | {IntervalEvent.kind: IntervalEvent}
_TEXT = msgspec.json.Decoder()


class _Reconnect(Exception):
    """The stream ended or failed in a way worth another try."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class EventStream:
    """An artifact's events, reconnecting until ``aclose()`` (or a non-transient error:
    401 after a fresh token, 403, 400, which are raised). ``last_event_id`` is where a
    reconnect resumes; ``reconnects`` counts the streams opened after the first."""

    def __init__(
        self,
        client: PresenceClient,
        artifact_id: str,
        *,
        limit: int = 100,
        last_event_id: str | None = None,
        idle_timeout_s: float = 45.0,
    ) -> None:
        self._client = client
        self.artifact_id = artifact_id
        self.limit = limit
        self.last_event_id = last_event_id
        self.reconnects = 0
        self._idle_timeout_s = idle_timeout_s
        self._response: aiohttp.ClientResponse | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _stopped(self) -> bool:
        return self._closed

    def __aiter__(self) -> AsyncIterator[PresenceEvent]:
        return self._events()

    async def aclose(self) -> None:
        self._closed = True
        if self._response is not None:
            self._response.close()

    async def _events(self) -> AsyncIterator[PresenceEvent]:
        failures = 0
        opened = 0
        while not self.closed:
            try:
                response = await self._open()
                opened += 1
                self.reconnects = opened - 1
                async for event in self._read(response):
                    failures = 0
                    yield event
                raise _Reconnect("the stream ended")
            except _Reconnect as exc:
                if self._stopped():  # aclose() while the stream was open
                    return
                failures += 1
                delay = self._client.retry_delay_s(failures, exc.retry_after_s)
                log.info("events lost; reconnecting", extra={"error": str(exc), "in_s": delay})
                await asyncio.sleep(delay)
            finally:
                if self._response is not None:
                    self._response.close()
                    self._response = None

    async def _open(self) -> aiohttp.ClientResponse:
        """The stream's response (200), after one fresh token on a 401."""
        client = self._client
        try:
            token = await client._current_token()
            response = await self._request(token)
            if response.status == 401 and client._provider is not None:
                response.close()
                if client._token == token:
                    await client._fresh_token()
                response = await self._request(await client._current_token())
        except PresenceClientError as exc:  # token_provider failed: retried as a drop is
            raise _Reconnect(str(exc)) from exc
        if response.status != 200:
            raw = await response.read()
            response.close()
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            problem = _problem(raw)
            detail = problem.get("detail") or problem.get("title") or f"HTTP {response.status}"
            error = PresenceClientError(
                f"events {self.artifact_id}: {response.status} {detail}",
                status=response.status,
                problem=problem,
                retry_after_s=retry_after,
            )
            if error.transient:
                raise _Reconnect(str(error), retry_after)
            raise error
        self._response = response
        return response

    async def _request(self, token: str) -> aiohttp.ClientResponse:
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        url = f"{self._client.base_url}/v1/artifacts/{self.artifact_id}/events"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=self._idle_timeout_s)
        try:
            return await self._client._http().get(
                url, params={"limit": str(self.limit)}, headers=headers, timeout=timeout
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Reconnect(f"{type(exc).__name__}: {exc}") from exc

    async def _read(self, response: aiohttp.ClientResponse) -> AsyncIterator[PresenceEvent]:
        """The frames of one response, decoded; unknown events are skipped."""
        name, data, event_id = "message", [], None
        try:
            while line := await response.content.readline():
                text = line.decode().rstrip("\r\n")
                if text:
                    if not text.startswith(":"):
                        field, _, value = text.partition(":")
                        value = value.removeprefix(" ")
                        if field == "event":
                            name = value
                        elif field == "data":
                            data.append(value)
                        elif field == "id":
                            event_id = value
                    continue
                if data and name in _TYPES:
                    event = msgspec.json.decode("\n".join(data), type=_TYPES[name])
                    if event_id is not None:
                        self.last_event_id = event_id
                    yield event
                name, data, event_id = "message", [], None
        except (aiohttp.ClientError, TimeoutError, msgspec.DecodeError) as exc:
            raise _Reconnect(f"{type(exc).__name__}: {exc}") from exc


def _problem(raw: bytes) -> dict[str, Any]:
    with contextlib.suppress(msgspec.DecodeError):
        decoded = _TEXT.decode(raw)
        if isinstance(decoded, dict):
            return decoded
    return {}
