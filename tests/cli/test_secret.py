"""The generated signing secret: private, stable, and one per data dir even under a race."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from presence_svc.auth import load_or_create_secret


def test_secret_is_created_once_privately_and_kept(tmp_path: Path) -> None:
    first = load_or_create_secret(tmp_path / "data")
    assert len(first) >= 32
    assert (tmp_path / "data" / "jwt_secret").stat().st_mode & 0o777 == 0o600
    assert load_or_create_secret(tmp_path / "data") == first


def test_concurrent_first_starts_agree_on_one_secret(tmp_path: Path) -> None:
    with ThreadPoolExecutor(16) as pool:
        found = set(pool.map(lambda _: load_or_create_secret(tmp_path), range(64)))
    assert len(found) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jwt_secret"]
