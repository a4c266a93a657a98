"""Two processes sharing one SQLite file (``serve --processes N``) change the same user's
privacy settings at once, each a different one: both changes hold."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from tests.conftest import opened_database


async def test_a_privacy_change_keeps_the_other_setting_another_process_changed_meanwhile(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.sqlite3"
    async with opened_database(f"sqlite:///{path}") as database:
        # Another process is writing: alice hides her presence, not committed yet.
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        other.execute(
            "INSERT INTO privacy (user_id, view_history, presence, updated_at) "
            "VALUES ('alice', 'visible', 'hidden', 1)"
        )
        loop = asyncio.get_running_loop()
        started = asyncio.Event()

        def traced(sql: str) -> None:  # on the file's thread: this process's statements
            if "privacy" in sql:
                loop.call_soon_threadsafe(started.set)

        await database.connection.run(lambda conn: conn.set_trace_callback(traced))
        # This process hides her view history while the other's write is under way.
        change = asyncio.create_task(
            database.users.update_privacy("alice", "hidden", None, at_ms=2)
        )
        await asyncio.wait_for(started.wait(), 30)
        other.execute("COMMIT")
        other.close()
        stored = await asyncio.wait_for(change, 30)
        await database.connection.run(lambda conn: conn.set_trace_callback(None))
        assert (stored.view_history, stored.presence) == ("hidden", "hidden")
        again = await database.users.get_privacy("alice")
        assert (again.view_history, again.presence) == ("hidden", "hidden")
