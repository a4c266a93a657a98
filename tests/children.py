"""Processes the suite starts die with the test process that started them, however it
dies: a pytest run killed by a CI timeout (SIGKILL: no ``finally``, no fixture teardown)
must not leave redis-servers and services running on the machine.

``preexec_fn=dies_with_us()`` on every long-lived ``Popen`` of the suite (servers,
services, workers). PostgreSQL (``presence_svc.bench.pgserver``) arms its own, and has a
watchdog besides.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable

__all__ = ["dies_with_us"]

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def dies_with_us() -> Callable[[], None]:
    """For ``preexec_fn``: the child gets SIGTERM when this process ends (a service shuts
    down cleanly, stopping its own embedded Redis), and exits at once if this process
    ended before the child could ask. The signal follows the thread that spawned the
    child: spawn from the main thread (or the event loop's), not from a worker thread."""
    parent = os.getpid()

    def arm() -> None:  # in the child, between fork and exec
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return arm
