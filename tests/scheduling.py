"""How the suite spreads over pytest-xdist's workers (``-n auto`` in pyproject's addopts;
the hooks are in ``tests/conftest.py``).

Each test is a unit of work of its own, except that the tests of a module with a module-
(or class-) scoped fixture (a Redis Cluster, a spawned service) stay together on one
worker, which starts that fixture once. Tests marked ``slow`` (bench, soak, cluster,
browser: the longest) are handed out first, so none of them starts last and keeps the
run waiting on it alone.

Only the workers collect, and the controller only sees node ids, so each worker writes
what it knows of every test (its group, whether it is slow) to a file in a directory the
controller made (``PRESENCE_TEST_PLAN_DIR``), before it reports its collection; the
controller reads it when every worker has reported, just before it hands out the tests.
(xdist's own ``--dist loadgroup`` renames node ids to carry the group, which no longer
works with pytest 9.2: pytest-dev/pytest-xdist#1386.)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling

PLAN_DIR = "PRESENCE_TEST_PLAN_DIR"
_SHARED_SCOPES = ("module", "class", "package")


def start(config: pytest.Config) -> None:
    """On the controller of a parallel run: the directory the workers write their plan to
    (they inherit the environment when they are spawned, after this)."""
    if hasattr(config, "workerinput") or config.getoption("dist", "no") == "no":
        return
    os.environ[PLAN_DIR] = tempfile.mkdtemp(prefix="presence-test-plan-")


def finish(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    folder = os.environ.pop(PLAN_DIR, None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def write(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a worker: each test's unit of work (its module's path if the module shares a
    fixture, else its own id) and whether it is slow."""
    folder = os.environ.get(PLAN_DIR)
    worker = getattr(config, "workerinput", {}).get("workerid")
    if not folder or not worker:
        return
    plan = {
        item.nodeid: [_unit(item), item.get_closest_marker("slow") is not None] for item in items
    }
    path = Path(folder) / f"{worker}.json"
    path.with_suffix(".tmp").write_text(json.dumps(plan))
    path.with_suffix(".tmp").replace(path)


def _unit(item: pytest.Item) -> str:
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info is not None else ()
    if any(d[-1].scope in _SHARED_SCOPES for d in defs if d):
        return item.nodeid.split("::")[0]
    return item.nodeid


class PlannedScheduling(LoadScopeScheduling):
    """xdist's per-scope scheduler, with the units and the order the workers' plan gives."""

    def __init__(self, config: pytest.Config, log: object = None) -> None:
        super().__init__(config, log)  # type: ignore[arg-type]
        self._plan: dict[str, list[object]] = {}

    def _read_plan(self) -> dict[str, list[object]]:
        folder = os.environ.get(PLAN_DIR)
        for path in sorted(Path(folder).glob("*.json")) if folder else ():
            plan: dict[str, list[object]] = json.loads(path.read_text())
            return plan
        return {}

    def schedule(self) -> None:
        if self.collection is None and self.registered_collections:
            self._plan = self._read_plan()
            # slow tests first; the same order on every node (xdist checks they match)
            for node, ids in self.registered_collections.items():
                self.registered_collections[node] = sorted(ids, key=self._later)
            self.config.option.loadscopereorder = False  # keep that order
        super().schedule()

    def _later(self, nodeid: str) -> bool:
        return not (self._plan.get(nodeid) or [nodeid, False])[1]

    def _split_scope(self, nodeid: str) -> str:
        return str((self._plan.get(nodeid) or [nodeid])[0])
