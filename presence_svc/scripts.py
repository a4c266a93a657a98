"""The Lua scripts in ``lua/``: read once, called by SHA, reloaded after ``NOSCRIPT``.

redis-py's ``register_script`` would check ``SCRIPT EXISTS`` before every pipeline; this
module sends ``EVALSHA`` straight away and loads a script only when Redis says it does not
know it (after a restart or ``SCRIPT FLUSH``), so the hot path is one round trip.

Calls made in the same event-loop turn (many requests arriving together) are coalesced
into one pipeline: one write instead of a round trip each. With a ``RedisPipe`` (what the
server uses) the batches go out on its one pipelined connection, 16 calls at a time as a
burst forms; without one, each batch borrows a pooled connection. Alone, a call waits for
nothing but the end of the current loop turn.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TypeAlias

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from presence_svc import metrics
from presence_svc.redis_client import RedisClient
from presence_svc.redis_pipe import RedisPipe
from presence_svc.resp import Packed, pack_evalsha, run_pipeline

__all__ = ["Call", "LuaScript", "ScriptArg", "Scripts", "lua_source"]

ScriptArg: TypeAlias = str | bytes | int | float
Call: TypeAlias = "tuple[LuaScript, Sequence[str], Sequence[ScriptArg]]"

_INCLUDE = re.compile(r"^--! include (\S+)\s*$", re.MULTILINE)


def _lua_dir() -> Traversable:
    packaged = resources.files("presence_svc").joinpath("lua")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "lua"  # a source checkout


def lua_source(name: str) -> str:
    """The script's text with its ``--! include`` lines replaced by the named files."""
    root = _lua_dir()
    text = root.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    return _INCLUDE.sub(lambda m: root.joinpath(m.group(1)).read_text(encoding="utf-8"), text)


@dataclass(frozen=True, slots=True)
class LuaScript:
    name: str
    source: bytes
    sha: str

    @classmethod
    @cache
    def named(cls, name: str) -> LuaScript:
        source = lua_source(name).encode()
        return cls(name=name, source=source, sha=hashlib.sha1(source).hexdigest())


_EAGER_BATCH = 16
"""On the pipe, a batch goes out as soon as it holds this many calls, without waiting for
the end of the loop turn: Redis then runs the first calls of a burst while the server is
still reading the rest, and answers come back while it works, instead of every request
of the burst waiting on Redis together (heartbeats 19-21k -> 22-25k req/s in the bench).
Enough calls to share one write; few enough that Redis starts early."""
_Pending: TypeAlias = "tuple[LuaScript, bytes, asyncio.Future[Any]]"


