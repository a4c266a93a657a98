"""A single Redis server: script calls coalesced into pipelines, replies as Redis sent them.

Calls made in the same event-loop turn (many requests arriving together) go out as one
pipeline: one write instead of a round trip each. With a ``RedisPipe`` (what a server
process uses) the batches go out on its one pipelined connection, and a batch leaves as
soon as it holds ``EAGER_BATCH`` calls; without one, each batch borrows a pooled
connection. Alone, a call waits for nothing but the end of the current loop turn. A batch
of ``run_many`` goes out at once, on the pipe as one write with one future when there is one.

Scripts are sent by SHA straight away and loaded only when Redis says it does not know
one (after a restart or ``SCRIPT FLUSH``), so the hot path is one round trip.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import NoScriptError, ResponseError

from presence_svc import metrics
from presence_svc.redis.connection import RedisConnection, StreamRead
from presence_svc.redis.pipe import RedisPipe
from presence_svc.redis.resp import Commands, Packed, pack_commands, run_pipeline
from presence_svc.redis.scripts import Script, ScriptCall

__all__ = ["EAGER_BATCH", "SingleConnection"]

EAGER_BATCH = 16
"""On the pipe, a batch goes out as soon as it holds this many calls: Redis then runs the
first calls of a burst while the server is still reading the rest, instead of every
request of the burst waiting on Redis together. Enough calls to share one write; few
enough that Redis starts early."""

_Pending: TypeAlias = "tuple[Script | None, bytes, asyncio.Future[Any], int]"
"""A call of this loop turn's batch: its script (None: plain commands), packed, its
future, and how many answers it takes as a list (0: a script call's one answer)."""


class SingleConnection(RedisConnection):
    client: Redis

    def __init__(self, client: Redis, deadline_s: float | None, *, pipelined: bool) -> None:
        super().__init__(client, deadline_s)
        self._pipe = RedisPipe.for_client(client, deadline_s) if pipelined else None
        self._pending: list[_Pending] = []
        self._flushing: set[asyncio.Task[None]] = set()
        self._loading: dict[str, asyncio.Future[Any]] = {}
        self._reads: dict[tuple[str, str, tuple[str, ...], int, bool], Packed] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def _running(self) -> asyncio.AbstractEventLoop:
        """The running loop. Per call, so not asked of asyncio each time (on Python 3.11
        that is a ``getpid`` system call): the loop last seen, while it is running, is the
        running one (one loop runs per thread, and calls come from the loop's thread)."""
        loop = self._loop
        if loop is None or not loop.is_running():
            loop = self._loop = asyncio.get_running_loop()
        return loop

    # Scripts.

    async def run(self, call: ScriptCall) -> Any:
        """Joins the other calls of this loop turn in one pipeline."""
        script = call.script
        packed = call.resp()
        started = self._running().time()
        try:
            return await self._coalesced(script, packed)
        except NoScriptError:  # Redis restarted or flushed its scripts: load, once more
            pass
        deadline = None if self.deadline_s is None else started + self.deadline_s
        async with asyncio.timeout_at(deadline):  # both tries within one deadline
            await self._load(script)
            return await self._coalesced(script, packed)

    async def run_many(self, calls: Sequence[ScriptCall]) -> list[Any]:
        if not calls:
            return []
        packed = [(call.script, call.resp()) for call in calls]
        async with asyncio.timeout(self.deadline_s):  # one timer per batch
            if self._pipe is None:
                return await self._run_packed(packed)
            return await self._run_piped(packed)

    async def _run_piped(self, calls: Sequence[tuple[Script, bytes]]) -> list[Any]:
        """``_run_packed`` on the pipe: one write and one future for the batch, the
        answers parsed as they arrive (a pooled connection's per-answer reads were most of
        a rate-limit settlement's cost)."""
        return await _sent_reloading(calls, self._listed, self._load)

    def _listed(self, calls: Sequence[tuple[Script, bytes]]) -> asyncio.Future[list[Any]]:
        assert self._pipe is not None
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        packed, count = _joined(calls)
        self._pipe.send_commands(packed, count, future)
        return future

    async def run_all(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """On the pipe, the calls join this loop turn's batch as ``run``'s do (one write,
        one round trip, no pooled connection); a call whose script Redis did not know is
        sent once more after loading it."""
        if self._pipe is None or not calls:
            return await super().run_all(calls)
        packed = [(call.script, call.resp()) for call in calls]
        started = self._running().time()
        results = await _settled([self._coalesced(script, resp) for script, resp in packed])
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:
            deadline = None if self.deadline_s is None else started + self.deadline_s
            async with asyncio.timeout_at(deadline):  # both tries within one deadline
                for script in {packed[i][0] for i in missing}:
                    await self._load(script)
                again = await _settled([self._coalesced(*packed[i]) for i in missing])
            for i, result in zip(missing, again, strict=True):
                results[i] = result
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    async def read_commands(self, commands: Commands) -> list[Any]:
        """Written at once on the pipelined connection as one call (one write, one future,
        no pooled connection per request), or as one pipeline on a pooled connection
        without one."""
        if not commands.count:
            return []
        if self._pipe is None:
            async with asyncio.timeout(self.deadline_s):
                return await run_pipeline(self.client, (commands.packed, commands.count))
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pipe.send_commands(commands.packed, commands.count, future)
        async with asyncio.timeout(self.deadline_s):
            return await future

    async def read_in_turn(self, commands: Commands) -> list[Any]:
        """On the pipe, the commands join this loop turn's batch as a script call does (one
        write for the batch, one future for them: a kept presence page's check is three
        commands, and written alone they cost Redis and this process a write each)."""
        if self._pipe is None or not commands.count:
            return await self.read_commands(commands)
        answers: list[Any] = await self._coalesced(None, commands.packed, commands.count)
        return answers

    async def _load(self, script: Script) -> None:
        """Load ``script`` once for everyone who found it missing at the same time (after
        a restart, every caller of the moment does), not once per caller."""
        loading = self._loading.get(script.sha)
        if loading is None:
            loading = asyncio.ensure_future(self.client.script_load(script.source))
            self._loading[script.sha] = loading
            loading.add_done_callback(lambda _: self._loading.pop(script.sha, None))
        await asyncio.shield(loading)  # a caller giving up does not stop the others' load

    def _coalesced(
        self, script: Script | None, packed: bytes, answers: int = 0
    ) -> asyncio.Future[Any]:
        loop = self._running()
        future: asyncio.Future[Any] = loop.create_future()
        pending = self._pending
        if not pending:
            loop.call_soon(self._flush)
        pending.append((script, packed, future, answers))
        if len(pending) >= EAGER_BATCH and self._pipe is not None:
            self._flush()
        return future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        if self._pipe is None:
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._flushing.add(task)  # keep a reference until it is done
            task.add_done_callback(self._flushing.discard)
            return
        # Answers come in order: the batch is back when its last call is. Observed once.
        started = time.perf_counter()
        names = {script.name for script, *_ in batch if script is not None}

        def observe() -> None:
            elapsed = time.perf_counter() - started
            for name in names:
                metrics.observe_script(name, elapsed)

        answers = [n for *_, n in batch]
        calls = [(packed, future) for _, packed, future, _ in batch]
        self._pipe.send(calls, observe, answers if any(answers) else ())

    async def _send(self, batch: list[_Pending]) -> None:
        try:
            async with asyncio.timeout(self.deadline_s):  # one timer per batch
                # script calls only: without a pipe, plain reads are not coalesced
                results = await self._run_packed([(s, p) for s, p, *_ in batch if s is not None])
        except BaseException as exc:
            for _, _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, future, _), result in zip(batch, results, strict=True):
            if future.done():
                continue  # the caller went away (cancelled)
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _run_packed(self, calls: Sequence[tuple[Script, bytes]]) -> list[Any]:
        """One pipeline of packed calls on a pooled connection."""

        async def send(some: Sequence[tuple[Script, bytes]]) -> list[Any]:
            return await run_pipeline(self.client, _joined(some))

        async def load(script: Script) -> None:
            await self.client.script_load(script.source)

        return await _sent_reloading(calls, send, load)

    # Streams: the commands packed once, the replies taken as Redis sent them (redis-py's
    # per-argument packing and per-entry reply parsing cost more than the ledger insert).

    async def read_group(
        self, group: str, consumer: str, streams: Sequence[str], count: int, *, own: bool = False
    ) -> list[StreamRead]:
        shape = (group, consumer, tuple(streams), count, own)
        command = self._reads.get(shape)
        if command is None:
            read = ("XREADGROUP", "GROUP", group, consumer, "COUNT", count, "STREAMS")
            start = "0" if own else ">"
            command = self._reads[shape] = pack_commands([(*read, s, start) for s in streams])
        out: list[StreamRead] = []
        for reply in await run_pipeline(self.client, command):
            if isinstance(reply, ResponseError):
                out.append(reply)
            elif isinstance(reply, Exception):
                raise reply
            else:  # {stream: [[id, [field, value, ...]], ...]} or nil; entries kept as sent
                pairs = reply.items() if isinstance(reply, dict) else (reply or ())
                out.append([entry for _, entries in pairs for entry in entries])
        return out

    async def ack(self, group: str, done: dict[str, list[bytes]]) -> None:
        command = pack_commands([("XACK", stream, group, *ids) for stream, ids in done.items()])
        for reply in await run_pipeline(self.client, command):
            if isinstance(reply, Exception):
                raise reply

    # Pub/sub.

    async def initialize(self) -> None:
        return None

    def pubsub(self) -> PubSub:
        return self.client.pubsub()

    async def answering_pubsub(self, timeout_s: float) -> PubSub:
        await asyncio.wait_for(self.client.ping(), timeout_s)
        return self.client.pubsub()

    async def aclose(self) -> None:
        if self._pipe is not None:
            await self._pipe.aclose()
        await super().aclose()


async def _settled(futures: list[asyncio.Future[Any]]) -> list[Any]:
    """Each future's result, or its exception in its place. Were the caller cancelled,
    the futures not awaited yet are cancelled too: no answer is left unobserved."""
    results: list[Any] = []
    try:
        for future in futures:
            try:
                results.append(await future)
            except Exception as exc:
                results.append(exc)
    finally:
        for future in futures:
            future.cancel()  # a no-op on those done
    return results


async def _sent_reloading(
    calls: Sequence[tuple[Script, bytes]],
    send: Callable[[Sequence[tuple[Script, bytes]]], Awaitable[list[Any]]],
    load: Callable[[Script], Awaitable[None]],
) -> list[Any]:
    """``calls`` sent as one batch by ``send``; the scripts Redis did not know (NOSCRIPT:
    a restart or ``SCRIPT FLUSH``) loaded by ``load`` and their calls sent once more.
    Observed once per script."""
    started = time.perf_counter()
    results = await send(calls)
    missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
    if missing:
        for script in {calls[i][0] for i in missing}:
            await load(script)
        retried = await send([calls[i] for i in missing])
        for i, result in zip(missing, retried, strict=True):
            results[i] = result
    elapsed = time.perf_counter() - started
    for name in {script.name for script, _ in calls}:
        metrics.observe_script(name, elapsed)
    return results


def _joined(calls: Sequence[tuple[Script, bytes]]) -> Packed:
    return b"".join([packed for _, packed in calls]), len(calls)
