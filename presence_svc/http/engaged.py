"""A heartbeat's or a page-close beacon's ``engagedMs``: credited in the same pipeline as
the presence write, and only when there is some (a plain heartbeat costs nothing more)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

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
    (one pipeline on a single server), created first so it is sent first: it reads the
    session as its previous heartbeat left it."""
    if not body.engaged_ms:
        return await write()
    version = body.version_id if isinstance(body, HeartbeatIn) else None
    report = app[ENGAGEMENT].report(
        body.artifact_id, pack_session_id(body.session_id), user_id, version, body.engaged_ms
    )
    _, result = await asyncio.gather(report, write())
    return result
