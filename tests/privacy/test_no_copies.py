"""Erasure leaves no copies on disk: the embedded Redis's AOF is rewritten, and the SQLite
file and its WAL no longer hold the erased bytes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from presence_svc.redis.embedded import EmbeddedRedis
from tests.conftest import MakeClient
from tests.privacy.scan import file_findings

Auth = Callable[..., dict[str, str]]

USER = "alice-disk-41d2"
STATE = "cursor-on-disk-77ab"
NAME = "Alice Profile-Bytes-5c3e"


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data dir with its own embedded Redis (AOF on), as ``serve`` runs it."""
    path = tmp_path / "data"
    embedded = EmbeddedRedis(path)
    embedded.start()
    try:
        yield path
    finally:
        embedded.stop()


async def _until(check: Callable[[], list[str]], want_empty: bool, what: str) -> None:
    deadline = time.monotonic() + 30
    while bool(check()) == want_empty:
        assert time.monotonic() < deadline, f"{what}: {check()}"
        await asyncio.sleep(0.1)


async def test_after_an_erasure_no_file_holds_the_erased_bytes(
    make_client: MakeClient, auth: Auth, data_dir: Path
) -> None:
    client = await make_client(
        redis_url=EmbeddedRedis(data_dir).url,
        data_dir=data_dir,
        ledger_url=f"sqlite:///{data_dir / 'ledger.sqlite3'}",
        run_worker=True,
        erasure_rewrite_s=0.5,
        ledger_reclaim_idle_s=1.0,  # how long an erasure waits for a view the drain holds
    )
    admin, alice = auth("root", scope="admin"), auth(USER)
    for user, name in (("aaron", "Aaron A"), (USER, NAME), ("zoe", "Zoe Z")):  # one page
        response = await client.put(f"/v1/users/{user}", json={"name": name}, headers=admin)
        assert response.status == 200
    beat = {"artifactId": "doc-1", "sessionId": "tab-disk-0001", "state": {"c": STATE}}
    assert (await client.post("/v1/heartbeat", json=beat, headers=alice)).status == 200
    view = {"artifactId": "doc-1", "versionId": "v1"}
    assert (await client.post("/v1/views", json=view, headers=alice)).status == 200
    needles = [USER.encode(), STATE.encode(), NAME.encode()]
    # the files do hold them first: the AOF her state and id, the database her profile
    for needle in needles:
        await _until(lambda n=needle: file_findings(data_dir, [n]), False, f"{needle!r} on disk")

    response = await client.delete(f"/v1/users/{USER}", headers=admin)
    # 202 if the drain was writing her view just then: the worker finishes the erasure
    assert response.status in (202, 204), await response.text()

    await _until(lambda: file_findings(data_dir, needles), True, "erased bytes still on disk")
    assert _aof_files(data_dir), "the embedded Redis keeps an AOF"


def _aof_files(data_dir: Path) -> list[Path]:
    return [p for p in data_dir.rglob("*.aof") if p.stat().st_size > 0]
