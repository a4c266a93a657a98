"""Stopping a background task for sure.

On Python 3.11 a cancellation can be lost: ``asyncio.wait_for``, which redis-py's socket
writes use, returns the result instead of raising ``CancelledError`` when what it waits
for completes in the same loop turn as the cancel (fixed in 3.12). A polling loop stopped
only by ``task.cancel()`` then goes on forever, and whatever waits for it (an app's
cleanup, and so a server's shutdown) waits too. Under load this happened often enough to
hang test servers' teardown for a minute (the rate-limit settlement and the privacy
mirror were found "cancelling" at their sleeps).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

__all__ = ["cancel_and_wait"]

_RECANCEL_S = 0.5
"""How long a cancelled task may take before it is cancelled again."""


async def cancel_and_wait(*tasks: asyncio.Task[Any]) -> None:
    """Cancel ``tasks`` and wait until every one has ended, cancelling again those still
    running after a while (a cancellation lost on the way). Their outcomes are not raised
    (a task that failed has logged it, or its result is of no interest once stopped). For
    loops whose clean-up is quick: one still cleaning up after ``_RECANCEL_S`` is
    interrupted."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=_RECANCEL_S)
    for task in tasks:
        if not task.cancelled():
            with contextlib.suppress(Exception):
                task.result()  # retrieved, so no "exception was never retrieved"
