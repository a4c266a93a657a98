"""`PRESENCE_METRICS_ADDR`: /metrics on a listener of its own and nowhere else, for one
server process, for `serve --processes N` (summing them all), and for a standalone worker."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.children import dies_with_us
from tests.cli.served import get, mint_token, post_json, stop, until_up
from tests.cli.test_cli import CLI, _env
from tests.conftest import free_port

_HEARTBEATS = re.compile(
    r'presence_http_requests_total\{method="POST",route="/v1/heartbeat",status="200"\} (\S+)'
)


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
        preexec_fn=dies_with_us(),
    )
    base, metrics = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}"
    try:
        until_up(f"{base}/readyz", process)
        token = mint_token(data)
        body = {"artifactId": "doc-1", "sessionId": "tab-aaaa1"}
        for _ in range(10):  # new connections: spread over the processes, if several
            post_json(f"{base}/v1/heartbeat", body, token)
        assert get(f"{base}/metrics")[0] == 404
        status, text = get(f"{metrics}/metrics")
        assert status == 200
        match = _HEARTBEATS.search(text)
        assert match is not None, text
        assert float(match.group(1)) == 10
        assert get(f"{metrics}/v1/artifacts/doc-1/online")[0] == 404  # metrics only
    finally:
        stop(process)


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
        preexec_fn=dies_with_us(),
    )
    try:
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        until_up(url, process)
        assert "presence_ledger_backlog" in get(url)[1]
    finally:
        stop(process)
