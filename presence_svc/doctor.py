"""``presence-svc doctor``: the checks an operator runs before (or instead of) guessing
why the service misbehaves. Each says OK, WARN or FAIL, what is wrong and how to fix it.

With the embedded Redis, a running one (a ``serve`` on this data dir) is checked live; else
the binary and the configuration ``serve`` would start it with are: doctor starts nothing
and creates no file."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from presence_svc.auth import SECRET_FILE, read_secret
from presence_svc.database import database_for
from presence_svc.db.migrations import migrations
from presence_svc.redis.embedded import EmbeddedRedis, redis_server_binary
from presence_svc.redis.facts import RedisFacts, embedded_facts, live_facts
from presence_svc.settings import Settings

__all__ = ["Check", "redacted", "redis_checks", "render", "run_checks", "secret_check"]

Status = Literal["OK", "WARN", "FAIL"]

MIN_REDIS = (6, 2)
HASH_ENTRIES = 256
"""As the embedded Redis (docs/data-model.md, Memory)."""
HASH_VALUE = 128
"""As the embedded Redis: the longest hash value a compact hash keeps."""
MAX_SKEW_S = 1.0
MIN_SECRET = 32


@dataclass(frozen=True, slots=True)
class Check:
    status: Status
    name: str
    detail: str
    fix: str | None = None


def redacted(url: str) -> str:
    """``url`` with its password, if any, masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{user.split(':', 1)[0]}:***@{host}").geturl()


async def run_checks(settings: Settings) -> list[Check]:
    checks = [Check("OK", "settings", "every PRESENCE_* variable is valid")]
    checks.extend(await _redis(settings))
    checks.append(await _database(settings))
    checks.append(secret_check(settings))
    return checks


async def _redis(settings: Settings) -> list[Check]:
    if settings.redis_url is not None:
        where = redacted(settings.redis_url)
        url: str | None = settings.redis_url
    else:
        embedded = EmbeddedRedis(
            settings.data_dir, binary=settings.redis_server, jemalloc=settings.redis_jemalloc
        )
        url = embedded.url if embedded.answering() else None
        where = f"the embedded Redis ({'running' if url else 'not running: its configuration'})"
    try:
        if url is None:
            facts = await asyncio.to_thread(
                embedded_facts,
                settings.redis_server or redis_server_binary(),
                settings.redis_jemalloc,
            )
        else:
            facts = await live_facts(url, timeout_s=2.0)
    except Exception as exc:
        return [
            Check(
                "FAIL",
                "redis",
                f"{where} does not answer: {exc or type(exc).__name__}",
                "start Redis, or correct PRESENCE_REDIS_URL",
            )
        ]
    return redis_checks(facts, where)


def redis_checks(facts: RedisFacts, where: str) -> list[Check]:
    """Version, allocator, eviction, compact encodings, persistence and clock of one Redis."""
    checks = [_version(facts, where)]
    if facts.allocator is not None:
        checks.append(_allocator(facts.allocator))
    if facts.config_refused is not None:
        checks.append(
            Check(
                "WARN",
                "redis config",
                f"CONFIG GET is refused ({facts.config_refused}): the settings below are unchecked",
                "check maxmemory-policy, hash-max-listpack-entries and -value and persistence "
                "in your provider's settings",
            )
        )
        return [*checks, *_persistence_state(facts), *_clock(facts)]
    return [
        *checks,
        _eviction(facts),
        _encoding(facts),
        _value(facts),
        _persistence(facts),
        *_persistence_state(facts),
        *_clock(facts),
    ]


def _version(facts: RedisFacts, where: str) -> Check:
    if facts.version_tuple < MIN_REDIS:
        return Check(
            "FAIL",
            "redis version",
            f"{where} is Redis {facts.version}; the scripts need 6.2 or newer",
            "upgrade Redis to 6.2 or newer (7.x recommended)",
        )
    return Check("OK", "redis version", f"{where} is Redis {facts.version}")


