"""Ports for the servers the suite starts, each test process from a range of its own.

A port from ``bind(("127.0.0.1", 0))`` is free only until the socket closes: the server
that is to listen on it binds seconds later, and meanwhile another xdist worker's
``bind(0)`` may be handed the same port (the kernel picks from one shared ephemeral range,
32768-60999 by default, the one outgoing connections take their ports from too). Here
worker ``gwN`` takes its ports from its own block below that range, one after another, so
no two workers of a run, and no outgoing connection, ever get the same port; each port is
checked free (bindable) before it is handed out, for anything else on the machine.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
from collections.abc import Iterator

__all__ = ["free_port"]

_FIRST = 10_000
_BLOCK = 1_000
_BLOCKS = 10
"""Ports 10000-19999; a Redis Cluster node's bus port (+10000) stays below 30000."""
_BUS_OFFSET = 10_000

_ports: Iterator[int] | None = None


def _block() -> int:
    """The worker's block (``gw0`` the first); another process (no xdist) takes one of
    the blocks no worker uses, at random."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit() and int(worker[2:]) < _BLOCKS // 2:
        return int(worker[2:])
    return random.randrange(_BLOCKS // 2, _BLOCKS)


def _cycle() -> Iterator[int]:
    global _ports
    if _ports is None:
        first = _FIRST + _block() * _BLOCK
        start = random.randrange(_BLOCK)
        _ports = itertools.cycle([first + (start + i) % _BLOCK for i in range(_BLOCK)])
    return _ports


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, with_bus: bool = False) -> int:
    """A port nothing listens on now, that no other worker of this run will be handed;
    ``with_bus``: its cluster bus port (+10000) is free too."""
    ports = _cycle()
    for _ in range(_BLOCK):
        port = next(ports)
        if _bindable(port) and (not with_bus or _bindable(port + _BUS_OFFSET)):
            return port
    raise RuntimeError(f"no free port left in this process's block of {_BLOCK}")
