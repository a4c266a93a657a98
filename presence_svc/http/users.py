"""The users directory: the one place names and avatars live (admin only), and each
user's privacy settings (the user's own token or an admin)."""

from __future__ import annotations

import logging
import time

from aiohttp import web
from msgspec import UNSET

from presence_svc.errors import Forbidden, NotFound
from presence_svc.http.params import path_id
from presence_svc.http.resources import (
    ERASURES,
    LIMITER,
    PRIVACY,
    REDIS,
    TOKENS,
    USERS,
    VIEWS,
)
from presence_svc.http.wire import Body, respond
from presence_svc.principal import Principal, Scope
from presence_svc.privacy.jobs import INLINE_STEPS, ErasureStatus
from presence_svc.ratelimits import RouteClass
from presence_svc.schemas import ErasureOut, PrivacyIn, PrivacyOut, ProfileIn, ProfileOut
from presence_svc.stats.visibility import restamp_viewer
from presence_svc.timefmt import to_iso
from presence_svc.users.directory import Profile
from presence_svc.users.privacy import Privacy

__all__ = ["routes"]

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
_PROFILE = Body(ProfileIn)
_PRIVACY = Body(PrivacyIn)
_MIRROR_ROUNDS = 8
"""Copies at most per change: another round only when the settings moved meanwhile."""


def _out(profile: Profile, privacy: Privacy) -> ProfileOut:
    return ProfileOut(
        user_id=profile.user_id,
        name=profile.name,
        avatar_url=profile.avatar_url,
        updated_at=to_iso(profile.updated_at_ms),
        privacy=_privacy_out(privacy),
    )


def _privacy_out(privacy: Privacy) -> PrivacyOut:
    return PrivacyOut(
        user_id=privacy.user_id,
        view_history=privacy.view_history,
        presence=privacy.presence,
        updated_at=to_iso(privacy.updated_at_ms) if privacy.updated_at_ms else None,
    )


def _owner(request: web.Request) -> tuple[Principal, str]:
    """The caller and the path's user id, once the token is checked: the user's own, or
    an admin's."""
    principal = request.app[TOKENS].from_request(request)
    user_id = path_id(request, "userId")
    if principal.scope is not Scope.ADMIN and principal.user_id != user_id:
        raise Forbidden("only the user's own token or an admin token")
    return principal, user_id


async def _self_or_admin(request: web.Request) -> str:
    """The path's user id, once the token is checked (``_owner``) and a ``read`` token of
    the caller's rate limit taken (admins are never limited)."""
    principal, user_id = _owner(request)
    await request.app[LIMITER].check(principal, RouteClass.READ)
    return user_id


def _admin_on_user(request: web.Request) -> str:
    """The path's user id, once the token is checked for the admin scope."""
    request.app[TOKENS].from_request(request).require_admin()
    return path_id(request, "userId")


@routes.put("/v1/users/{userId}")
async def put_user(request: web.Request) -> web.Response:
    user_id = _admin_on_user(request)
    body = await _PROFILE.read(request)
    users = request.app[USERS]
    profile = await users.put_profile(user_id, body.name, body.avatar_url)
    return respond(request, _out(profile, await users.get_privacy(user_id)))


@routes.get("/v1/users/{userId}")
async def get_user(request: web.Request) -> web.Response:
    """The profile with the privacy settings: the user's own token or an admin."""
    user_id = await _self_or_admin(request)
    users = request.app[USERS]
    profile = await users.get_profile(user_id)
    if profile is None:
        raise NotFound(f"no profile for user {user_id!r}")
    return respond(request, _out(profile, await users.get_privacy(user_id)))


@routes.get("/v1/users/{userId}/privacy")
async def get_privacy(request: web.Request) -> web.Response:
    user_id = await _self_or_admin(request)
    return respond(request, _privacy_out(await request.app[USERS].get_privacy(user_id)))


@routes.put("/v1/users/{userId}/privacy")
async def put_privacy(request: web.Request) -> web.Response:
    """Stored in the directory first (durable), then mirrored to every API process (at once
    here, within ``PRESENCE_PRIVACY_REFRESH_S`` elsewhere); a view-history change also
    restamps the user's existing viewer records. A repeat finishes a half-done one."""
    principal, user_id = _owner(request)
    body = await _PRIVACY.read(request)
    app = request.app
    await app[LIMITER].check(principal, RouteClass.ADMIN)  # bad input takes no token
    privacy = await app[USERS].update_privacy(
        user_id,
        None if body.view_history is UNSET else body.view_history,
        None if body.presence is UNSET else body.presence,
        int(time.time() * 1000),
    )
    privacy = await _mirror(app, privacy, restamp=body.view_history is not UNSET)
    return respond(request, _privacy_out(privacy))


async def _mirror(app: web.Application, privacy: Privacy, *, restamp: bool) -> Privacy:
    """Copy the settings the directory holds to Redis (the mirror, and the viewer records'
    marks when the view history changed), then read them again: another change that
    landed meanwhile, whose own copy may have reached Redis before this one, is copied
    again. So Redis ends as the directory whatever order two changes' writes arrive in.
    Returns the settings as stored when last read."""
    restamped: str | None = None
    for _ in range(_MIRROR_ROUNDS):
        await app[PRIVACY].put(privacy)
        if restamp or (restamped is not None and restamped != privacy.view_history):
            hide = privacy.view_history == "hidden"
            records = await restamp_viewer(app[REDIS], app[VIEWS].keys, privacy.user_id, hide)
            log.info("view history restamped", extra={"records": records, "hidden": hide})
            restamp, restamped = False, privacy.view_history
        stored = await app[USERS].get_privacy(privacy.user_id)
        if stored.flags == privacy.flags:
            return stored
        privacy = stored
    return privacy


@routes.delete("/v1/users/{userId}")
async def delete_user(request: web.Request) -> web.Response:
    """Erase the user everywhere: 204 if done within the request, else 202 and the erasure
    to follow (a worker finishes it)."""
    user_id = _admin_on_user(request)
    request.app[LIMITER].forget_user(user_id)
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
