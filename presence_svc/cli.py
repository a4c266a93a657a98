"""The ``presence-svc`` command: serve, worker, token, ledger export and import, users
export and import, db migrate and status, bench.

Exit status: 0 success, 2 bad usage or configuration, or a bad line in an imported file
(one line on stderr), 1 otherwise; ``db status`` exits 1 when the schema is behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import re
import shutil
import signal
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from typing import IO, Any

import asyncpg

from presence_svc import heap, logs
from presence_svc.auth import SECRET_FILE, Scope, load_or_create_secret, read_secret, token_codec
from presence_svc.banner import announce
from presence_svc.database import Database, database_for
from presence_svc.db.migrations import Migration, SchemaBehind, migrations
from presence_svc.doctor import redacted
from presence_svc.jsonl import BadLine
from presence_svc.ledger.engagement import EngagementQuery, day_range
from presence_svc.ledger.export import FORMATS, export_engagement, export_ledger
from presence_svc.ledger.importer import import_ledger
from presence_svc.ledger.store import LedgerQuery
from presence_svc.listen import BindError, adopt, bind
from presence_svc.redis.embedded import EmbeddedRedis, EmbeddedRedisError
from presence_svc.schemas import ID_PATTERN
from presence_svc.settings import ConfigError, Settings
from presence_svc.timefmt import from_iso
from presence_svc.users.transfer import export_profiles, import_profiles

__all__ = ["main"]

log = logging.getLogger("presence_svc")

_DATABASE_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, sqlite3.Error)
"""What the database drivers raise that is not an OSError: exit 1 with one line."""


class UsageError(Exception):
    """Bad usage or configuration: exit 2 with a one-line reason."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


