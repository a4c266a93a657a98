"""The ledger tests' database: opened on each backend in turn (``ledger_url``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from presence_svc.database import Database
from tests.conftest import opened_database


@pytest.fixture
async def database(ledger_url: str) -> AsyncIterator[Database]:
    async with opened_database(ledger_url) as database:
        yield database
