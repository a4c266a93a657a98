"""Bodies on the wire: JSON or msgpack in, JSON or msgpack out, validated by schema.

``Body(HeartbeatIn)`` builds the decoders once; ``await body.read(request)`` returns a
validated Struct or raises a problem naming the fields at fault.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Mapping
from typing import Annotated, Any, Generic, Protocol, TypeVar

import msgspec
from aiohttp import web
from multidict import MultiMapping

from presence_svc.errors import BadRequest, FieldError, PayloadTooLarge, UnsupportedMediaType
from presence_svc.http.answer import LeanAnswer
from presence_svc.http.params import Params

__all__ = [
    "JSON",
    "MAX_BODY_BYTES",
    "MAX_LARGE_BODY_BYTES",
    "MSGPACK",
    "Asked",
    "Body",
    "Read",
    "RequestAsked",
    "encode_body",
    "encoded",
    "field_errors",
    "respond",
    "wants",
    "wants_msgpack",
]

MAX_BODY_BYTES = 16 * 1024
MAX_LARGE_BODY_BYTES = 160 * 1024
"""What a body that carries up to 1 000 ids may weigh (``seen/check``: 1 000 ids of 128
characters as JSON are some 131 KiB); the app reads no larger body."""
JSON = "application/json"
MSGPACK = "application/msgpack"
_MSGPACK_TYPES = frozenset({MSGPACK, "application/x-msgpack", "application/vnd.msgpack"})
_TEXT = "text/plain"

T = TypeVar("T")

_AT_PATH = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"missing required field `(?P<field>[^`]+)`")


def field_errors(exc: msgspec.ValidationError) -> list[FieldError]:
    """Turn msgspec's one-line message into ``[{field, message}]``."""
    text = str(exc)
    match = _AT_PATH.match(text)
    message = match.group("message") if match else text
    path = (match.group("path") or "") if match else ""
    missing = _MISSING.search(message)
    field = path.lstrip(".")
    if missing:
        field = f"{field}.{missing.group('field')}" if field else missing.group("field")
        message = "is required"
    field = re.sub(r"\[(\d+)\]", r".\1", field).strip(".")
    return [FieldError(field=field or "body", message=message)]


_KNOWN_MAX = 65_536
"""Values a pattern-checked field keeps as known to match (ids: one per tab, artifact and
version in use), cleared when full."""


_ID_MAX = 128
"""The longest field whose known-good values are kept: the ids (``schemas._ID_META``,
session ids), opaque values a client sends again and again."""


class _Checked:
    """A top-level string field whose pattern is checked after a decode without it."""

    __slots__ = ("known", "name", "pattern")

    def __init__(self, name: str, pattern: str) -> None:
        self.name = name
        self.pattern = re.compile(pattern)  # what msgspec runs: ``search``
        self.known: set[str] = set()


def _unpatterned(kind: type[Any]) -> tuple[type[Any], tuple[_Checked, ...]] | None:
    """``kind`` with the patterns of its top-level string fields left out (lengths kept),
    and those fields; None when it has none. msgspec runs each pattern with Python's
    ``re`` on every decode, most of the heartbeat's decode; the same ids come again and
    again, so a set of those known to match answers instead."""
    info = msgspec.inspect.type_info(kind)
    if not isinstance(info, msgspec.inspect.StructType):
        return None
    fields: list[tuple[str, Any, Any]] = []
    checked: list[_Checked] = []
    for field in info.fields:
        kinds = field.type.types if isinstance(field.type, msgspec.inspect.UnionType) else ()
        optional = len(kinds) == 2 and isinstance(kinds[1], msgspec.inspect.NoneType)
        text = kinds[0] if optional else field.type
        if isinstance(text, msgspec.inspect.Metadata):
            text = text.type
        if not isinstance(text, msgspec.inspect.StrType) or text.pattern is None:
            continue
        if text.max_length is None or text.max_length > _ID_MAX:
            continue  # not an id (an avatar URL: what a user erases must not stay here)
        lengths = msgspec.Meta(min_length=text.min_length, max_length=text.max_length)
        relaxed: Any = Annotated[str, lengths]
        if optional:
            relaxed = relaxed | None
        if field.required:
            default: Any = msgspec.NODEFAULT
        elif field.default_factory is not msgspec.NODEFAULT:
            default = msgspec.field(default_factory=field.default_factory)
        else:
            default = field.default
        fields.append((field.name, relaxed, default))
        checked.append(_Checked(field.name, text.pattern))
    if not checked:
        return None
    loose = msgspec.defstruct(f"_Unpatterned{kind.__name__}", fields, bases=(kind,), kw_only=True)
    return loose, tuple(checked)


