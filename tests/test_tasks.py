"""Background loops are stopped for sure, even when a cancellation is lost on the way.

On Python 3.11 ``asyncio.wait_for`` (redis-py's socket writes use it) drops a cancel that
comes in the same loop turn as what it waits for completes. The rate-limit settlement and
the privacy mirror, stopped by a plain ``cancel()`` at an app's cleanup, then polled on,
and the test servers' teardown hung for a minute under load (found "cancelling" at their
sleeps).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from presence_svc.tasks import cancel_and_wait


async def test_a_poller_whose_cancellation_was_lost_is_stopped() -> None:
    loop = asyncio.get_running_loop()
    waits: list[asyncio.Future[None]] = []

    async def poll() -> None:  # as the settlement and the mirror: a call, then the next one
        while True:
            with contextlib.suppress(TimeoutError):
                waits.append(loop.create_future())
                await asyncio.wait_for(waits[-1], 30)

    task = asyncio.create_task(poll())
    await asyncio.sleep(0)  # it runs up to its first wait
    assert len(waits) == 1
    waits[-1].set_result(None)  # the call completes in the same turn as the cancel
    task.cancel()
    await asyncio.wait([task], timeout=0.3)
    if sys.version_info < (3, 12):  # the cancellation was lost: it polls on
        assert not task.done()
    async with asyncio.timeout(10):
        await cancel_and_wait(task)
    assert task.cancelled()


async def test_tasks_already_done_or_failing_are_waited_for_quietly() -> None:
    async def fail() -> None:
        raise ValueError("logged by its owner")

    done, failing = asyncio.create_task(asyncio.sleep(0)), asyncio.create_task(fail())
    await asyncio.sleep(0.01)
    sleeper = asyncio.create_task(asyncio.sleep(60))
    await cancel_and_wait(done, failing, sleeper)
    assert done.done()
    assert failing.done()
    assert sleeper.cancelled()
