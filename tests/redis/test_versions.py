"""The Redis-facing tests run on each Redis version the suite knows: the server a test
talks to is the version its id says."""

from __future__ import annotations

import pytest
import redis

from presence_svc.redis.embedded import EmbeddedRedis

pytestmark = pytest.mark.every_redis  # see tests/conftest.py


def test_the_redis_under_test_is_the_version_named(
    request: pytest.FixtureRequest, sync_redis: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    version = request.node.callspec.params["redis_binary"]
    assert str(sync_redis.info("server")["redis_version"]).startswith(f"{version}.")
    assert redis_server.binary is not None