class Body(Generic[T]):
    """Decoders for one request body type, built once at import time.

    The body is decoded without its top-level id patterns (a subclass of ``kind``), then
    each id is looked up among those known to match, and checked once when new. Any
    failure is decoded again with ``kind`` itself, so what a client is told is exactly
    msgspec's answer for ``kind``."""

    def __init__(
        self, kind: type[T], *, allow_text: bool = False, max_bytes: int = MAX_BODY_BYTES
    ) -> None:
        self.kind = kind
        self.allow_text = allow_text
        self.max_bytes = max_bytes
        self._json_strict = msgspec.json.Decoder(kind)
        self._msgpack_strict = msgspec.msgpack.Decoder(kind)
        unpatterned = _unpatterned(kind)
        loose: type[Any] = kind
        self._checked: tuple[_Checked, ...] = ()
        if unpatterned is not None:
            loose, self._checked = unpatterned
        self._json = msgspec.json.Decoder(loose)
        self._msgpack = msgspec.msgpack.Decoder(loose)

    async def read(self, request: web.Request) -> T:
        decoder = self._decoder(request.content_type)
        return self._decode(decoder, await _body_bytes(request, self.max_bytes))

    def parse(self, content_type: str, raw: bytes) -> T:
        """``read`` for a body already read whole (``http/lean``): the same checks, in the
        same order, with the same answers."""
        decoder = self._decoder(content_type)
        if len(raw) > self.max_bytes:
            raise _too_large(self.max_bytes)
        return self._decode(decoder, raw)

    def _decoder(self, content_type: str) -> Any:
        is_text = self.allow_text and content_type == _TEXT
        if content_type != JSON and content_type not in _MSGPACK_TYPES and not is_text:
            raise UnsupportedMediaType(
                f"send the body as {JSON} or {MSGPACK}, not {content_type or 'nothing'}"
            )
        return self._msgpack if content_type in _MSGPACK_TYPES else self._json

    def _decode(self, decoder: Any, raw: bytes) -> T:
        if not raw:
            raise BadRequest("the request has no body")
        try:
            value: T = decoder.decode(raw)
            if self._checked and not self._matches(value):
                raise msgspec.ValidationError  # kind's own decode below says which
        except msgspec.ValidationError as exc:
            if not self._checked:
                raise BadRequest("the body has invalid fields", errors=field_errors(exc)) from exc
            value = self._strict(decoder, raw)
        except msgspec.DecodeError as exc:
            kind = "msgpack" if decoder is self._msgpack else "JSON"
            raise BadRequest(f"the body is not valid {kind}: {exc}") from exc
        return value

    def _matches(self, value: Any) -> bool:
        """Whether every checked id of ``value`` matches its pattern (as msgspec checks)."""
        for checked in self._checked:
            text = getattr(value, checked.name)
            if text is None or text in checked.known:
                continue
            if checked.pattern.search(text) is None:
                return False
            known = checked.known
            if len(known) >= _KNOWN_MAX:
                known.clear()
            known.add(text)
        return True

    def _strict(self, decoder: Any, raw: bytes) -> T:
        """``raw`` decoded by ``kind`` itself: msgspec's own error, field and order."""
        strict = self._msgpack_strict if decoder is self._msgpack else self._json_strict
        try:
            value: T = strict.decode(raw)
        except msgspec.ValidationError as exc:
            raise BadRequest("the body has invalid fields", errors=field_errors(exc)) from exc
        return value


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than {limit} bytes")


