"""``PresenceClient``: the presence-svc API for services and bots, with the browser SDK's
retry rules (401: a fresh token once; 408/429/5xx/network/token_provider failures: back off,
waiting Retry-After out up to ``max_retry_after_s``)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random as _random
import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import aiohttp
import msgspec

from presence_svc.client.errors import PresenceClientError
from presence_svc.client.events import EventStream
from presence_svc.client.live import LiveSession
from presence_svc.client.models import (
    ArtifactOnline,
    EngagementPage,
    Erasure,
    HeartbeatResult,
    Latest,
    LedgerPage,
    OnlineCounts,
    PresencePage,
    Privacy,
    RecentList,
    SeenCheck,
    SeenPage,
    Stats,
    Status,
    Timeline,
    UnseenItem,
    ViewersPage,
    ViewResult,
    WhereNow,
    _BatchOnline,
    _Unseen,
)
from presence_svc.client.retry import backoff_s, parse_retry_after

__all__ = ["PresenceClient", "TokenProvider", "new_session_id"]

log = logging.getLogger(__name__)

TokenProvider = Callable[[], str | Awaitable[str]]
_T = TypeVar("_T")
_JSON = msgspec.json.Encoder()


def new_session_id() -> str:
    """32 hex characters, like the browser SDK's."""
    return secrets.token_hex(16)


