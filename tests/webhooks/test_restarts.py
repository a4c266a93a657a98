"""Nothing lost across a worker killed mid-delivery (a real ``presence-svc serve``,
SIGKILLed with its Redis) and a Redis restart that lost everything: after dedup by id the
receiver has exactly the expected events, in order per artifact."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from presence_svc.auth import Scope, TokenCodec, read_secret
from presence_svc.redis.embedded import EmbeddedRedis
from presence_svc.redis.keys import Keyspace
from tests.children import dies_with_us
from tests.cli.test_cli import CLI, _env, _wait_ready
from tests.cli.test_restart_resume import _Serve
from tests.conftest import free_port
from tests.webhooks.receiver import Receiver, receiving, until

PRESENCE = ["artifact.occupied", "artifact.vacated", "presence.join", "presence.leave"]
ENV = {
    "PRESENCE_WEBHOOK_ALLOW_HTTP": "1",
    "PRESENCE_WEBHOOK_ALLOW_PRIVATE": "1",
    "PRESENCE_WEBHOOK_RETRY_SCHEDULE": "0.1,0.2,0.5,1,1,1,1,1",
    "PRESENCE_WEBHOOK_TIMEOUT_S": "5",
    "PRESENCE_RATE_LIMITS": "off",
}


def _by_artifact(receiver: Receiver) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for got in receiver.unique():
        out.setdefault(got.data["artifactId"], []).append(got.type)
    return out


class _Hooked(_Serve):
    """``presence-svc serve`` (its worker in-process, its own Redis) delivering webhooks to
    loopback over HTTP."""

    def __init__(self, data: Path, log: Path) -> None:
        self.data_dir = data
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log.open("ab")
        self.process = subprocess.Popen(
            [CLI, "serve", "--port", str(self.port)],
            env=_env(data, **ENV),
            stdout=self.log,
            stderr=self.log,
            preexec_fn=dies_with_us(),
        )


class _Api:
    def __init__(self, http: aiohttp.ClientSession, base: str, tokens: TokenCodec) -> None:
        self.http, self.base, self.tokens = http, base, tokens

    async def post(self, path: str, body: dict[str, Any], user: str, scope: str = "client") -> Any:
        headers = {"Authorization": f"Bearer {self.tokens.issue(user, scope=Scope(scope))}"}
        async with self.http.post(self.base + path, json=body, headers=headers) as answer:
            assert answer.status < 300, await answer.text()
            return await answer.json()


@pytest.mark.timeout(120)
async def test_a_worker_killed_mid_delivery_loses_nothing(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    first = _Hooked(data, tmp_path / "serve.log")
    second: _Hooked | None = None
    try:
        await _wait_ready(first)  # type: ignore[arg-type]
        r = redis.Redis(unix_socket_path=str(data / "redis.sock"))
        r.config_set("appendfsync", "always")  # what was answered is on disk at the kill
        async with receiving() as receiver, aiohttp.ClientSession() as http:
            api = _Api(http, first.base, TokenCodec(read_secret(data)))
            made = await api.post(
                "/v1/webhooks", {"url": receiver.url, "events": PRESENCE}, "root", "admin"
            )
            receiver.secrets.append(made["secret"])
            receiver.behave = lambda event_id, body, n: (
                "hang" if body["data"]["artifactId"] == "doc-3" else None
            )
            for n in range(5):
                await api.post(
                    "/v1/heartbeat",
                    {"artifactId": f"doc-{n}", "sessionId": "tab-alice-01"},
                    "alice",
                )
            await until(
                lambda: (
                    any(i for i, _ in receiver.attempts if "doc-3" not in i)
                    and len({i for i, _ in receiver.attempts}) >= 9
                ),
                what="deliveries under way, doc-3's hanging",
            )
            first.kill_all()
            assert len(receiver.unique()) < 10  # the kill came mid-delivery
            receiver.behave = None
            second = _Hooked(data, tmp_path / "serve2.log")
            await _wait_ready(second)  # type: ignore[arg-type]
            api.base = second.base
            for n in range(5):
                await api.post(
                    "/v1/leave", {"artifactId": f"doc-{n}", "sessionId": "tab-alice-01"}, "alice"
                )
            await until(lambda: len(receiver.unique()) == 20, timeout_s=40, what="all 20 events")
            expected = ["artifact.occupied", "presence.join", "presence.leave", "artifact.vacated"]
            assert _by_artifact(receiver) == {f"doc-{n}": expected for n in range(5)}
            assert receiver.bad_signatures == 0
    finally:
        first.stop()
        if second is not None:
            second.stop()


@pytest.mark.timeout(90)
async def test_a_redis_restart_that_lost_everything_loses_no_queued_delivery(
    make_hooks: Any, tmp_path: Path, redis_binary: str
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", redis_binary)
    url = server.start()
    try:
        hooks = await make_hooks(redis_url=url, partitions=4)
        keys = Keyspace(4)
        sync = redis.Redis.from_url(url)
        async with receiving() as receiver:
            down = False
            receiver.behave = lambda event_id, body, n: (
                aiohttp.web.Response(status=500) if down else None
            )
            made = await hooks.create(receiver.url, ["artifact.occupied"])
            receiver.secrets.append(made["secret"])
            await hooks.beat("doc-1", "alice")
            await until(lambda: len(receiver.unique()) == 1)
            down = True  # the next event waits, queued, through the restart
            await hooks.beat("doc-2", "alice")
            await until(lambda: len(receiver.attempts) >= 2)

            server.stop()
            shutil.rmtree(tmp_path / "redis")  # restarted empty: the outboxes are gone
            server.start()
            await until(
                lambda: all(sync.exists(keys.outbox(t)) for t in keys.tags),
                what="the outboxes made again",
            )
            down = False
            await hooks.beat("doc-3", "alice")
            await until(lambda: len(receiver.unique()) == 3, what="three occupied events")
            assert sorted(r.data["artifactId"] for r in receiver.unique()) == [
                "doc-1",
                "doc-2",
                "doc-3",
            ]
    finally:
        server.stop()