async def _body_bytes(request: web.Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes. A small body arrives with its headers, and
    then it is taken from the buffer as it is, without ``request.read()``'s chunk loop and
    copies."""
    content = request.content
    if content.is_eof():
        raw = content.read_nowait()
        if len(raw) <= limit:
            return raw
    else:
        try:
            raw = await request.read()
            if len(raw) <= limit:
                return raw
        except web.HTTPRequestEntityTooLarge:
            pass
        except ConnectionResetError as exc:
            # The client hung up before its whole body came (aiohttp ends the read so):
            # its doing, not a Redis outage, which a bare ConnectionError would be taken for.
            raise BadRequest("the connection closed before the whole body arrived") from exc
    raise _too_large(limit)


_JSON_ENCODER = msgspec.json.Encoder()
_MSGPACK_ENCODER = msgspec.msgpack.Encoder()


def wants_msgpack(request: web.Request) -> bool:
    # Every msgpack media type we answer contains "msgpack"; one substring test, no parse.
    accept = request.headers.get("Accept")
    return accept is not None and "msgpack" in accept


def wants(accept: str | None) -> bool:
    """``wants_msgpack`` of an ``Accept`` header's value."""
    return accept is not None and "msgpack" in accept


def encode_body(value: Any, as_msgpack: bool) -> bytes:
    """``value`` encoded as ``respond`` sends it (msgpack, or JSON ending in a newline)."""
    if as_msgpack:
        return _MSGPACK_ENCODER.encode(value)
    return _JSON_ENCODER.encode(value) + b"\n"


def encoded(value: Any, accept: str | None) -> tuple[bytes, str]:
    """``value``'s body and media type as ``respond`` answers a 200 (``accept``: the
    request's ``Accept`` header)."""
    if accept is not None and "msgpack" in accept:
        return _MSGPACK_ENCODER.encode(value), MSGPACK
    return _JSON_ENCODER.encode(value) + b"\n", JSON


class Asked(Protocol):
    """What a route's core reads of its request, whoever parsed it: aiohttp
    (:class:`RequestAsked`) or ``http/lean``, which answers the heartbeat before aiohttp
    parses it."""

    @property
    def authorization(self) -> str | None: ...

    @property
    def accept(self) -> str | None: ...

    def body(self, kind: Body[T]) -> Awaitable[T]:
        """The body, read and validated as ``kind`` says."""
        ...


class Read(Params, Protocol):
    """What a read's core reads of its request (its path and query parameters, its token
    and its ``Accept``), whoever parsed it: aiohttp (:class:`RequestAsked`) or
    ``http/lean``, which answers the hot reads before aiohttp parses them."""

    @property
    def authorization(self) -> str | None: ...

    @property
    def accept(self) -> str | None: ...


class RequestAsked:
    """An aiohttp request, as a core reads it."""

    __slots__ = ("_request",)

    def __init__(self, request: web.Request) -> None:
        self._request = request

    @property
    def authorization(self) -> str | None:
        return self._request.headers.get("Authorization")

    @property
    def accept(self) -> str | None:
        return self._request.headers.get("Accept")

    @property
    def match_info(self) -> Mapping[str, str]:
        return self._request.match_info

    @property
    def query(self) -> MultiMapping[str]:
        return self._request.query

    def body(self, kind: Body[T]) -> Awaitable[T]:
        return kind.read(self._request)


def respond(request: web.Request, value: Any, status: int = 200) -> web.Response:
    """Encode ``value`` as msgpack if the client accepts it, else JSON ending in a newline
    (so a terminal's prompt after ``curl`` starts on its own line). A ``LeanAnswer``: the
    same bytes as a ``web.Response``, prepared with less of aiohttp's machinery."""
    if status != 200:
        if wants_msgpack(request):
            body = _MSGPACK_ENCODER.encode(value)
            return LeanAnswer(body=body, status=status, content_type=MSGPACK)
        body = _JSON_ENCODER.encode(value) + b"\n"
        return LeanAnswer(body=body, status=status, content_type=JSON)
    if wants_msgpack(request):
        return LeanAnswer.ok(_MSGPACK_ENCODER.encode(value), MSGPACK)
    return LeanAnswer.ok(_JSON_ENCODER.encode(value) + b"\n", JSON)
