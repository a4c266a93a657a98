"""``presence-svc bench``: the scenarios against a running service (or one it spawns),
each next to the bare-aiohttp baseline measured in the same run."""

from __future__ import annotations

import asyncio
import math
import secrets
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import redis

from presence_svc.auth import TokenCodec, load_or_create_secret
from presence_svc.bench.compare import compare, orders, print_comparisons
from presence_svc.bench.cpu import (
    CpuPerRequest,
    baseline_sampler,
    cores_used,
    per_request_us,
    service_sampler,
)
from presence_svc.bench.machine import machine
from presence_svc.bench.preload import preload_sessions, preload_timeline, redis_build
from presence_svc.bench.report import (
    Progress,
    Row,
    combine_rounds,
    print_json,
    print_json_line,
    print_table,
)
from presence_svc.bench.runner import (
    Measurement,
    Options,
    child_env,
    cpu_seconds,
    exit_on_sigterm,
    free_port,
    measure,
    probe,
    python_argv,
    started_process,
)
from presence_svc.bench.scenarios import (
    SCENARIOS,
    TIMELINE_ARTIFACTS,
    TIMELINE_MINUTES,
    Population,
    Tokens,
    build_scenario,
    profile_requests,
    scenario_seed,
    seed_requests,
)
from presence_svc.bench.slowlog import slowest_command
from presence_svc.redis.embedded import EmbeddedRedis
from presence_svc.settings import Settings

__all__ = ["BenchConfig", "run_bench", "seed_passes"]


@dataclass(frozen=True, slots=True)
class BenchConfig:
    scenarios: tuple[str, ...] = tuple(SCENARIOS)
    url: str | None = None
    """A running service; None with ``spawn``."""
    spawn: bool = False
    server_processes: int = 1
    redis_server: str | None = None
    """With ``spawn``: the embedded Redis's binary (``PRESENCE_REDIS_SERVER``)."""
    jemalloc: bool = True
    """With ``spawn``: False runs the embedded Redis on libc's malloc
    (``PRESENCE_REDIS_JEMALLOC=0``)."""
    ledger_url: str | None = None
    """With ``spawn``: the service's database (``PRESENCE_LEDGER_URL``); None, the data
    dir's SQLite file."""
    profiles: bool = False
    """Store a profile per user first, so presence lists join names."""
    options: Options = field(default_factory=Options)
    population: Population = field(default_factory=Population)
    preload: int = 0
    preload_artifacts: int = 100_000
    baseline: bool = True
    rounds: int = 1
    """The baseline and the services measured this many times in turn, per scenario; the
    rows combine the rounds (``report.combine_rounds``)."""
    json: bool = False
    rate_limits: str | None = None
    """With ``spawn``: the spawned service's ``PRESENCE_RATE_LIMITS`` (None: its default)."""
    compare_limits: bool = False
    """With ``spawn``: also spawn a service with ``PRESENCE_RATE_LIMITS=off`` and measure
    every scenario on both in the same run, in both orders (``bench.compare``)."""
    compare_timeline: bool = False
    """With ``spawn``: also spawn a service with ``PRESENCE_TIMELINE_DAYS=0`` (the writers
    keep no timeline) and measure every scenario on both in the same run, in both orders."""


@dataclass(frozen=True, slots=True)
class _Target:
    host: str
    port: int
    settings: Settings
    """Where its Redis is and which secret signs its tokens."""
    secret: str
    pid: int | None = None
    """The spawned service's process, whose CPU time is measured."""


LIMITS_OFF = "/limits-off"
"""Suffix of the scenario names measured on the service spawned with rate limits off."""
TIMELINE_OFF = "/timeline-off"
"""Suffix of the scenario names measured on the service spawned without a timeline."""


