"""The pipelined connection under the hot path, against real redis-servers: answers in
order, a restart mid-flow loses no call, a stopped server fails calls within the deadline,
and the client's password and database are honoured."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import hiredis
import pytest
import redis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from presence_svc.live.store import Counts, PresenceStore
from presence_svc.redis.connection import connect
from presence_svc.redis.embedded import EmbeddedRedis, redis_server_binary
from presence_svc.redis.pipe import RedisPipe
from presence_svc.redis.refusal import refusal
from presence_svc.redis.resp import Commands, pack_command, pack_commands
from presence_svc.settings import Settings
from presence_svc.stats.views import ViewStore
from tests.children import dies_with_us

pytestmark = pytest.mark.every_redis  # see tests/conftest.py


async def _send(pipe: RedisPipe, *commands: tuple[str | bytes | int, ...]) -> list[Any]:
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in commands]
    pipe.send([(pack_command(c), f) for c, f in zip(commands, futures, strict=True)])
    return list(await asyncio.gather(*futures, return_exceptions=True))


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "own-redis")
    server.start()
    yield server
    server.stop()


def _pipe(url: str, deadline_s: float = 1.0) -> tuple[Redis, RedisPipe]:
    client = Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    pipe = RedisPipe.for_client(client, deadline_s)
    assert pipe is not None
    return client, pipe


async def test_answers_come_back_to_their_callers_in_order(redis_url: str) -> None:
    client, pipe = _pipe(redis_url)
    try:
        commands = [("INCR", "n")] * 500 + [("GET", "n"), ("HGET", "n", "x"), ("NOPE",)]
        replies = await _send(pipe, *commands)
        assert replies[:500] == list(range(1, 501))
        assert replies[500] == b"500"
        assert isinstance(replies[501], ResponseError)  # WRONGTYPE, to its own caller
        assert isinstance(replies[502], ResponseError)
        assert (await _send(pipe, ("EVALSHA", "0" * 40, 0)))[0].__class__ is NoScriptError
        # batches sent before the first is answered share the connection
        many = await asyncio.gather(*(_send(pipe, ("INCR", "m")) for _ in range(200)))
        assert sorted(r[0] for r in many) == list(range(1, 201))
    finally:
        await pipe.aclose()
        await client.aclose()


async def test_several_commands_sent_as_one_call_get_every_answer_in_one_list(
    redis_url: str,
) -> None:
    """``send_commands`` (where-now's check): one future gets all the answers, an error
    answer in its place, between other callers' calls on the same connection; and a call
    whose connection is killed mid-answer is sent again and collects its answers afresh."""
    client, pipe = _pipe(redis_url, deadline_s=5.0)
    direct = redis.Redis.from_url(redis_url)
    loop = asyncio.get_running_loop()
    try:
        direct.zadd("z", {"a": 1, "b": 2})
        direct.hset("h", mapping={"a": "x"})
        commands = [("ZMSCORE", "z", "a", "c"), ("HMGET", "h", "a", "b"), ("ZSCORE", "h", "a")]
        batch: asyncio.Future[Any] = loop.create_future()
        before = asyncio.ensure_future(_send(pipe, ("INCR", "n")))
        pipe.send_commands(pack_commands(commands)[0], 3, batch)
        after = asyncio.ensure_future(_send(pipe, ("INCR", "n")))
        scores, infos, wrong = await batch
        assert (scores, infos) == ([b"1", None], [b"x", None])
        assert isinstance(wrong, ResponseError)  # WRONGTYPE, in its place, not raised
        assert (await before, await after) == ([1], [2])
        one: asyncio.Future[Any] = loop.create_future()
        pipe.send_commands(pack_commands([("HMGET", "h", "a")])[0], 1, one)
        assert await one == [[b"x"]]  # a list of one answer, like any other count

        # a call cut off after some of its answers: sent again whole, answered whole
        direct.delete("queue")
        cut: asyncio.Future[Any] = loop.create_future()
        blocking = [("INCR", "m"), ("BLPOP", "queue", 4), ("INCR", "m")]
        pipe.send_commands(pack_commands(blocking)[0], 3, cut)
        deadline = time.monotonic() + 3
        while not (ids := [int(c["id"]) for c in direct.client_list() if c["cmd"] == "blpop"]):
            assert time.monotonic() < deadline, "no connection is waiting on BLPOP"
            await asyncio.sleep(0.01)
        direct.client_kill_filter(_id=ids[0])
        while not [
            c for c in direct.client_list() if c["cmd"] == "blpop" and int(c["id"]) != ids[0]
        ]:
            assert time.monotonic() < deadline, "the call was not sent again"
            await asyncio.sleep(0.01)
        direct.lpush("queue", "job")
        assert await cut == [2, [b"queue", b"job"], 3]  # its first INCR ran twice
    finally:
        direct.close()
        await pipe.aclose()
        await client.aclose()


async def test_a_restart_mid_flow_loses_no_call(own_redis: EmbeddedRedis) -> None:
    """Calls written when the server went away are sent once more on a new connection."""
    client, pipe = _pipe(own_redis.url, deadline_s=10.0)
    try:
        assert await _send(pipe, ("SET", "k", 0)) == [b"OK"]
        loop = asyncio.get_running_loop()
        restart = loop.run_in_executor(None, lambda: (own_redis.stop(), own_redis.start()))
        sent = 0
        results: list[Any] = []
        while not restart.done():
            results += await _send(pipe, ("INCR", "k"))
            sent += 1
        await restart
        results += await _send(pipe, ("INCR", "k"))
        sent += 1
        assert sent > 1
        answered = [r for r in results if not isinstance(r, Exception)]
        # every INCR that was answered is in the data (AOF), and any call that failed did
        # so because the server was down (or still loading) when it was made, not because
        # it was dropped
        stored = int(redis.Redis.from_url(own_redis.url).get("k") or 0)
        assert stored >= len(answered) > 0
        failed = [r for r in results if r not in answered]
        assert all(isinstance(r, RedisConnectionError) or _loading(r) for r in failed)
    finally:
        await pipe.aclose()
        await client.aclose()


def _loading(error: Exception) -> bool:
    refused = refusal(error)
    return refused is not None and refused.cause.code == "LOADING"


async def test_a_stopped_server_fails_calls_within_the_deadline(
    own_redis: EmbeddedRedis,
) -> None:
    client, pipe = _pipe(own_redis.url, deadline_s=0.8)
    pid = int(own_redis.pidfile.read_text())
    try:
        assert await _send(pipe, ("PING",)) == [b"PONG"]
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            first, second = await asyncio.gather(
                _send(pipe, ("PING",)), _send(pipe, ("PING",), ("PING",))
            )
            elapsed = time.monotonic() - started
            assert 0.7 < elapsed < 1.5, elapsed
            assert all(isinstance(r, RedisTimeoutError) for r in first + second)
        finally:
            os.kill(pid, signal.SIGCONT)
        # the silent connection was dropped; the next call gets a fresh one
        assert await _send(pipe, ("PING",)) == [b"PONG"]
    finally:
        await pipe.aclose()
        await client.aclose()


async def test_no_server_fails_fast_with_a_connection_error(tmp_path: Path) -> None:
    client, pipe = _pipe(f"unix://{tmp_path}/nothing.sock")
    try:
        started = time.monotonic()
        [reply] = await _send(pipe, ("PING",))
        assert isinstance(reply, RedisConnectionError)
        assert time.monotonic() - started < 1.0
    finally:
        await pipe.aclose()
        await client.aclose()


async def _answering(sock: Path, password: str) -> None:
    """Until the server answers: its socket file exists from its bind, before it listens
    (a connection then is refused)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            with redis.Redis(unix_socket_path=str(sock), password=password) as probe:
                if probe.ping():
                    return
        except (redis.ConnectionError, redis.BusyLoadingError):
            pass
        assert time.monotonic() < deadline, "redis-server did not start"
        await asyncio.sleep(0.02)


async def test_password_and_database_of_the_url_are_used(tmp_path: Path) -> None:
    sock = tmp_path / "auth.sock"
    server = await asyncio.create_subprocess_exec(
        redis_server_binary(),
        "--port", "0", "--unixsocket", str(sock), "--requirepass", "s3cret", "--save", "",
        "--dir", str(tmp_path),
        stdout=asyncio.subprocess.DEVNULL, preexec_fn=dies_with_us(),
    )  # fmt: skip
    try:
        await _answering(sock, "s3cret")
        client, pipe = _pipe(f"unix://:s3cret@{sock}?db=3")
        assert await _send(pipe, ("SET", "where", "db3")) == [b"OK"]
        with redis.Redis(unix_socket_path=str(sock), password="s3cret", db=3) as direct:
            assert direct.get("where") == b"db3"
        await pipe.aclose()
        await client.aclose()

        client, pipe = _pipe(f"unix://:wrong@{sock}")
        [reply] = await _send(pipe, ("PING",))
        assert isinstance(reply, RedisConnectionError)
        assert "WRONGPASS" in str(reply) or "invalid" in str(reply)
        await pipe.aclose()
        await client.aclose()
    finally:
        server.terminate()
        await server.wait()


async def test_a_closed_pipe_refuses_calls(redis_url: str) -> None:
    client, pipe = _pipe(redis_url)
    assert await _send(pipe, ("PING",)) == [b"PONG"]
    await pipe.aclose()
    [reply] = await _send(pipe, ("PING",))
    assert isinstance(reply, RedisConnectionError)
    await client.aclose()


async def test_a_call_whose_connection_is_killed_is_sent_once_more(redis_url: str) -> None:
    client, pipe = _pipe(redis_url, deadline_s=5.0)
    direct = redis.Redis.from_url(redis_url)

    def waiting_on_blpop() -> list[int]:
        return [int(c["id"]) for c in direct.client_list() if c["cmd"] == "blpop"]

    async def until_waiting() -> int:
        deadline = time.monotonic() + 3
        while not (ids := waiting_on_blpop()):
            assert time.monotonic() < deadline, "no connection is waiting on BLPOP"
            await asyncio.sleep(0.01)
        return ids[0]

    try:
        call = asyncio.ensure_future(_send(pipe, ("BLPOP", "queue", 4)))
        first = await until_waiting()
        direct.client_kill_filter(_id=first)
        second = await until_waiting()  # the same call, on a new connection
        assert second != first
        direct.lpush("queue", "job")
        assert await call == [[b"queue", b"job"]]
    finally:
        direct.close()
        await pipe.aclose()
        await client.aclose()


async def test_a_burst_of_script_calls_in_several_eager_batches_is_answered_in_order(
    redis_url: str,
) -> None:
    """More calls in one loop turn than one eager batch holds: every caller still gets
    the answer to its own call (here, how many sessions were online after it)."""
    settings = Settings(redis_url=redis_url, online_timeout_s=60.0)
    redis_conn = connect(settings, deadline_s=2.0, pipelined=True)
    store = PresenceStore(redis_conn, settings)
    try:
        await redis_conn.load_scripts()
        counts = await asyncio.gather(
            *(
                store.heartbeat("doc-burst", f"tab-{n:04d}", f"user-{n}", None, None)
                for n in range(50)
            )
        )
        assert sorted(c.sessions for c in counts) == list(range(1, 51))
        assert [c.online for c in counts] == [c.sessions for c in counts]  # in call order
        assert counts[-1] == Counts(50, 50, 50, 0)
    finally:
        await redis_conn.aclose()


class FakeRedis:
    """A TCP server speaking just enough RESP to misbehave on purpose: ``mode`` says what
    it does with what it reads ("close", "silent", "answer" with "+OK", or "slow" answers
    after 0.4 s), per connection in the order the connections come."""

    def __init__(self, *modes: str) -> None:
        self.modes = list(modes)
        self.connections = 0
        self.closed_by_peer = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.handlers: set[asyncio.Task[None]] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        mode = self.modes[min(self.connections, len(self.modes) - 1)]
        self.connections += 1
        parser = hiredis.Reader()
        try:
            while data := await reader.read(65536):
                if mode == "close":
                    break
                parser.feed(data)
                while parser.gets() is not False:
                    if mode == "answer":
                        writer.write(b"+OK\r\n")
                    elif mode == "slow":
                        loop = asyncio.get_running_loop()
                        loop.call_later(0.4, writer.write, b"+OK\r\n")
            else:
                self.closed_by_peer.set()
        finally:
            writer.close()

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.handlers:
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)


