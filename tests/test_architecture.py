"""The import rules of docs/architecture.md, checked on the source: each package may import
only what its room allows, so the tiers and the one door to Redis stay as drawn."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "presence_svc"

REDIS_INTERNALS = (
    "presence_svc.redis.resp",
    "presence_svc.redis.pipe",
    "presence_svc.redis.single",
    "presence_svc.redis.cluster",
    "hiredis",
    "redis.asyncio.cluster",
    "redis.asyncio.connection",
)
"""The RESP code and the backends: only ``presence_svc.redis`` itself imports these."""

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "presence_svc.redis": (
        "presence_svc.http",
        "presence_svc.live",
        "presence_svc.stats",
        "presence_svc.ledger",
        "presence_svc.users",
        "presence_svc.db",
        "presence_svc.database",
        "presence_svc.worker",
    ),
    "presence_svc.db": (
        "presence_svc.http",
        "presence_svc.live",
        "presence_svc.stats",
        "presence_svc.ledger",
        "presence_svc.users",
        "presence_svc.redis",
        "redis",
    ),
    "presence_svc.users": (
        "presence_svc.http",
        "presence_svc.live",
        "presence_svc.stats",
        "presence_svc.ledger",
        "presence_svc.redis",
        "presence_svc.database",
    ),
    "presence_svc.live": (
        "presence_svc.http",
        "presence_svc.stats",
        "presence_svc.ledger",
        "presence_svc.database",
        "presence_svc.db",
    ),
    "presence_svc.stats": (
        "presence_svc.http",
        "presence_svc.live",
        "presence_svc.ledger",
        "presence_svc.users",
        "presence_svc.database",
        "presence_svc.db",
    ),
    "presence_svc.ledger": (
        "presence_svc.http",
        "presence_svc.live",
        "presence_svc.stats",
        "presence_svc.users",
        "presence_svc.database",
    ),
    "presence_svc.timeline": (
        "presence_svc.http",
        "presence_svc.live",
        "presence_svc.stats",
        "presence_svc.ledger",
        "presence_svc.users",
        "presence_svc.database",
    ),
    "presence_svc.privacy": ("presence_svc.http", "presence_svc.worker"),
    "presence_svc.webhooks": (
        "presence_svc.http",
        "presence_svc.stats",
        "presence_svc.users",
        "presence_svc.database",
        "presence_svc.worker",
    ),
    "presence_svc.worker": ("presence_svc.http",),
    "presence_svc.client": ("presence_svc.",),
}
"""Package -> what no module in it may import (a prefix)."""


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, ast.parse(path.read_text(encoding="utf-8"))


def _imports(tree: ast.Module, *, top_level_only: bool = False) -> set[str]:
    nodes = tree.body if top_level_only else ast.walk(tree)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix if prefix.endswith(".") else prefix + ".")


MODULES = dict(_modules())


def test_the_rules_see_every_package() -> None:
    packages = {name for name in MODULES if (PACKAGE.parent / name.replace(".", "/")).is_dir()}
    assert set(FORBIDDEN) - {"presence_svc.worker"} <= packages
    assert len(MODULES) > 40


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_each_package_imports_only_what_its_room_allows(package: str) -> None:
    broken = [
        f"{name} imports {imported}"
        for name, tree in MODULES.items()
        if _within(name, package)
        for imported in _imports(tree)
        for prefix in FORBIDDEN[package]
        if _within(imported, prefix) and not _within(imported, package)
    ]
    assert not broken, broken


def test_only_the_redis_package_speaks_resp() -> None:
    broken = [
        f"{name} imports {imported}"
        for name, tree in MODULES.items()
        if not _within(name, "presence_svc.redis")
        for imported in _imports(tree)
        if any(_within(imported, internal) for internal in REDIS_INTERNALS)
    ]
    assert not broken, broken


def test_nothing_outside_the_redis_package_asks_which_redis_it_is() -> None:
    asking = [
        name
        for name, tree in MODULES.items()
        if not _within(name, "presence_svc.redis")
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and node.id == "RedisCluster"
    ]
    assert not asking, asking


def test_the_service_never_imports_the_benchmark() -> None:
    importers = {
        name
        for name, tree in MODULES.items()
        if not _within(name, "presence_svc.bench")
        and any(_within(i, "presence_svc.bench") for i in _imports(tree))
    }
    assert importers == {"presence_svc.cli"}
    # and the CLI only when it builds the bench command or runs it
    assert not any(
        _within(i, "presence_svc.bench")
        for i in _imports(MODULES["presence_svc.cli"], top_level_only=True)
    )
