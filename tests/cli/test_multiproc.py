"""`presence-svc serve --processes N` for real: N servers on one port, one Redis and
worker, and /metrics that sums every process."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.children import dies_with_us
from tests.cli.served import get, mint_token, post_json, until_up
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


@pytest.mark.timeout(90)
def test_several_processes_share_the_port_and_sum_their_metrics(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    process = subprocess.Popen(
        [CLI, "serve", "--port", str(port), "--processes", "2"],
        env=_env(data),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=dies_with_us(),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        until_up(f"{base}/readyz", process)
        servers = [c for c in _children(process.pid) if "serve" in c and "--listen-fd" in c]
        assert len(servers) == 2, _children(process.pid)

        token = mint_token(data)
        body = {"artifactId": "doc-1", "sessionId": "tab-aaaa1"}
        for _ in range(30):  # the kernel spreads new connections over the processes
            assert post_json(f"{base}/v1/heartbeat", body, token)["sessions"] == 1
        pattern = re.compile(
            r'presence_http_requests_total\{method="POST",route="/v1/heartbeat",status="200"\}'
            r" (\S+)"
        )
        # Whichever process answers, it reports every process's count. A process folds its
        # counts into the shared files at the end of the loop turn that answered (the lean
        # path writes the answer first): a scrape of the other process may come sooner.
        for _ in range(4):
            deadline = time.monotonic() + 5
            while True:
                match = pattern.search(get(f"{base}/metrics")[1])
                assert match is not None
                assert float(match.group(1)) <= 30
                if float(match.group(1)) == 30:
                    break
                assert time.monotonic() < deadline, "a process's count never reached the sum"
                time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        if process.stderr:
            process.stderr.close()
    assert not _children(process.pid)
