"""``serve --processes N``: N server processes on one port, so a bigger machine is used
without a proxy in front.

The parent binds N ``SO_REUSEPORT`` sockets on the port (so a busy port fails before any
child starts), owns the Redis (the embedded one, if any), runs the one worker, and
supervises N children that each run ``serve --no-worker --listen-fd FD`` on one of them:
the kernel spreads new connections over them. Prometheus runs in multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``), so ``/metrics`` on any child, or on the parent's
``PRESENCE_METRICS_ADDR`` listener, sums every process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence

from presence_svc.redis.embedded import die_with_parent
from presence_svc.settings import Settings

__all__ = ["METRICS_DIR_ENV", "serve_processes"]

log = logging.getLogger(__name__)

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _child_argv(settings: Settings, sockets: Sequence[socket.socket]) -> list[str]:
    fds = [arg for sock in sockets for arg in ("--listen-fd", str(sock.fileno()))]
    return [
        sys.executable,
        "-m",
        "presence_svc",
        "serve",
        "--host",
        settings.host,
        "--port",
        str(settings.port),
        "--no-worker",
        *fds,
    ]


def _child_env(settings: Settings, secret: str, metrics_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    env[METRICS_DIR_ENV] = metrics_dir
    env["PRESENCE_JWT_SECRET"] = secret
    if settings.redis_url is not None:
        env["PRESENCE_REDIS_URL"] = settings.redis_url
    return env


async def _supervise(
    settings: Settings,
    children: Sequence[subprocess.Popen[bytes]],
    metrics: Sequence[socket.socket] | None,
) -> int:
    """Until SIGTERM/SIGINT (0) or a child dies (1); runs the worker and the metrics
    listener, if any, meanwhile."""
    async with contextlib.AsyncExitStack() as stack:
        if metrics is not None:
            from presence_svc.http.app import metrics_listener

            await stack.enter_async_context(metrics_listener(metrics))
        return await _watch(settings, children)


async def _watch(settings: Settings, children: Sequence[subprocess.Popen[bytes]]) -> int:
    from presence_svc.worker import run_worker

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    worker = loop.create_task(run_worker(settings, stopping)) if settings.run_worker else None
    status = 0
    while not stopping.is_set():
        dead = [c for c in children if c.poll() is not None]
        if dead:
            log.error(
                "a server process exited; stopping",
                extra={"pid": dead[0].pid, "status": dead[0].returncode},
            )
            status = 1
            stopping.set()
            break
        if worker is not None and worker.done():
            worker.result()  # raises what stopped it
        await asyncio.sleep(0.2)
    if worker is not None:
        await worker
    return status


def serve_processes(
    settings: Settings,
    secret: str,
    groups: Sequence[Sequence[socket.socket]],
    metrics: Sequence[socket.socket] | None,
) -> int:
    """Run a server child on each group of bound sockets against ``settings.redis_url``
    (already up); ``metrics``: the ``PRESENCE_METRICS_ADDR`` listener's sockets."""
    from presence_svc.banner import announce

    with tempfile.TemporaryDirectory(prefix="presence-metrics-") as metrics_dir:
        # Set before prometheus_client is first imported here: the worker's metrics are
        # written to the shared directory too.
        os.environ[METRICS_DIR_ENV] = metrics_dir
        env = _child_env(settings, secret, metrics_dir)
        children = []
        for sockets in groups:
            children.append(
                subprocess.Popen(
                    _child_argv(settings, sockets),
                    env=env,
                    stdin=subprocess.DEVNULL,
                    pass_fds=[sock.fileno() for sock in sockets],
                    preexec_fn=die_with_parent,
                )
            )
            for sock in sockets:  # the child's now: the kernel stops routing to it if it dies
                sock.close()
        log.info(
            "serving with several processes",
            extra={"host": settings.host, "port": settings.port, "processes": len(groups)},
        )
        announce(settings, len(groups))
        try:
            return asyncio.run(_supervise(settings, children, metrics))
        finally:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            for child in children:
                try:
                    child.wait(15)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
