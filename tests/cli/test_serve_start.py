"""How `presence-svc serve` starts, as a person or a log shipper sees it: a banner and text
logs on a terminal, JSON lines otherwise; a busy port is one line and exit 2, before
anything starts or says "serving"."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.children import dies_with_us
from tests.cli.served import get
from tests.cli.test_cli import CLI, _env
from tests.conftest import free_port


def _wait_ready(port: int, process: subprocess.Popen[bytes], timeout_s: float = 40) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, "serve exited"
        try:
            if get(f"http://127.0.0.1:{port}/readyz")[0] == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, "not ready"
        time.sleep(0.1)


def _read_pty(fd: int, until: re.Pattern[str] | None, timeout_s: float = 40) -> str:
    """What the terminal shows, up to ``until`` (or the end of the process's output)."""
    seen = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if until is not None and until.search(seen.decode(errors="replace")):
            break
        if not select.select([fd], [], [], 0.2)[0]:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: every process on the terminal has closed it
            break
        if not chunk:
            break
        seen += chunk
    return seen.decode(errors="replace").replace("\r\n", "\n")


@pytest.mark.timeout(90)
def test_on_a_terminal_serve_prints_a_banner_and_text_logs(tmp_path: Path) -> None:
    port = free_port()
    main, terminal = pty.openpty()
    process = subprocess.Popen(
        [CLI, "serve", "--port", str(port)],
        env=_env(tmp_path / "data"),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        preexec_fn=dies_with_us(),
    )
    os.close(terminal)
    try:
        shown = _read_pty(main, re.compile(r"openapi\.json.*\n"))
        _wait_ready(port, process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        shown += _read_pty(main, None, timeout_s=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(main)
    base = f"http://127.0.0.1:{port}"
    assert f"presence-svc is serving on {base}; press Ctrl-C to stop" in shown, shown
    assert f"{CLI} token --user alice   (with PRESENCE_DATA_DIR=" in shown
    assert f"{base}/dashboard#token=" in shown
    assert re.search(rf"^\d\d:\d\d:\d\d info +serving  host=127\.0\.0\.1 port={port}$", shown, re.M)
    assert re.search(r"^\d\d:\d\d:\d\d info +worker started  worker_id=", shown, re.M)
    assert not [line for line in shown.splitlines() if line.startswith("{")], shown


@pytest.mark.timeout(90)
def test_without_a_terminal_serve_logs_json_lines_only(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [CLI, "serve", "--port", str(port)],
        env=_env(tmp_path / "data"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=dies_with_us(),
    )
    try:
        _wait_ready(port, process)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert out == b""
    entries = [json.loads(line) for line in err.decode().splitlines()]
    [serving] = [e for e in entries if e["msg"] == "serving"]
    assert {"host": "127.0.0.1", "port": port}.items() <= serving.items()
    assert "worker started" in [e["msg"] for e in entries]
    assert b"presence-svc is serving" not in err


@pytest.fixture
def busy_port(request: pytest.FixtureRequest) -> Iterator[int]:
    """A port something listens on (with ``SO_REUSEPORT`` if the param says so, as a
    `serve --processes` of the same user does)."""
    holder = socket.socket()
    if request.param == "reuseport":
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    yield holder.getsockname()[1]
    holder.close()


@pytest.mark.parametrize(
    ("busy_port", "processes"),
    [("plain", "1"), ("plain", "2"), ("reuseport", "2")],
    indirect=["busy_port"],
)
def test_a_busy_port_is_one_line_and_exit_2_before_anything_starts(
    tmp_path: Path, busy_port: int, processes: str
) -> None:
    data = tmp_path / "data"
    result = subprocess.run(
        [CLI, "serve", "--port", str(busy_port), "--processes", processes],
        env=_env(data),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"presence-svc serve: 127.0.0.1:{busy_port} is already in use "
        "(another presence-svc serve?): stop it, or choose another port\n"
    )
    assert not (data / "redis.pid").exists()  # the embedded Redis never started


def test_a_busy_metrics_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        taken = holder.getsockname()[1]
        result = subprocess.run(
            [CLI, "serve", "--port", str(free_port())],
            env=_env(tmp_path, PRESENCE_METRICS_ADDR=f"127.0.0.1:{taken}"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert f"127.0.0.1:{taken} is already in use" in line
