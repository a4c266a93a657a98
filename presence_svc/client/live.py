"""A joined session: a task that heartbeats on the service's interval until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from presence_svc.client.errors import PresenceClientError
from presence_svc.client.models import HeartbeatResult, Status

if TYPE_CHECKING:
    from presence_svc.client.client import PresenceClient

__all__ = ["LiveSession"]

log = logging.getLogger(__name__)
MIN_INTERVAL_S = 1.0
MAX_ENGAGED_MS = 86_400_000
"""The most one heartbeat may carry; the rest goes with the next one."""


class LiveSession:
    """Made by ``PresenceClient.join``. ``counts`` holds the last answer; ``error`` the last
    failure (cleared by the next success); ``running`` is false once stopped, or after a
    failure that retrying cannot fix (401 after a fresh token, 403, 409)."""

    def __init__(
        self,
        client: PresenceClient,
        artifact_id: str,
        session_id: str,
        *,
        version_id: str | None,
        state: dict[str, Any] | None,
    ) -> None:
        self._client = client
        self.artifact_id = artifact_id
        self.session_id = session_id
        self.version_id = version_id
        self.state = state
        self.status: Status = "active"
        self.counts: HeartbeatResult | None = None
        self.error: PresenceClientError | None = None
        self.heartbeats = 0
        self.engaged_ms = 0
        """Engaged time reported with ``add_engaged`` and not sent yet."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._done: list[Callable[[LiveSession], object]] = []
        self._stopped = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        await self._beat(attempts=None)
        self._task = asyncio.create_task(self._run(), name=f"presence:{self.artifact_id}")

    def set_state(self, state: dict[str, Any] | None) -> None:
        """Send ``state`` with an immediate heartbeat."""
        self.state = state
        self._wake.set()

    def set_status(self, status: Status) -> None:
        """``"away"`` (nobody looking) or ``"active"`` again, with an immediate heartbeat."""
        self.status = status
        self._wake.set()

    def set_version(self, version_id: str) -> None:
        """Send the new version with an immediate heartbeat (record its view yourself)."""
        self.version_id = version_id
        self._wake.set()

    def add_engaged(self, ms: int) -> None:
        """Count ``ms`` of engaged time (someone really looking); sent with the next
        heartbeat, or with the leave on ``stop``. The service credits it to the session's
        version only if a view of it was recorded, and at most what the time since the
        previous report allows."""
        if ms < 0:
            raise ValueError("engaged time cannot be negative")
        self.engaged_ms += int(ms)

    async def stop(self, *, leave: bool = True) -> None:
        """Stop heartbeating and, unless ``leave`` is false, take the session offline."""
        if self._stopped:
            return
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            if leave:
                engaged, self.engaged_ms = min(self.engaged_ms, MAX_ENGAGED_MS), 0
                await self._client.leave(
                    self.artifact_id, session_id=self.session_id, engaged_ms=engaged
                )
        except PresenceClientError as exc:
            log.warning("leave failed", extra={"artifact": self.artifact_id, "error": str(exc)})
        finally:
            for callback in self._done:
                callback(self)

    def add_done_callback(self, callback: Callable[[LiveSession], object]) -> None:
        self._done.append(callback)

    async def _beat(self, attempts: int | None) -> HeartbeatResult:
        body: dict[str, Any] = {"artifactId": self.artifact_id, "sessionId": self.session_id}
        if self.version_id is not None:
            body["versionId"] = self.version_id
        if self.state is not None:
            body["state"] = self.state
        if self.status != "active":
            body["status"] = self.status
        engaged = min(self.engaged_ms, MAX_ENGAGED_MS)
        if engaged:
            body["engagedMs"] = engaged
        result = await self._client._call(
            "POST", "/v1/heartbeat", HeartbeatResult, body=body, attempts=attempts
        )
        self.engaged_ms -= engaged  # what came meanwhile waits for the next heartbeat
        self.counts = result
        self.error = None
        self.heartbeats += 1
        return result

    def _next_delay(self) -> float:
        interval = max(MIN_INTERVAL_S, self.counts.interval_s if self.counts else 15.0)
        return interval * (0.9 + 0.2 * self._client.random())

    async def _run(self) -> None:
        delay = self._next_delay()
        failures = 0
        while True:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            try:
                await self._beat(attempts=1)
            except PresenceClientError as exc:
                self.error = exc
                if not exc.transient:
                    log.warning("heartbeats stopped", extra={"error": str(exc)})
                    return
                failures += 1
                delay = self._client.retry_delay_s(failures, exc.retry_after_s)
                continue
            failures = 0
            delay = self._next_delay()
