"""A redis-server whose clock the test sets (libfaketime, as tests/test_model.py does), so a
crowd can join and leave at known minutes in the past."""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from presence_svc.redis.embedded import EmbeddedRedis


def _libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        pytest.fail("libfaketime is not installed (scripts/test-deps.sh installs it)")
    return found[0]


@dataclass
class Clock:
    """Redis's clock: ``set(ms)`` makes Redis's TIME read ``ms`` now (and run on from it)."""

    file: Path
    url: str

    def set(self, ms: int) -> None:
        offset_s = (ms - time.time() * 1000) / 1000
        self.file.write_text(f"{offset_s:+.3f}\n")
        with redis.Redis.from_url(self.url) as r:
            seconds, micros = r.time()
        assert abs(seconds * 1000 + micros // 1000 - ms) < 1000


@pytest.fixture(scope="session")
def _faked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("faked-redis")
    clock_file = root / "clock"
    clock_file.write_text("+0\n")
    faked = {
        "LD_PRELOAD": _libfaketime(),
        "FAKETIME_TIMESTAMP_FILE": str(clock_file),
        "FAKETIME_NO_CACHE": "1",
        "DONT_FAKE_MONOTONIC": "1",
    }
    saved = {k: os.environ.get(k) for k in faked}
    os.environ.update(faked)  # for the redis-server child only
    server = EmbeddedRedis(root / "redis")
    try:
        url = server.start()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    yield url, clock_file
    server.stop()


@pytest.fixture
def clock(_faked_redis: tuple[str, Path]) -> Clock:
    url, clock_file = _faked_redis
    clock_file.write_text("+0\n")
    with redis.Redis.from_url(url) as r:
        r.flushall()
        r.script_flush()
    return Clock(clock_file, url)