@contextmanager
def _spawned(
    config: BenchConfig,
    stack: ExitStack,
    secret: str,
    rate_limits: str | None = None,
    timeline_days: str | None = None,
) -> Iterator[_Target]:
    """``presence-svc serve`` with an embedded Redis in a temporary data dir (and its
    default rate limits, or ``rate_limits``)."""
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="presence-bench-")))
    port = free_port()
    # Preloaded sessions stay online through the whole run (no timeout churn). The preload
    # runs the heartbeat script from here, so it must use the server's timeouts too: with
    # the default 45 s, the server's sweeper found every preloaded artifact due mid-run.
    timeout_s, retention_s = 600, 3600
    env = child_env(
        PRESENCE_DATA_DIR=str(workdir / "data"),
        PRESENCE_JWT_SECRET=secret,
        PRESENCE_LOG_LEVEL="warning",
        PRESENCE_ONLINE_TIMEOUT_S=str(timeout_s),
        PRESENCE_RETENTION_S=str(retention_s),
        **({"PRESENCE_REDIS_SERVER": config.redis_server} if config.redis_server else {}),
        **({} if config.jemalloc else {"PRESENCE_REDIS_JEMALLOC": "0"}),
        **({"PRESENCE_LEDGER_URL": config.ledger_url} if config.ledger_url else {}),
        **({"PRESENCE_RATE_LIMITS": rate_limits} if rate_limits else {}),
        **({"PRESENCE_TIMELINE_DAYS": timeline_days} if timeline_days else {}),
    )
    argv = python_argv("-m", "presence_svc", "serve", "--port", str(port))
    if config.server_processes > 1:
        argv += ["--processes", str(config.server_processes)]
    with started_process(
        argv, port=port, ready_path="/readyz", env=env, log_path=workdir / "serve.log"
    ) as process:
        redis_url = EmbeddedRedis(workdir / "data").url
        settings = Settings(
            redis_url=redis_url,
            jwt_secret=secret,
            data_dir=workdir / "data",
            online_timeout_s=timeout_s,
            retention_s=retention_s,
        )
        yield _Target("127.0.0.1", port, settings, secret, process.pid)


def _running(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"--url must be http://host:port, not {url!r}")
    settings = Settings.from_env()
    secret = settings.jwt_secret or load_or_create_secret(settings.data_dir)
    if settings.redis_url is None:
        settings = settings.replace(redis_url=EmbeddedRedis(settings.data_dir).url)
    return _Target(parts.hostname, parts.port or 80, settings, secret)


def _redis_identity(settings: Settings) -> str:
    """``7.0.15 jemalloc-5.3.0``: which Redis the figures were measured on."""
    try:
        return " ".join(redis_build(settings.redis_url or ""))
    except (redis.RedisError, OSError, KeyError, ValueError):
        return "unknown"


def _row(
    name: str,
    config: BenchConfig,
    service: Measurement,
    baseline: Measurement | None,
    body_bytes: int,
    ceiling: float | None,
    redis_identity: str,
    server_cpu_s: float | None = None,
) -> Row:
    return Row(
        scenario=name,
        connections=config.options.connections,
        requests=service.requests,
        errors=service.errors,
        rps=service.rps,
        p50_ms=service.p50_ms,
        p99_ms=service.p99_ms,
        baseline_rps=baseline.rps if baseline else None,
        baseline_p99_ms=baseline.p99_ms if baseline else None,
        body_bytes=body_bytes,
        loadgen_cpu=service.loadgen_cpu,
        loadgen_ceiling_rps=ceiling,
        sessions_stored=config.preload,
        redis=redis_identity,
        server_cpu_us=(
            server_cpu_s / service.requests * 1e6 if server_cpu_s and service.requests else None
        ),
        statuses=dict(service.statuses),
        cpu=cpu_per_request(service, baseline),
    )


def cpu_per_request(service: Measurement, baseline: Measurement | None) -> CpuPerRequest:
    """Each part's CPU per request over the measured parts (``bench.cpu``)."""
    python = per_request_us(service.cpu_s.get("python"), service.requests)
    redis_us = per_request_us(service.cpu_s.get("redis"), service.requests)
    loadgen = per_request_us(service.loadgen_cpu_s, service.requests)
    bare = bare_loadgen = bare_cores = None
    if baseline is not None:
        bare = per_request_us(baseline.cpu_s.get("server"), baseline.requests)
        bare_loadgen = per_request_us(baseline.loadgen_cpu_s, baseline.requests)
        bare_cores = cores_used([bare, bare_loadgen], baseline.requests, baseline.seconds)
    return CpuPerRequest(
        python_us=python,
        redis_us=redis_us,
        loadgen_us=loadgen,
        baseline_us=bare,
        baseline_loadgen_us=bare_loadgen,
        cores_used=cores_used([python, redis_us, loadgen], service.requests, service.seconds),
        baseline_cores_used=bare_cores,
    )


