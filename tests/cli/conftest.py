"""Fixtures of the command-line tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from presence_svc.redis.embedded import EmbeddedRedis


@pytest.fixture
def shared_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis of the test's own, which every process it starts shares."""
    with EmbeddedRedis(tmp_path / "redis").running() as url:
        yield url
