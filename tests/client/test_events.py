"""The Python SDK's live events against the real service over real HTTP: typed events in
both modes, ``LivePresence`` built from them, resuming after a dropped connection, a fresh
``sync`` after a Redis restart, and the errors it raises."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from presence_svc.auth import Scope, TokenCodec
from presence_svc.client import (
    CountEvent,
    EventStream,
    IntervalEvent,
    JoinEvent,
    LeaveEvent,
    LivePresence,
    PresenceClient,
    PresenceClientError,
    PresenceEvent,
    StateEvent,
    SyncEvent,
)
from presence_svc.http.app import create_app
from presence_svc.redis.embedded import EmbeddedRedis
from presence_svc.settings import Settings

Serve = Callable[..., Awaitable[str]]
LONG_LIVED = {"heartbeat_interval_s": 15.0, "online_timeout_s": 60.0, "retention_s": 120.0}


@pytest.fixture
async def serve(aiohttp_server: Callable[..., Awaitable[TestServer]], settings: Settings) -> Serve:
    async def start(**changes: Any) -> str:
        server = await aiohttp_server(create_app(settings.replace(**LONG_LIVED, **changes)))
        return str(server.make_url("")).rstrip("/")

    return start


def _token(tokens: TokenCodec, user: str, scope: str = "client") -> str:
    return tokens.issue(user, scope=Scope(scope), ttl_s=600)


class Watcher:
    """Reads ``client.events`` in the background into a list and a ``LivePresence``."""

    def __init__(self, stream: EventStream) -> None:
        self.stream = stream
        self.events: list[PresenceEvent] = []
        self.here = LivePresence()
        self._changed = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for event in self.stream:
            self.events.append(event)
            self.here.apply(event)
            self._changed.set()

    async def until(self, ok: Callable[[], bool], within_s: float = 15.0) -> None:
        async def wait() -> None:
            while not ok():
                if self.task.done():
                    self.task.result()  # raises what ended it
                    raise AssertionError("the events ended")
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), 0.2)
                except TimeoutError:
                    continue

        try:
            await asyncio.wait_for(wait(), within_s)
        except TimeoutError:
            raise AssertionError(f"not met within {within_s}s; had {self.events}") from None

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def stop(self) -> None:
        await self.stream.aclose()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def watchers() -> AsyncIterator[list[Watcher]]:
    made: list[Watcher] = []
    yield made
    for watcher in made:
        await watcher.stop()


async def test_exact_events_are_typed_and_live_presence_follows_them(
    serve: Serve, tokens: TokenCodec, watchers: list[Watcher]
) -> None:
    url = await serve()
    async with (
        PresenceClient(url, _token(tokens, "board", "dashboard")) as board,
        PresenceClient(url, _token(tokens, "bot-1")) as bot,
    ):
        watcher = Watcher(board.events("doc-1"))
        watchers.append(watcher)
        await watcher.until(lambda: bool(watcher.of(SyncEvent)))
        (sync,) = watcher.of(SyncEvent)
        assert (sync.mode, sync.online, sync.users) == ("exact", 0, [])

        live = await bot.join("doc-1", version_id="v1", state={"page": 1}, record_view=False)
        await watcher.until(lambda: "bot-1" in watcher.here.users)
        (joined,) = watcher.of(JoinEvent)
        assert (joined.user_id, joined.version_id, joined.state) == ("bot-1", "v1", {"page": 1})
        live.set_state({"page": 2})
        await watcher.until(lambda: bool(watcher.of(StateEvent)))
        assert watcher.here.users["bot-1"].state == {"page": 2}
        await live.stop()
        await watcher.until(lambda: bool(watcher.of(LeaveEvent)))
        assert watcher.of(LeaveEvent)[0].reason == "left"
        await watcher.until(lambda: bool(watcher.of(CountEvent)) and watcher.here.online == 0)
        assert watcher.here.users == {}
        assert watcher.here.mode == "exact"
        assert watcher.stream.last_event_id is not None


async def test_interval_mode_events_and_the_mode_in_live_presence(
    serve: Serve, tokens: TokenCodec, watchers: list[Watcher]
) -> None:
    url = await serve(large_room_users=5, large_room_interval_s=0.3)
    async with PresenceClient(url, _token(tokens, "board", "dashboard")) as board:
        watcher = Watcher(board.events("doc-1"))
        watchers.append(watcher)
        await watcher.until(lambda: bool(watcher.of(SyncEvent)))
        sessions = [f"tab-user-{i:04d}" for i in range(7)]
        for i, session in enumerate(sessions):
            async with PresenceClient(url, _token(tokens, f"user-{i}")) as user:
                await user.heartbeat("doc-1", session_id=session)
        await watcher.until(lambda: watcher.here.mode == "interval" and watcher.here.online == 7)
        assert watcher.of(SyncEvent)[-1].mode == "interval"
        assert set(watcher.here.users) == {f"user-{i}" for i in range(7)}
        async with PresenceClient(url, _token(tokens, "user-0")) as user:
            await user.leave("doc-1", session_id=sessions[0])
        await watcher.until(lambda: watcher.here.online == 6)
        interval = watcher.of(IntervalEvent)[-1]
        assert [left.user_id for left in interval.left] == ["user-0"]
        assert "user-0" not in watcher.here.users
        assert watcher.here.mode == "interval"


async def test_a_dropped_connection_resumes_after_the_last_event(
    serve: Serve, tokens: TokenCodec, watchers: list[Watcher]
) -> None:
    url = await serve()
    async with (
        PresenceClient(url, _token(tokens, "board", "dashboard")) as board,
        PresenceClient(url, _token(tokens, "carl")) as carl,
    ):
        keeper = Watcher(board.events("doc-1"))  # keeps the artifact's ring on the server
        watcher = Watcher(board.events("doc-1"))
        watchers.extend([keeper, watcher])
        await carl.heartbeat("doc-1", session_id="tab-carl-0001")
        await watcher.until(lambda: "carl" in watcher.here.users)
        await keeper.until(lambda: "carl" in keeper.here.users)
        response = watcher.stream._response
        assert response is not None
        response.close()  # the network drops the stream
        await carl.heartbeat("doc-1", session_id="tab-carl-0001", state={"typing": True})
        await watcher.until(lambda: watcher.stream.reconnects == 1 and bool(watcher.of(StateEvent)))
        assert len(watcher.of(SyncEvent)) == 1  # resumed: the missed event, no new sync
        assert watcher.here.users["carl"].state == {"typing": True}


async def test_a_redis_restart_brings_a_fresh_sync_and_the_events_go_on(
    serve: Serve, tokens: TokenCodec, watchers: list[Watcher], tmp_path: Path
) -> None:
    redis = EmbeddedRedis(tmp_path / "own-redis")
    try:
        url = await serve(redis_url=redis.start())
        async with (
            PresenceClient(url, _token(tokens, "board", "dashboard"), max_backoff_s=2.0) as board,
            PresenceClient(url, _token(tokens, "dora")) as dora,
        ):
            await dora.heartbeat("doc-1", session_id="tab-dora-0001")
            watcher = Watcher(board.events("doc-1"))
            watchers.append(watcher)
            await watcher.until(lambda: watcher.here.syncs == 1)
            redis.stop()
            redis.start()
            await watcher.until(lambda: watcher.here.syncs == 2, within_s=30)
            assert list(watcher.here.users) == ["dora"]  # kept by the AOF
            async with PresenceClient(url, _token(tokens, "eddy")) as eddy:
                await eddy.heartbeat("doc-1", session_id="tab-eddy-0002")
            await watcher.until(lambda: "eddy" in watcher.here.users)
    finally:
        redis.stop()


async def test_a_rejected_token_is_raised_not_retried(serve: Serve, tokens: TokenCodec) -> None:
    url = await serve()
    expired = tokens.issue("board", scope=Scope("dashboard"), ttl_s=-120)  # past the 30 s leeway
    async with PresenceClient(url, expired) as board:
        with pytest.raises(PresenceClientError) as caught:
            async for _ in board.events("doc-1"):
                pass
    assert caught.value.status == 401
    assert not caught.value.transient


async def test_a_fresh_token_is_asked_once_after_a_401(serve: Serve, tokens: TokenCodec) -> None:
    url = await serve()
    expired = tokens.issue("board", scope=Scope("dashboard"), ttl_s=-120)  # past the 30 s leeway
    asked: list[int] = []

    def fresh() -> str:
        asked.append(1)
        return _token(tokens, "board", "dashboard")

    async with PresenceClient(url, expired, token_provider=fresh) as board:
        stream = board.events("doc-1")
        async for event in stream:
            assert isinstance(event, SyncEvent)
            break
        await stream.aclose()
    assert asked == [1]


async def test_a_failing_token_provider_is_retried_as_a_drop(
    serve: Serve, tokens: TokenCodec
) -> None:
    """The token service unreachable once: the stream reconnects (its backoff), it does not
    end with the provider's own exception."""
    url = await serve()
    expired = tokens.issue("board", scope=Scope("dashboard"), ttl_s=-120)  # past the 30 s leeway
    asked: list[int] = []

    def flaky() -> str:
        asked.append(1)
        if len(asked) == 1:
            raise ConnectionError("token service unreachable")
        return _token(tokens, "board", "dashboard")

    async with PresenceClient(url, expired, token_provider=flaky, max_backoff_s=0.1) as board:
        stream = board.events("doc-1")
        async for event in stream:
            assert isinstance(event, SyncEvent)
            break
        await stream.aclose()
    assert asked == [1, 1]


