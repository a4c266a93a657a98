"""What a heartbeat with ``engagedMs`` costs Redis over a plain one, counted in commands
(which the machine's load cannot change): on the report's hot path, the ``HSET`` of the
accumulator and nothing more. The accumulator is in the session's record, which the report
reads to check whose session it is and the heartbeat's fast path reads too: read once for
all of them (lib/session_record.lua)."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import redis

from presence_svc.live.store import PresenceStore
from presence_svc.redis.connection import RedisConnection
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import Settings
from presence_svc.stats.engagement import EngagementRules


def accumulators(sync_redis: redis.Redis, keys: Keyspace, artifact_id: str) -> dict[bytes, Any]:
    """The artifact's sessions holding an accumulator: packed session id -> [last report,
    pending ms, fold due, version] (elements 5-8 of the session's record)."""
    records = sync_redis.hgetall(keys.artifact(artifact_id).info)
    out: dict[bytes, Any] = {}
    for field, raw in records.items():
        if field.startswith(b"#"):
            record = msgspec.msgpack.decode(raw)
            if len(record) > 4:
                out[field] = record[4:]
    return out


def _calls(sync_redis: redis.Redis) -> dict[str, int]:
    stats = sync_redis.info("commandstats")
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}


async def test_an_engaged_report_adds_one_command_and_reads_the_session_once(
    redis_conn: RedisConnection, settings: Settings, sync_redis: redis.Redis
) -> None:
    # a fold far off (its first one within the first interval, by the session id)
    settings = settings.replace(online_timeout_s=60.0, retention_s=120.0, engagement_fold_s=600)
    store = PresenceStore(redis_conn, settings)
    rules = EngagementRules(settings)
    keys = Keyspace(settings.partitions)
    now = int(time.time() * 1000)
    for user in ("alice", "bob"):  # their views of v1, 10 s ago
        viewers = f"{Keyspace.views_prefix(keys.tag_of('doc-1'))}vu:doc-1/v1"
        sync_redis.hset(viewers, user, msgspec.msgpack.encode([1, now - 10_000, now - 10_000]))
    state = b'{"page":1}'
    for user, tab in (("alice", "tab-a"), ("bob", "tab-b")):
        await store.heartbeat("doc-1", tab, user, "v1", state)  # joins
        # the first report starts the accumulator (from the view: 10 s + the slack)
        await store.heartbeat("doc-1", tab, user, "v1", state, engaged=rules.engagement(1_000))

    sync_redis.config_resetstat()
    plain = await store.heartbeat("doc-1", "tab-b", "bob", "v1", state)
    plain_calls = _calls(sync_redis)
    sync_redis.config_resetstat()
    engaged = await store.heartbeat(
        "doc-1", "tab-a", "alice", "v1", state, engaged=rules.engagement(1_000)
    )
    engaged_calls = _calls(sync_redis)

    assert plain == engaged  # the same counts: two users online, both active
    assert plain_calls["evalsha"] == engaged_calls["evalsha"] == 1
    # the heartbeat's fast path: the artifact's settle mark and the session's record
    assert plain_calls["hget"] == 2
    # the report: its accumulator, in the session's record, read once for both
    assert engaged_calls["hget"] == 2
    assert engaged_calls.get("hset", 0) == plain_calls.get("hset", 0) + 1
    assert sum(engaged_calls.values()) == sum(plain_calls.values()) + 1
    # and the report counted: the accumulator holds both reports' time
    pending = sorted(acc[1] for acc in accumulators(sync_redis, keys, "doc-1").values())
    assert pending == [1_000, 2_000]  # bob one report, alice two


async def test_a_report_whose_fold_is_due_reads_each_key_once(
    redis_conn: RedisConnection, settings: Settings, sync_redis: redis.Redis
) -> None:
    """The report that folds: the session's record (its accumulator in it) and the
    viewer's entry are each read once, and the time held is credited."""
    settings = settings.replace(online_timeout_s=60.0, retention_s=120.0, engagement_fold_s=600)
    store = PresenceStore(redis_conn, settings)
    rules = EngagementRules(settings)
    keys = Keyspace(settings.partitions)
    tag = keys.tag_of("doc-1")
    viewers = f"{Keyspace.views_prefix(tag)}vu:doc-1/v1"
    now = int(time.time() * 1000)
    sync_redis.hset(viewers, "alice", msgspec.msgpack.encode([1, now - 10_000, now - 10_000]))
    state = b'{"page":1}'
    await store.heartbeat("doc-1", "tab-a", "alice", "v1", state)
    await store.heartbeat("doc-1", "tab-a", "alice", "v1", state, engaged=rules.engagement(1_500))
    info = keys.artifact("doc-1").info
    ((sid, (_, pending, _, version)),) = accumulators(sync_redis, keys, "doc-1").items()
    assert (pending, version) == (1_500, "v1")
    # its fold comes due (as it does an interval after the first report)
    record = msgspec.msgpack.decode(sync_redis.hget(info, sid))
    record[6] = now - 1
    sync_redis.hset(info, sid, msgspec.msgpack.encode(record))

    sync_redis.config_resetstat()
    await store.heartbeat("doc-1", "tab-a", "alice", "v1", state, engaged=rules.engagement(700))
    calls = _calls(sync_redis)

    # the session's record (the accumulator in it), the viewer's entry; and the artifact's
    # settle mark (the heartbeat's fast path)
    assert calls["hget"] == 3, calls
    entry = msgspec.msgpack.decode(sync_redis.hget(viewers, "alice"))
    assert entry[3] == 1_500  # the time held, credited
    _, pending, due, version = accumulators(sync_redis, keys, "doc-1")[sid]
    assert (pending, version) == (700, "v1")  # this report's, held for the next fold
    assert due > now


def test_an_engaged_heartbeat_sends_only_its_four_arguments_more(settings: Settings) -> None:
    """engage() reads the session, the user and the version from the heartbeat's own
    arguments (ARGV[9..11]): the call does not send them twice (Redis takes each argument
    it is sent, every call)."""
    from presence_svc.redis.connection import connect

    store, rules = PresenceStore(connect(settings), settings), EngagementRules(settings)
    state = b'{"page":1}'
    plain = store.heartbeat_call("doc-1", "tab-a", "alice", "v1", state)
    engaged = store.heartbeat_call(
        "doc-1", "tab-a", "alice", "v1", state, engaged=rules.engagement(1_500)
    )
    assert engaged.args[: len(plain.args)] == plain.args
    assert int(engaged.args[-1]) == 1_500
    assert len(engaged.args) == len(plain.args) + 4
    assert engaged.keys == plain.keys  # engage() builds the keys only a fold writes