def _tcp_pipe(port: int, deadline_s: float, password: str | None = None) -> RedisPipe:
    client = Redis(host="127.0.0.1", port=port, password=password, socket_connect_timeout=0.5)
    pipe = RedisPipe.for_client(client, deadline_s)
    assert pipe is not None
    return pipe


async def test_a_greeting_cut_off_fails_fast_and_deadlines_still_hold() -> None:
    """The connection dies during AUTH: the calls fail at once (not after the connect
    timeout), and the next server that greets and then goes silent is still bounded."""
    fake = FakeRedis("close", "close", "answer")
    async with fake as port:
        pipe = _tcp_pipe(port, deadline_s=0.3, password="pw")
        started = time.monotonic()
        [reply] = await _send(pipe, ("PING",))
        assert isinstance(reply, RedisConnectionError)
        assert time.monotonic() - started < 0.25
        [reply] = await _send(pipe, ("PING",))  # the second connection dies the same way
        assert isinstance(reply, RedisConnectionError)
        assert await _send(pipe, ("PING",)) == [b"OK"]  # the third greets and answers
        await pipe.aclose()
    async with FakeRedis("slow") as port:  # answers, but after 0.4 s: past the deadline
        pipe = _tcp_pipe(port, deadline_s=0.3)
        started = time.monotonic()
        [reply] = await _send(pipe, ("PING",))
        assert isinstance(reply, RedisTimeoutError)
        assert 0.25 < time.monotonic() - started < 0.6
        await pipe.aclose()


