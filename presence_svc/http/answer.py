"""A lean answer for the hot routes: the bytes aiohttp writes for a ``web.Response``, with
less of its generic machinery per request.

aiohttp's ``prepare`` runs, for every answer, the steps any response may need (cookies,
compression, chunking, HTTP/1.0 keep-alive, the empty bodies of HEAD and 304, the
``on_response_prepare`` hooks) before it serialises the head: a few coroutines and checks
that cost about as much as the heartbeat's own Python. A ``200`` with a bytes body, to a
plain HTTP/1.1 keep-alive request of an app without prepare hooks, needs none of them:
:class:`LeanAnswer` sets its ``Content-Length``, ``Date`` and ``Server`` and writes the head
at once. Anything else takes aiohttp's own path, so the answer is the same bytes either way
(``tests/http/test_answer.py`` compares them over real HTTP).

It reads aiohttp's private response state; an aiohttp without it (:func:`compatible`)
answers every request aiohttp's way.
"""

from __future__ import annotations

import inspect
from typing import Any

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE, HttpVersion11
from aiohttp.web_request import BaseRequest
from multidict import CIMultiDict

__all__ = ["LeanAnswer", "compatible"]

_STATUS_LINE = "HTTP/1.1 200 OK"
_STATE = (
    "_body",
    "_cookies",
    "_compression",
    "_chunked",
    "_req",
    "_payload_writer",
    "_keep_alive",
    "_headers",
)


def compatible() -> bool:
    """Whether this aiohttp's response keeps the private state :class:`LeanAnswer` sets
    (``_start(request)`` with it, the request's ``_payload_writer``)."""
    try:
        probe = web.Response(body=b"")
        start = inspect.signature(web.StreamResponse._start)
        # the names it sets, from its code: an aiohttp installed without its sources
        # (compiled files only) has no source to read
        sets = BaseRequest.__init__.__code__.co_names
    except (AttributeError, TypeError, ValueError):
        return False
    return (
        all(hasattr(probe, name) for name in _STATE)
        and list(start.parameters) == ["self", "request"]
        and "_payload_writer" in sets
    )


_LEAN = compatible()


def _state_of(response: web.Response) -> dict[str, Any]:
    """A response's own attributes, its headers as a plain dict (for :func:`_made_alike`)."""
    state = dict(vars(response))
    state["_headers"] = dict(state.get("_headers", {}))
    return state


class LeanAnswer(web.Response):
    """A ``web.Response`` that, as a ``200`` with a bytes body to a plain HTTP/1.1
    keep-alive request of an app without prepare hooks, skips aiohttp's generic steps."""

    async def _start(self, request: BaseRequest) -> AbstractStreamWriter:
        body = self._body
        if (
            not _LEAN
            or self.status != 200
            or not isinstance(body, bytes)
            or request.version != HttpVersion11
            or not request.keep_alive
            or self._keep_alive is False  # force_close(): aiohttp adds ``Connection: close``
            or request.method == hdrs.METH_HEAD
            or self._cookies
            or self._compression
            or self._chunked
            or not isinstance(request, web.Request)
            or request.app.on_response_prepare  # CORS headers: aiohttp runs the hooks
        ):
            return await super()._start(request)
        self._req = request
        writer = self._payload_writer = request._payload_writer
        assert writer is not None
        self._keep_alive = True
        writer.length = size = len(body)
        headers = self._headers
        headers.setdefault(hdrs.CONTENT_LENGTH, str(size))
        if hdrs.DATE not in headers:
            headers[hdrs.DATE] = rfc822_formatted_time()
        headers.setdefault(hdrs.SERVER, SERVER_SOFTWARE)
        await writer.write_headers(_STATUS_LINE, headers)
        return writer

    @classmethod
    def ok(cls, body: bytes, content_type: str) -> LeanAnswer:
        """``LeanAnswer(body=body, content_type=content_type)``: a ``200`` made without
        ``Response.__init__``'s generic steps (text, charset, payload lookup), which cost
        about as much as encoding the heartbeat's answer. The same object either way:
        :func:`_made_alike` compares the two once; an aiohttp whose responses differ
        gets ``__init__``."""
        if _FAST_INIT:
            return _made(body, content_type)
        return cls(body=body, content_type=content_type)


_PROTOTYPE: dict[str, Any] = {}
"""``Response.__init__``'s attributes of a ``200`` but the three :func:`_made` sets."""


def _made(body: bytes, content_type: str) -> LeanAnswer:
    answer = LeanAnswer.__new__(LeanAnswer)
    answer.__dict__.update(_PROTOTYPE)
    answer._state = {}
    answer._headers = CIMultiDict(((hdrs.CONTENT_TYPE, content_type),))
    answer._body = body
    return answer


def _made_alike() -> bool:
    """Whether :func:`_made` makes what ``__init__`` makes (the same attributes, values
    and headers), the attributes it copies learnt from ``__init__`` itself."""
    try:
        made = LeanAnswer(body=b"{}", content_type="application/json")
        _PROTOTYPE.update(
            (name, value)
            for name, value in vars(made).items()
            if name not in ("_state", "_headers", "_body")
        )
        return _state_of(_made(b"{}", "application/json")) == _state_of(made)
    except (AttributeError, TypeError, ValueError):
        return False


_FAST_INIT = _made_alike()
