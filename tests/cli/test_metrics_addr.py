"""`PRESENCE_METRICS_ADDR`: /metrics on a listener of its own and nowhere else, for one
server process, for `serve --processes N` (summing them all), and for a standalone worker."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.cli.test_cli import CLI, _env
from tests.cli.test_multiproc import _get, _post_json
from tests.conftest import free_port

_HEARTBEATS = re.compile(
    r'presence_http_requests_total\{method="POST",route="/v1/heartbeat",status="200"\} (\S+)'
)


def _until_up(url: str, process: subprocess.Popen[bytes], timeout_s: float = 40) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, process.stderr.read()  # type: ignore[union-attr]
        try:
            if _get(url)[0] == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{url} never answered"
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("processes", ["1", "2"])
def test_metrics_are_served_only_at_their_own_address(tmp_path: Path, processes: str) -> None:
    port, metrics_port = free_port(), free_port()
    data = tmp_path / "data"
    process = subprocess.Popen(
        [CLI, "serve", "--port", str(port), "--processes", processes],
        env=_env(data, PRESENCE_METRICS_ADDR=f"127.0.0.1:{metrics_port}"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base, metrics = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}"
    try:
        _until_up(f"{base}/readyz", process)
        token = subprocess.run(
            [CLI, "token", "--user", "alice"],
            env=_env(data),
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
        body = {"artifactId": "doc-1", "sessionId": "tab-aaaa1"}
        for _ in range(10):  # new connections: spread over the processes, if several
            _post_json(f"{base}/v1/heartbeat", body, token)
        assert _get(f"{base}/metrics")[0] == 404
        status, text = _get(f"{metrics}/metrics")
        assert status == 200
        match = _HEARTBEATS.search(text)
        assert match is not None, text
        assert float(match.group(1)) == 10
        assert _get(f"{metrics}/v1/artifacts/doc-1/online")[0] == 404  # metrics only
    finally:
        _stop(process)


@pytest.mark.timeout(90)
def test_a_standalone_worker_serves_its_metrics(tmp_path: Path, shared_redis: str) -> None:
    metrics_port = free_port()
    process = subprocess.Popen(
        [CLI, "worker"],
        env=_env(
            tmp_path,
            PRESENCE_REDIS_URL=shared_redis,
            PRESENCE_METRICS_ADDR=f"127.0.0.1:{metrics_port}",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        _until_up(url, process)
        assert "presence_ledger_backlog" in _get(url)[1]
    finally:
        _stop(process)
