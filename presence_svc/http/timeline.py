"""An artifact's timeline: the most users and sessions online at once per step."""

from __future__ import annotations

from aiohttp import web

from presence_svc.errors import BadRequest, FieldError
from presence_svc.http.answer import LeanAnswer
from presence_svc.http.conditional import none_match
from presence_svc.http.params import path_id, query_choice, query_time
from presence_svc.http.resources import LIMITER, TIMELINE, TOKENS
from presence_svc.http.wire import JSON, respond, wants_msgpack
from presence_svc.ratelimits import RouteClass
from presence_svc.schemas import TimelineOut, TimelinePeak, TimelinePoint
from presence_svc.timefmt import to_iso
from presence_svc.timeline.query import points_between
from presence_svc.timeline.series import MAX_POINTS, MINUTE_MS, STEPS, stamps

__all__ = ["routes"]

routes = web.RouteTableDef()
_DEFAULT_SPAN_MS = 3_600_000
_REVALIDATE = "private, no-cache"
"""A browser may keep a 1m answer but asks again each time, with its ETag."""


@routes.get("/v1/artifacts/{artifactId}/timeline")
async def timeline(request: web.Request) -> web.Response:
    app = request.app
    principal = app[TOKENS].from_request(request)
    principal.require_dashboard()
    artifact_id = path_id(request, "artifactId")
    step = query_choice(request, "step", tuple(STEPS))
    now = app[TIMELINE].now_ms()
    until = query_time(request, "until")
    # Points end with the current step: the future has none.
    until = now if until is None else min(until, now)
    since = query_time(request, "since")
    if since is None:
        since = until - _DEFAULT_SPAN_MS
    if since >= until:
        raise BadRequest(
            "since must be before until (and before now)",
            errors=[FieldError("since", "must be before until and not in the future")],
        )
    count = points_between(since, until, step)
    if count > MAX_POINTS:
        raise BadRequest(
            f"{count} points at step {step}: at most {MAX_POINTS} per read",
            errors=[FieldError("step", f"the range makes over {MAX_POINTS} points: a longer step")],
        )
    await app[LIMITER].check(principal, RouteClass.READ)
    if step == "1m" and not wants_msgpack(request):
        # The JSON of minutes: the bytes answered before while nothing they were made of
        # changed, else joined from each hour's encoded points (timeline.answer).
        first, end = since // MINUTE_MS, -(-until // MINUTE_MS)
        read = await app[TIMELINE].minutes_read(artifact_id, first, end)
        gzip = accepts_gzip(request.headers.get("Accept-Encoding"))
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match and none_match(if_none_match, etag := read.etag(gzip)):
            return web.Response(status=304, headers=_conditional(etag))
        whole = app[TIMELINE].minutes_answer(read, gzip=gzip)
        # kept bytes, written with less of aiohttp's machinery (http.answer)
        answer = LeanAnswer.ok(whole.body, JSON)
        answer.headers.update(_conditional(whole.etag))
        if gzip:
            answer.headers["Content-Encoding"] = "gzip"
        return answer
    series = await app[TIMELINE].read(artifact_id, since, until, step)
    times = stamps(series.first_ms, series.step_ms, len(series.online))
    points = list(map(TimelinePoint, times, series.online, series.sessions))
    peak = series.peak()
    out = TimelineOut(
        artifact_id=artifact_id,
        step=step,  # type: ignore[arg-type]
        points=points,
        peak=TimelinePeak(
            online=peak.online, at=None if peak.at_ms is None else to_iso(peak.at_ms)
        ),
    )
    return respond(request, out)


def _conditional(etag: str) -> dict[str, str]:
    """The headers of a 1m JSON answer, and of its 304."""
    return {"Vary": "Accept-Encoding", "ETag": etag, "Cache-Control": _REVALIDATE}


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether ``Accept-Encoding`` lists gzip (or x-gzip) with a q above 0."""
    for item in (accept_encoding or "").split(","):
        name, _, params = item.partition(";")
        if name.strip().lower() not in ("gzip", "x-gzip"):
            continue
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False
