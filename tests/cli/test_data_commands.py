"""The real commands that look after the database: `db status` and `db migrate`, `ledger
import` and `users export/import`, as an operator moving a SQLite deployment to PostgreSQL
runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from presence_svc.database import Database, open_database
from presence_svc.db.migrations import migrations
from presence_svc.ledger.engagement import EngagementTotal
from presence_svc.ledger.entry import LedgerRow
from presence_svc.ledger.store import LedgerQuery
from presence_svc.timefmt import from_iso, to_iso
from tests.conftest import free_port, opened_database
from tests.postgres import PostgresServer

CLI = str(Path(sys.executable).with_name("presence-svc"))

# Up to six CLI processes in a row, each a fresh interpreter and each allowed 120 s: the
# suite's default 60 s for the whole test fired first on a loaded machine (4 tests at load
# ~20), before any process had overrun its own deadline.
pytestmark = pytest.mark.timeout(300)


def _run(
    data_dir: Path, *args: str, stdin: bytes | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_")}
    environ.update({"PRESENCE_DATA_DIR": str(data_dir), "PRESENCE_LOG_LEVEL": "warning"})
    environ.update(env or {})
    result = subprocess.run(
        [CLI, *args], env=environ, input=stdin, capture_output=True, timeout=120
    )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


async def _opened(url: str) -> Database:
    database = open_database(url)
    await database.open()
    return database


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    """The default ledger of the data dir ``tmp_path / "data"``."""
    async with opened_database(f"sqlite:///{tmp_path / 'data' / 'ledger.sqlite3'}") as database:
        yield database


def _names(backend: str) -> list[str]:
    return [f"{m.version:04d}_{m.name}" for m in migrations(backend)]


def test_db_status_and_migrate_with_migrating_at_start_off(ledger_url: str, tmp_path: Path) -> None:
    env = {"PRESENCE_LEDGER_URL": ledger_url, "PRESENCE_DB_AUTO_MIGRATE": "0"}
    backend = "sqlite" if ledger_url.startswith("sqlite") else "postgres"
    latest = len(migrations(backend))

    status = _run(tmp_path, "db", "status", env=env)
    assert status.returncode == 1, status.stderr
    assert f"backend: {backend}\n" in status.stdout
    assert "schema version: 0\n" in status.stdout
    assert f"latest version: {latest}\n" in status.stdout
    assert f"pending: {' '.join(_names(backend))}\n" in status.stdout

    refused = _run(tmp_path, "ledger", "export", env=env)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1
    assert "presence-svc db migrate" in refused.stderr

    migrated = _run(tmp_path, "db", "migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout == "".join(f"applied {name}\n" for name in _names(backend))
    again = _run(tmp_path, "db", "migrate", env=env)
    assert (again.returncode, again.stdout) == (0, f"up to date (schema version {latest})\n")

    status = _run(tmp_path, "db", "status", env=env)
    assert status.returncode == 0, status.stderr
    assert f"schema version: {latest}\n" in status.stdout
    assert "pending: none\n" in status.stdout
    assert _run(tmp_path, "ledger", "export", env=env).returncode == 0


def test_db_status_hides_the_password_and_an_unreachable_database_exits_1(
    pg_url: str, tmp_path: Path
) -> None:
    with_password = pg_url.replace("postgres@", "postgres:s3cret@")  # trust auth ignores it
    status = _run(tmp_path, "db", "status", env={"PRESENCE_LEDGER_URL": with_password})
    assert status.returncode == 1, status.stderr  # a fresh database: behind
    assert "s3cret" not in status.stdout
    assert "database: postgresql://postgres:***@127.0.0.1:" in status.stdout

    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    for command in (["db", "status"], ["db", "migrate"]):
        failed = _run(tmp_path, *command, env={"PRESENCE_LEDGER_URL": nowhere})
        assert failed.returncode == 1
        assert failed.stderr.count("\n") == 1, failed.stderr
        assert failed.stderr.startswith("presence-svc: ")


def _history(n: int) -> list[LedgerRow]:
    """``n`` views over three months across a new year, some without a session."""
    start = from_iso("2025-12-01T00:00:00Z")
    step = (from_iso("2026-03-01T00:00:00Z") - start) // n
    return [
        LedgerRow(
            f"{start + i * step:012x}{i:016x}",
            f"doc-{i % 7}",
            f"v{i % 3}",
            f"user-{i % 11}",
            None if i % 4 == 0 else f"tab-{i:06d}",
            start + i * step,
        )
        for i in range(n)
    ]


async def test_ledger_export_from_sqlite_then_import_into_postgres_twice(
    tmp_path: Path,
    sqlite_db: Database,
    pg_url: str,
    postgres_server: PostgresServer,
) -> None:
    rows = _history(12_001)  # three batches of import
    await sqlite_db.ledger.insert_views(rows)
    data = tmp_path / "data"
    export = tmp_path / "views.jsonl"
    exported = _run(data, "ledger", "export", "-o", str(export))
    assert exported.returncode == 0, exported.stderr

    first = _run(data, "ledger", "import", str(export), env={"PRESENCE_LEDGER_URL": pg_url})
    assert first.returncode == 0, first.stderr
    assert first.stdout == "read 12001, inserted 12001, duplicates 0\n"
    assert "\r" not in first.stderr  # progress only on a terminal
    again = _run(
        data,
        "ledger",
        "import",
        "-",
        stdin=export.read_bytes(),
        env={"PRESENCE_LEDGER_URL": pg_url},
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout == "read 12001, inserted 0, duplicates 12001\n"

    postgres = await _opened(pg_url)
    try:
        imported = [row async for row in postgres.ledger.iter_views(LedgerQuery(), 5000)]
    finally:
        await postgres.close()
    assert imported == rows
    # each row went straight into its month's partition, none into the default one
    database = pg_url.rsplit("/", 1)[1]
    counts = postgres_server.psql(
        "SELECT tableoid::regclass, count(*) FROM views GROUP BY 1 ORDER BY 1", database
    )
    months = Counter(to_iso(row.viewed_at_ms)[:7].replace("-", "_") for row in rows)
    assert counts.splitlines() == [f"views_{month}|{n}" for month, n in sorted(months.items())]


async def test_users_export_then_import_keeps_every_field_and_a_newer_profile(
    tmp_path: Path, sqlite_db: Database, pg_url: str
) -> None:
    for i in range(25):
        avatar = f"https://x.org/{i}.png" if i % 3 else None
        await sqlite_db.users.put_profile(f"user-{i:02d}", f'Üser "{i}" 😀', avatar)
    profiles = [p async for p in sqlite_db.users.iter_profiles()]
    data = tmp_path / "data"
    export = tmp_path / "users.jsonl"

    exported = _run(data, "users", "export", "-o", str(export))
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in export.read_text(encoding="utf-8").splitlines()]
    assert [list(line) for line in lines] == [["userId", "name", "avatarUrl", "updatedAt"]] * 25
    assert _run(data, "users", "export").stdout == export.read_text(encoding="utf-8")

    first = _run(data, "users", "import", str(export), env={"PRESENCE_LEDGER_URL": pg_url})
    assert (first.returncode, first.stdout) == (0, "read 25, written 25, kept 0\n"), first.stderr
    postgres = await _opened(pg_url)
    try:
        assert [p async for p in postgres.users.iter_profiles()] == profiles
        renamed = await postgres.users.put_profile("user-07", "Renamed on PostgreSQL", None)
        again = _run(data, "users", "import", str(export), env={"PRESENCE_LEDGER_URL": pg_url})
        assert again.stdout == "read 25, written 0, kept 25\n", again.stderr
        assert await postgres.users.get_profile("user-07") == renamed
    finally:
        await postgres.close()


GOOD_VIEW = {
    "viewId": "view-1",
    "artifactId": "doc-1",
    "versionId": "v1",
    "userId": "user-1",
    "sessionId": None,
    "viewedAt": "2026-11-25T10:00:00.000Z",
}
GOOD_PROFILE = {
    "userId": "user-1",
    "name": "One",
    "avatarUrl": None,
    "updatedAt": "2026-11-25T10:00:00.000Z",
}


def _line(good: Mapping[str, object], **changes: object) -> bytes:
    fields = {k: v for k, v in {**good, **changes}.items() if v is not ...}
    return json.dumps(fields).encode()


async def _ledger_ids(db: Database) -> list[str]:
    return [r.view_id for r in await db.ledger.query_views(LedgerQuery(), 10)]


async def _user_ids(db: Database) -> list[str]:
    return [p.user_id async for p in db.users.iter_profiles()]


BAD_LINES: list[tuple[str, bytes, str]] = [
    ("ledger", b"not json", "JSON is malformed"),
    ("ledger", b"viewId,artifactId,versionId,userId,sessionId,viewedAt", "JSON is malformed"),
    ("ledger", _line(GOOD_VIEW, viewId="view-3", artifactId=...), "artifactId"),
    ("ledger", _line(GOOD_VIEW, viewId=3), "$.viewId"),
    ("ledger", _line(GOOD_VIEW, viewId=""), "$.viewId"),
    ("ledger", _line(GOOD_VIEW, viewId="view-3", viewedAt="yesterday"), "viewedAt 'yesterday'"),
    ("ledger", _line(GOOD_VIEW, viewId="view-3", viewedAt="2026-11-25T10:00:00"), "time zone"),
    ("ledger", _line(GOOD_VIEW, viewId="view-3", userId="a\x00b"), "$.userId"),
    ("ledger", b'{"viewId": "\xff"}', "UTF-8"),
    ("users", _line(GOOD_PROFILE, userId="user-3", name=...), "name"),
    ("users", _line(GOOD_PROFILE, userId="user-3", updatedAt="soon"), "updatedAt 'soon'"),
    ("users", b"[]", "Expected `object`"),
]


@pytest.mark.parametrize(("command", "bad", "needle"), BAD_LINES)
async def test_a_bad_line_exits_2_naming_it_with_the_lines_before_it_imported(
    tmp_path: Path, command: str, bad: bytes, needle: str
) -> None:
    good = GOOD_VIEW if command == "ledger" else GOOD_PROFILE
    key = "viewId" if command == "ledger" else "userId"
    text = b"\n".join(
        [_line(good, **{key: f"{command}-1"}), b"", bad, _line(good, **{key: f"{command}-4"})]
    )
    source = tmp_path / "in.jsonl"
    source.write_bytes(text + b"\n")
    result = _run(tmp_path / "data", command, "import", str(source))
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"presence-svc {command} import: line 3: ")
    assert needle in lines[0]
    assert "before it are imported, none after it" in lines[0]

    database = await _opened(f"sqlite:///{tmp_path / 'data' / 'ledger.sqlite3'}")
    try:
        ids = await (_ledger_ids(database) if command == "ledger" else _user_ids(database))
        assert ids == [f"{command}-1"]
    finally:
        await database.close()


@pytest.mark.parametrize("command", ["ledger", "users"])
def test_importing_a_file_that_is_not_there_exits_2(tmp_path: Path, command: str) -> None:
    result = _run(tmp_path, command, "import", str(tmp_path / "missing.jsonl"))
    assert result.returncode == 2
    assert result.stderr == (
        f"presence-svc {command} import: cannot read {tmp_path / 'missing.jsonl'}: "
        "No such file or directory\n"
    )


async def test_ledger_export_engagement_writes_the_daily_totals(
    tmp_path: Path, sqlite_db: Database
) -> None:
    totals = [
        EngagementTotal("doc-1", "v1", "alice", "2026-11-01", 1200),
        EngagementTotal("doc-1", "v2", "bob", "2026-11-02", 300),
        EngagementTotal("doc-2", "v1", "alice", "2026-11-03", 45),
    ]
    await sqlite_db.engagement.upsert_totals(totals, from_iso("2026-11-03T12:00:00Z"))
    data = tmp_path / "data"
    exported = _run(
        data, "ledger", "export", "--engagement", "--user", "alice", "--since",
        "2026-11-01T10:00:00Z", "--until", "2026-11-03T00:00:00Z",
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert [json.loads(line) for line in exported.stdout.splitlines()] == [
        {
            "artifactId": "doc-1",
            "versionId": "v1",
            "userId": "alice",
            "day": "2026-11-01",
            "engagedMs": 1200,
            "updatedAt": "2026-11-03T12:00:00.000Z",
        }
    ]
    as_csv = _run(data, "ledger", "export", "--engagement", "--format", "csv")
    assert as_csv.stdout.splitlines() == [
        "artifactId,versionId,userId,day,engagedMs,updatedAt",
        "doc-1,v1,alice,2026-11-01,1200,2026-11-03T12:00:00.000Z",
        "doc-1,v2,bob,2026-11-02,300,2026-11-03T12:00:00.000Z",
        "doc-2,v1,alice,2026-11-03,45,2026-11-03T12:00:00.000Z",
    ]