async def test_a_resent_call_keeps_its_deadline_without_failing_newer_calls() -> None:
    """A call sent once more after its connection broke still fails by its first
    deadline, but the calls made after it on the new connection wait for their own."""
    fake = FakeRedis("silent", "slow")
    async with fake as port:
        pipe = _tcp_pipe(port, deadline_s=1.0)
        loop = asyncio.get_running_loop()
        old = loop.create_future()
        pipe.send([(pack_command(("PING",)), old)])
        await asyncio.sleep(0.7)
        protocol = pipe._protocol
        assert protocol is not None
        assert protocol.transport is not None
        protocol.transport.abort()  # the connection breaks: ``old`` is sent again
        await asyncio.sleep(0.1)
        newer = await _send(pipe, *[("PING",)] * 5)  # due 1.0 s from now; answered in 0.4
        with pytest.raises(RedisTimeoutError):
            await old  # its own deadline, 1 s after it was first sent
        assert newer == [b"OK"] * 5
        await pipe.aclose()


async def test_closing_while_connecting_closes_the_socket() -> None:
    fake = FakeRedis("silent")
    async with fake as port:
        pipe = _tcp_pipe(port, deadline_s=2.0, password="pw")  # the greeting never ends
        call = asyncio.ensure_future(_send(pipe, ("PING",)))
        await asyncio.sleep(0.1)
        await pipe.aclose()
        [reply] = await call
        assert isinstance(reply, RedisConnectionError)
        await asyncio.wait_for(fake.closed_by_peer.wait(), 1)


