"""OpenTelemetry for the one door to Redis: with ``PRESENCE_OTEL=1``, ``connect`` wraps the
connection in ``TracedConnection``, which gives each Lua script call a client span, a child of
the request's span. Calls outside a recorded span (the worker's sweeps and drains) get none.

Off, ``connect`` returns the bare connection: not even a branch is added to the hot path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from redis.asyncio.client import PubSub

from presence_svc.redis.connection import RedisConnection, StreamRead
from presence_svc.redis.resp import Commands
from presence_svc.redis.scripts import ScriptCall

__all__ = ["TracedConnection"]


class TracedConnection(RedisConnection):
    """``inner`` with a span per script call; everything else is passed through."""

    def __init__(self, inner: RedisConnection) -> None:
        super().__init__(inner.client, inner.deadline_s)
        self.scripts = inner.scripts
        self.inner = inner
        self._tracer = trace.get_tracer("presence_svc.redis")

    def _span(self, call: ScriptCall) -> Span:
        return self._tracer.start_span(
            f"EVALSHA {call.script.name}",
            kind=SpanKind.CLIENT,
            attributes={
                "db.system": "redis",
                "db.operation.name": "EVALSHA",
                "presence.script": call.script.name,
            },
        )

    async def run(self, call: ScriptCall) -> Any:
        if not trace.get_current_span().is_recording():
            return await self.inner.run(call)
        with trace.use_span(self._span(call), end_on_exit=True):
            return await self.inner.run(call)

    async def run_many(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """One span per call, all over the one batch they travel in."""
        return await self._batch(self.inner.run_many, calls)

    async def run_all(self, calls: Sequence[ScriptCall]) -> list[Any]:
        return await self._batch(self.inner.run_all, calls)

    async def _batch(
        self,
        run: Callable[[Sequence[ScriptCall]], Awaitable[list[Any]]],
        calls: Sequence[ScriptCall],
    ) -> list[Any]:
        if not calls or not trace.get_current_span().is_recording():
            return await run(calls)
        spans = [self._span(call) for call in calls]
        try:
            results = await run(calls)
        except BaseException as exc:
            for span in spans:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                span.end()
            raise
        for span, result in zip(spans, results, strict=True):
            if isinstance(result, Exception):  # a script error, returned in its place
                span.set_status(Status(StatusCode.ERROR, type(result).__name__))
            span.end()
        return results

    async def read_commands(self, commands: Commands) -> list[Any]:
        return await self.inner.read_commands(commands)

    async def read_in_turn(self, commands: Commands) -> list[Any]:
        return await self.inner.read_in_turn(commands)

    async def read_group(
        self, group: str, consumer: str, streams: Sequence[str], count: int, *, own: bool = False
    ) -> list[StreamRead]:
        return await self.inner.read_group(group, consumer, streams, count, own=own)

    async def ack(self, group: str, done: dict[str, list[bytes]]) -> None:
        await self.inner.ack(group, done)

    async def initialize(self) -> None:
        await self.inner.initialize()

    def pubsub(self) -> PubSub:
        return self.inner.pubsub()

    async def answering_pubsub(self, timeout_s: float) -> PubSub:
        return await self.inner.answering_pubsub(timeout_s)

    async def load_scripts(self) -> None:
        await self.inner.load_scripts()

    async def scripts_loaded(self) -> bool:
        return await self.inner.scripts_loaded()

    async def aclose(self) -> None:
        await self.inner.aclose()
