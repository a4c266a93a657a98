"""A heartbeat's or a page-close beacon's ``engagedMs``: credited in the same pipeline as
the presence write, and only when there is some (a plain heartbeat costs nothing more)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from presence_svc.http.resources import ENGAGEMENT
from presence_svc.live.store import pack_session_id
from presence_svc.schemas import HeartbeatIn, LeaveIn

__all__ = ["with_engagement"]

T = TypeVar("T")


async def with_engagement(
    app: web.Application,
    body: HeartbeatIn | LeaveIn,
    user_id: str,
    write: Callable[[], Awaitable[T]],
) -> T:
    """``write()``'s result; with ``engagedMs``, the engage script joins the same loop turn
    (one pipeline on a single server; its result matters to no one but a failure)."""
    if not body.engaged_ms:
        return await write()
    version = body.version_id if isinstance(body, HeartbeatIn) else None
    coro = app[ENGAGEMENT].report(
        body.artifact_id, pack_session_id(body.session_id), user_id, version, body.engaged_ms
    )
    if version is None:
        # The report reads the session's version, which a leave may delete: sent first.
        _, left = await asyncio.gather(coro, write())
        return left
    report = asyncio.ensure_future(coro)
    try:
        result = await write()
    except BaseException:
        report.add_done_callback(_retrieved)
        raise
    await report
    return result


def _retrieved(task: asyncio.Future[Any]) -> None:
    """The write failed and said so: the report's own failure is no news."""
    if not task.cancelled():
        task.exception()
