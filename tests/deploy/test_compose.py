"""deploy/compose.yaml: it parses, has the production shape (two API processes, a worker,
Redis and PostgreSQL, each with a health check), and each presence-svc service's
environment names only real settings, with values the service accepts.

No docker here: the topology itself (two ``serve --no-worker``, a worker, one Redis, one
PostgreSQL) runs for real, as processes, in tests/cli/test_multihost.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from presence_svc.settings import ENV_VARS, ConfigError, Settings

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml"
SETTINGS = {name for name, _, _ in ENV_VARS}
# ``${NAME:?message}`` and ``${NAME:-default}``: compose fills these from deploy/.env.
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::[?-][^}]*)?\}")
DOTENV = {
    "POSTGRES_PASSWORD": "pg-secret",
    "PRESENCE_JWT_SECRET": "x" * 48,
    "GRAFANA_ADMIN_PASSWORD": "admin",
}


def _services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def _presence_services() -> dict[str, Any]:
    return {n: s for n, s in _services().items() if s.get("image") == "presence-svc:local"}


def environment_problems(service: str, environment: dict[str, Any]) -> list[str]:
    """Names that are not settings, and values ``Settings.from_env`` refuses."""
    problems = [
        f"{service}: {name} is not a setting (presence_svc/settings.py ENV_VARS)"
        for name in sorted(environment)
        if name.startswith("PRESENCE_") and name not in SETTINGS
    ]
    problems += [
        f"{service}: {name} is not a PRESENCE_ name"
        for name in environment
        if not name.startswith("PRESENCE_")
    ]
    values = {n: _INTERPOLATION.sub(lambda m: DOTENV[m[1]], str(v)) for n, v in environment.items()}
    try:
        Settings.from_env(values)
    except ConfigError as exc:
        problems.append(f"{service}: {exc}")
    return problems


def test_compose_has_two_api_processes_a_worker_redis_and_postgres() -> None:
    services = _services()
    presence = _presence_services()
    assert set(presence) == {"api-1", "api-2", "worker"}
    for name in ("api-1", "api-2"):
        assert presence[name]["command"][:3] == ["presence-svc", "serve", "--no-worker"]
    assert presence["worker"]["command"] == ["presence-svc", "worker"]
    assert services["redis"]["image"].startswith("redis:")
    assert services["postgres"]["image"].startswith("postgres:")
    for name in ("api-1", "api-2", "worker", "redis", "postgres"):
        assert services[name]["healthcheck"]["test"], name
    for name, service in presence.items():
        assert service["depends_on"] == {
            "redis": {"condition": "service_healthy"},
            "postgres": {"condition": "service_healthy"},
        }, name
    # Liveness for the container, not readiness: /readyz is 503 while PostgreSQL is down,
    # and restarting healthy API containers would not bring it back.
    for name in ("api-1", "api-2"):
        check = " ".join(presence[name]["healthcheck"]["test"])
        assert "/healthz" in check, name
        assert "/readyz" not in check, name


@pytest.mark.parametrize("service", ["api-1", "api-2", "worker"])
def test_service_environment_names_only_real_settings(service: str) -> None:
    environment = _presence_services()[service]["environment"]
    assert not environment_problems(service, environment)
    assert environment["PRESENCE_LEDGER_URL"].startswith("postgresql://")
    assert environment["PRESENCE_REDIS_URL"] == "redis://redis:6379/0"
    assert "PRESENCE_JWT_SECRET" in environment  # one secret shared by every process


def test_the_environment_check_notices_a_wrong_name_or_value() -> None:
    environment = dict(_presence_services()["api-1"]["environment"])
    environment["PRESENCE_REDIS_TIMEOUT"] = "2"  # the setting is PRESENCE_REDIS_TIMEOUT_S
    environment["PRESENCE_PARTITIONS"] = "many"
    problems = "\n".join(environment_problems("api-1", environment))
    assert "PRESENCE_REDIS_TIMEOUT is not a setting" in problems
    assert "PRESENCE_PARTITIONS='many' is invalid" in problems
