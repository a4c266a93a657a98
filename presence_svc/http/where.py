"""Where now: the artifacts a user is online on, and the ones they left recently."""

from __future__ import annotations

from aiohttp import web

from presence_svc.http.answer import LeanAnswer
from presence_svc.http.params import path_id
from presence_svc.http.resources import LIMITER, PRESENCE, PRIVACY, TOKENS
from presence_svc.http.wire import JSON, MSGPACK, Read, RequestAsked, encode_body, encoded, wants
from presence_svc.ratelimits import RouteClass
from presence_svc.schemas import WhereNowOut

__all__ = ["routes", "whereabouts"]

routes = web.RouteTableDef()


@routes.get("/v1/users/{userId}/presence")
async def where_now(request: web.Request) -> web.Response:
    return LeanAnswer.ok(*await whereabouts(request.app, RequestAsked(request)))


async def whereabouts(app: web.Application, asked: Read) -> tuple[bytes, str]:
    """Where-now's answer (its body and media type), for aiohttp's handler above and for
    ``http/lean``. The user's own token, or a dashboard or admin token (as ``/recent``). A
    user whose presence is hidden is nowhere for anyone else (admins included); they see
    their own."""
    principal = app[TOKENS].from_header(asked.authorization)
    user_id = path_id(asked, "userId")
    principal.require_user_read(user_id)
    await app[LIMITER].check(principal, RouteClass.READ)
    if principal.user_id != user_id and app[PRIVACY].presence_hidden(user_id):
        return encoded(WhereNowOut(user_id=user_id, online=[], recent=[]), asked.accept)
    found = await app[PRESENCE].where_now.read(user_id)
    as_msgpack = wants(asked.accept)
    body = found.bodies.get(as_msgpack)
    if body is None:  # the answer's rows are the user's: its bytes are the same next time
        out = WhereNowOut(user_id=user_id, online=found.online, recent=found.recent)
        body = found.bodies[as_msgpack] = encode_body(out, as_msgpack)
    return body, MSGPACK if as_msgpack else JSON
