"""``@pytest.mark.every_redis`` works wherever it is placed (tests/conftest.py): a marked
test outside tests/redis, live and stats runs once per Redis version, against that
version."""

from __future__ import annotations

import pytest
import redis

from tests.conftest import REDIS_VERSIONS


@pytest.mark.every_redis
def test_a_marked_test_in_any_folder_runs_on_the_version_its_id_names(
    request: pytest.FixtureRequest, sync_redis: redis.Redis
) -> None:
    version = request.node.callspec.params.get("redis_binary")
    assert version in REDIS_VERSIONS, request.node.nodeid
    assert str(sync_redis.info("server")["redis_version"]).startswith(f"{version}.")
