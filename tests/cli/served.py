"""Helpers for tests that run a real ``presence-svc serve`` process and talk to it over
plain HTTP (urllib: no event loop, as a user's curl would)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.cli.test_cli import CLI, _env


def get(url: str) -> tuple[int, str]:
    """Status and text of a GET; an HTTP error status comes back with an empty text."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def post_json(url: str, body: dict[str, str], token: str) -> dict[str, object]:
    """POST ``body`` as JSON with ``token``, on a new connection each time; asserts a 200."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        answer: dict[str, object] = json.loads(response.read())
        return answer


def until_up(url: str, process: subprocess.Popen[bytes], timeout_s: float = 40) -> None:
    """Wait for ``url`` to answer 200; fails at once, with its stderr, if ``process`` died."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, process.stderr.read()  # type: ignore[union-attr]
        try:
            if get(url)[0] == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{url} never answered"
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and a clean exit (0) expected; killed if it hangs."""
    process.send_signal(signal.SIGTERM)
    try:
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


def mint_token(data: Path, user: str = "alice") -> str:
    """A client token from ``presence-svc token``, signed with the data dir's secret."""
    return subprocess.run(
        [CLI, "token", "--user", user],
        env=_env(data),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