def _reporter(progress: Progress, label: str) -> Callable[[int, float], None]:
    return lambda done, elapsed: progress.update(label, done, elapsed)


def seed_passes(processes: int, missed: float = 0.01) -> int:
    """How many times the seed (one heartbeat per user) is sent so that each of
    ``processes`` server processes has seen a user's token with probability 1 - ``missed``.

    Each process keeps its own token cache, and the kernel hands each new connection to
    one process at random: one pass warms a user on one process only, and under ``serve
    --processes 2`` half the measured requests then paid a first verification (a third of
    their CPU) that one process never pays. Each pass opens fresh connections, so a user
    lands on a process at random again."""
    if processes <= 1:
        return 1
    return math.ceil(math.log(missed) / math.log(1 - 1 / processes))


def _prepare(target: _Target, config: BenchConfig, tokens: Tokens, progress: Progress) -> None:
    """The unmeasured part: preloaded sessions, one heartbeat per user, the profiles."""
    if config.preload:
        progress.note(f"preloading {config.preload} sessions")
        asyncio.run(
            preload_sessions(
                target.settings,
                config.preload,
                config.preload_artifacts,
                first=config.population.users,
                progress=lambda n: progress.note(f"preloaded {n}/{config.preload} sessions"),
            )
        )
    if {"timeline", "timeline-gzip"} & set(config.scenarios):
        progress.note("writing 7 days of timelines")
        preload_timeline(target.settings, TIMELINE_ARTIFACTS, TIMELINE_MINUTES + 10)
    seed = seed_requests(tokens, config.population)
    seeding = replace(config.options, max_requests=len(seed), duration_s=120, warmup=0)
    for _ in range(seed_passes(config.server_processes if config.spawn else 1)):
        measure(target.host, target.port, seed, seeding)
    # what the scenarios need stored first (where-now's roaming tabs), and the profiles
    more = [r for name in config.scenarios for r in scenario_seed(name, tokens, config.population)]
    if config.profiles:
        more += profile_requests(tokens, config.population)
    if more:
        measure(target.host, target.port, more, replace(seeding, max_requests=len(more)))


def _targets(config: BenchConfig, stack: ExitStack) -> dict[str, _Target]:
    """The service(s) to measure, by the suffix of their rows' scenario names."""
    if not config.spawn:
        return {"": _running(config.url or "http://127.0.0.1:8080")}
    secret = secrets.token_urlsafe(48)  # one for both: the same requests go to each
    targets = {"": stack.enter_context(_spawned(config, stack, secret, config.rate_limits))}
    if config.compare_limits:
        targets[LIMITS_OFF] = stack.enter_context(
            _spawned(config, stack, secret, rate_limits="off")
        )
    if config.compare_timeline:
        targets[TIMELINE_OFF] = stack.enter_context(
            _spawned(config, stack, secret, timeline_days="0")
        )
    return targets


def _measured(
    label: str,
    each: _Target,
    requests: list[bytes],
    config: BenchConfig,
    baseline: Measurement | None,
    body_bytes: int,
    ceiling: float | None,
    redis_identity: str,
    progress: Progress,
) -> Row:
    """One scenario measured on one service: its row, with the service's CPU and its
    Redis's slowest command meanwhile."""
    cpu_before = cpu_seconds(each.pid) if each.pid else None
    with (
        slowest_command(each.settings.redis_url) as slowlog,
        service_sampler(each.pid, each.settings.redis_url) as sample,
    ):
        service = measure(
            each.host,
            each.port,
            requests,
            config.options,
            progress=_reporter(progress, f"{label} service"),
            sample=sample,
        )
    progress.clear()
    cpu_after = cpu_seconds(each.pid) if each.pid else None
    cpu = cpu_after - cpu_before if cpu_after and cpu_before else None
    row = _row(label, config, service, baseline, body_bytes, ceiling, redis_identity, cpu)
    slowest = slowlog.slowest
    return replace(
        row,
        slowest_redis_us=slowlog.slowest_us,
        slowest_redis=None if slowest is None else asdict(slowest),
        machine=machine(),
    )