async def test_scripts_missing_after_a_flush_are_loaded_once_for_all_callers(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    redis_conn = connect(Settings(redis_url=redis_url), deadline_s=2.0, pipelined=True)
    store = PresenceStore(redis_conn, Settings(redis_url=redis_url))
    try:
        await store.heartbeat("doc-1", "tab-0", "user-0", None, None)
        sync_redis.script_flush()
        # the joins' where-now index writes come in later waves, each of which may find
        # its script missing again: loaded here, the 300 heartbeats are what is measured
        sync_redis.script_load(redis_conn.scripts.where_now_add.source)
        loads_before = _script_loads(sync_redis)
        results = await asyncio.gather(
            *(store.heartbeat("doc-1", f"tab-{n}", f"user-{n}", None, None) for n in range(300)),
            return_exceptions=True,
        )
        assert not [r for r in results if isinstance(r, Exception)]
        loads = _script_loads(sync_redis) - loads_before
        assert loads == 1
    finally:
        await redis_conn.aclose()


def _script_loads(r: redis.Redis) -> int:
    """``SCRIPT LOAD`` calls so far: Redis 7 counts each subcommand apart, 6.2 all of
    ``SCRIPT`` together."""
    stats = r.info("commandstats")
    return int(stats.get("cmdstat_script|load", stats.get("cmdstat_script", {})).get("calls", 0))


@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined", "pooled"])
async def test_an_online_batch_reloads_a_flushed_script_and_answers_exactly(
    redis_url: str, sync_redis: redis.Redis, pipelined: bool
) -> None:
    """A batch of script calls (one per partition, each with its keys packed once per
    artifact and kept); a script Redis lost (restart, flush) is loaded and its calls sent
    again, on the pipe as on a pooled connection."""
    settings = Settings(redis_url=redis_url, partitions=16)
    redis_conn = connect(settings, deadline_s=2.0, pipelined=pipelined)
    store = PresenceStore(redis_conn, settings)
    try:
        for n in range(60):
            for tab in range(n % 3):
                await store.heartbeat(f"doc-{n}", f"tab-{n}-{tab}", f"user-{tab}", None, None)
        ids = [f"doc-{n}" for n in range(60)]
        first = await store.online(ids)
        assert len({store.keys.artifact(a).tag for a in ids}) > 2  # many calls in the batch
        assert {a: (c.online, c.sessions) for a, c in first.items()} == {
            f"doc-{n}": (n % 3, n % 3) for n in range(60)
        }
        sync_redis.script_flush()
        assert await store.online(ids) == first
        assert await store.online([*ids, "doc-nobody"]) == {
            **first,
            "doc-nobody": Counts(0, 0, 0, 0),
        }
    finally:
        await redis_conn.aclose()


async def test_a_views_calls_share_the_pipelined_connection_and_survive_a_flush(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    """A view's call (one server: the user's notes and the view in one script) travels
    with the others on the one pipelined connection, however many views arrive at once:
    no pooled connection each."""
    settings = Settings(redis_url=redis_url)
    redis_conn = connect(settings, deadline_s=2.0, pipelined=True)
    views = ViewStore(redis_conn, settings)
    try:
        await views.record("doc-1", "v1", "user-0", None)  # the pipe is connected now
        clients = sync_redis.info("clients")["connected_clients"]
        sync_redis.script_flush()  # as after a restart: both scripts are loaded again
        recorded = await asyncio.gather(
            *(views.record("doc-1", "v1", f"user-{n}", None) for n in range(200))
        )
        assert sync_redis.info("clients")["connected_clients"] == clients
        assert [v.counted for v in recorded] == [False] + [True] * 199
        assert (await views.stats("doc-1")).views == 200
        assert [i.artifact_id for i in await views.recent("user-7", 10)] == ["doc-1"]
    finally:
        await redis_conn.aclose()


async def test_a_failing_call_among_a_requests_calls_is_raised_once_all_have_run(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    """On the pipe and on a pooled connection alike: the view beside notes that failed
    still ran (a Cluster's two scripts, here on one server), and a retry once the fault is
    gone notes it without counting it again."""
    settings = Settings(redis_url=redis_url)
    for pipelined in (True, False):
        redis_conn = connect(settings, deadline_s=2.0, pipelined=pipelined)
        views = ViewStore(redis_conn, settings.replace(redis_cluster=True))
        artifact, user = f"doc-{pipelined}", "user-0"
        sync_redis.set(views.keys.user_views_index(user), "not a set")
        try:
            with pytest.raises(ResponseError, match="WRONGTYPE"):
                await views.record(artifact, "v1", user, None)
            assert (await views.stats(artifact)).views == 1
            sync_redis.delete(views.keys.user_views_index(user))
            again = await views.record(artifact, "v1", user, None)
            assert not again.counted
            assert (await views.stats(artifact)).views == 1
            assert sync_redis.smembers(views.keys.user_views_index(user)) == {
                f"{artifact}/v1".encode()
            }
        finally:
            await redis_conn.aclose()


async def test_a_view_in_one_call_that_fails_counts_nothing_and_its_retry_counts_once(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    """On one server a view is one script call: notes that fail stop it before the count
    (the client is answered 503), and the retry once the fault is gone counts it once."""
    settings = Settings(redis_url=redis_url)
    for pipelined in (True, False):
        redis_conn = connect(settings, deadline_s=2.0, pipelined=pipelined)
        views = ViewStore(redis_conn, settings)
        artifact, user = f"doc-{pipelined}", "user-0"
        sync_redis.set(views.keys.user_views_index(user), "not a set")
        try:
            with pytest.raises(ResponseError, match="WRONGTYPE"):
                await views.record(artifact, "v1", user, None)
            assert (await views.stats(artifact)).views == 0
            sync_redis.delete(views.keys.user_views_index(user))
            again = await views.record(artifact, "v1", user, None)
            assert again.counted
            assert again.views == 1
            assert not (await views.record(artifact, "v1", user, None)).counted
            assert (await views.stats(artifact)).views == 1
            assert sync_redis.smembers(views.keys.user_views_index(user)) == {
                f"{artifact}/v1".encode()
            }
        finally:
            await redis_conn.aclose()


async def test_a_batch_on_the_pipe_takes_no_pooled_connection_and_keeps_errors_in_place(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    """``run_many`` on the pipe (a rate-limit settlement, an online batch): one write on the
    pipelined connection, no pooled one; a call that fails is answered with its error in
    its place while the others run."""
    settings = Settings(redis_url=redis_url)
    redis_conn = connect(settings, deadline_s=2.0, pipelined=True)
    store = PresenceStore(redis_conn, settings)
    try:
        await store.heartbeat("batch-x", "tab-0", "user-0", None, None)  # the pipe is up
        clients = sync_redis.info("clients")["connected_clients"]
        sync_redis.set(store.keys.artifact("batch-3").sessions, "not a zset")
        calls = [
            store.heartbeat_call(f"batch-{n}", "tab-1", "user-1", None, None) for n in range(6)
        ]
        results = await redis_conn.run_many(calls)
        assert sync_redis.info("clients")["connected_clients"] == clients
        assert isinstance(results[3], ResponseError)
        assert "WRONGTYPE" in str(results[3])
        assert [r[:3] for n, r in enumerate(results) if n != 3] == [[1, 1, 1]] * 5
    finally:
        await redis_conn.aclose()


async def test_plain_reads_in_turn_join_the_script_calls_of_the_loop_turn(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    """``read_in_turn`` (a kept presence page's check) on the pipe: its commands go out in
    the same write as the script calls of the same loop turn (Redis reads them in one
    read), its future gets every answer in a list, an error answer in its place; each
    heartbeat still gets its own answer."""
    settings = Settings(redis_url=redis_url, online_timeout_s=60.0)
    redis_conn = connect(settings, deadline_s=2.0, pipelined=True)
    store = PresenceStore(redis_conn, settings)
    try:
        await store.heartbeat("doc-turn", "tab-0", "user-0", None, None)  # the pipe is up
        sync_redis.set("plain-x", "a string")
        reads = Commands.of([("HGET", "plain-y", "f"), ("TIME",), ("HGET", "plain-x", "f")])
        before = sync_redis.info("stats")["total_reads_processed"]
        calls = [
            store.heartbeat_call("doc-turn", f"tab-{n}", f"user-{n}", None, None) for n in (1, 2)
        ]
        answers, *counts = await asyncio.gather(
            redis_conn.read_in_turn(reads), *(redis_conn.run(call) for call in calls)
        )
        # the batch, then this INFO: two reads (each written alone, they were four)
        assert sync_redis.info("stats")["total_reads_processed"] - before == 2
        missing, clock, wrong = answers
        assert missing is None
        assert abs(int(clock[0]) - time.time()) < 60
        assert isinstance(wrong, ResponseError)
        assert "WRONGTYPE" in str(wrong)
        assert [c[1] for c in counts] == [2, 3]  # online sessions after each
    finally:
        await redis_conn.aclose()


async def test_plain_reads_in_turn_without_a_pipe_are_read_commands(redis_url: str) -> None:
    """A connection without the pipe (a tool, a worker's) answers them as one pipeline."""
    redis_conn = connect(Settings(redis_url=redis_url), deadline_s=2.0)
    try:
        answers = await redis_conn.read_in_turn(Commands.of([("SET", "k", "v"), ("GET", "k")]))
        assert answers == [True, b"v"] or answers == [b"OK", b"v"]
    finally:
        await redis_conn.aclose()
