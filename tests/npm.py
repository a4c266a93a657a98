"""``npm ci`` in clients/js for the tests that build from the SDK's sources, once, even when
parallel workers (pytest-xdist) ask at the same moment: two ``npm ci`` in one folder would
each delete what the other installs."""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import tempfile
from pathlib import Path

JS = Path(__file__).resolve().parents[1] / "clients" / "js"


def npm_ci_unless_present(npm: str, needed: Path) -> None:
    """``npm ci`` in clients/js if ``needed`` (a package under node_modules) is missing."""
    digest = hashlib.sha1(str(JS).encode()).hexdigest()[:12]
    lock = Path(tempfile.gettempdir()) / f"presence-npm-ci-{digest}.lock"
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # released when the file closes
        if not needed.exists():
            subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS, check=True)
