"""`presence-svc serve --processes N` for real: N servers on one port, one Redis and
worker, and /metrics that sums every process."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.cli.test_cli import CLI, _env
from tests.conftest import free_port


def _children(pid: int) -> list[str]:
    """Command lines of the direct children of ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, IndexError, ValueError):
            continue
    return found


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def _post_json(url: str, body: dict[str, str], token: str) -> dict[str, object]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # a new connection each
        assert response.status == 200
        answer: dict[str, object] = json.loads(response.read())
        return answer


@pytest.mark.timeout(90)
def test_several_processes_share_the_port_and_sum_their_metrics(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    process = subprocess.Popen(
        [CLI, "serve", "--port", str(port), "--processes", "2"],
        env=_env(data),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        while True:
            assert process.poll() is None, process.stderr.read()  # type: ignore[union-attr]
            try:
                if _get(f"{base}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "not ready"
            time.sleep(0.1)
        servers = [c for c in _children(process.pid) if "serve" in c and "--listen-fd" in c]
        assert len(servers) == 2, _children(process.pid)

        token = subprocess.run(
            [CLI, "token", "--user", "alice"],
            env=_env(data),
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
        body = {"artifactId": "doc-1", "sessionId": "tab-aaaa1"}
        for _ in range(30):  # the kernel spreads new connections over the processes
            assert _post_json(f"{base}/v1/heartbeat", body, token)["sessions"] == 1
        pattern = re.compile(
            r'presence_http_requests_total\{method="POST",route="/v1/heartbeat",status="200"\}'
            r" (\S+)"
        )
        for _ in range(4):  # whichever process answers, it reports every process's count
            match = pattern.search(_get(f"{base}/metrics")[1])
            assert match is not None
            assert float(match.group(1)) == 30
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        if process.stderr:
            process.stderr.close()
    assert not _children(process.pid)