def _baselines(config: BenchConfig, stack: ExitStack) -> tuple[int, int, int]:
    """The bare-aiohttp baseline and the load generator's ceiling (canned answers), as
    many processes as the service (--server-processes); their ports, and the baseline's
    process (whose CPU is measured)."""
    baseline_port, ceiling_port = free_port(), free_port()
    processes = ("--processes", str(config.server_processes))
    pids = []
    for kind, port in (("aiohttp", baseline_port), ("raw", ceiling_port)):
        argv = python_argv(
            "-m", "presence_svc.bench.baseline", "--port", str(port), "--kind", kind, *processes
        )
        started = started_process(argv, port=port, ready_path="/", wait_s=30)
        pids.append(stack.enter_context(started).pid)
    return baseline_port, ceiling_port, pids[0]


@dataclass(frozen=True, slots=True)
class _Context:
    """What every scenario's rounds measure against."""

    config: BenchConfig
    targets: dict[str, _Target]
    baseline_port: int
    baseline_pid: int
    ceiling: float | None


def _in_rounds(
    context: _Context,
    name: str,
    requests: list[bytes],
    body_bytes: int,
    redis_identity: str,
    progress: Progress,
) -> list[tuple[list[str], dict[str, Row]]]:
    """One scenario: ``config.rounds`` times the baseline, then every service in each
    order (``bench.compare``); per order, each service's rounds as one row."""
    config, targets = context.config, context.targets
    sequence = orders(list(targets))  # each service first once (compare.py)
    rounds: list[list[dict[str, Row]]] = []
    for _ in range(config.rounds):
        baseline = None
        if config.baseline:
            baseline = measure(
                "127.0.0.1",
                context.baseline_port,
                requests,
                config.options,
                progress=_reporter(progress, f"{name} baseline"),
                sample=baseline_sampler(context.baseline_pid),
            )
        rounds.append(
            [
                {
                    suffix: _measured(
                        name + suffix,
                        targets[suffix],
                        requests,
                        config,
                        baseline,
                        body_bytes,
                        context.ceiling,
                        redis_identity,
                        progress,
                    )
                    for suffix in order
                }
                for order in sequence
            ]
        )
    return [
        (order, {suffix: combine_rounds([r[n][suffix] for r in rounds]) for suffix in order})
        for n, order in enumerate(sequence)
    ]


def run_bench(config: BenchConfig) -> int:
    """Run every configured scenario; 0 when no request failed, else 1."""
    progress = Progress()
    rows: list[Row] = []
    measured: list[tuple[str, list[str], dict[str, Row]]] = []
    with exit_on_sigterm(), ExitStack() as stack:
        targets = _targets(config, stack)
        target = targets[""]
        codec = TokenCodec(target.secret)
        redis_identity = _redis_identity(target.settings)
        tokens = Tokens(codec)
        for each in targets.values():
            _prepare(each, config, tokens, progress)
        seed = seed_requests(tokens, config.population)

        baseline_port, ceiling_port, baseline_pid = (
            _baselines(config, stack) if config.baseline else (0, 0, 0)
        )
        ceiling: float | None = None
        if config.baseline:
            progress.note("measuring the load generator's ceiling")
            ceiling = measure("127.0.0.1", ceiling_port, seed, config.options).rps

        context = _Context(config, targets, baseline_port, baseline_pid, ceiling)
        for name in config.scenarios:
            scenario = build_scenario(name, tokens, config.population)
            status, body = probe(target.host, target.port, scenario.requests[0])
            if status != scenario.expect_status:
                raise RuntimeError(f"{name}: the service answered {status}: {body[:300]!r}")
            if config.baseline:
                size_request = (
                    f"PUT /__bench/size/{len(body)} HTTP/1.1\r\nHost: bench\r\n"
                    "Content-Length: 0\r\n\r\n"
                ).encode()
                probe("127.0.0.1", baseline_port, size_request)
            for order, found in _in_rounds(
                context, name, scenario.requests, len(body), redis_identity, progress
            ):
                measured.append((name, order, found))
                for suffix in order:
                    rows.append(found[suffix])
                    if config.json:
                        print_json(found[suffix])
        comparisons = compare(measured)
    if config.json:
        for comparison in comparisons:
            print_json_line(comparison.as_dict())
    else:
        print_table(rows)
        print_comparisons(comparisons, sys.stdout)
    sys.stdout.flush()
    return 0 if all(r.errors == 0 for r in rows) else 1