def _allocator(allocator: str) -> Check:
    if "jemalloc" in allocator:
        return Check("OK", "redis allocator", f"Redis allocates with {allocator}")
    return Check(
        "WARN",
        "redis allocator",
        f"Redis allocates with {allocator}: with a million sessions stored that took 8 % "
        "more resident memory per session than jemalloc, and more CPU per write",
        "install libjemalloc2 (the embedded Redis preloads it unless "
        "PRESENCE_REDIS_JEMALLOC=0), or run a jemalloc build of Redis (Debian's, the official "
        "images; PRESENCE_REDIS_SERVER=/usr/bin/redis-server for the embedded one)",
    )


def _eviction(facts: RedisFacts) -> Check:
    policy = facts.config.get("maxmemory-policy", "noeviction")
    if policy.startswith("allkeys-"):
        return Check(
            "FAIL",
            "redis maxmemory-policy",
            f"maxmemory-policy is {policy}: at maxmemory Redis evicts any key, view counts "
            "and views not yet written to the ledger included",
            "CONFIG SET maxmemory-policy noeviction (and put it in redis.conf), or a "
            "volatile-* policy",
        )
    return Check("OK", "redis maxmemory-policy", f"maxmemory-policy is {policy}")


def _hash_floor(
    facts: RedisFacts, setting: str, default: str, floor: int, why: Callable[[int], str]
) -> Check:
    """A ``hash-max-listpack-<setting>`` (Redis 7; ``-ziplist-`` before) below ``floor``."""
    name = f"hash-max-listpack-{setting}"
    if name not in facts.config:
        name = f"hash-max-ziplist-{setting}"
    value = int(facts.config.get(name, default) or 0)
    if value < floor:
        return Check(
            "WARN",
            f"redis {name}",
            f"{name} is {value}: {why(value)}",
            f"CONFIG SET {name} {floor} (and put it in redis.conf)",
        )
    return Check("OK", f"redis {name}", f"{name} is {value}")


def _encoding(facts: RedisFacts) -> Check:
    return _hash_floor(
        facts,
        "entries",
        "128",
        HASH_ENTRIES,
        lambda n: (
            f"an artifact past ~{n // 2} online users takes a hash table, about twice the memory"
        ),
    )


def _value(facts: RedisFacts) -> Check:
    return _hash_floor(
        facts,
        "value",
        "64",
        HASH_VALUE,
        lambda _: (
            "one session whose user id and state take more (a UUID and a small "
            "state do) turns its artifact's info hash into a hash table, about twice the memory"
        ),
    )


def _persistence(facts: RedisFacts) -> Check:
    aof = facts.config.get("appendonly") == "yes"
    rdb = bool(facts.config.get("save", "").strip())
    if not aof and not rdb:
        return Check(
            "WARN",
            "redis persistence",
            "appendonly is no and save is empty (neither AOF nor RDB snapshots): a Redis "
            "restart loses view counts and views not yet in the ledger (presence comes back "
            "with the next heartbeats)",
            "CONFIG SET appendonly yes (and put it in redis.conf)",
        )
    kinds = " and ".join(k for k, on in (("AOF", aof), ("RDB snapshots", rdb)) if on)
    return Check("OK", "redis persistence", f"{kinds} on")


def _persistence_state(facts: RedisFacts) -> list[Check]:
    """A failed save with ``stop-writes-on-bgsave-error yes`` makes every write MISCONF."""
    found = []
    if facts.persistence.get("rdb_last_bgsave_status", "ok") != "ok":
        stops = facts.config.get("stop-writes-on-bgsave-error", "yes") == "yes"
        found.append(
            Check(
                "FAIL" if stops else "WARN",
                "redis last save",
                "the last RDB save failed"
                + (": Redis refuses writes (MISCONF) until one succeeds" if stops else ""),
                "see Redis's log (disk full? permissions of its dir?), then BGSAVE",
            )
        )
    if facts.persistence.get("aof_last_write_status", "ok") != "ok":
        found.append(
            Check(
                "FAIL",
                "redis AOF",
                "the last AOF write failed: Redis refuses writes until one succeeds",
                "see Redis's log (disk full? permissions of its dir?)",
            )
        )
    return found