_DESCRIPTION = """\
Real-time presence and view tracking: the HTTP API, its worker and their tools.

exit status: 0 success; 2 bad usage or configuration, or a bad line in an imported
file (one line on stderr); 1 otherwise (db status: 1 when the schema is behind)."""
"""The top-level help: plain text, as a terminal shows it (the module docstring is not)."""


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="presence-svc",
        description=_DESCRIPTION,
        epilog="A command's own options: presence-svc COMMAND --help",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default 8080)")
    serve.add_argument(
        "--worker",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also run the worker in-process (default: on with the embedded Redis)",
    )
    serve.add_argument(
        "--processes",
        type=int,
        default=1,
        help="server processes sharing the port (SO_REUSEPORT); one Redis and worker shared",
    )
    serve.add_argument("--listen-fd", type=int, action="append", help=argparse.SUPPRESS)

    commands.add_parser("worker", help="drain views into the ledger and sweep presence")

    token = commands.add_parser("token", help="print a signed token")
    token.add_argument("--user", required=True, help="the user id the token acts as (sub)")
    token.add_argument("--scope", choices=[s.value for s in Scope], default=Scope.CLIENT.value)
    token.add_argument("--artifact", action="append", help="limit to this artifact (repeatable)")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")

    ledger = commands.add_parser("ledger", help="read the views ledger")
    ledger_commands = ledger.add_subparsers(
        dest="ledger_command", required=True, parser_class=_Parser
    )
    export = ledger_commands.add_parser("export", help="write ledger rows, oldest first")
    export.add_argument("--artifact", help="only this artifact")
    export.add_argument("--user", help="only this user")
    export.add_argument("--since", help="from this time (ISO 8601, inclusive)")
    export.add_argument("--until", help="up to this time (ISO 8601, exclusive)")
    export.add_argument("--format", choices=FORMATS, default="jsonl")
    export.add_argument(
        "--engagement",
        action="store_true",
        help="the engaged-time daily totals instead of the views (--since/--until: days)",
    )
    export.add_argument("-o", "--output", help="file to write (default: standard output)")
    _import_parser(
        ledger_commands, "add the rows of a ledger export --format jsonl file (idempotent)"
    )

    users = commands.add_parser("users", help="move the users directory")
    users_commands = users.add_subparsers(dest="users_command", required=True, parser_class=_Parser)
    users_export = users_commands.add_parser("export", help="write every profile as JSON lines")
    users_export.add_argument("-o", "--output", help="file to write (default: standard output)")
    _import_parser(
        users_commands, "merge profiles from JSON lines (a stored newer profile is kept)"
    )

    db = commands.add_parser("db", help="the database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True, parser_class=_Parser)
    db_commands.add_parser("migrate", help="apply the pending schema migrations")
    db_commands.add_parser(
        "status", help="the schema version and pending migrations (exit 1 when behind)"
    )
    commands.add_parser(
        "doctor",
        help="check the settings, Redis, the database, the clock and the secret "
        "(exit 1 on a failure)",
        description="Checks the settings, the Redis (version, maxmemory-policy, hash "
        "encoding, persistence, clock) and the database (reachable, migrations) the service "
        "would use, and the signing secret; prints OK, WARN or FAIL for each, with a fix. "
        "Exit status 1 when a check fails, 0 otherwise (warnings included). With the "
        "embedded Redis not running, checks the binary and the configuration serve would "
        "start it with.",
    )
    _bench_parser(commands.add_parser("bench", help="load-test the HTTP API"))
    return parser


def _import_parser(commands: argparse._SubParsersAction[_Parser], summary: str) -> None:
    """``import FILE``: JSON lines from a file or stdin."""
    parser = commands.add_parser("import", help=summary)
    parser.add_argument("file", metavar="FILE", help="the JSON lines file, - for stdin")


def _bench_parser(bench: argparse.ArgumentParser) -> None:
    from presence_svc.bench.scenarios import SCENARIOS

    target = bench.add_mutually_exclusive_group()
    target.add_argument("--url", help="a running service (default http://127.0.0.1:8080)")
    target.add_argument(
        "--spawn", action="store_true", help="start the service itself (embedded Redis)"
    )
    bench.add_argument(
        "--scenario",
        action="append",
        choices=list(SCENARIOS),
        help="run only this scenario (repeatable; default: all)",
    )
    bench.add_argument("--connections", type=int, default=64, help="keep-alive connections")
    bench.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    bench.add_argument("--requests", type=int, default=200_000, help="requests per measurement")
    bench.add_argument("--load-processes", type=int, default=1, help="load generator processes")
    bench.add_argument("--warmup", type=int, default=20, help="requests per connection first")
    bench.add_argument("--users", type=int, default=10_000, help="distinct users (one tab each)")
    bench.add_argument("--artifacts", type=int, default=1_000, help="artifacts they are on")
    bench.add_argument("--preload", type=int, default=0, help="store this many sessions first")
    bench.add_argument(
        "--preload-artifacts", type=int, default=100_000, help="artifacts they spread over"
    )
    bench.add_argument(
        "--server-processes", type=int, default=1, help="with --spawn: serve --processes N"
    )
    bench.add_argument(
        "--redis-server",
        metavar="PATH",
        help="with --spawn: this redis-server binary for the embedded Redis",
    )
    bench.add_argument(
        "--no-jemalloc",
        dest="jemalloc",
        action="store_false",
        help="with --spawn: the embedded Redis on libc's malloc (PRESENCE_REDIS_JEMALLOC=0)",
    )
    bench.add_argument(
        "--ledger-url",
        metavar="URL",
        help="with --spawn: the service's database (PRESENCE_LEDGER_URL; default its SQLite)",
    )
    bench.add_argument(
        "--profiles", action="store_true", help="store a profile per user first (names joined)"
    )
    bench.add_argument(
        "--no-baseline", dest="baseline", action="store_false", help="skip the baseline"
    )
    bench.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure the baseline and the service this many times in turn; each figure "
        "of a scenario's row is that of the round with the median ratio, its ratio and "
        "p99 ratio the medians (a shared machine's speed drifts between measurements)",
    )
    bench.add_argument(
        "--rate-limits",
        metavar="SPEC",
        help="with --spawn: the spawned service's PRESENCE_RATE_LIMITS (e.g. off: a room "
        "of a few users heartbeating as fast as the load allows meets the per-user limits)",
    )
    bench.add_argument(
        "--compare-limits",
        action="store_true",
        help="with --spawn: also measure each scenario on a service with rate limits off",
    )
    bench.add_argument(
        "--compare-timeline",
        action="store_true",
        help="with --spawn: also measure each scenario on a service keeping no timeline",
    )
    bench.add_argument("--json", action="store_true", help="one JSON object per scenario")


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    overrides: dict[str, object] = {}
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides["port"] = args.port
    if getattr(args, "worker", None) is not None:
        overrides["run_worker"] = args.worker
    elif settings.redis_url is not None:
        overrides["run_worker"] = False  # an external Redis has its own `worker` processes
    return settings.replace(**overrides) if overrides else settings