class Scripts:
    """Every script of the service, bound to one Redis client."""

    def __init__(
        self,
        redis: RedisClient,
        deadline_s: float | None = None,
        pipe: RedisPipe | None = None,
    ) -> None:
        """``deadline_s`` bounds every script call, retries and reconnects included: a Redis
        that is stopped (not dead) accepts connections and never answers, and redis-py's
        own retry of the connect handshake would otherwise add a third timeout.

        ``pipe`` (a single Redis only, owned by the caller) carries the coalesced calls on
        one pipelined connection; without it each batch borrows a pooled connection."""
        self.redis = redis
        self._deadline_s = deadline_s
        self._coalesce = not isinstance(redis, RedisCluster)
        self._pipe = pipe if self._coalesce else None
        self._pending: list[_Pending] = []
        self._flushing: set[asyncio.Task[None]] = set()
        self._loading: dict[str, asyncio.Future[Any]] = {}
        self.heartbeat = LuaScript.named("heartbeat")
        self.leave = LuaScript.named("leave")
        self.sweep = LuaScript.named("sweep")
        self.online = LuaScript.named("online")
        self.presence = LuaScript.named("presence")
        self.erase_user = LuaScript.named("erase_user")
        self.workers = LuaScript.named("workers")
        self.record_view = LuaScript.named("record_view")
        self.recent = LuaScript.named("recent")
        self.viewers = LuaScript.named("viewers")
        self.trim_stream = LuaScript.named("trim_stream")

    @property
    def all(self) -> tuple[LuaScript, ...]:
        return tuple(v for v in vars(self).values() if isinstance(v, LuaScript))

    async def load(self) -> None:
        for script in self.all:
            await self.redis.script_load(script.source)

    async def loaded(self) -> bool:
        found = await self.redis.script_exists(*(s.sha for s in self.all))
        return all(found)

    @property
    def pipelines(self) -> bool:
        """True on a single Redis, where calls are coalesced and may be handed over already
        packed (``run_packed``); a cluster routes each call by its keys instead."""
        return self._coalesce

    async def run(self, script: LuaScript, keys: Sequence[str], args: Sequence[ScriptArg]) -> Any:
        """One script call; joins the other calls of this loop turn in one pipeline."""
        if not self._coalesce:
            async with asyncio.timeout(self._deadline_s):
                return await self._run_alone(script, keys, args)
        return await self.run_packed(script, pack_evalsha(script.sha, keys, args))

    async def run_packed(self, script: LuaScript, packed: bytes) -> Any:
        """``run`` for a call already packed in RESP (``resp.pack_evalsha``), so a hot path
        can precompute most of its bytes. Only where ``pipelines`` is true."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            return await self._coalesced(script, packed)
        except NoScriptError:  # Redis restarted or flushed its scripts: load, once more
            pass
        deadline = None if self._deadline_s is None else started + self._deadline_s
        async with asyncio.timeout_at(deadline):  # both tries within one deadline
            await self._load(script)
            return await self._coalesced(script, packed)

    async def _load(self, script: LuaScript) -> None:
        """Load ``script`` once for everyone who found it missing at the same time (after
        a restart, every caller of the moment does), not once per caller."""
        loading = self._loading.get(script.sha)
        if loading is None:
            loading = asyncio.ensure_future(self.redis.script_load(script.source))
            self._loading[script.sha] = loading
            loading.add_done_callback(lambda _: self._loading.pop(script.sha, None))
        await asyncio.shield(loading)  # a caller giving up does not stop the others' load

    def _coalesced(self, script: LuaScript, packed: bytes) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        pending = self._pending
        if not pending:
            loop.call_soon(self._flush)
        pending.append((script, packed, future))
        if len(pending) >= _EAGER_BATCH and self._pipe is not None:
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
        names = {script.name for script, _, _ in batch}

        def observe() -> None:
            elapsed = time.perf_counter() - started
            for name in names:
                metrics.observe_script(name, elapsed)

        self._pipe.send([(packed, future) for _, packed, future in batch], observe)

    async def _send(self, batch: list[_Pending]) -> None:
        try:
            async with asyncio.timeout(self._deadline_s):  # one timer per batch
                results = await self._run_packed([(s, packed) for s, packed, _ in batch])
        except BaseException as exc:
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, future), result in zip(batch, results, strict=True):
            if future.done():
                continue  # the caller went away (cancelled)
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _run_alone(
        self, script: LuaScript, keys: Sequence[str], args: Sequence[ScriptArg]
    ) -> Any:
        started = time.perf_counter()
        try:
            try:
                return await self.redis.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                await self.redis.script_load(script.source)
                return await self.redis.evalsha(script.sha, len(keys), *keys, *args)
        finally:
            metrics.observe_script(script.name, time.perf_counter() - started)

    async def run_many(self, calls: Sequence[Call]) -> list[Any]:
        """Run several scripts in one pipeline (one round trip per node); results in order.

        A script error in one call is returned in its place, not raised, so one bad call
        does not hide the others' results. redis-py refuses EVALSHA in cluster pipelines, so
        on a cluster the calls go out concurrently instead, each to its slot's node.
        """
        if not calls:
            return []
        async with asyncio.timeout(self._deadline_s):  # one timer per batch
            return await self._run_many(calls)

    async def _run_many(self, calls: Sequence[Call]) -> list[Any]:
        if isinstance(self.redis, RedisCluster):
            return list(
                await asyncio.gather(
                    *(self._run_alone(script, keys, args) for script, keys, args in calls),
                    return_exceptions=True,
                )
            )
        return await self._run_packed([(s, pack_evalsha(s.sha, k, a)) for s, k, a in calls])

    async def _run_packed(self, calls: Sequence[tuple[LuaScript, bytes]]) -> list[Any]:
        """One pipeline of packed calls; the scripts Redis did not know are loaded and their
        calls sent once more. Observed once per script per pipeline, not per call."""
        assert isinstance(self.redis, Redis)  # a cluster never pipelines scripts
        started = time.perf_counter()
        results = await run_pipeline(self.redis, _joined(calls))
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:
            for script in {calls[i][0] for i in missing}:
                await self.redis.script_load(script.source)
            retried = await run_pipeline(self.redis, _joined([calls[i] for i in missing]))
            for i, result in zip(missing, retried, strict=True):
                results[i] = result
        elapsed = time.perf_counter() - started
        for name in {script.name for script, _ in calls}:
            metrics.observe_script(name, elapsed)
        return results


def _joined(calls: Sequence[tuple[LuaScript, bytes]]) -> Packed:
    return b"".join([packed for _, packed in calls]), len(calls)