def test_live_presence_applies_both_shapes() -> None:
    import msgspec

    def decode(kind: type[Any], body: dict[str, Any]) -> Any:
        return msgspec.json.decode(msgspec.json.encode(body), type=kind)

    row = {"userId": "ann", "lastSeen": "2026-11-30T00:00:00Z", "sessions": 1, "state": None}
    here = LivePresence()
    here.apply(decode(SyncEvent, {"online": 1, "sessions": 1, "users": [row]}))
    assert (here.mode, here.active, list(here.users)) == ("exact", 0, ["ann"])
    here.apply(decode(StateEvent, {"userId": "ann", "state": None, "status": "away"}))
    assert here.users["ann"].status == "away"
    here.apply(decode(CountEvent, {"online": 1, "sessions": 1, "active": 0, "away": 1}))
    assert (here.active, here.away) == (0, 1)

    big = {"online": 900, "sessions": 950, "users": [row], "mode": "interval", "active": 800}
    here.apply(decode(SyncEvent, {**big, "away": 100}))
    assert (here.mode, here.online, here.active, here.syncs) == ("interval", 900, 800, 2)
    bob = {**row, "userId": "bob"}
    interval = {"online": 901, "sessions": 951, "active": 850, "away": 51, "joined": [bob]}
    interval["more"] = True
    here.apply(decode(IntervalEvent, {**interval, "left": [{"userId": "ann", "reason": "left"}]}))
    assert (list(here.users), here.online, here.sessions) == (["bob"], 901, 951)
    assert (here.active, here.away) == (850, 51)


async def test_a_bad_limit_is_raised_with_the_field_named(serve: Serve, tokens: TokenCodec) -> None:
    url = await serve()
    async with PresenceClient(url, _token(tokens, "board", "dashboard")) as board:
        with pytest.raises(PresenceClientError) as caught:
            async for _ in board.events("doc-1", limit=0):
                pass
    assert caught.value.status == 400
    assert "limit" in str(caught.value.problem)