def _clock(facts: RedisFacts) -> list[Check]:
    if facts.skew_s is None:
        return []
    skew = facts.skew_s
    if abs(skew) > MAX_SKEW_S:
        return [
            Check(
                "WARN",
                "clock",
                f"this machine's clock is {abs(skew):.1f} s "
                f"{'behind' if skew > 0 else 'ahead of'} Redis's: times written by different "
                "hosts (last seen, views) disagree",
                "run NTP (chrony, systemd-timesyncd) on this host and Redis's",
            )
        ]
    return [Check("OK", "clock", f"within {MAX_SKEW_S:g} s of Redis's ({skew * 1000:+.0f} ms)")]


async def _database(settings: Settings) -> Check:
    url = settings.resolved_ledger_url
    where = redacted(url)
    if _sqlite_missing(url):
        return Check("OK", "database", f"{where} does not exist yet: serve creates it")
    database = database_for(settings)
    try:
        async with asyncio.timeout(10):
            await database.connect()
            try:
                version, latest = await database.schema()
            finally:
                await database.close()
    except Exception as exc:
        return Check(
            "FAIL",
            "database",
            f"{where} does not answer: {exc or type(exc).__name__}",
            "start the database, or correct PRESENCE_LEDGER_URL",
        )
    if version >= latest:
        return Check("OK", "database", f"{where} answers, schema version {version} (latest)")
    pending = " ".join(
        f"{m.version:04d}_{m.name}" for m in migrations(database.kind) if m.version > version
    )
    if settings.db_auto_migrate:
        return Check(
            "WARN",
            "database",
            f"{where}: migrations pending ({pending}); serve applies them at its next start",
            "presence-svc db migrate, now",
        )
    return Check(
        "FAIL",
        "database",
        f"{where}: migrations pending ({pending}) and PRESENCE_DB_AUTO_MIGRATE=0: serve "
        "refuses to start",
        "presence-svc db migrate",
    )


def _sqlite_missing(url: str) -> bool:
    """A SQLite file not made yet (connecting would make it: doctor makes nothing)."""
    return url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists()


def secret_check(settings: Settings) -> Check:
    if settings.jwt_secret is not None:  # its length is checked with the settings
        return Check("OK", "jwt secret", "PRESENCE_JWT_SECRET is set")
    path = settings.data_dir.resolve() / SECRET_FILE
    try:
        secret = read_secret(settings.data_dir)
        mode = os.stat(path).st_mode if secret is not None else 0
    except OSError as exc:  # one failed check: the rest of the report still shows
        return Check(
            "FAIL",
            "jwt secret",
            f"cannot read {path}: {exc.strerror or exc}",
            "run doctor (and serve) as the service's user, or correct the file",
        )
    if secret is None:
        if settings.redis_url is not None:
            return Check(
                "WARN",
                "jwt secret",
                f"no PRESENCE_JWT_SECRET and no {path}: serve will make one for this host "
                "alone, and a token signed on another host fails with 401",
                "set PRESENCE_JWT_SECRET (32+ characters, the same on every host)",
            )
        return Check("OK", "jwt secret", f"{path} does not exist yet: serve creates it")
    if len(secret) < MIN_SECRET:
        return Check(
            "FAIL",
            "jwt secret",
            f"{path} holds {len(secret)} characters; at least {MIN_SECRET} are needed",
            f"delete {path} (serve makes a new one; tokens signed with the old one fail), "
            "or set PRESENCE_JWT_SECRET",
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return Check(
            "WARN",
            "jwt secret",
            f"{path} can be read by other users: they can sign any token",
            f"chmod 600 {path}",
        )
    return Check("OK", "jwt secret", f"{path}")


def render(checks: Sequence[Check]) -> str:
    lines = []
    for check in checks:
        lines.append(f"{check.status:<5} {check.name}: {check.detail}")
        if check.fix is not None and check.status != "OK":
            lines.append(f"      fix: {check.fix}")
    fails = sum(c.status == "FAIL" for c in checks)
    warns = sum(c.status == "WARN" for c in checks)
    lines.append(f"{fails} failed, {warns} warnings, {len(checks) - fails - warns} ok")
    return "\n".join(lines) + "\n"