@contextlib.contextmanager
def _redis_for(settings: Settings) -> Iterator[Settings]:
    """Settings pointing at a Redis: the configured one, or the embedded one, started here."""
    if not settings.embedded_redis:
        yield settings
        return
    embedded = EmbeddedRedis(
        settings.data_dir, binary=settings.redis_server, jemalloc=settings.redis_jemalloc
    )
    with embedded.running() as url:
        yield settings.replace(redis_url=url)


def _event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _serve(settings: Settings, processes: int = 1, listen_fds: list[int] | None = None) -> int:
    """Binds first: a busy port is one line and exit 2, before the embedded Redis starts
    or anything is logged. ``listen_fds``: a child of ``--processes``, given its sockets."""
    if processes < 1:
        raise UsageError("presence-svc serve: --processes must be at least 1")
    if listen_fds is not None:
        return _serve_app(settings, adopt(listen_fds), None, child=True)
    groups, metrics = _listen(settings, processes)
    _warn_if_local(settings)
    try:
        with _redis_for(settings) as ready:
            if processes > 1:
                from presence_svc.multiproc import serve_processes

                secret = ready.jwt_secret or load_or_create_secret(ready.data_dir)
                return serve_processes(ready, secret, groups, metrics)
            return _serve_app(ready, groups[0], metrics, child=False)
    finally:
        for sock in (*itertools.chain.from_iterable(groups), *(metrics or ())):
            sock.close()


def _listen(
    settings: Settings, processes: int
) -> tuple[list[list[socket.socket]], list[socket.socket] | None]:
    """The API's sockets (a group per server process) and the metrics listener's, if any."""
    bound: list[socket.socket] = []
    try:
        if processes == 1:
            groups = [bind(settings.host, settings.port, backlog=settings.listen_backlog)]
            bound.extend(groups[0])
        else:
            # SO_REUSEPORT would share the port with another `serve --processes` of this
            # user: make sure nothing holds it first.
            for sock in bind(settings.host, settings.port):
                sock.close()
            groups = []
            for _ in range(processes):
                groups.append(
                    bind(
                        settings.host,
                        settings.port,
                        reuse_port=True,
                        backlog=settings.listen_backlog,
                    )
                )
                bound.extend(groups[-1])
        metrics = bind(*settings.metrics_addr) if settings.metrics_addr else None
    except BindError as exc:
        for sock in bound:
            sock.close()
        raise UsageError(f"presence-svc serve: {exc}") from exc
    return groups, metrics


def _serve_app(
    settings: Settings,
    sockets: list[socket.socket],
    metrics: list[socket.socket] | None,
    *,
    child: bool,
) -> int:
    from aiohttp import web

    from presence_svc.http.app import create_app, metrics_ctx
    from presence_svc.http.shedding import run_app

    app = create_app(settings)
    if metrics is not None:
        app.cleanup_ctx.append(metrics_ctx(metrics))

    async def serving(app: web.Application) -> None:
        log.info("serving", extra={"host": settings.host, "port": settings.port})
        if not child:  # the parent of --processes said it
            announce(settings)

    app.on_startup.append(serving)  # after the cleanup contexts: Redis, database, worker
    heap.settle()  # start-up objects out of GC passes, and young passes rarer
    # aiohttp's run_app, with connections that refuse past the requests gate before parsing
    run_app(app, sockets, _event_loop(), shutdown_timeout=10, backlog=settings.listen_backlog)
    return 0


