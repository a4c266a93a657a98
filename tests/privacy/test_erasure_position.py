"""Where an erasure job resumes: by its erasers' names, across a deploy that changed the
erasers list, and from a job saved by a release that kept its place as an index."""

from __future__ import annotations

import pytest
import redis

from presence_svc.http.resources import DATABASE, PRESENCE, REDIS, SETTINGS
from presence_svc.privacy.copies import Copies
from presence_svc.privacy.erasure import Erasers
from presence_svc.privacy.jobs import ErasureJobs
from presence_svc.redis.keys import Keyspace
from tests.conftest import AppClient, MakeClient


class Recording:
    """An eraser that takes ``steps`` steps (cursors ``<name>-1``, ``<name>-2``, ...) and
    writes each call (its name and the cursor it was given) to a Redis list."""

    def __init__(self, name: str, sync: redis.Redis, steps: int = 1) -> None:
        self.name = name
        self.sync = sync
        self.steps = steps

    async def erase_user(self, user_id: str, tombstone: str, cursor: str) -> str | None:
        self.sync.rpush("test:calls", f"{self.name}@{cursor}")
        done = int(cursor.rpartition("-")[2]) if cursor else 0
        return None if done + 1 >= self.steps else f"{self.name}-{done + 1}"


def _jobs(client: AppClient, erasers: Erasers) -> ErasureJobs:
    app = client.server.app
    copies = Copies(app[REDIS], app[DATABASE], app[SETTINGS])
    return ErasureJobs(app[REDIS], app[PRESENCE].keys, erasers, copies)


def _calls(sync: redis.Redis) -> list[str]:
    calls = [c.decode() for c in sync.lrange("test:calls", 0, -1)]
    sync.delete("test:calls")
    return calls


async def test_a_job_from_before_the_names_resumes_at_its_place(
    make_client: MakeClient, sync_redis: redis.Redis
) -> None:
    client = await make_client()
    erasers = Erasers([Recording(n, sync_redis, steps=3) for n in ("a", "b", "c", "d")])
    jobs = _jobs(client, erasers)
    opened = await jobs.open("carol")
    key = Keyspace.erasure(opened.erasure_id)
    # as the release before the names left it: a and b done, c one step in
    sync_redis.hset(key, mapping={"step": 2, "cursor": "c-1"})
    assert await jobs.run(opened.erasure_id)
    assert _calls(sync_redis) == ["c@c-1", "c@c-2", "d@", "d@d-1", "d@d-2"]
    assert (await jobs.status(opened.erasure_id)).status == "complete"  # type: ignore[union-attr]


async def test_a_job_in_flight_across_a_changed_erasers_list_keeps_its_eraser(
    make_client: MakeClient, sync_redis: redis.Redis
) -> None:
    client = await make_client()
    before = Erasers([Recording(n, sync_redis, steps=3) for n in ("a", "b", "c")])
    opened = await _jobs(client, before).open("dave")
    assert not await _jobs(client, before).run(opened.erasure_id, most_steps=4)
    assert _calls(sync_redis) == ["a@", "a@a-1", "a@a-2", "b@"]  # b one step in
    job = sync_redis.hgetall(Keyspace.erasure(opened.erasure_id))
    assert (job[b"done"], job[b"eraser"], job[b"cursor"]) == (b"a", b"b", b"b-1")
    assert b"step" not in job
    # the deploy: x comes first, a is gone, c moves before b. The job goes on with b where
    # it was, then runs what it has not run yet (x and c), and never a again.
    after = Erasers([Recording(n, sync_redis, steps=3) for n in ("x", "c", "b")])
    assert await _jobs(client, after).run(opened.erasure_id)
    assert _calls(sync_redis) == ["b@b-1", "b@b-2", "x@", "x@x-1", "x@x-2", "c@", "c@c-1", "c@c-2"]


def test_eraser_names_are_unique_and_have_no_comma(sync_redis: redis.Redis) -> None:
    erasers = Erasers([Recording("a", sync_redis)])
    for name in ("a", "b,c", ""):
        with pytest.raises(ValueError, match="unique, without"):
            erasers.add(Recording(name, sync_redis))
    assert erasers.names == ["a"]
