"""The users directory: the one place names and avatars live (admin only)."""

from __future__ import annotations

import logging

from aiohttp import web

from presence_svc.errors import NotFound
from presence_svc.http.params import path_id
from presence_svc.http.resources import ERASURES, TOKENS, USERS
from presence_svc.http.wire import Body, respond
from presence_svc.privacy.jobs import INLINE_STEPS, ErasureStatus
from presence_svc.schemas import ErasureOut, ProfileIn, ProfileOut
from presence_svc.timefmt import to_iso
from presence_svc.users.directory import Profile

__all__ = ["routes"]

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
_PROFILE = Body(ProfileIn)


def _out(profile: Profile) -> ProfileOut:
    return ProfileOut(
        user_id=profile.user_id,
        name=profile.name,
        avatar_url=profile.avatar_url,
        updated_at=to_iso(profile.updated_at_ms),
    )


def _admin_on_user(request: web.Request) -> str:
    """The path's user id, once the token is checked for the admin scope."""
    request.app[TOKENS].from_request(request).require_admin()
    return path_id(request, "userId")


@routes.put("/v1/users/{userId}")
async def put_user(request: web.Request) -> web.Response:
    user_id = _admin_on_user(request)
    body = await _PROFILE.read(request)
    profile = await request.app[USERS].put_profile(user_id, body.name, body.avatar_url)
    return respond(request, _out(profile))


@routes.get("/v1/users/{userId}")
async def get_user(request: web.Request) -> web.Response:
    user_id = _admin_on_user(request)
    profile = await request.app[USERS].get_profile(user_id)
    if profile is None:
        raise NotFound(f"no profile for user {user_id!r}")
    return respond(request, _out(profile))


@routes.delete("/v1/users/{userId}")
async def delete_user(request: web.Request) -> web.Response:
    """Erase the user everywhere: 204 if done within the request, else 202 and the erasure
    to follow (a worker finishes it)."""
    user_id = _admin_on_user(request)
    jobs = request.app[ERASURES]
    opened = await jobs.open(user_id)
    if opened.taken and await jobs.run(opened.erasure_id, INLINE_STEPS):
        return web.Response(status=204)
    status = await jobs.status(opened.erasure_id)
    if status is None or status.status == "complete":  # finished by a runner meanwhile
        return web.Response(status=204)
    response = respond(request, _erasure_out(status), status=202)
    response.headers["Location"] = f"/v1/erasures/{opened.erasure_id}"
    return response


@routes.get("/v1/erasures/{erasureId}")
async def get_erasure(request: web.Request) -> web.Response:
    request.app[TOKENS].from_request(request).require_admin()
    erasure_id = path_id(request, "erasureId")
    status = await request.app[ERASURES].status(erasure_id)
    if status is None:
        raise NotFound(f"no erasure {erasure_id!r} (or it completed more than 30 days ago)")
    return respond(request, _erasure_out(status))


def _erasure_out(status: ErasureStatus) -> ErasureOut:
    done = status.completed_at_ms
    return ErasureOut(
        erasure_id=status.erasure_id,
        status="complete" if status.status == "complete" else "pending",
        requested_at=to_iso(status.requested_at_ms),
        completed_at=to_iso(done) if done is not None else None,
    )