def _warn_if_local(settings: Settings) -> None:
    """A shared Redis but a SQLite database: each host would keep its own users directory
    and ledger, so a profile written through one host is missing on the others."""
    if settings.embedded_redis or not settings.resolved_ledger_url.startswith("sqlite:"):
        return
    log.warning(
        "the users directory and the ledger are local to this host (SQLite) while Redis is "
        "shared: set PRESENCE_LEDGER_URL=postgresql://... on every host to share them",
        extra={"ledger_url": settings.resolved_ledger_url},
    )


def _worker(settings: Settings) -> int:
    """With ``PRESENCE_METRICS_ADDR``, also serves the worker's ``/metrics`` there."""
    from presence_svc.worker import run_worker

    try:
        metrics = bind(*settings.metrics_addr) if settings.metrics_addr else None
    except BindError as exc:
        raise UsageError(f"presence-svc worker: {exc}") from exc

    async def run(ready: Settings) -> None:
        if metrics is None:
            return await run_worker(ready)
        from presence_svc.http.app import metrics_listener

        stop = asyncio.Event()  # the signals are ours from before the listener answers
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        async with metrics_listener(metrics):
            await run_worker(ready, stop)

    with _redis_for(settings) as ready:
        loop = _event_loop()
        heap.settle()  # as in serve: start-up objects stay out of the drain's GC passes
        try:
            loop.run_until_complete(run(ready))
        finally:
            loop.close()
            for sock in metrics or ():
                sock.close()
    return 0


def _token(settings: Settings, args: argparse.Namespace) -> int:
    """Signs with the service's secret; never makes one (a new secret would sign tokens
    the running service rejects)."""
    secret = settings.jwt_secret or read_secret(settings.data_dir)
    if secret is None:
        where = settings.data_dir.resolve() / SECRET_FILE
        raise UsageError(
            f"presence-svc token: no signing secret: PRESENCE_JWT_SECRET is unset and {where} "
            "does not exist; run it where `serve` runs (same directory or PRESENCE_DATA_DIR), "
            "or set PRESENCE_JWT_SECRET to the service's"
        )
    if args.ttl <= 0:
        raise UsageError("presence-svc token: --ttl must be positive")
    token = token_codec(settings, secret).issue(
        args.user, scope=Scope(args.scope), artifacts=args.artifact, ttl_s=args.ttl
    )
    sys.stdout.write(token + "\n")
    return 0


