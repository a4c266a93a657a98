"""The users directory: the one place names and avatars live (admin only)."""

from __future__ import annotations

import logging

from aiohttp import web

from presence_svc.errors import NotFound
from presence_svc.http.params import path_id
from presence_svc.http.resources import PRESENCE, TOKENS, USERS
from presence_svc.http.wire import Body, respond
from presence_svc.schemas import ProfileIn, ProfileOut
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
    """Erase the profile and the user's sessions; stats and ledger keep the opaque id."""
    user_id = _admin_on_user(request)
    removed = await request.app[PRESENCE].erase_user(user_id)
    existed = await request.app[USERS].delete_profile(user_id)
    log.info("user erased", extra={"sessions_removed": removed, "profile_existed": existed})
    return web.Response(status=204)
