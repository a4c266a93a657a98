"""Reading the ledger: GET /v1/ledger and `presence-svc ledger export`."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from presence_svc.database import open_database
from presence_svc.ledger.entry import LedgerRow
from presence_svc.settings import Settings
from presence_svc.timefmt import from_iso
from tests.conftest import AppClient

Auth = Callable[..., dict[str, str]]
CLI = str(Path(sys.executable).with_name("presence-svc"))
BASE = from_iso("2026-11-25T10:00:00Z")


@pytest.fixture
async def ledger(settings: Settings) -> AsyncIterator[Path]:
    path = Path(settings.resolved_ledger_url.removeprefix("sqlite:///"))
    database = open_database(f"sqlite:///{path}")
    await database.open()
    rows = [
        LedgerRow(
            f"view-{i:03d}",
            f"doc-{i % 3}",
            "v1",
            f"user-{i % 4}",
            "tab-aaaa1" if i % 2 else None,
            BASE + i * 1000,
        )
        for i in range(30)
    ]
    assert await database.ledger.insert_views(rows) == 30
    assert await database.ledger.insert_views(rows[:5]) == 0  # idempotent on the view id
    await database.close()
    return path


async def test_ledger_pages_oldest_first_with_filters(
    ledger: Path, client: AppClient, auth: Auth
) -> None:
    dashboard = auth("d", scope="dashboard")
    seen: list[dict[str, object]] = []
    cursor = None
    while True:
        url = "/v1/ledger?artifactId=doc-1&limit=4" + (f"&cursor={cursor}" if cursor else "")
        page = await (await client.get(url, headers=dashboard)).json()
        seen += page["items"]
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert [r["viewId"] for r in seen] == [f"view-{i:03d}" for i in range(1, 30, 3)]
    assert seen[0] == {
        "viewId": "view-001",
        "artifactId": "doc-1",
        "versionId": "v1",
        "userId": "user-1",
        "sessionId": "tab-aaaa1",
        "viewedAt": "2026-11-25T10:00:01.000Z",
    }
    window = "since=2026-11-25T10:00:10Z&until=2026-11-25T10:00:20Z&userId=user-2"
    page = await (await client.get(f"/v1/ledger?{window}", headers=dashboard)).json()
    assert [r["viewId"] for r in page["items"]] == ["view-010", "view-014", "view-018"]


async def test_ledger_newest_first_pages_downwards(
    ledger: Path, client: AppClient, auth: Auth
) -> None:
    dashboard = auth("d", scope="dashboard")
    seen: list[str] = []
    cursor = None
    while True:
        url = "/v1/ledger?artifactId=doc-2&order=desc&limit=3" + (
            f"&cursor={cursor}" if cursor else ""
        )
        page = await (await client.get(url, headers=dashboard)).json()
        seen += [r["viewId"] for r in page["items"]]
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert seen == [f"view-{i:03d}" for i in range(29, -1, -3)]
    asc = await (await client.get("/v1/ledger?order=asc&limit=2", headers=dashboard)).json()
    assert [r["viewId"] for r in asc["items"]] == ["view-000", "view-001"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=yesterday", "since"),
        ("until=2026-11-25T10:00:00", "until"),
        ("limit=1001", "limit"),
        ("userId=a%20b", "userId"),
        ("cursor=zz", None),
        ("order=newest", "order"),
    ],
)
async def test_bad_ledger_query_is_400(
    client: AppClient, auth: Auth, query: str, field: str | None
) -> None:
    response = await client.get(f"/v1/ledger?{query}", headers=auth("d", scope="dashboard"))
    assert response.status == 400
    body = await response.json()
    if field:
        assert body["errors"][0]["field"] == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"artifactId": "doc-1"}, "versionId"),
        ({"versionId": "v1"}, "artifactId"),
        ({"artifactId": "doc-1", "versionId": "v 1"}, "versionId"),
        ({"artifactId": "doc-1", "versionId": "v1", "sessionId": "x"}, "sessionId"),
    ],
)
async def test_bad_view_is_400_and_counts_nothing(
    client: AppClient, auth: Auth, body: dict[str, str], field: str
) -> None:
    response = await client.post("/v1/views", json=body, headers=auth("alice"))
    assert response.status == 400
    assert (await response.json())["errors"][0]["field"] == field
    stats = await (
        await client.get("/v1/artifacts/doc-1/stats", headers=auth("d", scope="dashboard"))
    ).json()
    assert stats["views"] == 0


@pytest.mark.parametrize(
    "path",
    [
        "/v1/artifacts/doc-1/versions/v1/viewers?limit=0",
        "/v1/artifacts/doc-1/versions/v%201/viewers",
        "/v1/artifacts/doc-1/versions/v1/viewers?cursor=%%%",
        "/v1/users/a%20b/recent",
        "/v1/users/alice/recent?limit=201",
    ],
)
async def test_bad_reads_are_400(client: AppClient, auth: Auth, path: str) -> None:
    assert (await client.get(path, headers=auth("d", scope="dashboard"))).status == 400


def _export(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_")}
    env["PRESENCE_LEDGER_URL"] = settings.resolved_ledger_url
    return subprocess.run(
        [CLI, "ledger", "export", *args], env=env, capture_output=True, text=True, timeout=60
    )


async def test_export_writes_jsonl_and_csv_oldest_first(
    ledger: Path, settings: Settings, tmp_path: Path
) -> None:
    result = _export(settings, "--artifact", "doc-2", "--since", "2026-11-25T10:00:05Z")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["viewId"] for r in lines] == [f"view-{i:03d}" for i in range(5, 30, 3)]
    assert lines[0]["viewedAt"] == "2026-11-25T10:00:05.000Z"

    out = tmp_path / "ledger.csv"
    result = _export(settings, "--format", "csv", "-o", str(out))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 30
    assert rows[0]["viewId"] == "view-000"
    assert rows[-1]["viewId"] == "view-029"


def test_export_refuses_bad_arguments_with_status_2(settings: Settings) -> None:
    bad = (["--since", "soon"], ["--format", "xml"], ["--user", "a b"])
    with ThreadPoolExecutor(len(bad)) as pool:  # side by side: each start costs a second
        results = list(pool.map(lambda args: _export(settings, *args), bad))
    for args, result in zip(bad, results, strict=True):
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