def _time_arg(flag: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return from_iso(value)
    except ValueError as exc:
        raise UsageError(f"presence-svc ledger export: {flag} {value!r} is not a time") from exc


def _id_arg(flag: str, value: str | None) -> str | None:
    if value is not None and not re.match(ID_PATTERN, value):
        raise UsageError(f"presence-svc ledger export: {flag} {value!r} is not a valid id")
    return value


def _ledger_export(settings: Settings, args: argparse.Namespace) -> int:
    views = LedgerQuery(
        artifact_id=_id_arg("--artifact", args.artifact),
        user_id=_id_arg("--user", args.user),
        since_ms=_time_arg("--since", args.since),
        until_ms=_time_arg("--until", args.until),
    )
    query = _engagement_query(views) if args.engagement else views
    with contextlib.ExitStack() as stack:
        out = (
            stack.enter_context(open(args.output, "w", newline="", encoding="utf-8"))
            if args.output
            else sys.stdout
        )
        asyncio.run(_export(settings, query, args.format, out))
    return 0


def _engagement_query(views: LedgerQuery) -> EngagementQuery:
    """The views export's filters, for the engaged-time totals (days)."""
    since_day, until_day = day_range(views.since_ms, views.until_ms)
    return EngagementQuery(
        artifact_id=views.artifact_id,
        user_id=views.user_id,
        since_day=since_day,
        until_day=until_day,
    )


async def _export(
    settings: Settings, query: LedgerQuery | EngagementQuery, fmt: str, out: IO[str]
) -> int:
    async with _database(settings) as database:
        if isinstance(query, EngagementQuery):
            return await export_engagement(database.engagement, query, fmt, out)
        return await export_ledger(database.ledger, query, fmt, out)


@contextlib.asynccontextmanager
async def _database(settings: Settings, *, settle_schema: bool = True) -> AsyncIterator[Database]:
    """The configured database, open: its schema migrated or checked as configured, or
    with ``settle_schema=False`` left as it is (for ``db``)."""
    database = database_for(settings)
    await (database.open() if settle_schema else database.connect())
    try:
        yield database
    finally:
        await database.close()


def _progress() -> IO[str] | None:
    return sys.stderr if sys.stderr.isatty() else None


@contextlib.contextmanager
def _input(command: str, path: str) -> Iterator[IO[bytes]]:
    """The file to import (bytes: each line is decoded on its own), or stdin for ``-``."""
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        file = open(path, "rb")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        raise UsageError(f"presence-svc {command}: cannot read {path}: {exc.strerror}") from exc
    with file:
        yield file


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    with open(path, "w", newline="", encoding="utf-8") as file:
        yield file


def _import(
    command: str, path: str, what: str, run: Callable[[IO[bytes]], Coroutine[Any, Any, str]]
) -> int:
    """``run`` on the file at ``path`` (stdin for ``-``), then its summary on stdout; a bad
    line is a usage error that names it (``what``: the things the lines hold)."""
    with _input(command, path) as source:
        try:
            summary = asyncio.run(run(source))
        except BadLine as exc:
            raise UsageError(
                f"presence-svc {command}: {exc} (the {what} before it are imported, none after "
                "it; fix the line and run again: what is already there is skipped)"
            ) from exc
    sys.stdout.write(summary + "\n")
    return 0


def _ledger_import(settings: Settings, path: str) -> int:
    async def run(source: IO[bytes]) -> str:
        async with _database(settings) as database:
            done = await import_ledger(database.ledger, source, progress=_progress())
        return f"read {done.read}, inserted {done.inserted}, duplicates {done.duplicates}"

    return _import("ledger import", path, "rows", run)


def _users(settings: Settings, args: argparse.Namespace) -> int:
    if args.users_command == "export":

        async def export(out: IO[str]) -> None:
            async with _database(settings) as database:
                await export_profiles(database.users, out, progress=_progress())

        with _output(args.output) as out:
            asyncio.run(export(out))
        return 0

    async def merge(source: IO[bytes]) -> str:
        async with _database(settings) as database:
            done = await import_profiles(database.users, source, progress=_progress())
        return f"read {done.read}, written {done.written}, kept {done.kept}"

    return _import("users import", args.file, "profiles", merge)


def _db(settings: Settings, args: argparse.Namespace) -> int:
    """``db migrate`` migrates whether ``PRESENCE_DB_AUTO_MIGRATE`` is on or off; ``db
    status`` exits 1 while migrations are pending."""

    async def migrate() -> tuple[list[Migration], int]:
        async with _database(settings, settle_schema=False) as database:
            applied = await database.migrate()
            version, _ = await database.schema()
        return applied, version

    async def status() -> tuple[str, int, int]:
        async with _database(settings, settle_schema=False) as database:
            version, latest = await database.schema()
        return database.kind, version, latest

    if args.db_command == "migrate":
        applied, version = asyncio.run(migrate())
        for migration in applied:
            sys.stdout.write(f"applied {_name(migration)}\n")
        if not applied:
            sys.stdout.write(f"up to date (schema version {version})\n")
        return 0
    kind, version, latest = asyncio.run(status())
    pending = [m for m in migrations(kind) if m.version > version]
    sys.stdout.write(
        f"backend: {kind}\n"
        f"database: {redacted(settings.resolved_ledger_url)}\n"
        f"schema version: {version}\n"
        f"latest version: {latest}\n"
        f"pending: {' '.join(_name(m) for m in pending) or 'none'}\n"
    )
    return 1 if pending else 0


def _name(migration: Migration) -> str:
    return f"{migration.version:04d}_{migration.name}"


def _bench(args: argparse.Namespace) -> int:
    from presence_svc.bench.command import BenchConfig, run_bench
    from presence_svc.bench.runner import Options
    from presence_svc.bench.scenarios import SCENARIOS, Population

    positive = (
        "connections",
        "duration",
        "requests",
        "load_processes",
        "users",
        "artifacts",
        "rounds",
    )
    for name in positive:
        if getattr(args, name) <= 0:
            raise UsageError(f"presence-svc bench: --{name.replace('_', '-')} must be positive")
    if args.preload < 0 or args.preload_artifacts <= 0 or args.server_processes <= 0:
        raise UsageError("presence-svc bench: --preload, --preload-artifacts, --server-processes")
    if args.redis_server is not None and not args.spawn:
        raise UsageError("presence-svc bench: --redis-server goes with --spawn")
    if not args.jemalloc and not args.spawn:
        raise UsageError("presence-svc bench: --no-jemalloc goes with --spawn")
    if args.ledger_url is not None and not args.spawn:
        raise UsageError("presence-svc bench: --ledger-url goes with --spawn")
    if args.rate_limits is not None and not args.spawn:
        raise UsageError("presence-svc bench: --rate-limits goes with --spawn")
    if args.compare_limits and not args.spawn:
        raise UsageError("presence-svc bench: --compare-limits goes with --spawn")
    if args.compare_timeline and not args.spawn:
        raise UsageError("presence-svc bench: --compare-timeline goes with --spawn")
    if args.redis_server is not None and shutil.which(args.redis_server) is None:
        raise UsageError(f"presence-svc bench: --redis-server {args.redis_server}: not executable")
    config = BenchConfig(
        scenarios=tuple(args.scenario or SCENARIOS),
        url=args.url,
        spawn=args.spawn,
        server_processes=args.server_processes,
        redis_server=args.redis_server,
        jemalloc=args.jemalloc,
        ledger_url=args.ledger_url,
        profiles=args.profiles,
        options=Options(
            connections=args.connections,
            duration_s=args.duration,
            max_requests=args.requests,
            load_processes=args.load_processes,
            warmup=args.warmup,
        ),
        population=Population(users=args.users, artifacts=args.artifacts),
        preload=args.preload,
        preload_artifacts=args.preload_artifacts,
        baseline=args.baseline,
        rounds=args.rounds,
        json=args.json,
        compare_limits=args.compare_limits,
        rate_limits=args.rate_limits,
        compare_timeline=args.compare_timeline,
    )
    try:
        return run_bench(config)
    except (RuntimeError, ValueError) as exc:
        sys.stderr.write(f"presence-svc bench: {exc}\n")
        return 1


def _doctor() -> int:
    """Reads the settings itself: bad settings are a failed check, not a usage error."""
    from presence_svc.doctor import Check, render, run_checks

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        checks = [Check("FAIL", "settings", str(exc), "correct that variable")]
    else:
        checks = asyncio.run(run_checks(settings))
    sys.stdout.write(render(checks))
    return 1 if any(c.status == "FAIL" for c in checks) else 0


def _command(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "serve":
        return _serve(settings, args.processes, args.listen_fd)
    if args.command == "worker":
        return _worker(settings)
    if args.command == "token":
        return _token(settings, args)
    if args.command == "ledger":
        if args.ledger_command == "import":
            return _ledger_import(settings, args.file)
        return _ledger_export(settings, args)
    if args.command == "users":
        return _users(settings, args)
    if args.command == "db":
        return _db(settings, args)
    if args.command == "bench":
        return _bench(args)
    raise UsageError(f"presence-svc: unknown command {args.command!r}")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.command == "doctor":
            logs.configure("error")
            return _doctor()
        settings = _settings(args)
        logs.configure(settings.log_level, settings.log_format)
        return _command(settings, args)
    except (UsageError, ConfigError) as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    except (EmbeddedRedisError, OSError, SchemaBehind) as exc:
        sys.stderr.write(f"presence-svc: {exc}\n")
        return 1
    except _DATABASE_ERRORS as exc:
        sys.stderr.write(f"presence-svc: database: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