def _iso(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class PresenceClient:
    """``async with PresenceClient(url, token) as c: await c.heartbeat("doc-1", session_id=s)``.

    Leaving the ``async with`` stops every ``join``-ed session's heartbeat task and sends
    its ``leave``. One-off calls retry transient failures ``max_attempts`` times in all, then
    raise ``PresenceClientError``; heartbeat tasks retry for as long as they run.
    ``max_backoff_s`` caps the exponential backoff; a longer ``Retry-After`` is waited out up
    to ``max_retry_after_s``, past which a one-off call raises at once (its
    ``retry_after_s`` says when to come back) and a heartbeat task or stream waits that long.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        token_provider: TokenProvider | None = None,
        session: aiohttp.ClientSession | None = None,
        max_attempts: int = 5,
        max_backoff_s: float = 30.0,
        max_retry_after_s: float = 60.0,
        timeout_s: float = 10.0,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if token is None and token_provider is None:
            raise ValueError("give a token or a token_provider")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._provider = token_provider
        self._session = session
        self._own_session = session is None
        self.max_attempts = max(1, max_attempts)
        self.max_backoff_s = max_backoff_s
        self.max_retry_after_s = max_retry_after_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.random = random
        self._live: set[LiveSession] = set()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the heartbeat tasks, leave their sessions, close the HTTP session."""
        live = list(self._live)
        await asyncio.gather(*(s.stop() for s in live), return_exceptions=True)
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    # Writes ----------------------------------------------------------------------------

    async def heartbeat(
        self,
        artifact_id: str,
        *,
        session_id: str,
        version_id: str | None = None,
        state: dict[str, Any] | None = None,
        status: Status = "active",
        engaged_ms: int = 0,
    ) -> HeartbeatResult:
        """``status="away"`` (a hidden tab, an idle user) keeps the session online for the
        service's away timeout (10 min by default) instead of its online timeout.
        ``engaged_ms``: engaged time since the session's previous heartbeat."""
        body: dict[str, Any] = {"artifactId": artifact_id, "sessionId": session_id}
        if engaged_ms:
            body["engagedMs"] = engaged_ms
        if version_id is not None:
            body["versionId"] = version_id
        if state is not None:
            body["state"] = state
        if status != "active":
            body["status"] = status
        return await self._call("POST", "/v1/heartbeat", HeartbeatResult, body=body)

    async def leave(
        self, artifact_id: str, *, session_id: str, grace: bool = False, engaged_ms: int = 0
    ) -> OnlineCounts:
        """``engaged_ms``: engaged time since the session's last heartbeat, credited too."""
        body: dict[str, Any] = {"artifactId": artifact_id, "sessionId": session_id}
        body["grace"] = grace
        if engaged_ms:
            body["engagedMs"] = engaged_ms
        return await self._call("POST", "/v1/leave", OnlineCounts, body=body)

    async def record_view(
        self, artifact_id: str, version_id: str, *, session_id: str | None = None
    ) -> ViewResult:
        body = {"artifactId": artifact_id, "versionId": version_id}
        if session_id is not None:
            body["sessionId"] = session_id
        return await self._call("POST", "/v1/views", ViewResult, body=body)

    async def join(
        self,
        artifact_id: str,
        *,
        session_id: str | None = None,
        version_id: str | None = None,
        state: dict[str, Any] | None = None,
        record_view: bool = True,
    ) -> LiveSession:
        """Heartbeat now (raising if that fails), record a view of ``version_id``, and keep
        heartbeating every ``intervalS`` the service answers (with jitter) until ``stop()``
        or the client closes."""
        live = LiveSession(
            self, artifact_id, session_id or new_session_id(), version_id=version_id, state=state
        )
        await live.start()
        self._live.add(live)
        live.add_done_callback(self._live.discard)
        if record_view and version_id is not None:
            await self.record_view(artifact_id, version_id, session_id=live.session_id)
        return live

    # Reads -----------------------------------------------------------------------------

    async def online(self, artifact_id: str) -> ArtifactOnline:
        return await self._call("GET", f"/v1/artifacts/{artifact_id}/online", ArtifactOnline)

    async def online_many(self, artifact_ids: Sequence[str]) -> dict[str, OnlineCounts]:
        """Counts of up to 1000 artifacts in one round trip."""
        params = [("artifactId", a) for a in artifact_ids]
        return (await self._call("GET", "/v1/online", _BatchOnline, params=params)).counts

    async def presence(
        self,
        artifact_id: str,
        *,
        limit: int = 100,
        cursor: str | None = None,
        include_sessions: bool = False,
        include_recent: bool = False,
        recent_limit: int | None = None,
        recent_cursor: str | None = None,
    ) -> PresencePage:
        """One page of the users online, in the order they came; follow ``next_cursor``
        until None (a page may be short and still have one). ``include_sessions`` lists
        each user's sessions; ``include_recent`` adds who was here recently and is offline
        now (``page.recent``, paged with ``recent_cursor=page.recent_next_cursor``)."""
        wanted = (("sessions", include_sessions), ("recent", include_recent))
        include = ",".join(name for name, on in wanted if on) or None
        params = _params(
            limit=limit,
            cursor=cursor,
            include=include,
            recentLimit=recent_limit,
            recentCursor=recent_cursor,
        )
        path = f"/v1/artifacts/{artifact_id}/presence"
        return await self._call("GET", path, PresencePage, params=params)

    def events(
        self,
        artifact_id: str,
        *,
        limit: int = 100,
        last_event_id: str | None = None,
        idle_timeout_s: float = 45.0,
    ) -> EventStream:
        """The artifact's live events: ``async for event in client.events("doc-1")``.

        Reconnects with backoff (resuming after ``last_event_id``) until ``aclose()`` or the
        loop ends; raises ``PresenceClientError`` on 401 (after a fresh token), 403 and
        other 4xx. A stream silent for ``idle_timeout_s`` (the service sends keep-alives
        every 15 s) counts as dropped."""
        return EventStream(
            self,
            artifact_id,
            limit=limit,
            last_event_id=last_event_id,
            idle_timeout_s=idle_timeout_s,
        )

    async def where_now(self, user_id: str) -> WhereNow:
        """Where ``user_id`` is online now, and where they were recently (their own token,
        or a dashboard's)."""
        return await self._call("GET", f"/v1/users/{user_id}/presence", WhereNow)

    async def stats(self, artifact_id: str) -> Stats:
        return await self._call("GET", f"/v1/artifacts/{artifact_id}/stats", Stats)

    async def timeline(
        self,
        artifact_id: str,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        step: Literal["1m", "1h", "1d"] = "1m",
    ) -> Timeline:
        """The most users and sessions online at once per step, and the peak (a dashboard
        token); ``until`` defaults to now, ``since`` to an hour before it."""
        params = _params(since=_iso(since), until=_iso(until), step=step)
        return await self._call(
            "GET", f"/v1/artifacts/{artifact_id}/timeline", Timeline, params=params
        )

    async def viewers(
        self, artifact_id: str, version_id: str, *, limit: int = 100, cursor: str | None = None
    ) -> ViewersPage:
        path = f"/v1/artifacts/{artifact_id}/versions/{version_id}/viewers"
        return await self._call(
            "GET", path, ViewersPage, params=_params(limit=limit, cursor=cursor)
        )

    async def set_latest(self, artifact_id: str, version_id: str) -> Latest:
        """Mark the version people are expected to read (a publisher or admin token); it
        need not have views yet."""
        path = f"/v1/artifacts/{artifact_id}/latest"
        return await self._call("PUT", path, Latest, body={"versionId": version_id})

    async def latest(self, artifact_id: str) -> Latest | None:
        """The artifact's latest version; None when none was ever set."""
        try:
            return await self._call("GET", f"/v1/artifacts/{artifact_id}/latest", Latest)
        except PresenceClientError as exc:
            if exc.status == 404:
                return None
            raise

    async def seen(
        self,
        artifact_id: str,
        *,
        version_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> SeenPage:
        """Who has seen the latest version (or ``version_id``), most recent view first."""
        params = _params(versionId=version_id, limit=limit, cursor=cursor)
        return await self._call("GET", f"/v1/artifacts/{artifact_id}/seen", SeenPage, params=params)

    async def seen_check(
        self, artifact_id: str, user_ids: Sequence[str], *, version_id: str | None = None
    ) -> SeenCheck:
        """Which of up to 1000 users have seen and read the latest version, in one call."""
        body: dict[str, Any] = {"userIds": list(user_ids)}
        if version_id is not None:
            body["versionId"] = version_id
        path = f"/v1/artifacts/{artifact_id}/seen/check"
        return await self._call("POST", path, SeenCheck, body=body)

    async def unseen(self, user_id: str, artifact_ids: Sequence[str]) -> list[UnseenItem]:
        """Of up to 1000 artifacts, those whose latest version ``user_id`` has not viewed."""
        params = [("artifactId", a) for a in artifact_ids]
        path = f"/v1/users/{user_id}/unseen"
        return (await self._call("GET", path, _Unseen, params=params)).artifacts

    async def recent(self, user_id: str, *, limit: int | None = None) -> RecentList:
        path = f"/v1/users/{user_id}/recent"
        return await self._call("GET", path, RecentList, params=_params(limit=limit))

    async def get_privacy(self, user_id: str) -> Privacy:
        """The user's privacy settings (their own token, or an admin's)."""
        return await self._call("GET", f"/v1/users/{user_id}/privacy", Privacy)

    async def set_privacy(
        self,
        user_id: str,
        *,
        view_history: Literal["visible", "hidden"] | None = None,
        presence: Literal["visible", "hidden"] | None = None,
    ) -> Privacy:
        """Hide (or show) the user's view history and/or presence; what is left None keeps
        its value. Hidden, the user still counts everywhere but is listed to nobody else."""
        body = {k: v for k, v in (("viewHistory", view_history), ("presence", presence)) if v}
        return await self._call("PUT", f"/v1/users/{user_id}/privacy", Privacy, body=body)

    async def erase_user(self, user_id: str) -> Erasure:
        """Erase ``user_id`` everywhere (an admin token): complete if the service finished
        within the request, else pending (follow it with ``erasure`` or ``wait_erased``)."""
        path = f"/v1/users/{user_id}"
        return await self._call("DELETE", path, Erasure, empty=Erasure(status="complete"))

    async def erasure(self, erasure_id: str) -> Erasure:
        return await self._call("GET", f"/v1/erasures/{erasure_id}", Erasure)

    async def wait_erased(self, erasure: Erasure, *, poll_s: float = 1.0) -> Erasure:
        """``erasure`` once complete (poll ``erasure`` every ``poll_s``; bound it with
        ``asyncio.timeout``)."""
        while erasure.status != "complete" and erasure.erasure_id is not None:
            await asyncio.sleep(poll_s)
            erasure = await self.erasure(erasure.erasure_id)
        return erasure

    async def ledger(
        self,
        *,
        artifact_id: str | None = None,
        user_id: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        order: Literal["asc", "desc"] = "asc",
    ) -> LedgerPage:
        params = _params(
            artifactId=artifact_id,
            userId=user_id,
            since=_iso(since),
            until=_iso(until),
            limit=limit,
            cursor=cursor,
            order=order if order != "asc" else None,
        )
        return await self._call("GET", "/v1/ledger", LedgerPage, params=params)

    async def engagement(
        self,
        *,
        artifact_id: str | None = None,
        version_id: str | None = None,
        user_id: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> EngagementPage:
        """Engaged time per artifact, version, user and UTC day (``/v1/ledger/engagement``)."""
        params = _params(
            artifactId=artifact_id,
            versionId=version_id,
            userId=user_id,
            since=_iso(since),
            until=_iso(until),
            limit=limit,
            cursor=cursor,
        )
        return await self._call("GET", "/v1/ledger/engagement", EngagementPage, params=params)

    # HTTP ------------------------------------------------------------------------------

    def retry_delay_s(self, failures: int, retry_after_s: float | None) -> float:
        """How long to wait before the next try after ``failures`` transient failures in a
        row (``retry.backoff_s`` with this client's bounds): one-off calls and the
        heartbeat and event loops come back alike."""
        return backoff_s(
            failures,
            retry_after_s,
            self.max_backoff_s,
            self.random,
            longest_s=self.max_retry_after_s,
        )

    async def _current_token(self) -> str:
        if self._token is None:
            self._token = await self._fresh_token()
        return self._token

    async def _fresh_token(self) -> str:
        if self._provider is None:
            raise PresenceClientError("the token was rejected (401)", status=401)
        # A failure here is retried as a network error is (status 0): a token service that
        # is unreachable for a moment, as the browser SDK's getToken().
        try:
            token = self._provider()
            if inspect.isawaitable(token):
                token = await token
        except Exception as exc:
            raise PresenceClientError(f"token_provider failed: {exc!r}", status=0) from exc
        if not isinstance(token, str) or not token:
            raise PresenceClientError("token_provider returned no token", status=0)
        self._token = token
        return token

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            self._own_session = True
        return self._session

    async def _call(
        self,
        method: str,
        path: str,
        answer: type[_T],
        *,
        body: dict[str, Any] | None = None,
        params: list[tuple[str, str]] | None = None,
        attempts: int | None = None,
        empty: _T | None = None,
    ) -> _T:
        """One call with the retry rules; ``attempts`` counts transient failures only.
        ``empty``: the answer when the service sends no body (204). A ``Retry-After`` past
        ``max_retry_after_s`` is raised at once: a wait that long is the caller's to decide."""
        most = attempts or self.max_attempts
        failures = 0
        while True:
            try:
                raw = await self._once(method, path, body, params)
                if not raw and empty is not None:
                    return empty
                return msgspec.json.decode(raw, type=answer)
            except PresenceClientError as exc:
                if not exc.transient:
                    raise
                failures += 1
                too_long = (exc.retry_after_s or 0.0) > self.max_retry_after_s
                if failures >= most or too_long:
                    raise
                delay = self.retry_delay_s(failures, exc.retry_after_s)
                log.debug("retrying", extra={"path": path, "status": exc.status, "in_s": delay})
                await asyncio.sleep(delay)

    async def _once(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        params: list[tuple[str, str]] | None,
    ) -> bytes:
        """One request, repeated once with a fresh token after a 401."""
        token = await self._current_token()
        status, raw, retry_after = await self._send(method, path, body, params, token)
        if status == 401 and self._provider is not None:
            if self._token == token:
                await self._fresh_token()
            status, raw, retry_after = await self._send(
                method, path, body, params, await self._current_token()
            )
        if status >= 400:
            problem = _problem(raw)
            detail = problem.get("detail") or problem.get("title") or f"HTTP {status}"
            raise PresenceClientError(
                f"{method} {path}: {status} {detail}",
                status=status,
                problem=problem,
                retry_after_s=retry_after,
            )
        return raw

    async def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        params: list[tuple[str, str]] | None,
        token: str,
    ) -> tuple[int, bytes, float | None]:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = _JSON.encode(body)
        try:
            async with self._http().request(
                method, self.base_url + path, data=data, params=params, headers=headers
            ) as response:
                raw = await response.read()
                retry = parse_retry_after(response.headers.get("Retry-After"))
                return response.status, raw, retry
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PresenceClientError(
                f"{method} {path}: {type(exc).__name__}: {exc}", status=0
            ) from exc


def _params(**values: object) -> list[tuple[str, str]]:
    return [(k, str(v)) for k, v in values.items() if v is not None]


def _problem(raw: bytes) -> dict[str, Any]:
    with contextlib.suppress(msgspec.DecodeError):
        decoded = msgspec.json.decode(raw)
        if isinstance(decoded, dict):
            return decoded
    return {}
