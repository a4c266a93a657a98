"""The schema's versioned migrations, shipped as SQL files in ``db/migrations/<backend>/``.

Each file is ``NNNN_name.sql`` and moves the schema from version NNNN-1 to NNNN; files
are only ever added. Statements are separated by ``;`` at the end of a line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["Migration", "SchemaBehind", "migrations", "statements"]

_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")


class SchemaBehind(RuntimeError):
    """The database's schema is older than this release and migrating at start is off."""

    def __init__(self, version: int, latest: int) -> None:
        super().__init__(
            f"the database schema is at version {version}, this release needs {latest}: "
            "run `presence-svc db migrate` (or set PRESENCE_DB_AUTO_MIGRATE=1)"
        )
        self.version = version
        self.latest = latest


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


@cache
def migrations(backend: str) -> tuple[Migration, ...]:
    """Every migration of ``backend`` (``sqlite`` or ``postgres``), in version order."""
    folder = resources.files("presence_svc.db").joinpath("migrations", backend)
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{backend} migrations are not numbered 1..n: {found}")
    return tuple(found)


def statements(sql: str) -> list[str]:
    """The statements of a migration file, comments dropped."""
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [part.strip() for part in re.split(r";\s*$", body, flags=re.MULTILINE) if part.strip()]
